//! PKCS#11 HSMs (Thales Luna, AWS CloudHSM, SoftHSM2 and other tokens with a PKCS#11
//! module), through the `cryptoki` crate.
//!
//! A tenant's master key is an AES secret key on a token, found by label (`CKA_LABEL`,
//! `CKO_SECRET_KEY`, `CKK_AES`). Two mechanisms:
//!
//! * `aes-gcm` (default): `CKM_AES_GCM`, 12-byte IV from the OS RNG, 128-bit tag, and
//!   AAD = the frame header ‖ the binding digest (below).
//! * `aes-key-wrap-pad`: `CKM_AES_KEY_WRAP_PAD` (RFC 5649) through `C_WrapKey` /
//!   `C_UnwrapKey` of a short-lived session object holding `plaintext ‖ binding digest`;
//!   unwrap compares the digest suffix in constant time. Key wrap has no AAD, so the
//!   adapter binds tenant, config and context itself.
//!
//! The binding digest is `SHA-256("keystead/v1/kms-binding" ‖ lp16(tenant) ‖ lp16(config) ‖
//! context)`.
//!
//! ## Ciphertext framing (version 1)
//!
//! ```text
//! 0x01 ‖ 0x01 ‖ IV [12] ‖ AES-GCM ciphertext ‖ tag [16]     (aes-gcm)
//! 0x01 ‖ 0x02 ‖ AES-KWP output [≥ 16, a multiple of 8]      (aes-key-wrap-pad)
//! ```
//!
//! Byte 0 is the format version, byte 1 the mechanism. Unwrap follows the frame, not the
//! configured mechanism, so changing the setting keeps old ciphertexts readable (the key
//! must then allow both usages). Keys have no visible versions: every ciphertext is
//! version 1, and rotating means a new key label in a new KMS config.
//!
//! ## Modules, sessions, logins
//!
//! Loading a PKCS#11 module runs its code inside the ES, so the operator decides which
//! modules may be loaded: `KEYSTEAD_PKCS11_MODULES` lists the allowed absolute paths
//! (`:`-separated); a config naming any other module is refused, and with the variable
//! unset no module is allowed. Each module is loaded and `C_Initialize`d once per process
//! (a process-wide map; modules misbehave when initialised twice) and never finalised.
//! Each adapter keeps a small pool of logged-in R/O sessions; every PKCS#11 call runs in
//! `spawn_blocking`. A pooled session that has gone stale (handle invalid, token gone) is
//! replaced once by a fresh one before an error is reported.
//!
//! A wrong or locked PIN latches the adapter: it answers `Denied` from then on without
//! trying the PIN again, so a bad config cannot lock the token's user PIN out by retrying.
//! The adapter is rebuilt (and tries again) when the config's settings change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism as CkMechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::registry::BuildContext;
use super::secret::Secret;
use super::{BoxFuture, KeyRef, Kms, KmsError, Wrapped};
use crate::util::random_bytes;

/// The environment variable holding the operator's allow-list of module paths.
pub const MODULES_ENV: &str = "KEYSTEAD_PKCS11_MODULES";

const FORMAT_VERSION: u8 = 1;
const MECH_GCM: u8 = 1;
const MECH_KWP: u8 = 2;
const HEADER_LEN: usize = 2;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: u64 = 128;
const BINDING_LEN: usize = 32;
/// Plaintexts are DEKs and leased keys (32 bytes); anything far larger is a caller bug.
const MAX_PLAINTEXT: usize = 4096;
/// Every key is version 1 (see the module docs).
const KEY_VERSION: u32 = 1;
const DEFAULT_SESSIONS: usize = 4;
const MAX_SESSIONS: usize = 64;
/// `CKA_LABEL` of a token is 32 bytes.
const MAX_TOKEN_LABEL: usize = 32;

/// Which PKCS#11 mechanism wraps under the master key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// `CKM_AES_GCM` with the binding as AAD.
    #[default]
    AesGcm,
    /// `CKM_AES_KEY_WRAP_PAD` with the binding digest appended to the plaintext.
    AesKeyWrapPad,
}

