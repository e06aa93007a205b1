//! KMIP adapter: a tenant's symmetric AES-256 key in a KMIP 1.4+ server (Thales
//! CipherTrust, Fortanix, PyKMIP, …), used over mutual TLS.
//!
//! `wrap` is a server-side Encrypt with AES-GCM, a fresh 96-bit IV chosen here and 16-byte
//! tag, and the binding as authenticated additional data; `unwrap` is Decrypt with the same
//! AAD; `generate` is 32 random bytes from the ES's CSPRNG, then `wrap`; `describe` is Get
//! Attributes (State), answering version 1 for an Active key (KMIP keys have no visible
//! versions) and `Denied` for any other state.
//!
//! ## Binding
//! AAD = `"keystead/v1/kmip" ‖ format version (1) ‖ lp16(tenant) ‖ lp16(config) ‖
//! SHA-256(context)`. Another tenant, config or context changes the AAD, so the server's tag
//! check fails and the unwrap answers `InvalidCiphertext`.
//!
//! ## Ciphertext format (version 1)
//! `0x01 ‖ iv_len u8 ‖ iv ‖ tag_len u8 ‖ tag ‖ data`, with `iv_len` in 12..=16, `tag_len` in
//! 12..=16 and `data` non-empty. The KMIP Encrypt response carries data and tag separately,
//! so the adapter frames them; the key's UID is not in the ciphertext (it is fixed by the
//! config's settings).
//!
//! ## Connection
//! Every call opens a TLS connection (rustls, ring) through the outbound policy (address
//! checks after DNS resolution), presents the tenant's client certificate, and sends one
//! request. The service's timeout, retries, concurrency limit and circuit breaker wrap it.

pub mod client;
pub mod ttlv;

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use self::client::{Endpoint, Operation, tag};
use self::ttlv::Item;
use super::registry::BuildContext;
use super::secret::Secret;
use super::{BoxFuture, KeyRef, Kms, KmsError, Wrapped};
use crate::util::random_bytes;

/// Version byte of the adapter's ciphertext format.
const FORMAT_V1: u8 = 1;
/// Domain separation of the AAD.
const AAD_LABEL: &[u8] = b"keystead/v1/kmip";
/// AES-GCM tag length requested from the server, in bytes.
const TAG_LEN: u8 = 16;

/// KMIP enumeration values used here.
mod value {
    pub const AES: u32 = 0x03;
    pub const GCM: u32 = 0x09;
    pub const SYMMETRIC_KEY: u32 = 0x02;
    pub const NAME_UNINTERPRETED_TEXT: u32 = 0x01;
    pub const STATE_ACTIVE: u32 = 0x02;
    pub const USAGE_ENCRYPT_DECRYPT: i32 = 0x04 | 0x08;
    pub const REVOCATION_CESSATION_OF_OPERATION: u32 = 0x06;
}

/// The provider's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Server host name or IP literal.
    host: String,
    /// Server port (KMIP's registered port by default).
    #[serde(default = "default_port")]
    port: u16,
    /// Unique Identifier of the AES-256 key.
    key_id: Option<String>,
    /// Name of the key, located once per adapter (instead of `key_id`).
    key_name: Option<String>,
    /// Client certificate chain (PEM), leaf first.
    client_cert_pem: String,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    client_key_pem: Secret,
    /// An extra CA (PEM) trusted for the server, besides the system's and the operator's.
    ca_pem: Option<String>,
    /// The name the server's certificate is checked against, if not `host`.
    server_name: Option<String>,
}

fn default_port() -> u16 {
    5696
}

/// Which key: fixed, or located by name on first use.
enum KeySel {
    Id(String),
    Name {
        name: String,
        uid: tokio::sync::OnceCell<String>,
    },
}

/// The KMIP adapter.
pub struct KmipKms {
    endpoint: Endpoint,
    key: KeySel,
}

