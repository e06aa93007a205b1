//! The PKCS#11 adapter against a real SoftHSM2 token.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and the workspace forbids the
//! `unsafe` `std::env::set_var`, so every test here runs twice: in the test process it
//! creates a temporary token directory and configuration, initialises a token with
//! `softhsm2-util`, and runs itself again as a child process (this test only) with
//! `SOFTHSM2_CONF` pointing there; the child does the real work. One token per test,
//! removed when the parent's guard drops, whether the child passed or not.
//!
//! "Peer stopped" is the token disappearing: the token's directory is renamed away, so
//! SoftHSM2 reports the token gone and the adapter's next session fails with a token
//! error (`Unreachable`); "started" renames it back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use keystead_server::kms::pkcs11::{MODULES_ENV, shared_module};
use keystead_server::kms::registry;
use keystead_server::kms::{KeyRef, KmsError};
use serde_json::{Value, json};

use common::Harness;
use common::conformance::{self, Peer, Tenants, adapter_checks, assert_denied};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "keystead";
const SO_PIN: &str = "5678-so";
const PIN: &str = "1234-user";
/// Set in the child process: the test's token directory.
const CHILD_ENV: &str = "KEYSTEAD_PKCS11_TEST_DIR";

/// Removes the test's token directory when dropped (also when the child failed).
struct TokenDir(PathBuf);

impl Drop for TokenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The child side of a test: where its token lives.
struct Hsm {
    dir: PathBuf,
}

/// In the test process: sets up a token, runs the calling test in a child process and
/// returns `None` once the child passed (panics if it failed). In the child: `Some`.
fn softhsm() -> Option<Hsm> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return Some(Hsm {
            dir: PathBuf::from(dir),
        });
    }
    assert!(
        Path::new(MODULE).exists() && which("softhsm2-util"),
        "SoftHSM2 is missing ({MODULE}, softhsm2-util): install it with \
         `apt-get install softhsm2`"
    );
    let name = std::thread::current()
        .name()
        .expect("libtest names the test thread after the test")
        .to_owned();
    let dir = std::env::temp_dir().join(format!(
        "keystead-pkcs11-{}-{}",
        std::process::id(),
        hex::encode(keystead_server::util::random_bytes::<6>())
    ));
    let guard = TokenDir(dir.clone());
    std::fs::create_dir_all(dir.join("tokens")).expect("token dir");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
             slots.removable = false\n",
            dir.join("tokens").display()
        ),
    )
    .expect("softhsm2.conf");
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", TOKEN])
        .args(["--so-pin", SO_PIN, "--pin", PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_ENV, &dir)
        .env(MODULES_ENV, MODULE)
        .status()
        .expect("run the test in a child process");
    assert!(
        status.success(),
        "{name} failed in its SoftHSM2 child process"
    );
    drop(guard);
    None
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Which operations a test key allows.
#[derive(Clone, Copy)]
struct Usage {
    crypt: bool,
    wrap: bool,
}

const ALL: Usage = Usage {
    crypt: true,
    wrap: true,
};
const NONE: Usage = Usage {
    crypt: false,
    wrap: false,
};

impl Hsm {
    /// A logged-in R/W session on the test token (through the adapter's shared module, so
    /// the module is initialised once in this process).
    fn session(&self) -> Session {
        let p = shared_module(Path::new(MODULE)).expect("load SoftHSM2");
        let slot = p
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| p.get_token_info(*s).unwrap().label() == TOKEN)
            .expect("the test token");
        let s = p.open_rw_session(slot).expect("open session");
        match s.login(UserType::User, Some(&AuthPin::from(PIN.to_owned()))) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => panic!("login: {e}"),
        }
        s
    }

    /// Creates a token AES-256 key labelled `label`.
    fn create_key(&self, label: &str, usage: Usage) {
        let s = self.session();
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::ValueLen(32.into()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Encrypt(usage.crypt),
                Attribute::Decrypt(usage.crypt),
                Attribute::Wrap(usage.wrap),
                Attribute::Unwrap(usage.wrap),
            ],
        )
        .expect("generate key");
    }

    fn find(s: &Session, label: &str) -> ObjectHandle {
        s.find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap()
        .pop()
        .expect("the key")
    }

    /// Turns the key's usage attributes off (an HSM admin disabling the key).
    fn disable_key(&self, label: &str) {
        let s = self.session();
        let k = Self::find(&s, label);
        s.update_attributes(
            k,
            &[
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
            ],
        )
        .expect("disable key");
    }

    /// Deletes the key.
    fn destroy_key(&self, label: &str) {
        let s = self.session();
        let k = Self::find(&s, label);
        s.destroy_object(k).expect("destroy key");
    }

    fn tokens(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    fn stopped(&self) -> PathBuf {
        self.dir.join("tokens-stopped")
    }

    /// What an HSM client does when it reconnects: `C_Finalize` then `C_Initialize`.
    /// SoftHSM2 never re-reads a token directory that vanished while it ran, and every
    /// session handle from before is invalid afterwards.
    fn restart_module(&self) {
        let p = shared_module(Path::new(MODULE)).unwrap();
        p.clone().finalize().expect("C_Finalize");
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
    }
}

