//! The command line (shared/API.md "Running and bootstrapping"): `serve` and the admin
//! commands. Every option reads flags, then `KEYSTEAD_*` environment variables, then the
//! TOML config file, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::audit::sink::{SinkContext, SinkSettings, sealing_label};
use crate::auth::{OPS, new_key, parse_duration};
use crate::clock::SystemClock;
use crate::http::{AppState, RateLimiter, admin_app, app};
use crate::kms::RetryPolicy;
use crate::kms::builtin::{BuiltinKms, RootKey};
use crate::kms::net::OutboundPolicy;
use crate::lease::{MAX_LEASE, MAX_RENEW};
use crate::metrics::Metrics;
use crate::service::{Service, ServiceOptions, create_builtin_tenant};
use crate::store::sqlite::SqliteStore;
use crate::store::{ConfigState, KmsConfig, SinkRecord, Store, TenantMode};
use crate::tls;
use crate::util::unix_now;

/// Keystead: customer-managed keys for SaaS.
#[derive(Parser, Debug)]
#[command(name = "keystead", version, about)]
pub struct Cli {
    /// Data directory (SQLite database, root key, audit log).
    #[arg(long, global = true, env = "KEYSTEAD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML config file.
    #[arg(long, global = true, env = "KEYSTEAD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Encryption Service.
    Serve(ServeArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage service keys.
    #[command(subcommand, name = "service-key")]
    ServiceKey(KeyCmd),
    /// Audit stream tools: verify what a SIEM received; print this instance's checkpoint key.
    #[command(subcommand)]
    Audit(AuditCmd),
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Verify a delivered audit stream (one event per line: the JSON events as a webhook,
    /// file or syslog sink delivers them, or Splunk HEC envelopes): reports gaps, edited,
    /// conflicting and reordered events and bad checkpoints. Exit status 1 on any finding.
    Verify {
        /// The captured stream (`-` for standard input).
        #[arg(default_value = "-")]
        stream: PathBuf,
        /// A checkpoint public key (hex, from `keystead audit public-key`) to trust; repeat
        /// for several ES instances. Without one, checkpoints are checked against the key
        /// they name (integrity, not authenticity).
        #[arg(long = "trusted-key")]
        trusted: Vec<String>,
    },
    /// Print this instance's name and checkpoint public key (hex) for tenants to pin.
    PublicKey,
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// API listen address.
    #[arg(long, env = "KEYSTEAD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin listen address (/health, /ready, /metrics).
    #[arg(long, env = "KEYSTEAD_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Development mode: auto-create unknown tenants and print a service key (loopback only).
    #[arg(long, env = "KEYSTEAD_DEV")]
    dev: bool,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    #[arg(long, env = "KEYSTEAD_ALLOW_PLAIN_HTTP")]
    allow_plain_http: bool,
    /// Per-tenant rate limit, requests per second (0 = off).
    #[arg(long, env = "KEYSTEAD_RATE_LIMIT_TENANT")]
    rate_limit_tenant: Option<f64>,
    /// Per-service-key rate limit, requests per second (0 = off).
    #[arg(long, env = "KEYSTEAD_RATE_LIMIT_KEY")]
    rate_limit_key: Option<f64>,
    /// KMS call timeout in milliseconds.
    #[arg(long, env = "KEYSTEAD_KMS_TIMEOUT_MS")]
    kms_timeout_ms: Option<u64>,
    /// TLS certificate chain (PEM); with --tls-key, both listeners serve HTTPS.
    #[arg(long, env = "KEYSTEAD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "KEYSTEAD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) for mTLS: clients must present a certificate issued by one.
    #[arg(long, env = "KEYSTEAD_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Benchmarks only: no audit events at all (loopback listeners only). Measures what
    /// the audit pipeline costs; never use it for real data.
    #[arg(long, hide = true)]
    unsafe_no_audit: bool,
}

/// The TOML config file: the same options as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    dev: Option<bool>,
    allow_plain_http: Option<bool>,
    rate_limit_tenant: Option<f64>,
    rate_limit_key: Option<f64>,
    kms_timeout_ms: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    outbound: Option<OutboundFile>,
    audit: Option<AuditFile>,
    directory: Option<DirectoryFile>,
}

/// `[directory]`: the E2E key directory (docs/DIRECTORY.md).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    /// `file` (default: `<data dir>/blobs`) or `s3`.
    blob_store: Option<String>,
    /// Directory of the file backend (default `<data dir>/blobs`).
    blob_dir: Option<PathBuf>,
    /// S3 bucket (`s3`); credentials come from the environment (`AWS_ACCESS_KEY_ID`, ...).
    bucket: Option<String>,
    /// S3 endpoint URL (S3-compatible stores); default AWS.
    endpoint: Option<String>,
    /// S3 region.
    region: Option<String>,
    /// Accept a plain-HTTP S3 endpoint (tests only).
    allow_http: Option<bool>,
    /// Key prefix inside the bucket.
    prefix: Option<String>,
    /// Largest attachment blob, MiB (default 1024).
    max_blob_mib: Option<u64>,
    /// Escrow releases per user per hour (default 5).
    escrow_per_hour: Option<usize>,
    /// Device-signed requests per second per device (default 50; 0: no limit).
    device_requests_per_sec: Option<f64>,
}