/// A PKCS#11 config's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Absolute path of the PKCS#11 module (must be in the operator's allow-list).
    pub module: PathBuf,
    /// Label of the token holding the key.
    pub token_label: String,
    /// User PIN of the token.
    pub pin: Secret,
    /// `CKA_LABEL` of the AES master key.
    pub key_label: String,
    /// Mechanism for new ciphertexts (default `aes-gcm`).
    #[serde(default)]
    pub mechanism: Mechanism,
    /// Idle logged-in sessions kept open (default 4, at most 64).
    #[serde(default)]
    pub sessions: Option<usize>,
}

/// Builds a PKCS#11 adapter from its settings. Nothing is loaded here: the module is
/// loaded, and the PIN tried, on first use (in a blocking task), so a wrong PIN shows as
/// `Denied` on the first call.
pub fn build(settings: serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Kms>, KmsError> {
    // The module makes its own connections (network HSMs) with its own configuration;
    // the outbound policy and timeout do not reach inside it.
    let _ = ctx;
    let s = parse_settings(settings)?;
    let module = check_module(&s.module, &allowed_modules())?;
    let sessions = s.sessions.unwrap_or(DEFAULT_SESSIONS);
    if !(1..=MAX_SESSIONS).contains(&sessions) {
        return Err(bad_settings(format!(
            "sessions must be between 1 and {MAX_SESSIONS}"
        )));
    }
    Ok(Arc::new(Pkcs11Kms {
        inner: Arc::new(Inner {
            module,
            token_label: s.token_label,
            key_label: s.key_label,
            pin: s.pin,
            mechanism: s.mechanism,
            max_idle: sessions,
            idle: Mutex::new(Vec::new()),
            latched: Mutex::new(None),
        }),
    }))
}

fn bad_settings(msg: impl std::fmt::Display) -> KmsError {
    KmsError::Other(format!("pkcs11 settings: {msg}"))
}

fn parse_settings(settings: serde_json::Value) -> Result<Settings, KmsError> {
    // A serde type error quotes the offending value; make sure that can never be the PIN.
    if let Some(pin) = settings.get("pin")
        && !pin.is_string()
    {
        return Err(bad_settings("pin must be a string"));
    }
    let s: Settings = serde_json::from_value(settings).map_err(bad_settings)?;
    if s.token_label.is_empty() || s.token_label.len() > MAX_TOKEN_LABEL {
        return Err(bad_settings(format!(
            "token_label is required (1 to {MAX_TOKEN_LABEL} bytes)"
        )));
    }
    if s.key_label.is_empty() {
        return Err(bad_settings("key_label is required"));
    }
    Ok(s)
}

/// The operator's allow-list, canonicalised (entries that do not exist are dropped).
fn allowed_modules() -> Vec<PathBuf> {
    std::env::var_os(MODULES_ENV)
        .map(|v| {
            std::env::split_paths(&v)
                .filter_map(|p| p.canonicalize().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that `module` is absolute, exists and is allow-listed; returns its canonical
/// path (symlinks resolved, so an allow-listed link cannot be swapped for another file
/// name, and one module has one entry in the process-wide map).
fn check_module(module: &Path, allowed: &[PathBuf]) -> Result<PathBuf, KmsError> {
    if !module.is_absolute() {
        return Err(bad_settings("module must be an absolute path"));
    }
    let canonical = module
        .canonicalize()
        .map_err(|_| bad_settings(format!("module {} does not exist", module.display())))?;
    if !allowed.contains(&canonical) {
        return Err(bad_settings(format!(
            "module {} is not allowed by the operator (add it to {MODULES_ENV})",
            module.display()
        )));
    }
    Ok(canonical)
}

// ---------------------------------------------------------------------------------------
// Process-wide state: loaded modules and who logged in to which token.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn modules() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    MODULES.get_or_init(Mutex::default)
}

/// The process-wide, initialised context of the module at `path` (loaded and
/// `C_Initialize`d on first use, never finalised). Blocking. Code that needs the same
/// module in this process (tests creating keys) must use this too.
pub fn shared_module(path: &Path) -> Result<Pkcs11, KmsError> {
    let path = path
        .canonicalize()
        .map_err(|_| KmsError::Other(format!("pkcs11 module {} not found", path.display())))?;
    let mut map = lock(modules());
    if let Some(p) = map.get(&path) {
        return Ok(p.clone());
    }
    let p = Pkcs11::new(&path).map_err(|e| {
        KmsError::Other(format!(
            "pkcs11: cannot load module {}: {e}",
            path.display()
        ))
    })?;
    match p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Someone else in this process initialised it: the library is usable.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(classify(&e)),
    }
    map.insert(path, p.clone());
    Ok(p)
}

/// (module, slot id) → salted digest of the PIN that logged in there.
type Logins = HashMap<(PathBuf, u64), [u8; 32]>;

/// PKCS#11 login state is per token and per process, shared by all sessions: a second
/// `C_Login` answers `CKR_USER_ALREADY_LOGGED_IN` whatever PIN it carries. To tell a
/// wrong PIN from a right one then, the process remembers a salted digest of the PIN that
/// logged in to each (module, slot).
fn logins() -> &'static Mutex<Logins> {
    static LOGINS: OnceLock<Mutex<Logins>> = OnceLock::new();
    LOGINS.get_or_init(Mutex::default)
}

fn pin_digest(pin: &Secret) -> [u8; 32] {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    let salt = SALT.get_or_init(random_bytes::<32>);
    Sha256::new()
        .chain_update(salt)
        .chain_update(pin.expose().as_bytes())
        .finalize()
        .into()
}

// ---------------------------------------------------------------------------------------
// Errors.

/// `RvError::KeyFunctionNotPermitted` → `CKR_KEY_FUNCTION_NOT_PERMITTED`.
fn ckr_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(v) => format!("CKR_VENDOR_DEFINED(0x{v:08x})"),
        RvError::UnknownErrorCode(v) => format!("CKR(0x{v:08x})"),
        other => {
            let mut out = String::from("CKR");
            for c in format!("{other:?}").chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

/// Maps a PKCS#11 failure to the API's classes. Messages name the function and the CKR
/// code only (PKCS#11 errors carry no secrets, and the PIN is never formatted).
pub fn classify(e: &CkError) -> KmsError {
    let CkError::Pkcs11(rv, func) = e else {
        return KmsError::Other(format!("pkcs11: {e}"));
    };
    let msg = format!("pkcs11 C_{func:?}: {}", ckr_name(*rv));
    match rv {
        RvError::KeyFunctionNotPermitted
        | RvError::PinIncorrect
        | RvError::PinLocked
        | RvError::PinExpired
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::UserPinNotInitialized => KmsError::Denied(msg),
        RvError::EncryptedDataInvalid
        | RvError::EncryptedDataLenRange
        | RvError::WrappedKeyInvalid
        | RvError::WrappedKeyLenRange => KmsError::InvalidCiphertext,
        RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::DeviceRemoved
        | RvError::DeviceError
        | RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::SlotIdInvalid => KmsError::Unreachable(msg),
        _ => KmsError::Other(msg),
    }
}

/// Errors after which a pooled session is worth replacing by a fresh one (once).
fn stale(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::WrappingKeyHandleInvalid
                | RvError::UnwrappingKeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::TokenNotPresent
                | RvError::DeviceRemoved
                | RvError::DeviceError,
            _
        )
    )
}

/// How one operation on a session failed.
enum OpError {
    /// A PKCS#11 call failed.
    Ck(CkError),
    /// Already classified (binding mismatch, bad frame, ...).
    Kms(KmsError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Ck(e)
    }
}

impl From<KmsError> for OpError {
    fn from(e: KmsError) -> Self {
        OpError::Kms(e)
    }
}

impl OpError {
    fn into_kms(self) -> KmsError {
        match self {
            OpError::Ck(e) => classify(&e),
            OpError::Kms(e) => e,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Binding and framing.

/// A parsed ciphertext frame (see the module docs).
#[derive(Debug, PartialEq, Eq)]
enum Frame<'a> {
    Gcm {
        iv: [u8; IV_LEN],
        /// Ciphertext ‖ tag.
        body: &'a [u8],
    },
    Kwp {
        wrapped: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// Parses a frame; anything malformed is `InvalidCiphertext`.
    fn parse(bytes: &'a [u8]) -> Result<Self, KmsError> {
        let bad = || KmsError::InvalidCiphertext;
        let (&[version, mech], rest) = bytes.split_first_chunk::<HEADER_LEN>().ok_or_else(bad)?;
        if version != FORMAT_VERSION {
            return Err(bad());
        }
        match mech {
            MECH_GCM => {
                let (iv, body) = rest.split_first_chunk::<IV_LEN>().ok_or_else(bad)?;
                if body.len() < TAG_LEN || body.len() > MAX_PLAINTEXT + TAG_LEN {
                    return Err(bad());
                }
                Ok(Frame::Gcm { iv: *iv, body })
            }
            MECH_KWP => {
                // RFC 5649 output: at least two semiblocks, whole semiblocks.
                let max = MAX_PLAINTEXT + BINDING_LEN + 16;
                if rest.len() < 16 || !rest.len().is_multiple_of(8) || rest.len() > max {
                    return Err(bad());
                }
                Ok(Frame::Kwp { wrapped: rest })
            }
            _ => Err(bad()),
        }
    }

    fn header(mech: u8) -> [u8; HEADER_LEN] {
        [FORMAT_VERSION, mech]
    }
}

/// The GCM AAD: the frame header and the binding digest.
fn gcm_aad(binding: &[u8; BINDING_LEN]) -> [u8; HEADER_LEN + BINDING_LEN] {
    let mut aad = [0u8; HEADER_LEN + BINDING_LEN];
    aad[..HEADER_LEN].copy_from_slice(&Frame::header(MECH_GCM));
    aad[HEADER_LEN..].copy_from_slice(binding);
    aad
}

// ---------------------------------------------------------------------------------------
// Sessions.

/// A logged-in session with the master key's handle looked up in it.
struct Conn {
    session: Session,
    key: ObjectHandle,
}

struct Inner {
    module: PathBuf,
    token_label: String,
    key_label: String,
    pin: Secret,
    mechanism: Mechanism,
    max_idle: usize,
    idle: Mutex<Vec<Conn>>,
    /// Set once the token refused the PIN (see the module docs).
    latched: Mutex<Option<KmsError>>,
}

impl Inner {
    fn slot(&self, p: &Pkcs11) -> Result<Slot, KmsError> {
        for slot in p.get_slots_with_token().map_err(|e| classify(&e))? {
            // A slot whose token vanished between the two calls is simply skipped.
            if p.get_token_info(slot)
                .is_ok_and(|t| t.label() == self.token_label)
            {
                return Ok(slot);
            }
        }
        Err(KmsError::Unreachable(format!(
            "pkcs11: no token labelled '{}' is present (CKR_TOKEN_NOT_PRESENT)",
            self.token_label
        )))
    }

    fn open(&self) -> Result<Conn, KmsError> {
        let p = shared_module(&self.module)?;
        let slot = self.slot(&p)?;
        let session = p.open_ro_session(slot).map_err(|e| classify(&e))?;
        self.login(&session, slot)?;
        let key = self.find_key(&session)?;
        Ok(Conn { session, key })
    }

    fn login(&self, session: &Session, slot: Slot) -> Result<(), KmsError> {
        let ours = pin_digest(&self.pin);
        let id = (self.module.clone(), slot.id());
        let pin = AuthPin::from(self.pin.expose().to_owned());
        // One login at a time in the process, so a concurrent adapter's login in progress
        // never looks like a foreign one. Logins are rare (one per new session).
        let mut logins = lock(logins());
        let res = match session.login(UserType::User, Some(&pin)) {
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => match logins.get(&id) {
                Some(theirs) if bool::from(theirs.ct_eq(&ours)) => Ok(()),
                Some(_) => Err(KmsError::Denied(
                    "pkcs11 C_Login: CKR_PIN_INCORRECT (the token is logged in with another \
                     PIN)"
                        .into(),
                )),
                // Logged in by code that is not an adapter: check our PIN ourselves.
                None => {
                    let _ = session.logout();
                    session
                        .login(UserType::User, Some(&pin))
                        .map_err(|e| classify(&e))
                }
            },
            other => other.map_err(|e| classify(&e)),
        };
        match res {
            Ok(()) => {
                logins.insert(id, ours);
                Ok(())
            }
            Err(e @ KmsError::Denied(_)) => {
                drop(logins);
                *lock(&self.latched) = Some(e.clone());
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn find_key(&self, session: &Session) -> Result<ObjectHandle, KmsError> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
        ];
        let found = session.find_objects(&template).map_err(|e| classify(&e))?;
        match found.as_slice() {
            [key] => Ok(*key),
            [] => Err(KmsError::Denied(format!(
                "pkcs11: no AES key labelled '{}' on token '{}' (deleted, or not visible to \
                 this user)",
                self.key_label, self.token_label
            ))),
            many => Err(KmsError::Other(format!(
                "pkcs11: {} AES keys are labelled '{}' on token '{}'; labels must be unique",
                many.len(),
                self.key_label,
                self.token_label
            ))),
        }
    }

    /// An idle session, or a new one; `true` when it came from the pool.
    fn take(&self) -> Result<(Conn, bool), KmsError> {
        if let Some(e) = lock(&self.latched).clone() {
            return Err(e);
        }
        if let Some(c) = lock(&self.idle).pop() {
            return Ok((c, true));
        }
        Ok((self.open()?, false))
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// Runs `op` on a session. A pooled session that fails as stale is dropped (with the
    /// rest of the pool, which is likely stale too) and `op` runs once more on a fresh one.
    fn with_conn<T>(&self, op: impl Fn(&Conn) -> Result<T, OpError>) -> Result<T, KmsError> {
        let (conn, pooled) = self.take()?;
        let (conn, res) = match op(&conn) {
            Err(OpError::Ck(e)) if pooled && stale(&e) => {
                drop(conn);
                lock(&self.idle).clear();
                let fresh = self.open()?;
                let res = op(&fresh);
                (fresh, res)
            }
            res => (conn, res),
        };
        match res {
            Ok(v) => {
                self.give_back(conn);
                Ok(v)
            }
            // A refused ciphertext leaves the session usable (the operation has ended).
            Err(OpError::Kms(KmsError::InvalidCiphertext)) => {
                self.give_back(conn);
                Err(KmsError::InvalidCiphertext)
            }
            Err(e) => Err(e.into_kms()),
        }
    }

    fn check_usable(&self, conn: &Conn) -> Result<(), OpError> {
        let (a, b) = match self.mechanism {
            Mechanism::AesGcm => (AttributeType::Encrypt, AttributeType::Decrypt),
            Mechanism::AesKeyWrapPad => (AttributeType::Wrap, AttributeType::Unwrap),
        };
        for attr in conn.session.get_attributes(conn.key, &[a, b])? {
            if let Attribute::Encrypt(false)
            | Attribute::Decrypt(false)
            | Attribute::Wrap(false)
            | Attribute::Unwrap(false) = attr
            {
                return Err(KmsError::Denied(format!(
                    "pkcs11: key '{}' does not allow {:?} (CKR_KEY_FUNCTION_NOT_PERMITTED)",
                    self.key_label,
                    attr.attribute_type()
                ))
                .into());
            }
        }
        Ok(())
    }

    fn seal(&self, conn: &Conn, plaintext: &[u8], binding: &[u8; 32]) -> Result<Vec<u8>, OpError> {
        match self.mechanism {
            Mechanism::AesGcm => gcm_seal(conn, plaintext, binding),
            Mechanism::AesKeyWrapPad => kwp_seal(conn, plaintext, binding),
        }
    }
}

fn gcm_seal(conn: &Conn, plaintext: &[u8], binding: &[u8; 32]) -> Result<Vec<u8>, OpError> {
    let aad = gcm_aad(binding);
    let mut iv = random_bytes::<IV_LEN>();
    let body = {
        let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())?;
        conn.session
            .encrypt(&CkMechanism::AesGcm(params), conn.key, plaintext)?
    };
    // HSMs that generate the IV themselves write it back into the IV buffer, so the frame
    // takes the IV from there after the call.
    let mut out = Vec::with_capacity(HEADER_LEN + IV_LEN + body.len());
    out.extend_from_slice(&Frame::header(MECH_GCM));
    out.extend_from_slice(&iv);
    out.extend_from_slice(&body);
    Ok(out)
}

fn gcm_open(
    conn: &Conn,
    mut iv: [u8; IV_LEN],
    body: &[u8],
    binding: &[u8; 32],
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let aad = gcm_aad(binding);
    let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())?;
    conn.session
        .decrypt(&CkMechanism::AesGcm(params), conn.key, body)
        .map(Zeroizing::new)
        .map_err(OpError::from)
}

/// A session object destroyed when dropped (it would vanish with the session anyway; this
/// keeps a pooled session from accumulating them).
struct TempObject<'a> {
    session: &'a Session,
    handle: ObjectHandle,
}

impl Drop for TempObject<'_> {
    fn drop(&mut self) {
        let _ = self.session.destroy_object(self.handle);
    }
}

fn wipe(attrs: &mut [Attribute]) {
    for a in attrs {
        if let Attribute::Value(v) = a {
            v.zeroize();
        }
    }
}

/// The template of the short-lived generic secret that carries `plaintext ‖ binding`
/// through key wrap: a private session object, extractable (it must be wrapped), and
/// readable back only on the unwrap side (`sensitive = false`).
fn carrier_template(sensitive: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(sensitive),
        Attribute::Extractable(true),
    ]
}

fn kwp_seal(conn: &Conn, plaintext: &[u8], binding: &[u8; 32]) -> Result<Vec<u8>, OpError> {
    let mut value = plaintext.to_vec();
    value.extend_from_slice(binding);
    let mut template = carrier_template(true);
    template.push(Attribute::Value(value));
    let created = conn.session.create_object(&template);
    wipe(&mut template);
    let tmp = TempObject {
        session: &conn.session,
        handle: created?,
    };
    let wrapped = conn
        .session
        .wrap_key(&CkMechanism::AesKeyWrapPad, conn.key, tmp.handle)?;
    let mut out = Vec::with_capacity(HEADER_LEN + wrapped.len());
    out.extend_from_slice(&Frame::header(MECH_KWP));
    out.extend_from_slice(&wrapped);
    Ok(out)
}

fn kwp_open(
    conn: &Conn,
    wrapped: &[u8],
    binding: &[u8; 32],
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let handle = conn.session.unwrap_key(
        &CkMechanism::AesKeyWrapPad,
        conn.key,
        wrapped,
        &carrier_template(false),
    )?;
    let tmp = TempObject {
        session: &conn.session,
        handle,
    };
    let mut attrs = conn
        .session
        .get_attributes(tmp.handle, &[AttributeType::Value])?;
    let value = attrs.iter_mut().find_map(|a| match a {
        Attribute::Value(v) => Some(Zeroizing::new(std::mem::take(v))),
        _ => None,
    });
    let value =
        value.ok_or_else(|| KmsError::Other("pkcs11: unwrapped value unreadable".into()))?;
    split_bound(&value, binding).map_err(OpError::from)
}

/// Splits `plaintext ‖ binding digest`, comparing the digest in constant time.
fn split_bound(value: &[u8], binding: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let cut = value
        .len()
        .checked_sub(BINDING_LEN)
        .ok_or(KmsError::InvalidCiphertext)?;
    let (plaintext, suffix) = value.split_at(cut);
    if bool::from(suffix.ct_eq(binding)) {
        Ok(Zeroizing::new(plaintext.to_vec()))
    } else {
        Err(KmsError::InvalidCiphertext)
    }
}

// ---------------------------------------------------------------------------------------
// The adapter.

/// A PKCS#11 token as a KMS.
pub struct Pkcs11Kms {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pkcs11Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("Pkcs11Kms")
            .field("module", &i.module)
            .field("token_label", &i.token_label)
            .field("key_label", &i.key_label)
            .field("mechanism", &i.mechanism)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Kms {
    /// Runs `op` on a pooled session in a blocking task.
    async fn run<T, F>(&self, op: F) -> Result<T, KmsError>
    where
        T: Send + 'static,
        F: Fn(&Inner, &Conn) -> Result<T, OpError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_conn(|c| op(&inner, c)))
            .await
            .map_err(|e| KmsError::Other(format!("pkcs11: worker task failed: {e}")))?
    }

    async fn wrap_bytes(
        &self,
        key: &KeyRef,
        plaintext: Zeroizing<Vec<u8>>,
        context: &[u8],
    ) -> Result<Wrapped, KmsError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::Other(format!(
                "pkcs11: plaintext longer than {MAX_PLAINTEXT} bytes"
            )));
        }
        let b = crate::kms::binding_digest(key, context);
        let ciphertext = self
            .run(move |inner, conn| inner.seal(conn, &plaintext, &b))
            .await?;
        Ok(Wrapped {
            ciphertext,
            version: KEY_VERSION,
        })
    }
}