/// The token as a peer: stopped = its directory renamed away (SoftHSM2 then reports the
/// token gone: `CKR_TOKEN_NOT_PRESENT`, no slot with the label); started = renamed back
/// and the module re-initialised, as an HSM client reconnecting.
struct TokenPeer<'a>(&'a Hsm);

impl Peer for TokenPeer<'_> {
    async fn stop(&mut self) {
        std::fs::rename(self.0.tokens(), self.0.stopped()).expect("hide the token");
    }

    async fn start(&mut self) {
        std::fs::rename(self.0.stopped(), self.0.tokens()).expect("restore the token");
        self.0.restart_module();
    }
}

fn settings(key_label: &str, mechanism: &str) -> Value {
    json!({
        "module": MODULE,
        "token_label": TOKEN,
        "pin": PIN,
        "key_label": key_label,
        "mechanism": mechanism,
    })
}

fn key_ref(tenant: &str) -> KeyRef {
    KeyRef {
        tenant: tenant.into(),
        config: "pkcs11-1".into(),
        version: None,
    }
}

async fn conformance(mechanism: &str) {
    let Some(hsm) = softhsm() else { return };
    hsm.create_key("tenant-acme", ALL);
    let h = Harness::start().await;
    let settings = settings("tenant-acme", mechanism);
    conformance::run(&h, "pkcs11", &settings, &mut TokenPeer(&hsm)).await;
    let events = serde_json::to_string(&h.events()).unwrap();
    assert!(!events.contains(PIN), "the PIN reached an audit event");
}

#[tokio::test]
async fn conformance_aes_gcm() {
    conformance("aes-gcm").await;
}

#[tokio::test]
async fn conformance_aes_key_wrap_pad() {
    conformance("aes-key-wrap-pad").await;
}

/// Adapter-level tenants for `adapter_checks` (no tenant records needed there).
fn adapter_tenants(prefix: &str) -> Tenants {
    Tenants {
        remote: format!("{prefix}-a"),
        lease: format!("{prefix}-b"),
        config: format!("{prefix}-1"),
        key: String::new(),
    }
}

#[tokio::test]
async fn both_mechanisms_read_each_others_ciphertexts() {
    let Some(hsm) = softhsm() else { return };
    hsm.create_key("k", ALL);
    let h = Harness::start().await;
    let ctx = h.build_context();
    let gcm = registry::build("pkcs11", settings("k", "aes-gcm"), &ctx, &h.builtin).unwrap();
    let kwp = registry::build(
        "pkcs11",
        settings("k", "aes-key-wrap-pad"),
        &ctx,
        &h.builtin,
    )
    .unwrap();
    for (name, kms) in [("aes-gcm", &gcm), ("aes-key-wrap-pad", &kwp)] {
        adapter_checks(&h, "pkcs11", &settings("k", name), &adapter_tenants(name)).await;
        let k = key_ref("acme");
        let w = kms.wrap(&k, &[7u8; 32], b"ctx").await.unwrap();
        assert_eq!(w.version, 1);
        assert_eq!(kms.describe(&k).await.unwrap(), 1);
        // The frame names its mechanism: a config switched to the other mechanism still
        // reads what it wrote before.
        for reader in [&gcm, &kwp] {
            assert_eq!(
                &reader.unwrap(&k, &w.ciphertext, b"ctx").await.unwrap()[..],
                &[7u8; 32]
            );
        }
    }
    // Binding of the key wrap mechanism is the adapter's own suffix check, so a mismatch
    // is exactly `InvalidCiphertext` (GCM's is the HSM's tag check: see below).
    let k = key_ref("acme");
    let w = kwp.wrap(&k, &[7u8; 32], b"ctx").await.unwrap();
    let other = KeyRef {
        config: "pkcs11-2".into(),
        ..k.clone()
    };
    for (key, ctx) in [(&other, &b"ctx"[..]), (&k, &b"ctx2"[..])] {
        assert_eq!(
            kwp.unwrap(key, &w.ciphertext, ctx).await.err(),
            Some(KmsError::InvalidCiphertext)
        );
    }
}