/// Builds the key directory from `[directory]`.
fn build_directory(
    dir: &Path,
    file: Option<&DirectoryFile>,
    service: Arc<Service>,
) -> Result<Arc<crate::directory::Directory>, BoxError> {
    use crate::directory::blob::{BlobStore, FileBlobStore, S3BlobStore, S3Settings};
    let default = DirectoryFile::default();
    let f = file.unwrap_or(&default);
    let blobs: Arc<dyn BlobStore> = match f.blob_store.as_deref().unwrap_or("file") {
        "file" => {
            let root = f.blob_dir.clone().unwrap_or_else(|| dir.join("blobs"));
            Arc::new(
                FileBlobStore::new(&root)
                    .map_err(|e| format!("blob dir {}: {e}", root.display()))?,
            )
        }
        "s3" => {
            let bucket = f
                .bucket
                .clone()
                .ok_or("[directory] blob_store = \"s3\" needs bucket")?;
            Arc::new(
                S3BlobStore::new(
                    &S3Settings {
                        bucket,
                        endpoint: f.endpoint.clone(),
                        region: f.region.clone(),
                        allow_http: f.allow_http.unwrap_or(false),
                        prefix: f.prefix.clone().unwrap_or_default(),
                        credentials: None,
                    },
                    &dir.join("blobs-tmp"),
                )
                .map_err(|e| format!("[directory] s3: {e}"))?,
            )
        }
        other => {
            return Err(format!("[directory] blob_store must be file or s3, not {other}").into());
        }
    };
    let mut opts = crate::directory::DirectoryOptions::default();
    if let Some(m) = f.max_blob_mib {
        opts.max_blob_bytes = m.saturating_mul(1 << 20);
    }
    if let Some(n) = f.escrow_per_hour {
        opts.escrow_per_hour = n;
    }
    if let Some(r) = f.device_requests_per_sec {
        if !(r.is_finite() && r >= 0.0) {
            return Err("[directory] device_requests_per_sec must be a number ≥ 0".into());
        }
        opts.device_requests_per_sec = r;
    }
    let store = Arc::new(SqliteStore::open(&dir.join("keystead.db"))?);
    Ok(Arc::new(crate::directory::Directory::new(
        store,
        blobs,
        Arc::new(SystemClock::default()),
        service,
        opts,
    )))
}

/// `[audit]`: the spool and the sinks of tenants that configured none (docs/AUDIT.md).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    /// Spool bound per tenant, MiB (default 1024).
    max_spool_mib: Option<u64>,
    /// `fail_closed` (default) or `drop_oldest`.
    when_full: Option<String>,
    /// A signed checkpoint at least every this many events (default 1000)…
    checkpoint_events: Option<u64>,
    /// …and every this many seconds while events arrive (default 10).
    checkpoint_interval_secs: Option<u64>,
    /// Sinks of tenants without their own (default: a JSON-lines file per tenant,
    /// `<data dir>/audit/files/{tenant}.jsonl`; `{tenant}` is replaced by the tenant's
    /// directory name).
    #[serde(default)]
    default_sinks: Vec<toml::Value>,
}

/// `[outbound]`: where connections to tenants' KMSs may go (see `kms::net`).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct OutboundFile {
    /// Non-public networks to allow, CIDR (e.g. "10.20.0.0/16", "127.0.0.1/32").
    #[serde(default)]
    allow: Vec<String>,
    /// Accept plain http:// KMS endpoints (test peers only).
    #[serde(default)]
    allow_plain_http: bool,
    /// Extra CA certificates (PEM files) trusted for KMS endpoints.
    #[serde(default)]
    ca_files: Vec<PathBuf>,
}

impl OutboundFile {
    fn policy(&self) -> Result<OutboundPolicy, BoxError> {
        let mut p = OutboundPolicy {
            allow_plain_http: self.allow_plain_http,
            ..OutboundPolicy::default()
        };
        for a in &self.allow {
            let net = a
                .parse::<ipnet::IpNet>()
                .or_else(|_| a.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("[outbound] allow: '{a}' is not an address or CIDR"))?;
            p.allow.push(net);
        }
        for f in &self.ca_files {
            p.extra_roots_pem.push(
                std::fs::read(f)
                    .map_err(|e| format!("[outbound] ca_files {}: {e}", f.display()))?,
            );
        }
        Ok(p)
    }
}

fn outbound_policy(file: &FileConfig) -> Result<OutboundPolicy, BoxError> {
    file.outbound
        .as_ref()
        .map_or_else(|| Ok(OutboundPolicy::default()), OutboundFile::policy)
}