/// Builds the adapter from its JSON settings.
pub fn build(settings: serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Kms>, KmsError> {
    Ok(Arc::new(KmipKms::from_settings(settings, ctx)?))
}

fn bad(what: impl std::fmt::Display) -> KmsError {
    KmsError::Other(format!("kmip settings: {what}"))
}

/// A serde error without the values it quotes (`invalid type: string "…"`): a credential
/// put in the wrong field must not reach an error message. Field names (in backticks) stay.
fn unquoted(e: &serde_json::Error) -> String {
    let mut out = String::new();
    for (i, part) in e.to_string().split('"').enumerate() {
        out.push_str(if i % 2 == 0 { part } else { "…" });
    }
    out
}

impl KmipKms {
    /// Parses and validates settings, and prepares the TLS client config.
    pub fn from_settings(
        settings: serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Self, KmsError> {
        let s: Settings = serde_json::from_value(settings).map_err(|e| bad(unquoted(&e)))?;
        if s.host.trim().is_empty() {
            return Err(bad("host is required"));
        }
        if s.port == 0 {
            return Err(bad("port must not be 0"));
        }
        let key = match (s.key_id, s.key_name) {
            (Some(id), None) if !id.is_empty() => KeySel::Id(id),
            (None, Some(name)) if !name.is_empty() => KeySel::Name {
                name,
                uid: tokio::sync::OnceCell::new(),
            },
            _ => return Err(bad("exactly one of key_id and key_name is required")),
        };
        let name = s.server_name.as_deref().unwrap_or(&s.host).to_owned();
        let server_name = ServerName::try_from(name)
            .map_err(|_| bad("server_name (or host) is not a valid DNS name or IP address"))?;
        // An IP literal is checked now; names are checked when they resolve.
        if let Ok(ip) = s.host.parse::<std::net::IpAddr>() {
            ctx.outbound.check(ip)?;
        }
        let tls = tls_config(ctx, &s.client_cert_pem, &s.client_key_pem, s.ca_pem)?;
        Ok(Self {
            endpoint: Endpoint {
                host: s.host,
                port: s.port,
                server_name,
                tls: Arc::new(tls),
                outbound: ctx.outbound.clone(),
                timeout: ctx.timeout,
            },
            key,
        })
    }

    /// The key's Unique Identifier (located by name on first use).
    async fn uid(&self) -> Result<&str, KmsError> {
        match &self.key {
            KeySel::Id(id) => Ok(id),
            KeySel::Name { name, uid } => uid
                .get_or_try_init(|| self.locate(name))
                .await
                .map(String::as_str),
        }
    }

    async fn locate(&self, name: &str) -> Result<String, KmsError> {
        let payload = self
            .endpoint
            .call(Operation::Locate, vec![name_attribute(name)])
            .await?;
        let mut ids = payload
            .children(tag::UNIQUE_IDENTIFIER)
            .filter_map(Item::as_text);
        match (ids.next(), ids.next()) {
            (Some(id), None) => Ok(id.to_owned()),
            (None, _) => Err(KmsError::Denied(format!(
                "kmip Locate: no key named '{name}' (or no permission to see it)"
            ))),
            (Some(_), Some(_)) => Err(KmsError::Other(format!(
                "kmip Locate: more than one key is named '{name}'; use key_id"
            ))),
        }
    }

    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Wrapped, KmsError> {
        let uid = self.uid().await?;
        let iv = random_bytes::<12>();
        let payload = vec![
            Item::text(tag::UNIQUE_IDENTIFIER, uid),
            gcm_parameters(),
            Item::bytes(tag::DATA, plaintext),
            Item::bytes(tag::IV_COUNTER_NONCE, iv),
            Item::bytes(tag::AE_ADDITIONAL_DATA, aad(key, context)),
        ];
        let resp = self.endpoint.call(Operation::Encrypt, payload).await?;
        let missing = |what| KmsError::Other(format!("kmip Encrypt: the answer has no {what}"));
        let data = resp
            .child(tag::DATA)
            .and_then(Item::as_bytes)
            .ok_or_else(|| missing("Data"))?;
        let ae_tag = resp
            .child(tag::AE_TAG)
            .and_then(Item::as_bytes)
            .ok_or_else(|| missing("Authenticated Encryption Tag"))?;
        // A server that chose its own IV returns it; otherwise ours was used.
        let iv = resp
            .child(tag::IV_COUNTER_NONCE)
            .and_then(Item::as_bytes)
            .unwrap_or(&iv);
        let ciphertext = Frame {
            iv,
            tag: ae_tag,
            data,
        }
        .to_bytes()
        .map_err(|_| KmsError::Other("kmip Encrypt: unexpected IV, tag or data size".into()))?;
        Ok(Wrapped {
            ciphertext,
            version: 1,
        })
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let frame = Frame::parse(ciphertext).map_err(|_| KmsError::InvalidCiphertext)?;
        let uid = self.uid().await?;
        let payload = vec![
            Item::text(tag::UNIQUE_IDENTIFIER, uid),
            gcm_parameters(),
            Item::bytes(tag::DATA, frame.data),
            Item::bytes(tag::IV_COUNTER_NONCE, frame.iv),
            Item::bytes(tag::AE_ADDITIONAL_DATA, aad(key, context)),
            Item::bytes(tag::AE_TAG, frame.tag),
        ];
        let mut resp = self.endpoint.call(Operation::Decrypt, payload).await?;
        take_bytes(&mut resp, tag::DATA)
            .ok_or_else(|| KmsError::Other("kmip Decrypt: the answer has no Data".into()))
    }

    async fn state(&self) -> Result<u32, KmsError> {
        let uid = self.uid().await?;
        let payload = vec![
            Item::text(tag::UNIQUE_IDENTIFIER, uid),
            Item::text(tag::ATTRIBUTE_NAME, "State"),
        ];
        let resp = self
            .endpoint
            .call(Operation::GetAttributes, payload)
            .await?;
        resp.children(tag::ATTRIBUTE)
            .find(|a| a.child(tag::ATTRIBUTE_NAME).and_then(Item::as_text) == Some("State"))
            .and_then(|a| a.child(tag::ATTRIBUTE_VALUE))
            .and_then(Item::as_enum)
            .ok_or_else(|| KmsError::Other("kmip Get Attributes: the answer has no State".into()))
    }

    /// Creates an active AES-256 key (Encrypt/Decrypt usage, optional Name) and returns its
    /// Unique Identifier. For tests and tooling; the adapter never creates keys.
    pub async fn create_key(&self, name: Option<&str>) -> Result<String, KmsError> {
        let mut attrs = vec![
            attribute(
                "Cryptographic Algorithm",
                Item::enumeration(tag::ATTRIBUTE_VALUE, value::AES),
            ),
            attribute(
                "Cryptographic Length",
                Item::integer(tag::ATTRIBUTE_VALUE, 256),
            ),
            attribute(
                "Cryptographic Usage Mask",
                Item::integer(tag::ATTRIBUTE_VALUE, value::USAGE_ENCRYPT_DECRYPT),
            ),
        ];
        if let Some(name) = name {
            attrs.push(name_attribute(name));
        }
        let payload = vec![
            Item::enumeration(tag::OBJECT_TYPE, value::SYMMETRIC_KEY),
            Item::structure(tag::TEMPLATE_ATTRIBUTE, attrs),
        ];
        let resp = self.endpoint.call(Operation::Create, payload).await?;
        let uid = resp
            .child(tag::UNIQUE_IDENTIFIER)
            .and_then(Item::as_text)
            .ok_or_else(|| KmsError::Other("kmip Create: no Unique Identifier".into()))?
            .to_owned();
        let id = vec![Item::text(tag::UNIQUE_IDENTIFIER, uid.as_str())];
        self.endpoint.call(Operation::Activate, id).await?;
        Ok(uid)
    }

    /// Revokes the configured key (reason: Cessation of Operation), which deactivates it.
    /// For tests and tooling.
    pub async fn revoke_key(&self) -> Result<(), KmsError> {
        let uid = self.uid().await?;
        let payload = vec![
            Item::text(tag::UNIQUE_IDENTIFIER, uid),
            Item::structure(
                tag::REVOCATION_REASON,
                vec![Item::enumeration(
                    tag::REVOCATION_REASON_CODE,
                    value::REVOCATION_CESSATION_OF_OPERATION,
                )],
            ),
        ];
        self.endpoint
            .call(Operation::Revoke, payload)
            .await
            .map(drop)
    }
}

/// Moves a byte string out of a payload (so the plaintext is not copied around).
fn take_bytes(payload: &mut Item, t: u32) -> Option<Zeroizing<Vec<u8>>> {
    let ttlv::Value::Structure(items) = &mut payload.value else {
        return None;
    };
    items.iter_mut().find(|i| i.tag == t).and_then(|i| {
        match std::mem::replace(&mut i.value, ttlv::Value::Boolean(false)) {
            ttlv::Value::Bytes(b) => Some(b),
            _ => None,
        }
    })
}

/// A KMIP 1.x Attribute: name and value (the value's tag is Attribute Value).
fn attribute(name: &str, value: Item) -> Item {
    Item::structure(
        tag::ATTRIBUTE,
        vec![Item::text(tag::ATTRIBUTE_NAME, name), value],
    )
}

/// The Name attribute (an uninterpreted text string), as created and located.
fn name_attribute(name: &str) -> Item {
    attribute(
        "Name",
        Item::structure(
            tag::ATTRIBUTE_VALUE,
            vec![
                Item::text(tag::NAME_VALUE, name),
                Item::enumeration(tag::NAME_TYPE, value::NAME_UNINTERPRETED_TEXT),
            ],
        ),
    )
}

fn gcm_parameters() -> Item {
    Item::structure(
        tag::CRYPTOGRAPHIC_PARAMETERS,
        vec![
            Item::enumeration(tag::BLOCK_CIPHER_MODE, value::GCM),
            Item::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, value::AES),
            Item::integer(tag::TAG_LENGTH, i32::from(TAG_LEN)),
        ],
    )
}

// Ids are at most 256 bytes (checked at the API edge), so the length fits a u16.
#[allow(clippy::cast_possible_truncation)]
fn lp16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// The AAD binding tenant, config and context to a ciphertext.
fn aad(key: &KeyRef, context: &[u8]) -> Vec<u8> {
    let mut aad = AAD_LABEL.to_vec();
    aad.push(FORMAT_V1);
    lp16(&mut aad, key.tenant.as_bytes());
    lp16(&mut aad, key.config.as_bytes());
    aad.extend_from_slice(&Sha256::digest(context));
    aad
}

/// The adapter's ciphertext: IV, tag and data of one server-side AES-GCM encryption.
#[derive(Debug, PartialEq, Eq)]
struct Frame<'a> {
    iv: &'a [u8],
    tag: &'a [u8],
    data: &'a [u8],
}