#[tokio::test]
async fn malformed_foreign_and_misversioned_ciphertexts_are_not_outages() {
    let Some(hsm) = softhsm() else { return };
    hsm.create_key("k1", ALL);
    hsm.create_key("k2", ALL);
    let h = Harness::start().await;
    let ctx = h.build_context();
    let k = key_ref("acme");
    for mechanism in ["aes-gcm", "aes-key-wrap-pad"] {
        let one = registry::build("pkcs11", settings("k1", mechanism), &ctx, &h.builtin).unwrap();
        let two = registry::build("pkcs11", settings("k2", mechanism), &ctx, &h.builtin).unwrap();
        let w = one.wrap(&k, &[1u8; 32], b"c").await.unwrap();
        // Malformed frames never reach the HSM.
        for bad in [&[][..], &[1], &[2, 1], &w.ciphertext[..29]] {
            assert_eq!(
                one.unwrap(&k, bad, b"c").await.err(),
                Some(KmsError::InvalidCiphertext)
            );
        }
        // A version this key never had.
        let v2 = KeyRef {
            version: Some(2),
            ..k.clone()
        };
        assert_eq!(
            one.unwrap(&v2, &w.ciphertext, b"c").await.err(),
            Some(KmsError::InvalidCiphertext)
        );
        // Another key's ciphertext, a flipped byte in the middle: refused, not an outage
        // (SoftHSM2 answers CKR_GENERAL_ERROR for a failed tag or key-wrap integrity check).
        let mut flipped = w.ciphertext.clone();
        flipped[10] ^= 0x40;
        for (what, kms, ct) in [
            ("another key", &two, &w.ciphertext),
            ("flipped", &one, &flipped),
        ] {
            match kms.unwrap(&k, ct, b"c").await {
                Err(KmsError::InvalidCiphertext | KmsError::Other(_)) => {}
                other => panic!("{mechanism}, {what}: {:?}", other.map(|_| ())),
            }
        }
    }
}

/// The conformance tenants on key `tenant-acme` (AES-GCM), and an EDEK of the remote-mode
/// tenant that round-trips through the API.
async fn served_tenant(h: &Harness) -> (Tenants, String) {
    let t = conformance::tenants(h, "pkcs11", &settings("tenant-acme", "aes-gcm"));
    let (dek, edek) = h.wrap(&t.key, &t.remote).await;
    assert_eq!(h.unwrap(&t.key, &t.remote, &edek).await, dek);
    (t, edek)
}

#[tokio::test]
async fn a_key_without_usage_attributes_is_denied() {
    let Some(hsm) = softhsm() else { return };
    hsm.create_key("no-usage", NONE);
    hsm.create_key("tenant-acme", ALL);
    let h = Harness::start().await;
    let ctx = h.build_context();
    let k = key_ref("acme");
    for mechanism in ["aes-gcm", "aes-key-wrap-pad"] {
        let kms =
            registry::build("pkcs11", settings("no-usage", mechanism), &ctx, &h.builtin).unwrap();
        let e = kms.describe(&k).await.unwrap_err();
        assert!(
            matches!(e, KmsError::Denied(_)),
            "{mechanism} describe: {e}"
        );
        let e = kms.wrap(&k, &[1u8; 32], b"c").await.err().unwrap();
        assert!(
            matches!(&e, KmsError::Denied(m) if m.contains("CKR_KEY_FUNCTION_NOT_PERMITTED")),
            "{mechanism} wrap: {e}"
        );
    }

    // Through the API: a usable key, then an HSM admin turns its usage off.
    let (t, edek) = served_tenant(&h).await;
    hsm.disable_key("tenant-acme");
    assert_denied(&h, &t.key, &t.remote, &edek).await;
}

#[tokio::test]
async fn a_deleted_key_is_denied() {
    let Some(hsm) = softhsm() else { return };
    hsm.create_key("tenant-acme", ALL);
    let h = Harness::start().await;
    let (t, edek) = served_tenant(&h).await;
    // The adapter's pooled session still holds the old key handle: it is replaced, the
    // key looked up again, and its absence reported as a refusal.
    hsm.destroy_key("tenant-acme");
    assert_denied(&h, &t.key, &t.remote, &edek).await;
}