#[derive(Subcommand, Debug)]
enum TenantCmd {
    /// Create a tenant (with a built-in KMS key).
    Create {
        /// Tenant id.
        tenant_id: String,
        /// Wrapping mode: `leasing`, `remote` or `asymmetric` (DEKs sealed to the tenant's
        /// X25519 public key; wraps need no KMS call).
        #[arg(long, default_value = "leasing")]
        mode: String,
        /// KMS: `builtin`. A tenant's own KMS is added with `add-kms-config --primary`.
        #[arg(long, default_value = "builtin")]
        kms: String,
        /// Lease length (leasing mode), e.g. `1h`; at most 24h.
        #[arg(long, default_value = "1h")]
        lease: String,
        /// Renewal interval (leasing mode), e.g. `20m`; at most 1h.
        #[arg(long, default_value = "20m")]
        renew: String,
    },
    /// Disable a tenant: key operations answer `409 tenant_disabled`.
    Disable {
        /// Tenant id.
        tenant_id: String,
    },
    /// Enable a disabled tenant.
    Enable {
        /// Tenant id.
        tenant_id: String,
    },
    /// List tenants.
    List,
    /// Rotate the tenant's built-in master key: new wraps use a new key version; EDEKs under
    /// earlier versions still unwrap, and `rekey` moves them to the new one.
    RotateKey {
        /// Tenant id.
        tenant_id: String,
    },
    /// Disable the tenant's built-in master key (all versions, or one): operations answer
    /// `403 kms_denied`, as with a revoked key in a cloud KMS.
    DisableKey {
        /// Tenant id.
        tenant_id: String,
        /// Only this version.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Re-enable the tenant's built-in master key.
    EnableKey {
        /// Tenant id.
        tenant_id: String,
        /// Only this version.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Start a rotation of the tenant's derivation secret (deterministic fields, blind
    /// indexes): new values are written under a new secret, and derives also answer the
    /// previous one so queries find values written before. Rewrite those values, then run
    /// `finish-derivation-rotation`. Running servers see the change within a second;
    /// clients when their derived-key cache expires.
    RotateDerivationSecret {
        /// Tenant id.
        tenant_id: String,
    },
    /// Finish a rotation of the tenant's derivation secret: the previous secret is retired
    /// and values still written under it can no longer be searched or decrypted.
    FinishDerivationRotation {
        /// Tenant id.
        tenant_id: String,
    },
    /// List the tenant's derivation secrets and their state.
    DerivationSecrets {
        /// Tenant id.
        tenant_id: String,
    },
    /// Add a KMS configuration to a tenant (the tenant's own KMS: aws, vault, kmip, pkcs11,
    /// gcp, azure; see docs/KMS.md). Settings are JSON; credentials in them are stored
    /// sealed under the root key. The adapter is built, and with `--check` the key is
    /// described through the KMS, before anything is stored.
    AddKmsConfig {
        /// Tenant id.
        tenant_id: String,
        /// Config id (unique per tenant), e.g. `aws-prod`.
        config_id: String,
        /// Provider name.
        #[arg(long)]
        provider: String,
        /// Settings file (JSON), `-` for standard input.
        #[arg(long)]
        settings: PathBuf,
        /// Make it the tenant's primary config (new wraps use it).
        #[arg(long)]
        primary: bool,
        /// Call the KMS once (describe the key) before storing.
        #[arg(long)]
        check: bool,
    },
    /// Make a config the tenant's primary: new wraps use it; `rekey` moves EDEKs to it.
    SetPrimary {
        /// Tenant id.
        tenant_id: String,
        /// Config id.
        config_id: String,
    },
    /// Retire a config: EDEKs still under it answer `422 key_retired`. Not the primary.
    RetireConfig {
        /// Tenant id.
        tenant_id: String,
        /// Config id.
        config_id: String,
    },
    /// Move the tenant's live derivation secrets to its primary config (after a KMS
    /// takeover): unwrapped by their old config, wrapped by the primary; the secrets and
    /// every derived key stay the same. Run before retiring the old config.
    RewrapDerivationSecrets {
        /// Tenant id.
        tenant_id: String,
    },
    /// List the tenant's KMS configs (never their settings).
    Configs {
        /// Tenant id.
        tenant_id: String,
    },
    /// Add (or replace) an audit sink of a tenant: webhook, splunk_hec, syslog, file or
    /// stdout (docs/AUDIT.md). Settings are JSON with a `kind` field; tokens in them are
    /// stored sealed under the root key. The sink is built (URL, address and path checked
    /// against the `[outbound]` policy) before anything is stored.
    AddSink {
        /// Tenant id.
        tenant_id: String,
        /// Sink id (unique per tenant): letters, digits, `.`, `_`, `-`, at most 64.
        sink_id: String,
        /// Settings file (JSON), `-` for standard input.
        #[arg(long)]
        settings: PathBuf,
    },
    /// Remove an audit sink of a tenant.
    RemoveSink {
        /// Tenant id.
        tenant_id: String,
        /// Sink id.
        sink_id: String,
    },
    /// List the tenant's audit sinks: ids and kinds (never their settings).
    Sinks {
        /// Tenant id.
        tenant_id: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// Create a service key; prints the secret once, alone on stdout.
    Create {
        /// Unique name.
        name: String,
        /// Tenants the key may act for (repeat the flag).
        #[arg(
            long = "tenant",
            required_unless_present = "all_tenants",
            conflicts_with = "all_tenants"
        )]
        tenants: Vec<String>,
        /// The key may act for every tenant.
        #[arg(long)]
        all_tenants: bool,
        /// Operations, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
        /// Expiry, e.g. `90d`, `12h`.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List service keys (never their secrets).
    List,
    /// Revoke a service key.
    Revoke {
        /// Name.
        name: String,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// The binary's entry point with explicit arguments (the first is the program name), for
/// tests that run `keystead` commands in a child process without the binary at hand.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keystead: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn load_file(path: Option<&Path>) -> Result<FileConfig, BoxError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    Ok(toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?)
}

fn data_dir(cli: &Cli, file: &FileConfig) -> PathBuf {
    cli.data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("keystead-data"))
}

/// Opens the data dir: creates it (0700), the database and the root key file (0600).
pub fn open_data_dir(dir: &Path) -> Result<(Arc<dyn Store>, Arc<BuiltinKms>), BoxError> {
    std::fs::create_dir_all(dir).map_err(|e| format!("data dir {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("keystead.db"))?);
    let root =
        RootKey::load_or_create(&dir.join("root.key")).map_err(|e| format!("root key: {e}"))?;
    let builtin = Arc::new(BuiltinKms::new(root, store.clone()));
    Ok((store, builtin))
}

fn run(cli: Cli) -> Result<(), BoxError> {
    let file = load_file(cli.config.as_deref())?;
    let dir = data_dir(&cli, &file);
    match cli.command {
        Command::Serve(ref args) => serve(&dir, args, &file),
        Command::Tenant(cmd) => tenant_cmd(&dir, cmd, &file),
        Command::ServiceKey(cmd) => key_cmd(&dir, cmd),
        Command::Audit(cmd) => audit_cmd(&dir, cmd),
    }
}

fn tenant_cmd(dir: &Path, cmd: TenantCmd, file: &FileConfig) -> Result<(), BoxError> {
    let (store, builtin) = open_data_dir(dir)?;
    let get = |id: &str| -> Result<crate::store::Tenant, BoxError> {
        store
            .tenant(id)?
            .ok_or_else(|| format!("no tenant '{id}'").into())
    };
    match cmd {
        TenantCmd::Create {
            tenant_id,
            mode,
            kms,
            lease,
            renew,
        } => {
            keystead_core::TenantId::new(&tenant_id)
                .map_err(|_| "tenant id must be 1 to 256 bytes without control characters")?;
            let mode = TenantMode::parse(&mode)
                .ok_or("--mode must be 'leasing', 'remote' or 'asymmetric'")?;
            if kms != "builtin" {
                return Err(
                    "a tenant starts on the built-in KMS (a vendor-provided key); add its \
                            own KMS with `tenant add-kms-config --primary`"
                        .into(),
                );
            }
            let lease = parse_duration(&lease).ok_or("--lease: use e.g. 1h, 30m")? as u64;
            let renew = parse_duration(&renew).ok_or("--renew: use e.g. 20m")? as u64;
            if lease > MAX_LEASE.as_secs() || renew > MAX_RENEW.as_secs() || renew > lease {
                return Err(
                    "lease at most 24h, renewal at most 1h and not longer than the lease".into(),
                );
            }
            create_builtin_tenant(&store, &builtin, &tenant_id, mode, lease, renew)?;
            eprintln!(
                "created tenant {tenant_id} ({} mode, built-in KMS)",
                mode.as_str()
            );
        }
        TenantCmd::Disable { tenant_id } => {
            let mut t = get(&tenant_id)?;
            t.disabled = true;
            store.update_tenant(&t)?;
            eprintln!("disabled tenant {tenant_id}");
        }
        TenantCmd::Enable { tenant_id } => {
            let mut t = get(&tenant_id)?;
            t.disabled = false;
            store.update_tenant(&t)?;
            eprintln!("enabled tenant {tenant_id}");
        }
        TenantCmd::List => {
            for t in store.tenants()? {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.id,
                    t.mode.as_str(),
                    t.primary_config,
                    if t.disabled { "disabled" } else { "enabled" }
                );
            }
        }
        TenantCmd::RotateKey { tenant_id } => {
            let t = get(&tenant_id)?;
            let v = builtin.create_version(&t.id, &t.primary_config)?;
            eprintln!("tenant {tenant_id}: new key version {v}");
        }
        TenantCmd::DisableKey { tenant_id, version } => {
            let t = get(&tenant_id)?;
            builtin.set_enabled(&t.id, &t.primary_config, version, false)?;
            eprintln!("tenant {tenant_id}: key disabled");
        }
        TenantCmd::EnableKey { tenant_id, version } => {
            let t = get(&tenant_id)?;
            builtin.set_enabled(&t.id, &t.primary_config, version, true)?;
            eprintln!("tenant {tenant_id}: key enabled");
        }
        TenantCmd::RotateDerivationSecret { tenant_id } => {
            get(&tenant_id)?;
            let service = operator_service(dir, store, builtin, file)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let id = rt
                .block_on(service.rotate_derivation_secret(&tenant_id))
                .map_err(|e| e.message)?;
            eprintln!(
                "tenant {tenant_id}: new derivation secret {id}; the previous one stays searchable until finish-derivation-rotation"
            );
        }
        TenantCmd::FinishDerivationRotation { tenant_id } => {
            get(&tenant_id)?;
            let service = operator_service(dir, store, builtin, file)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let id = rt
                .block_on(service.finish_derivation_rotation(&tenant_id))
                .map_err(|e| e.message)?;
            eprintln!("tenant {tenant_id}: derivation secret {id} retired");
        }
        TenantCmd::AddKmsConfig {
            tenant_id,
            config_id,
            provider,
            settings,
            primary,
            check,
        } => {
            let mut t = get(&tenant_id)?;
            keystead_core::ConfigId::new(&config_id)
                .map_err(|_| "config id must be 1 to 256 bytes without control characters")?;
            if store.config(&tenant_id, &config_id)?.is_some() {
                return Err(
                    format!("tenant {tenant_id} already has a config '{config_id}'").into(),
                );
            }
            let raw = read_settings(&settings)?;
            let value: serde_json::Value =
                serde_json::from_slice(&raw).map_err(|e| format!("settings are not JSON: {e}"))?;
            let ctx = crate::kms::registry::BuildContext {
                outbound: outbound_policy(file)?,
                timeout: RetryPolicy::default().timeout,
            };
            let kms = crate::kms::registry::build(&provider, value, &ctx, &builtin)
                .map_err(|e| format!("{provider} settings: {e}"))?;
            if check {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let key = crate::kms::KeyRef {
                    tenant: tenant_id.clone(),
                    config: config_id.clone(),
                    version: None,
                };
                let v = rt
                    .block_on(kms.describe(&key))
                    .map_err(|e| format!("the KMS check failed: {e}"))?;
                eprintln!("KMS check passed (key version {v})");
            }
            let sealed = builtin.seal_settings(&tenant_id, &config_id, &raw)?;
            store.put_config(&KmsConfig {
                tenant: tenant_id.clone(),
                id: config_id.clone(),
                provider: provider.clone(),
                state: ConfigState::Active,
                settings: sealed,
            })?;
            if primary {
                t.primary_config = config_id.clone();
                store.update_tenant(&t)?;
            }
            eprintln!(
                "tenant {tenant_id}: added {provider} config {config_id}{}",
                if primary { " (primary)" } else { "" }
            );
        }
        TenantCmd::SetPrimary {
            tenant_id,
            config_id,
        } => {
            let mut t = get(&tenant_id)?;
            let c = store
                .config(&tenant_id, &config_id)?
                .ok_or_else(|| format!("tenant {tenant_id} has no config '{config_id}'"))?;
            if c.state == ConfigState::Retired {
                return Err(format!("config {config_id} is retired").into());
            }
            t.primary_config = config_id.clone();
            store.update_tenant(&t)?;
            eprintln!("tenant {tenant_id}: primary config is now {config_id}");
        }
        TenantCmd::RetireConfig {
            tenant_id,
            config_id,
        } => {
            let t = get(&tenant_id)?;
            if t.primary_config == config_id {
                return Err(
                    "the primary config cannot be retired; set another primary first".into(),
                );
            }
            let mut c = store
                .config(&tenant_id, &config_id)?
                .ok_or_else(|| format!("tenant {tenant_id} has no config '{config_id}'"))?;
            let pinned: Vec<String> = store
                .derivation_secrets(&tenant_id)?
                .into_iter()
                .filter(|s| s.config == config_id && s.state != crate::store::SecretState::Retired)
                .map(|s| s.id)
                .collect();
            if !pinned.is_empty() {
                return Err(format!(
                    "derivation secret(s) {} are still wrapped by {config_id}: run \
                     `tenant rewrap-derivation-secrets {tenant_id}` first",
                    pinned.join(", ")
                )
                .into());
            }
            c.state = ConfigState::Retired;
            store.put_config(&c)?;
            eprintln!("tenant {tenant_id}: config {config_id} retired");
        }
        TenantCmd::RewrapDerivationSecrets { tenant_id } => {
            get(&tenant_id)?;
            let service = operator_service(dir, store, builtin, file)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let moved = rt
                .block_on(service.rewrap_derivation_secrets(&tenant_id))
                .map_err(|e| e.message)?;
            eprintln!(
                "tenant {tenant_id}: {} derivation secret(s) now wrapped by the primary config{}",
                moved.len(),
                if moved.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", moved.join(", "))
                }
            );
        }
        TenantCmd::Configs { tenant_id } => {
            let t = get(&tenant_id)?;
            for c in store.configs(&tenant_id)? {
                println!(
                    "{}\t{}\t{}{}",
                    c.id,
                    c.provider,
                    match c.state {
                        ConfigState::Active => "active",
                        ConfigState::Retired => "retired",
                    },
                    if c.id == t.primary_config {
                        "\tprimary"
                    } else {
                        ""
                    }
                );
            }
        }
        TenantCmd::AddSink {
            tenant_id,
            sink_id,
            settings,
        } => {
            get(&tenant_id)?;
            if sink_id.is_empty()
                || sink_id.len() > 64
                || !sink_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err("sink id must be 1 to 64 letters, digits, '.', '_' or '-'".into());
            }
            let raw = read_settings(&settings)?;
            let parsed = SinkSettings::from_json(&raw)?;
            let ctx = SinkContext {
                outbound: outbound_policy(file)?,
                file_dir: dir.join("audit").join("files"),
                dev: file.dev.unwrap_or(false),
                timeout: RetryPolicy::default().timeout,
                instance: "operator-cli".into(),
            };
            crate::audit::sink::build(&parsed, &ctx)
                .map_err(|e| format!("{} sink settings: {e}", parsed.kind()))?;
            let sealed = builtin.seal_settings(&tenant_id, &sealing_label(&sink_id), &raw)?;
            let replaced = store.sinks(&tenant_id)?.iter().any(|s| s.id == sink_id);
            store.put_sink(&SinkRecord {
                tenant: tenant_id.clone(),
                id: sink_id.clone(),
                kind: parsed.kind().into(),
                settings: sealed,
            })?;
            eprintln!(
                "tenant {tenant_id}: {} {} sink {sink_id}",
                if replaced { "replaced" } else { "added" },
                parsed.kind()
            );
        }
        TenantCmd::RemoveSink { tenant_id, sink_id } => {
            get(&tenant_id)?;
            if !store.remove_sink(&tenant_id, &sink_id)? {
                return Err(format!("tenant {tenant_id} has no sink '{sink_id}'").into());
            }
            eprintln!("tenant {tenant_id}: removed sink {sink_id}");
        }
        TenantCmd::Sinks { tenant_id } => {
            get(&tenant_id)?;
            for s in store.sinks(&tenant_id)? {
                println!("{}\t{}", s.id, s.kind);
            }
        }
        TenantCmd::DerivationSecrets { tenant_id } => {
            get(&tenant_id)?;
            for s in store.derivation_secrets(&tenant_id)? {
                println!(
                    "{}\t{}\t{}\tversion {}\tcreated {}",
                    s.id,
                    s.state.as_str(),
                    s.config,
                    s.key_version,
                    s.created_at
                );
            }
        }
    }
    Ok(())
}

/// Reads a settings file (`-`: standard input), zeroized when dropped.
fn read_settings(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, BoxError> {
    Ok(zeroize::Zeroizing::new(if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
    }))
}

/// A service for operator commands that use the tenant's KMS; their audit events go to an
/// outbox the server imports into the tenants' chains (`audit::outbox`).
fn operator_service(
    dir: &Path,
    store: Arc<dyn Store>,
    builtin: Arc<BuiltinKms>,
    file: &FileConfig,
) -> Result<Service, BoxError> {
    let audit = Arc::new(crate::audit::outbox::create(dir)?);
    Ok(Service::new(
        store,
        builtin,
        audit,
        Arc::new(Metrics::default()),
        Arc::new(SystemClock::default()),
        ServiceOptions {
            instance: "operator-cli".into(),
            outbound: outbound_policy(file)?,
            ..Default::default()
        },
    ))
}

fn key_cmd(dir: &Path, cmd: KeyCmd) -> Result<(), BoxError> {
    let (store, _) = open_data_dir(dir)?;
    match cmd {
        KeyCmd::Create {
            name,
            tenants,
            all_tenants,
            ops,
            expires,
        } => {
            let ops = if ops.is_empty() {
                OPS.iter().map(|s| (*s).to_owned()).collect()
            } else {
                ops
            };
            if let Some(bad) = ops.iter().find(|o| !OPS.contains(&o.as_str())) {
                return Err(format!("unknown operation '{bad}' (known: {})", OPS.join(",")).into());
            }
            let expires_at = match expires {
                Some(e) => {
                    Some(unix_now() + parse_duration(&e).ok_or("--expires: use e.g. 90d, 12h")?)
                }
                None => None,
            };
            let tenants = if all_tenants { None } else { Some(tenants) };
            let k = new_key(&name, tenants, ops, expires_at);
            store.create_service_key(&k.record)?;
            println!("{}", &*k.secret);
        }
        KeyCmd::List => {
            for k in store.service_keys()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.name,
                    k.id,
                    k.tenants.map_or_else(|| "*".to_owned(), |t| t.join(",")),
                    k.ops.join(","),
                    if k.revoked { "revoked" } else { "active" }
                );
            }
        }
        KeyCmd::Revoke { name } => {
            store.revoke_service_key(&name)?;
            eprintln!("revoked service key {name}");
        }
    }
    Ok(())
}

