//! The JS class `Identity` (a device's key pairs, as a handle) and the passphrase-sealed
//! export and import of its private keys.

use std::rc::Rc;

use js_sys::Promise;
use keystead_core::RecipientId;
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::js;
use crate::rng::rng;
use keystead_core::device::DeviceKeys;
use keystead_core::key_export::SealedKeys;

/// A device's keys: a recipient id, an X25519 key pair that grants are sealed to, and an
/// Ed25519 key pair that signs what the device authors. JavaScript holds a handle only: the
/// private keys stay in wasm memory (zeroized by `free()`) and leave it only through
/// `exportKeys`, sealed under a passphrase.
///
/// An `Identity` has `id` and `publicKey`, so it can be passed where a recipient is expected.
#[wasm_bindgen]
pub struct Identity {
    inner: Rc<DeviceKeys>,
}

impl Identity {
    /// The keys, shared with streams that are still running after `free()`.
    pub(crate) fn keys(&self) -> Rc<DeviceKeys> {
        Rc::clone(&self.inner)
    }

    /// Wraps keys (for tests and the import path).
    pub fn from_keys(keys: DeviceKeys) -> Self {
        Self {
            inner: Rc::new(keys),
        }
    }
}

#[wasm_bindgen]
impl Identity {
    /// Generates fresh key pairs for the device `id` (1 to 256 bytes of UTF-8 without
    /// control characters), e.g. `"device/alice-laptop"`.
    pub fn generate(id: &str) -> Result<Identity, JsValue> {
        let id = RecipientId::new(id).map_err(Error::from)?;
        Ok(Self::from_keys(DeviceKeys::generate(&mut rng(), id)))
    }

    /// The recipient id that grants to this device name.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.inner.id().as_str().to_owned()
    }

    /// The X25519 public key (32 bytes) that grants are sealed to.
    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> Vec<u8> {
        self.inner.encryption().public().to_bytes().to_vec()
    }

    /// The Ed25519 public key (32 bytes) that verifies what this device signs: pass it as
    /// `author` when decrypting an attachment it wrote.
    #[wasm_bindgen(getter, js_name = signingPublicKey)]
    pub fn signing_public_key(&self) -> Vec<u8> {
        self.inner.signing().public().to_bytes().to_vec()
    }

    /// The fingerprint of the X25519 public key (hex, 64 characters): what grants name.
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        hex(&self.inner.encryption().public().fingerprint())
    }

    /// `{ id, publicKey }`: what another device needs to grant this one access.
    #[wasm_bindgen(getter, unchecked_return_type = "Recipient")]
    pub fn recipient(&self) -> JsValue {
        js::object(&[
            ("id", &JsValue::from_str(self.inner.id().as_str())),
            (
                "publicKey",
                &js::to_js(&self.inner.encryption().public().to_bytes()).into(),
            ),
        ])
    }
}

/// Seals the identity's private keys under `passphrase` (Argon2id, m = 64 MiB, t = 3, p = 1;
/// format `KSP`, docs/FORMAT.md section 23). Resolves to the sealed bytes.
#[wasm_bindgen(js_name = exportKeys, unchecked_return_type = "Promise<Uint8Array>")]
pub fn export_keys(identity: &Identity, passphrase: &str) -> Promise {
    js::settle((|| {
        let sealed = SealedKeys::seal(&mut rng(), &identity.inner, passphrase)?;
        Ok(js::to_js(&sealed.to_bytes()?).into())
    })())
}

/// Opens bytes from `exportKeys` with `passphrase`. A wrong passphrase rejects with
/// `decrypt_failed`; parameters below the floor with `malformed`.
#[wasm_bindgen(js_name = importKeys, unchecked_return_type = "Promise<Identity>")]
pub fn import_keys(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] sealed: JsValue,
    passphrase: &str,
) -> Promise {
    js::settle((|| {
        let bytes = js::byte_vec(&sealed, "sealed")?;
        let keys = SealedKeys::parse(&bytes)?.open(passphrase)?;
        Ok(Identity::from_keys(keys).into())
    })())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}