/// Why bytes are not a [`Frame`].
#[derive(Debug, PartialEq, Eq)]
struct FrameError;

impl<'a> Frame<'a> {
    const IV_LENS: std::ops::RangeInclusive<usize> = 12..=16;
    const TAG_LENS: std::ops::RangeInclusive<usize> = 12..=16;

    fn to_bytes(&self) -> Result<Vec<u8>, FrameError> {
        if !Self::IV_LENS.contains(&self.iv.len())
            || !Self::TAG_LENS.contains(&self.tag.len())
            || self.data.is_empty()
        {
            return Err(FrameError);
        }
        let mut out = Vec::with_capacity(3 + self.iv.len() + self.tag.len() + self.data.len());
        out.push(FORMAT_V1);
        for field in [self.iv, self.tag] {
            // Checked above: at most 16.
            #[allow(clippy::cast_possible_truncation)]
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
        out.extend_from_slice(self.data);
        Ok(out)
    }

    fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let (&version, rest) = bytes.split_first().ok_or(FrameError)?;
        if version != FORMAT_V1 {
            return Err(FrameError);
        }
        let (iv, rest) = field(rest, Self::IV_LENS)?;
        let (tag, data) = field(rest, Self::TAG_LENS)?;
        if data.is_empty() {
            return Err(FrameError);
        }
        Ok(Self { iv, tag, data })
    }
}