fn serve(dir: &Path, args: &ServeArgs, file: &FileConfig) -> Result<(), BoxError> {
    disable_core_dumps();
    let dev = args.dev || file.dev.unwrap_or(false);
    let allow_plain = args.allow_plain_http || file.allow_plain_http.unwrap_or(false);
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7777)));
    let admin = args
        .admin_listen
        .or(file.admin_listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7778)));
    let tls = tls_config(args, file)?;
    for addr in [listen, admin] {
        if dev && !addr.ip().is_loopback() {
            return Err(format!("--dev refuses to listen on non-loopback address {addr}").into());
        }
        if !addr.ip().is_loopback() && !allow_plain && tls.is_none() {
            return Err(format!(
                "refusing plain HTTP on non-loopback address {addr}: configure TLS (--tls-cert, --tls-key) or pass --allow-plain-http behind a TLS-terminating proxy"
            )
            .into());
        }
    }
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYSTEAD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (store, builtin) = open_data_dir(dir)?;
    let instance = instance_name(dir)?;
    let no_audit = args.unsafe_no_audit;
    if no_audit && !(listen.ip().is_loopback() && admin.ip().is_loopback()) {
        return Err("--unsafe-no-audit is for benchmarks on loopback only".into());
    }
    let no_audit_section = AuditFile::default();
    let audit_file = file.audit.as_ref().unwrap_or(&no_audit_section);
    let spool_cfg = audit_file.spool_config(dir, &instance)?;
    let auditor = if no_audit {
        eprintln!("keystead: WARNING: --unsafe-no-audit: key operations are NOT audited");
        None
    } else {
        let key = crate::audit::load_signing_key(dir, &builtin)?;
        Some(crate::audit::Auditor::open(spool_cfg, key)?)
    };
    let audit: Arc<dyn crate::audit::AuditSink> = match &auditor {
        Some(a) => a.clone(),
        None => Arc::new(crate::audit::NullSink),
    };
    let sink_ctx = crate::audit::sink::SinkContext {
        outbound: outbound_policy(file)?,
        file_dir: dir.join("audit").join("files"),
        dev,
        timeout: Duration::from_secs(10),
        instance: instance.clone(),
    };
    let sinks: Arc<dyn crate::audit::SinkSource> =
        Arc::new(crate::audit::tenant_sinks::TenantSinks::new(
            store.clone(),
            builtin.clone(),
            sink_ctx,
            audit_file.default_sinks(dev)?,
        )?);
    let mut opts = ServiceOptions {
        instance: instance.clone(),
        dev_autocreate: dev,
        outbound: outbound_policy(file)?,
        ..Default::default()
    };
    if let Some(ms) = args.kms_timeout_ms.or(file.kms_timeout_ms) {
        opts.retry = RetryPolicy {
            timeout: Duration::from_millis(ms),
            ..opts.retry
        };
    }
    let service = Arc::new(Service::new(
        store.clone(),
        builtin,
        audit,
        Arc::new(Metrics::default()),
        Arc::new(SystemClock::default()),
        opts,
    ));
    let limiter = Arc::new(RateLimiter::new(
        args.rate_limit_tenant
            .or(file.rate_limit_tenant)
            .unwrap_or(100_000.0),
        args.rate_limit_key
            .or(file.rate_limit_key)
            .unwrap_or(100_000.0),
    ));
    if dev {
        let k = new_key(
            &format!("dev-{}", unix_now()),
            None,
            OPS.iter().map(|s| (*s).to_owned()).collect(),
            Some(unix_now() + 86_400),
        );
        store.create_service_key(&k.record)?;
        println!("{}", &*k.secret);
        eprintln!(
            "development mode: the line above is a service key for every tenant (expires in 24 h); unknown tenants are created on first use"
        );
    }
    let directory = build_directory(dir, file.directory.as_ref(), service.clone())?;
    let state = AppState {
        service: service.clone(),
        limiter,
        directory: Some(directory),
    };
    let https = tls.is_some();
    let mtls = https && (args.tls_client_ca.is_some() || file.tls_client_ca.is_some());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let api = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("listen {listen}: {e}"))?;
        let adm = tokio::net::TcpListener::bind(admin)
            .await
            .map_err(|e| format!("admin listen {admin}: {e}"))?;
        // The bound addresses (port 0 asks the OS for a free port).
        let listen = api.local_addr().unwrap_or(listen);
        let admin = adm.local_addr().unwrap_or(admin);
        if let Some(a) = &auditor {
            a.start_delivery(
                sinks,
                crate::audit::DeliveryOptions::default(),
            );
            tracing::info!(instance = %instance, checkpoint_key = %a.public_key_hex(), "audit pipeline started");
        }
        // Events of operator commands run while (or before) the server runs.
        let outbox = auditor.clone().map(|a| {
            let (dir, instance) = (dir.to_path_buf(), instance.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                loop {
                    tick.tick().await;
                    let n = crate::audit::outbox::import(&dir, &instance, &*a).await;
                    if n > 0 {
                        tracing::info!(events = n, "operator audit events imported");
                    }
                }
            })
        });
        tracing::info!(%listen, %admin, data_dir = %dir.display(), dev, https, mtls, "keystead serving");
        let renewal = {
            let service = service.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    service.renew_due_leases().await;
                }
            })
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let api_srv = tls::serve(api, app(state.clone()), tls.clone(), wait(rx.clone()));
        let adm_srv = tls::serve(adm, admin_app(state), tls, wait(rx));
        let signal = async move {
            shutdown_signal().await;
            tracing::info!("shutting down: draining requests");
            let _ = tx.send(true);
        };
        let (a, b, ()) = tokio::join!(api_srv, adm_srv, signal);
        renewal.abort();
        if let Some(o) = outbox {
            o.abort();
        }
        if let Some(auditor) = &auditor {
            tracing::info!("flushing audit events (up to 5 s)");
            auditor.shutdown(Duration::from_secs(5)).await;
        }
        a?;
        b?;
        tracing::info!("stopped");
        Ok::<(), BoxError>(())
    })
}