#[tokio::test]
async fn a_wrong_pin_is_denied_and_not_retried() {
    let Some(hsm) = softhsm() else { return };
    hsm.create_key("tenant-acme", ALL);
    let h = Harness::start().await;
    let ctx = h.build_context();
    let k = key_ref("acme");
    let mut wrong = settings("tenant-acme", "aes-gcm");
    wrong["pin"] = json!("0000-wrong");

    // Nobody logged in: the token refuses the PIN.
    let bad = registry::build("pkcs11", wrong.clone(), &ctx, &h.builtin).unwrap();
    for _ in 0..2 {
        let e = bad.describe(&k).await.unwrap_err();
        assert!(
            matches!(&e, KmsError::Denied(m) if m.contains("CKR_PIN_INCORRECT")),
            "{e}"
        );
        assert!(!e.to_string().contains("0000-wrong"));
    }
    // Another adapter is logged in with the right PIN (login state is per token and
    // process): the wrong PIN is still refused.
    let good = registry::build(
        "pkcs11",
        settings("tenant-acme", "aes-gcm"),
        &ctx,
        &h.builtin,
    )
    .unwrap();
    assert_eq!(good.describe(&k).await.unwrap(), 1);
    let bad = registry::build("pkcs11", wrong.clone(), &ctx, &h.builtin).unwrap();
    let e = bad.wrap(&k, &[1u8; 32], b"c").await.err().unwrap();
    assert!(matches!(e, KmsError::Denied(_)), "{e}");

    // Through the API: the tenant's config gets a wrong PIN.
    let (t, edek) = served_tenant(&h).await;
    h.add_kms_config(&t.remote, &t.config, "pkcs11", &wrong);
    assert_denied(&h, &t.key, &t.remote, &edek).await;
    let events = serde_json::to_string(&h.events()).unwrap();
    assert!(!events.contains("0000-wrong") && !events.contains(PIN));
}

#[tokio::test]
async fn stale_sessions_are_replaced_once() {
    let Some(hsm) = softhsm() else { return };
    hsm.create_key("k", ALL);
    let h = Harness::start().await;
    let kms = registry::build(
        "pkcs11",
        settings("k", "aes-gcm"),
        &h.build_context(),
        &h.builtin,
    )
    .unwrap();
    let k = key_ref("acme");
    let w = kms.wrap(&k, &[3u8; 32], b"c").await.unwrap();
    // Every pooled session handle is now invalid (and the token logged out).
    hsm.restart_module();
    assert_eq!(
        &kms.unwrap(&k, &w.ciphertext, b"c").await.unwrap()[..],
        &[3u8; 32]
    );
    // The token gone: the stale session is replaced, the fresh one cannot open.
    std::fs::rename(hsm.tokens(), hsm.stopped()).unwrap();
    let e = kms.unwrap(&k, &w.ciphertext, b"c").await.unwrap_err();
    assert!(matches!(e, KmsError::Unreachable(_)), "{e}");
    std::fs::rename(hsm.stopped(), hsm.tokens()).unwrap();
    hsm.restart_module();
    assert_eq!(
        &kms.unwrap(&k, &w.ciphertext, b"c").await.unwrap()[..],
        &[3u8; 32]
    );
}

#[tokio::test]
async fn settings_are_validated() {
    let Some(_hsm) = softhsm() else { return };
    let h = Harness::start().await;
    let ctx = h.build_context();
    let build = |v: Value| registry::build("pkcs11", v, &ctx, &h.builtin).err();
    let base = settings("k", "aes-gcm");
    let cases: [(&str, Value, &str); 7] = [
        ("module", json!("libsofthsm2.so"), "absolute"),
        (
            "module",
            json!("/nonexistent/libpkcs11.so"),
            "does not exist",
        ),
        ("module", json!("/bin/sh"), MODULES_ENV),
        ("mechanism", json!("aes-cbc"), "unknown variant"),
        ("token_label", json!(""), "token_label"),
        ("sessions", json!(0), "sessions"),
        ("extra", json!(true), "unknown field"),
    ];
    for (field, value, expect) in cases {
        let mut s = base.clone();
        s[field] = value;
        let e = build(s).expect("refused");
        assert!(matches!(e, KmsError::Other(_)), "{field}: {e}");
        assert!(e.to_string().contains(expect), "{field}: {e}");
        assert!(!e.to_string().contains(PIN), "{field}: {e}");
    }
    let mut s = base.clone();
    s.as_object_mut().unwrap().remove("pin");
    assert!(build(s).unwrap().to_string().contains("pin"));
    // A symlink to an allowed module is the allowed module.
    let link = std::env::temp_dir().join(format!("keystead-pkcs11-link-{}.so", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(MODULE, &link).unwrap();
    let mut s = base;
    s["module"] = json!(link);
    let kms = registry::build("pkcs11", s, &ctx, &h.builtin);
    let _ = std::fs::remove_file(&link);
    let kms = kms.unwrap();
    assert_eq!(kms.provider(), "pkcs11");
}