/// A `len u8 ‖ bytes` field whose length lies in `lens`.
fn field(
    bytes: &[u8],
    lens: std::ops::RangeInclusive<usize>,
) -> Result<(&[u8], &[u8]), FrameError> {
    let (&len, rest) = bytes.split_first().ok_or(FrameError)?;
    let len = usize::from(len);
    if !lens.contains(&len) || rest.len() < len {
        return Err(FrameError);
    }
    Ok(rest.split_at(len))
}

/// The outbound TLS config with the tenant's client certificate, trusting `ca_pem` too.
fn tls_config(
    ctx: &BuildContext,
    cert_pem: &str,
    key_pem: &Secret,
    ca_pem: Option<String>,
) -> Result<rustls::ClientConfig, KmsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("client_cert_pem is not a PEM certificate chain"))?;
    if chain.is_empty() {
        return Err(bad("client_cert_pem holds no certificate"));
    }
    // The parser's error could quote the input: say only that it failed.
    let key = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes())
        .map_err(|_| bad("client_key_pem is not a PEM private key"))?;
    let mut outbound = ctx.outbound.clone();
    if let Some(ca) = ca_pem {
        if CertificateDer::pem_slice_iter(ca.as_bytes())
            .next()
            .is_none()
        {
            return Err(bad("ca_pem holds no certificate"));
        }
        outbound.extra_roots_pem.push(ca.into_bytes());
    }
    let mut config = outbound.tls_config()?;
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, config.crypto_provider())
        .map_err(|e| {
            bad(format!(
                "client certificate and key do not fit together: {e}"
            ))
        })?;
    config.client_auth_cert_resolver = Arc::new(ClientCert(Arc::new(certified)));
    Ok(config)
}