impl Kms for Pkcs11Kms {
    fn provider(&self) -> &'static str {
        "pkcs11"
    }

    fn wrap<'a>(
        &'a self,
        key: &'a KeyRef,
        plaintext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(self.wrap_bytes(key, Zeroizing::new(plaintext.to_vec()), context))
    }

    fn unwrap<'a>(
        &'a self,
        key: &'a KeyRef,
        ciphertext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KmsError>> {
        Box::pin(async move {
            // A version this key never had means a forged or damaged EDEK, not a refusal.
            if key.version.is_some_and(|v| v != KEY_VERSION) {
                return Err(KmsError::InvalidCiphertext);
            }
            // Parse before any HSM call: a malformed frame costs no session.
            Frame::parse(ciphertext)?;
            let b = crate::kms::binding_digest(key, context);
            let ct = ciphertext.to_vec();
            self.run(move |_, conn| match Frame::parse(&ct)? {
                Frame::Gcm { iv, body } => gcm_open(conn, iv, body, &b),
                Frame::Kwp { wrapped } => kwp_open(conn, wrapped, &b),
            })
            .await
        })
    }

    fn describe<'a>(&'a self, key: &'a KeyRef) -> BoxFuture<'a, Result<u32, KmsError>> {
        let _ = key;
        Box::pin(async move {
            self.run(|inner, conn| inner.check_usable(conn).map(|()| KEY_VERSION))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn key() -> KeyRef {
        KeyRef {
            tenant: "acme".into(),
            config: "hsm-1".into(),
            version: None,
        }
    }

    #[test]
    fn frames_parse_and_every_truncation_is_refused() {
        let mut gcm = vec![1, MECH_GCM];
        gcm.extend_from_slice(&[7u8; IV_LEN]);
        gcm.extend_from_slice(&[9u8; 32 + TAG_LEN]);
        assert_eq!(
            Frame::parse(&gcm).unwrap(),
            Frame::Gcm {
                iv: [7u8; IV_LEN],
                body: &gcm[HEADER_LEN + IV_LEN..]
            }
        );
        let mut kwp = vec![1, MECH_KWP];
        kwp.extend_from_slice(&[3u8; 72]);
        assert_eq!(
            Frame::parse(&kwp).unwrap(),
            Frame::Kwp { wrapped: &kwp[2..] }
        );
        // Shortest valid lengths: header + IV + tag; header + 16.
        let shortest_gcm = HEADER_LEN + IV_LEN + TAG_LEN;
        for n in 0..gcm.len() {
            let r = Frame::parse(&gcm[..n]);
            assert_eq!(r.is_ok(), n >= shortest_gcm, "gcm truncated to {n}");
        }
        for n in 0..kwp.len() {
            let r = Frame::parse(&kwp[..n]);
            let ok = n >= HEADER_LEN + 16 && (n - HEADER_LEN).is_multiple_of(8);
            assert_eq!(r.is_ok(), ok, "kwp truncated to {n}");
            if let Err(e) = r {
                assert_eq!(e, KmsError::InvalidCiphertext);
            }
        }
    }

    #[test]
    fn unknown_versions_mechanisms_and_oversize_are_refused() {
        let mut f = vec![2, MECH_GCM];
        f.extend_from_slice(&[0u8; 64]);
        assert!(Frame::parse(&f).is_err());
        f[0] = 1;
        f[1] = 3;
        assert!(Frame::parse(&f).is_err());
        f[1] = 0;
        assert!(Frame::parse(&f).is_err());
        let mut big = vec![1, MECH_GCM];
        big.resize(HEADER_LEN + IV_LEN + MAX_PLAINTEXT + TAG_LEN + 1, 0);
        assert!(Frame::parse(&big).is_err());
        let mut big = vec![1, MECH_KWP];
        big.resize(HEADER_LEN + MAX_PLAINTEXT + BINDING_LEN + 24, 0);
        assert!(Frame::parse(&big).is_err());
    }

    #[test]
    fn random_bytes_never_panic_the_parser() {
        for len in 0..200 {
            for _ in 0..20 {
                let mut b = random_bytes::<200>()[..len].to_vec();
                let _ = Frame::parse(&b);
                // Half the time, force a valid header so the body checks run too.
                if len >= 2 {
                    b[0] = 1;
                    b[1] = if len % 2 == 0 { MECH_GCM } else { MECH_KWP };
                    let _ = Frame::parse(&b);
                }
            }
        }
    }

    #[test]
    fn binding_separates_tenant_config_and_context() {
        let k = key();
        let base = crate::kms::binding_digest(&k, b"ctx");
        let other_tenant = KeyRef {
            tenant: "acme2".into(),
            ..k.clone()
        };
        let other_config = KeyRef {
            config: "hsm-2".into(),
            ..k.clone()
        };
        // Length prefixes: ("ab","c") and ("a","bc") differ.
        let shifted_a = KeyRef {
            tenant: "ab".into(),
            config: "c".into(),
            version: None,
        };
        let shifted_b = KeyRef {
            tenant: "a".into(),
            config: "bc".into(),
            version: None,
        };
        assert_ne!(base, crate::kms::binding_digest(&k, b"ctx2"));
        assert_ne!(base, crate::kms::binding_digest(&other_tenant, b"ctx"));
        assert_ne!(base, crate::kms::binding_digest(&other_config, b"ctx"));
        assert_ne!(
            crate::kms::binding_digest(&shifted_a, b""),
            crate::kms::binding_digest(&shifted_b, b"")
        );
        assert_eq!(base, crate::kms::binding_digest(&k, b"ctx"));
    }

    #[test]
    fn bound_suffix_is_checked() {
        let b = [5u8; 32];
        let mut v = vec![1u8, 2, 3];
        v.extend_from_slice(&b);
        assert_eq!(&split_bound(&v, &b).unwrap()[..], &[1, 2, 3]);
        assert_eq!(
            split_bound(&v, &[6u8; 32]).unwrap_err(),
            KmsError::InvalidCiphertext
        );
        for n in 0..BINDING_LEN {
            assert!(split_bound(&v[..n], &b).is_err());
        }
    }

    #[test]
    fn error_mapping() {
        use cryptoki::context::Function;
        let e = |rv| classify(&CkError::Pkcs11(rv, Function::Decrypt));
        for rv in [
            RvError::KeyFunctionNotPermitted,
            RvError::PinIncorrect,
            RvError::PinLocked,
        ] {
            assert!(matches!(e(rv), KmsError::Denied(_)), "{rv:?}");
        }
        for rv in [
            RvError::EncryptedDataInvalid,
            RvError::EncryptedDataLenRange,
            RvError::WrappedKeyInvalid,
        ] {
            assert_eq!(e(rv), KmsError::InvalidCiphertext, "{rv:?}");
        }
        for rv in [
            RvError::TokenNotPresent,
            RvError::DeviceRemoved,
            RvError::DeviceError,
            RvError::SessionHandleInvalid,
        ] {
            assert!(matches!(e(rv), KmsError::Unreachable(_)), "{rv:?}");
        }
        assert!(matches!(e(RvError::GeneralError), KmsError::Other(_)));
        assert_eq!(
            e(RvError::KeyFunctionNotPermitted),
            KmsError::Denied("pkcs11 C_Decrypt: CKR_KEY_FUNCTION_NOT_PERMITTED".into())
        );
        assert_eq!(
            ckr_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED(0x80000001)"
        );
    }

    #[test]
    fn settings_are_checked_and_the_pin_never_shows() {
        let ok = serde_json::json!({
            "module": "/nonexistent/libpkcs11.so", "token_label": "t", "pin": "1234-secret",
            "key_label": "k"
        });
        let s = parse_settings(ok.clone()).unwrap();
        assert_eq!(s.mechanism, Mechanism::AesGcm);
        assert!(!format!("{s:?}").contains("1234-secret"));
        let mut bad = ok.clone();
        bad["pin"] = serde_json::json!(987_654_321);
        let e = parse_settings(bad).unwrap_err().to_string();
        assert!(!e.contains("987654321"), "{e}");
        let mut bad = ok.clone();
        bad["extra"] = serde_json::json!(1);
        assert!(parse_settings(bad).is_err());
        let mut bad = ok.clone();
        bad["mechanism"] = serde_json::json!("aes-cbc");
        assert!(parse_settings(bad).is_err());
        let mut bad = ok.clone();
        bad["token_label"] = serde_json::json!("");
        assert!(parse_settings(bad).is_err());
        let mut bad = ok;
        bad["key_label"] = serde_json::json!("");
        assert!(parse_settings(bad).is_err());
    }

    #[test]
    fn modules_must_be_absolute_existing_and_allowed() {
        let e = check_module(Path::new("libsofthsm2.so"), &[]).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = check_module(Path::new("/nonexistent/lib.so"), &[]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let here = std::env::current_exe().unwrap().canonicalize().unwrap();
        let e = check_module(&here, &[]).unwrap_err();
        assert!(e.to_string().contains(MODULES_ENV), "{e}");
        assert_eq!(
            check_module(&here, std::slice::from_ref(&here)).unwrap(),
            here
        );
    }
}