impl AuditFile {
    fn spool_config(
        &self,
        dir: &Path,
        instance: &str,
    ) -> Result<crate::audit::SpoolConfig, BoxError> {
        let mut c =
            crate::audit::SpoolConfig::new(dir.join("audit").join("spool"), instance.to_owned());
        if let Some(m) = self.max_spool_mib {
            if m < 1 {
                return Err("[audit] max_spool_mib must be at least 1".into());
            }
            c.max_bytes = m << 20;
        }
        c.segment_bytes = c.segment_bytes.min((c.max_bytes / 8).max(64 << 10));
        c.policy = match self.when_full.as_deref() {
            None | Some("fail_closed") => crate::audit::FullPolicy::FailClosed,
            Some("drop_oldest") => crate::audit::FullPolicy::DropOldest,
            Some(o) => {
                return Err(
                    format!("[audit] when_full: '{o}' (use fail_closed or drop_oldest)").into(),
                );
            }
        };
        if let Some(n) = self.checkpoint_events {
            c.checkpoint_events = n.clamp(1, 1_000_000);
        }
        if let Some(t) = self.checkpoint_interval_secs {
            c.checkpoint_interval = Duration::from_secs(t.clamp(1, 3600));
        }
        Ok(c)
    }

    fn default_sinks(
        &self,
        dev: bool,
    ) -> Result<Vec<(String, crate::audit::sink::SinkSettings)>, BoxError> {
        use crate::audit::sink::SinkSettings;
        if self.default_sinks.is_empty() {
            let mut v = vec![(
                "local-file".to_owned(),
                SinkSettings::File {
                    path: "{tenant}.jsonl".into(),
                },
            )];
            if dev {
                v.push(("stdout".to_owned(), SinkSettings::Stdout));
            }
            return Ok(v);
        }
        self.default_sinks
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s: SinkSettings = v
                    .clone()
                    .try_into()
                    .map_err(|e| format!("[audit] default_sinks[{i}]: {e}"))?;
                Ok((format!("default-{i}"), s))
            })
            .collect()
    }
}