/// Always presents the one client certificate.
#[derive(Debug)]
struct ClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl Kms for KmipKms {
    fn provider(&self) -> &'static str {
        "kmip"
    }

    fn wrap<'a>(
        &'a self,
        key: &'a KeyRef,
        plaintext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(self.encrypt(key, plaintext, context))
    }

    fn unwrap<'a>(
        &'a self,
        key: &'a KeyRef,
        ciphertext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KmsError>> {
        Box::pin(self.decrypt(key, ciphertext, context))
    }

    fn describe<'a>(&'a self, _key: &'a KeyRef) -> BoxFuture<'a, Result<u32, KmsError>> {
        Box::pin(async move {
            match self.state().await? {
                value::STATE_ACTIVE => Ok(1),
                s => Err(KmsError::Denied(format!(
                    "kmip: the key is not Active (state {})",
                    state_name(s)
                ))),
            }
        })
    }
}

fn state_name(s: u32) -> String {
    match s {
        1 => "Pre-Active".into(),
        2 => "Active".into(),
        3 => "Deactivated".into(),
        4 => "Compromised".into(),
        5 => "Destroyed".into(),
        6 => "Destroyed Compromised".into(),
        other => format!("{other:#x}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn frame_bytes() -> Vec<u8> {
        Frame {
            iv: &[7; 12],
            tag: &[9; 16],
            data: &[1; 32],
        }
        .to_bytes()
        .unwrap()
    }

    #[test]
    fn frame_round_trips() {
        let b = frame_bytes();
        assert_eq!(b[0], FORMAT_V1);
        assert_eq!(b.len(), 1 + 1 + 12 + 1 + 16 + 32);
        let f = Frame::parse(&b).unwrap();
        assert_eq!(
            (f.iv, f.tag, f.data),
            (&[7; 12][..], &[9; 16][..], &[1; 32][..])
        );
    }

    #[test]
    fn frame_parser_refuses_truncations_versions_and_junk() {
        let b = frame_bytes();
        for n in 0..b.len() - 32 + 1 {
            assert_eq!(Frame::parse(&b[..n]), Err(FrameError), "prefix of {n}");
        }
        let mut v2 = b.clone();
        v2[0] = 2;
        assert_eq!(Frame::parse(&v2), Err(FrameError));
        let mut rng = super::ttlv::TestRng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = rng.below(80);
            let _ = Frame::parse(&rng.bytes(len));
        }
        // Out-of-range lengths are refused when writing too.
        let short = Frame {
            iv: &[0; 8],
            tag: &[0; 16],
            data: &[1],
        };
        assert!(short.to_bytes().is_err());
    }

    #[test]
    fn aad_binds_tenant_config_and_context() {
        let k = |t: &str, c: &str| KeyRef {
            tenant: t.into(),
            config: c.into(),
            version: None,
        };
        let base = aad(&k("t", "c"), b"ctx");
        assert_ne!(base, aad(&k("u", "c"), b"ctx"));
        assert_ne!(base, aad(&k("t", "d"), b"ctx"));
        assert_ne!(base, aad(&k("t", "c"), b"ctx2"));
        // Length prefixes: moving a byte between tenant and config changes the AAD.
        assert_ne!(aad(&k("ab", "c"), b""), aad(&k("a", "bc"), b""));
    }

    #[test]
    fn settings_are_validated_without_echoing_secrets() {
        let ctx = BuildContext {
            outbound: crate::kms::net::OutboundPolicy::default(),
            timeout: std::time::Duration::from_secs(1),
        };
        let base = serde_json::json!({
            "host": "kmip.example",
            "key_id": "1",
            "client_cert_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "client_key_pem": "super-secret-key-material",
        });
        let err = |v: serde_json::Value| KmipKms::from_settings(v, &ctx).err().unwrap();
        let e = err(base.clone());
        assert!(!e.to_string().contains("super-secret"), "{e}");
        let mut both = base.clone();
        both["key_name"] = "k".into();
        assert!(err(both).to_string().contains("exactly one of key_id"));
        let mut extra = base.clone();
        extra["token"] = "x".into();
        assert!(err(extra).to_string().contains("unknown field"));
        let mut local = base.clone();
        local["host"] = "127.0.0.1".into();
        assert!(matches!(err(local), KmsError::Unreachable(_)));
        let mut misplaced = base.clone();
        misplaced["port"] = "super-secret-in-the-wrong-field".into();
        let e = err(misplaced).to_string();
        assert!(
            e.contains("invalid type") && !e.contains("super-secret"),
            "{e}"
        );
        let mut no_host = base;
        no_host["host"] = "".into();
        assert!(err(no_host).to_string().contains("host is required"));
    }
}