fn audit_cmd(dir: &Path, cmd: AuditCmd) -> Result<(), BoxError> {
    match cmd {
        AuditCmd::Verify { stream, trusted } => {
            let keys = trusted
                .iter()
                .map(|k| {
                    crate::audit::chain::parse_public_key(k).ok_or_else(|| {
                        format!("--trusted-key '{k}' is not a 64-hex-digit Ed25519 key")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let text = if stream.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                t
            } else {
                std::fs::read_to_string(&stream)
                    .map_err(|e| format!("{}: {e}", stream.display()))?
            };
            let report = crate::audit::chain::verify(text.lines(), &keys);
            print!("{}", report.render());
            if keys.is_empty() && report.checkpoints > 0 {
                eprintln!(
                    "keystead: note: checkpoints were checked against the keys they name; pin the ES key with --trusted-key"
                );
            }
            if report.ok() {
                Ok(())
            } else {
                Err("the audit stream did not verify".into())
            }
        }
        AuditCmd::PublicKey => {
            let (_, builtin) = open_data_dir(dir)?;
            let instance = instance_name(dir)?;
            let key = crate::audit::load_signing_key(dir, &builtin)?;
            println!("{instance} {}", hex::encode(key.verifying_key().as_bytes()));
            Ok(())
        }
    }
}

/// This instance's stable name (audit chains are per tenant and instance):
/// `<data dir>/audit/instance`, created on first start; edit it before then to choose one.
fn instance_name(dir: &Path) -> Result<String, BoxError> {
    let adir = dir.join("audit");
    std::fs::create_dir_all(&adir)?;
    let path = adir.join("instance");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_owned();
        if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
            return Err(format!(
                "{}: instance name must be 1 to 128 printable characters",
                path.display()
            )
            .into());
        }
        return Ok(s);
    }
    let name = format!("es-{}", hex::encode(crate::util::random_bytes::<4>()));
    std::fs::write(&path, format!("{name}\n"))?;
    Ok(name)
}

/// The TLS settings (flags and env, then the file), loaded: `None` for plain HTTP.
fn tls_config(
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<Option<Arc<rustls::ServerConfig>>, BoxError> {
    let pick =
        |flag: &Option<PathBuf>, file: &Option<PathBuf>| flag.clone().or_else(|| file.clone());
    let cert = pick(&args.tls_cert, &file.tls_cert);
    let key = pick(&args.tls_key, &file.tls_key);
    let client_ca = pick(&args.tls_client_ca, &file.tls_client_ca);
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(tls::load_server_config(&tls::TlsFiles {
            cert,
            key,
            client_ca,
        })?)),
        (None, None) if client_ca.is_some() => {
            Err("--tls-client-ca needs --tls-cert and --tls-key".into())
        }
        (None, None) => Ok(None),
        _ => Err("--tls-cert and --tls-key must be given together".into()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// Core dumps could hold DEKs and leased keys: turn them off before any key is loaded.
fn disable_core_dumps() {
    #[cfg(unix)]
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0) {
        eprintln!("keystead: warning: could not disable core dumps: {e}");
    }
}
