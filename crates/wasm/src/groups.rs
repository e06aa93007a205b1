//! End-to-end users and groups (issue 8, the local half): the JS classes `User` (a user's
//! identity key, as a handle) and `Group` (a verified group state with the epoch keys this
//! client opened), escrow and recovery of the identity key, and safety codes.
//!
//! * A `User` holds its [`UserIdentity`] (Ed25519 seed) in wasm memory and its current
//!   signed record (`KSU`). `addDevice` certifies a device `Identity` and signs the next
//!   record; `removeDevice` signs one without it. Publishing records is the caller's job.
//! * A `Group` is only ever built by verification ([`GroupState::genesis`],
//!   [`GroupState::from_log`], [`GroupState::apply`]). The operations (`addMembers`, ...)
//!   sign the next entry and return it **without applying it**: the caller publishes it
//!   (the directory accepts one child per parent) and then passes it to `apply`, like any
//!   entry fetched from the server. A new epoch key made by a proposal is kept aside and
//!   joins the cache only when its entry is applied.
//! * Opened epoch keys are cached per `Group` object (in wasm memory, dropped on `free()`),
//!   so reading a second document of the same epoch opens the grant only (the warm path).
//!   The cache serves a device only for the epochs it opened itself once: passing another
//!   `Identity` with the same `Group` does not borrow the first one's access.
//! * Encryption and decryption reach a `Group` through `options.group`: the group's slot in a
//!   registry of weak references ([`lookup`]), so the existing stream functions keep their
//!   signatures.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::{Rc, Weak};

use js_sys::{Array, Promise};
use keystead_core::attachment::AttachmentHeader;
use keystead_core::device::DeviceKeys;
use keystead_core::grant::Grant;
use keystead_core::groups::{
    self, Checkpoint, DeviceCertificate, EpochKey, EscrowSecret, EscrowedIdentity, GroupState,
    History, LogEntry, Op, RecoveryCode, UserIdentity, UserRecord,
};
use keystead_core::{Dek, GroupId, RecipientId, UserId};
use wasm_bindgen::prelude::*;

use crate::engine::signing_key;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{Identity, hex};
use crate::js;
use crate::rng::rng;

// ---- User ------------------------------------------------------------------------------

/// A user's identity key (Ed25519), as a handle, and the user's current signed device list.
#[wasm_bindgen]
pub struct User {
    identity: UserIdentity,
    record: Option<UserRecord>,
}

impl User {
    fn cert_and_record(&self, device: &DeviceKeys) -> Result<(DeviceCertificate, UserRecord)> {
        let cert = self.identity.certify(device)?;
        let record = match &self.record {
            Some(r) => r.with_device(&self.identity, cert.clone())?,
            None => self.identity.sign_record(1, vec![cert.clone()])?,
        };
        Ok((cert, record))
    }
}

/// A new user `userId` with a fresh identity key. It has no record until its first device is
/// added (a record lists at least one device).
#[wasm_bindgen(js_name = createUser)]
pub fn create_user(user_id: &str) -> std::result::Result<User, JsValue> {
    let id = UserId::new(user_id).map_err(Error::from)?;
    Ok(User {
        identity: UserIdentity::generate(&mut rng(), id),
        record: None,
    })
}

#[wasm_bindgen]
impl User {
    /// The user id.
    #[wasm_bindgen(getter, js_name = userId)]
    pub fn user_id(&self) -> String {
        self.identity.user_id().as_str().to_owned()
    }

    /// The Ed25519 identity public key (32 bytes).
    #[wasm_bindgen(getter, js_name = identityKey)]
    pub fn identity_key(&self) -> Vec<u8> {
        self.identity.public().to_bytes().to_vec()
    }

    /// Hex fingerprint of the identity key (64 characters).
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        hex(&self.identity.fingerprint())
    }

    /// The current signed user record (`KSU`), or `undefined` before the first device.
    #[wasm_bindgen(getter, unchecked_return_type = "Uint8Array | undefined")]
    pub fn record(&self) -> JsValue {
        self.record
            .as_ref()
            .map_or(JsValue::UNDEFINED, |r| js::to_js(r.to_bytes()).into())
    }

    /// Certifies `device` and signs the next record listing it. Returns
    /// `{ certificate, record }`; the `User` keeps the new record.
    #[wasm_bindgen(js_name = addDevice, unchecked_return_type = "DeviceAdded")]
    pub fn add_device(&mut self, device: &Identity) -> std::result::Result<JsValue, JsValue> {
        let (cert, record) = self.cert_and_record(&device.keys())?;
        let out = js::object(&[
            ("certificate", &js::to_js(cert.to_bytes()).into()),
            ("record", &js::to_js(record.to_bytes()).into()),
        ]);
        self.record = Some(record);
        Ok(out)
    }

    /// Signs the next record without device `deviceId`; returns it (and keeps it). In a
    /// group, an admin publishes it with `Group.updateMember`, which starts a new epoch.
    #[wasm_bindgen(js_name = removeDevice, unchecked_return_type = "Uint8Array")]
    pub fn remove_device(&mut self, device_id: &str) -> std::result::Result<JsValue, JsValue> {
        let id = RecipientId::new(device_id).map_err(Error::from)?;
        let current = self.record.as_ref().ok_or(Error::new(
            ErrorCode::Usage,
            "the user has no record (no device yet)",
        ))?;
        let next = current
            .without_device(&self.identity, &id)
            .map_err(Error::from)?;
        let out = js::to_js(next.to_bytes()).into();
        self.record = Some(next);
        Ok(out)
    }

    /// Escrows the identity key (Argon2id, m = 64 MiB, t = 3, p = 1; format `KSR`). By default
    /// under a fresh 128-bit recovery code, returned as `recoveryCode`; with
    /// `options.passphrase`, under that passphrase instead.
    #[wasm_bindgen(unchecked_return_type = "Promise<Escrow>")]
    pub fn escrow(
        &self,
        #[wasm_bindgen(unchecked_param_type = "EscrowOptions | undefined")] options: JsValue,
    ) -> Promise {
        js::settle((|| {
            let pass = js::get(&options, "passphrase");
            if pass.is_undefined() || pass.is_null() {
                let code = RecoveryCode::generate(&mut rng());
                let sealed =
                    EscrowedIdentity::seal(&mut rng(), &self.identity, EscrowSecret::Code(&code))?;
                let rendered = code.render();
                Ok(js::object(&[
                    ("escrow", &js::to_js(&sealed.to_bytes()?).into()),
                    ("recoveryCode", &JsValue::from_str(&rendered)),
                ]))
            } else {
                let pass = zeroize::Zeroizing::new(js::string(&pass, "options.passphrase")?);
                let sealed = EscrowedIdentity::seal(
                    &mut rng(),
                    &self.identity,
                    EscrowSecret::Passphrase(&pass),
                )?;
                Ok(js::object(&[(
                    "escrow",
                    &js::to_js(&sealed.to_bytes()?).into(),
                )]))
            }
        })())
    }
}

/// Opens an escrow from `User.escrow` with its recovery code or passphrase (whichever it was
/// sealed under). `record`, the user's latest record from the directory, lets the recovered
/// user sign successors (it must carry the recovered identity key: `key_changed` otherwise).
#[wasm_bindgen(unchecked_return_type = "Promise<User>")]
pub fn recover(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] escrow: JsValue,
    secret: &str,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array | undefined")] record: JsValue,
) -> Promise {
    js::settle((|| {
        let escrow = EscrowedIdentity::parse(&js::byte_vec(&escrow, "escrow")?)?;
        let identity = if escrow.is_recovery_code() {
            let code = RecoveryCode::parse(secret)?;
            escrow.open(EscrowSecret::Code(&code))?
        } else {
            escrow.open(EscrowSecret::Passphrase(secret))?
        };
        let record = if record.is_undefined() || record.is_null() {
            None
        } else {
            let r = UserRecord::parse(&js::byte_vec(&record, "record")?)?;
            if r.user_id() != identity.user_id() {
                return Err(keystead_core::Error::InvalidId.into());
            }
            if r.identity_key() != &identity.public() {
                return Err(keystead_core::Error::KeyChanged.into());
            }
            Some(r)
        };
        Ok(User { identity, record }.into())
    })())
}

/// The 60-digit safety code two users compare out of band (the same for both orders).
#[wasm_bindgen(js_name = safetyCode)]
pub fn safety_code(
    user_a: &str,
    identity_key_a: &[u8],
    user_b: &str,
    identity_key_b: &[u8],
) -> std::result::Result<String, JsValue> {
    let (ua, ub) = (
        UserId::new(user_a).map_err(Error::from)?,
        UserId::new(user_b).map_err(Error::from)?,
    );
    let (ka, kb) = (signing_key(identity_key_a)?, signing_key(identity_key_b)?);
    Ok(groups::safety_code(&ua, &ka, &ub, &kb).map_err(Error::from)?)
}

// ---- Group -----------------------------------------------------------------------------

/// A verified group state and the epoch keys opened so far.
pub struct GroupInner {
    state: GroupState,
    /// Opened epoch keys, by epoch.
    keys: BTreeMap<u64, EpochKey>,
    /// (epoch, X25519 key fingerprint) of every device that opened that epoch's key itself:
    /// a cached key serves only a device that proved it can open it.
    opened: BTreeSet<(u64, [u8; 32])>,
    /// New epoch keys of proposals not applied yet, by entry hash.
    pending: Vec<([u8; 32], EpochKey)>,
}

impl GroupInner {
    /// Wraps a verified state.
    pub fn new(state: GroupState) -> Self {
        Self {
            state,
            keys: BTreeMap::new(),
            opened: BTreeSet::new(),
            pending: Vec::new(),
        }
    }

    /// The verified state.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// Opens `grant` (addressed to this group) for `header` with `device`'s keys, through the
    /// cached epoch key when this device opened it before, and caches a key it had to open.
    pub fn open_grant(
        &mut self,
        grant: &Grant,
        header: &AttachmentHeader,
        device: &DeviceKeys,
    ) -> keystead_core::Result<Dek> {
        let epoch = header.group().ok_or(keystead_core::Error::Decrypt)?.epoch;
        let proof = (epoch, device.encryption().public().fingerprint());
        if !self.opened.contains(&proof) {
            // Even with the key cached (from another device or a proposal), this device must
            // show that the log gives it the key.
            let key = self.state.open_epoch_key(epoch, device)?;
            self.keys.entry(epoch).or_insert(key);
            self.opened.insert(proof);
        }
        let key = self.keys.get(&epoch).ok_or(keystead_core::Error::Decrypt)?;
        groups::open_group_grant(grant, header, &self.state, key)
    }

    /// Verifies and applies `entry`; a pending key of this entry joins the cache.
    pub fn apply(&mut self, entry: &LogEntry) -> Result<()> {
        self.state.apply(entry)?;
        let h = entry.hash();
        if let Some(i) = self.pending.iter().position(|(ph, _)| *ph == h) {
            let (_, key) = self.pending.swap_remove(i);
            self.keys.insert(key.epoch(), key);
        }
        // Keys of proposals that lost the race for this parent can never apply now.
        self.pending.clear();
        Ok(())
    }

    /// Opens and caches the current epoch key with a member device's keys.
    pub fn unlock(&mut self, device: &DeviceKeys) -> Result<()> {
        let epoch = self.state.epoch();
        if !self.keys.contains_key(&epoch) {
            let key = self.state.open_epoch_key(epoch, device)?;
            self.keys.insert(epoch, key);
        }
        Ok(())
    }

    /// Signs the next entry with `ops` as `admin`; keeps a new epoch key aside until the
    /// entry is applied. Returns the entry bytes.
    pub fn propose(&mut self, admin: &UserIdentity, ops: Vec<Op>) -> Result<Vec<u8>> {
        // The current key (if cached) shares it with added devices and, under history
        // "all", chains it under a new epoch.
        let epoch = self.state.epoch();
        let current = self.keys.get(&epoch);
        let p = self.state.propose(&mut rng(), admin, ops, current)?;
        let bytes = p.entry.to_bytes().to_vec();
        if let Some(k) = p.new_epoch_key {
            self.pending.push((p.entry.hash(), k));
        }
        Ok(bytes)
    }
}

/// The last slot handed out, and the live groups by slot.
type Registry = (u32, BTreeMap<u32, Weak<RefCell<GroupInner>>>);

thread_local! {
    static REGISTRY: RefCell<Registry> = const { RefCell::new((0, BTreeMap::new())) };
}

/// The live group in registry slot `slot`.
pub(crate) fn lookup(slot: u32) -> Option<Rc<RefCell<GroupInner>>> {
    REGISTRY.with(|r| r.borrow().1.get(&slot).and_then(Weak::upgrade))
}

/// `options.group` of the stream functions, if any.
pub(crate) fn group_option(options: &JsValue) -> Result<Option<Rc<RefCell<GroupInner>>>> {
    group_arg(&js::get(options, "group"))
}

/// A `Group` given as a JS value (`undefined` and `null`: none).
pub(crate) fn group_arg(g: &JsValue) -> Result<Option<Rc<RefCell<GroupInner>>>> {
    if g.is_undefined() || g.is_null() {
        return Ok(None);
    }
    let slot = js::get(g, "__keysteadSlot")
        .as_f64()
        .ok_or(Error::invalid_argument("options.group must be a Group"))?;
    // Slots are small integers handed out by `register`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    lookup(slot as u32)
        .map(Some)
        .ok_or(Error::new(ErrorCode::Usage, "options.group was freed"))
}

/// A verified group: members, admins, epochs and head, as of the entries applied so far.
/// Built only by verifying signed log entries.
#[wasm_bindgen]
pub struct Group {
    inner: Rc<RefCell<GroupInner>>,
    slot: u32,
}

impl Group {
    fn register(inner: GroupInner) -> Self {
        let inner = Rc::new(RefCell::new(inner));
        let slot = REGISTRY.with(|r| {
            let mut r = r.borrow_mut();
            r.0 = r.0.wrapping_add(1);
            let slot = r.0;
            r.1.retain(|_, w| w.strong_count() > 0);
            r.1.insert(slot, Rc::downgrade(&inner));
            slot
        });
        Self { inner, slot }
    }

    fn run(&self, admin: &User, ops: Vec<Op>) -> std::result::Result<JsValue, JsValue> {
        let entry = self.inner.borrow_mut().propose(&admin.identity, ops)?;
        Ok(js::object(&[("entry", &js::to_js(&entry).into())]))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        REGISTRY.with(|r| {
            r.borrow_mut().1.remove(&self.slot);
        });
    }
}

fn entries_arg(v: &JsValue, what: &'static str) -> Result<Vec<Vec<u8>>> {
    if !Array::is_array(v) {
        return Err(Error::invalid_argument("expected an array of Uint8Array"));
    }
    let arr: &Array = v.unchecked_ref();
    arr.iter().map(|e| js::byte_vec(&e, what)).collect()
}

fn parse_user_ids(v: &JsValue) -> Result<Vec<UserId>> {
    if !Array::is_array(v) {
        return Err(Error::invalid_argument(
            "userIds must be an array of strings",
        ));
    }
    let arr: &Array = v.unchecked_ref();
    arr.iter()
        .map(|s| Ok(UserId::new(js::string(&s, "userIds[]")?)?))
        .collect()
}

fn parse_records(v: &JsValue) -> Result<Vec<UserRecord>> {
    entries_arg(v, "records[]")?
        .iter()
        .map(|b| Ok(UserRecord::parse(b)?))
        .collect()
}

/// Creates a group `groupId` administered by `admin` with the members of `members` (signed
/// user records; the admin's own record is added if missing). Returns `{ group, entry }`:
/// the genesis entry to publish and the group as of it (the admin's epoch key cached).
#[wasm_bindgen(js_name = createGroup, unchecked_return_type = "CreatedGroup")]
pub fn create_group(
    admin: &User,
    group_id: &str,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] members: JsValue,
    #[wasm_bindgen(unchecked_param_type = "GroupOptions | undefined")] options: JsValue,
) -> std::result::Result<JsValue, JsValue> {
    let group = GroupId::new(group_id).map_err(Error::from)?;
    let history = match js::get(&options, "history").as_string().as_deref() {
        None | Some("all") => History::All,
        Some("none") => History::None,
        Some(_) => {
            return Err(
                Error::invalid_argument("options.history must be \"all\" or \"none\"").into(),
            );
        }
    };
    let mut list = parse_records(&members)?;
    if !list.iter().any(|r| r.user_id() == admin.identity.user_id()) {
        let own = admin.record.clone().ok_or(Error::new(
            ErrorCode::Usage,
            "the admin has no record (add a device first)",
        ))?;
        list.insert(0, own);
    }
    let p = GroupState::create(&mut rng(), group, history, &admin.identity, list)
        .map_err(Error::from)?;
    let state = GroupState::genesis(&p.entry).map_err(Error::from)?;
    let mut inner = GroupInner::new(state);
    if let Some(k) = p.new_epoch_key {
        inner.keys.insert(k.epoch(), k);
    }
    let entry = js::to_js(p.entry.to_bytes());
    Ok(js::object(&[
        ("group", &Group::register(inner).into()),
        ("entry", &entry.into()),
    ]))
}

#[wasm_bindgen]
impl Group {
    /// Verifies a whole log from genesis (every signature, chain link, admin right and
    /// sealed-key set) and, if given, that it reaches and contains `checkpoint` (bytes from
    /// `checkpoint()` persisted earlier: `log_rollback` or `log_fork` otherwise).
    #[wasm_bindgen(js_name = fromLog)]
    pub fn from_log(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] entries: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | undefined")] checkpoint: JsValue,
    ) -> std::result::Result<Group, JsValue> {
        let entries = entries_arg(&entries, "entries[]")?
            .iter()
            .map(|b| LogEntry::parse(b))
            .collect::<keystead_core::Result<Vec<_>>>()
            .map_err(Error::from)?;
        let cp = if checkpoint.is_undefined() || checkpoint.is_null() {
            None
        } else {
            Some(
                Checkpoint::parse(&js::byte_vec(&checkpoint, "checkpoint")?)
                    .map_err(Error::from)?,
            )
        };
        let state = GroupState::from_log(&entries, cp.as_ref()).map_err(Error::from)?;
        Ok(Self::register(GroupInner::new(state)))
    }

    /// Verifies `entry` as the next one and applies it (`log_chain`, `not_admin`,
    /// `invalid_group_op`, `bad_signature`, `malformed` otherwise; the state is then
    /// unchanged).
    pub fn apply(&self, entry: &[u8]) -> std::result::Result<(), JsValue> {
        let entry = LogEntry::parse(entry).map_err(Error::from)?;
        Ok(self.inner.borrow_mut().apply(&entry)?)
    }

    /// The checkpoint (seq and head, 44 bytes) to persist and pass to `fromLog` next time.
    pub fn checkpoint(&self) -> Vec<u8> {
        self.inner.borrow().state.checkpoint().to_bytes().to_vec()
    }

    /// The group id.
    #[wasm_bindgen(getter, js_name = groupId)]
    pub fn group_id(&self) -> String {
        self.inner.borrow().state.group_id().as_str().to_owned()
    }

    /// `"all"` or `"none"`.
    #[wasm_bindgen(getter, unchecked_return_type = "GroupHistory")]
    pub fn history(&self) -> String {
        match self.inner.borrow().state.history() {
            History::All => "all".into(),
            History::None => "none".into(),
        }
    }

    /// The sequence number of the last applied entry (genesis = 0).
    #[wasm_bindgen(getter)]
    #[allow(clippy::cast_precision_loss)]
    pub fn seq(&self) -> f64 {
        self.inner.borrow().state.seq() as f64
    }

    /// The hash of the last applied entry (32 bytes).
    #[wasm_bindgen(getter)]
    pub fn head(&self) -> Vec<u8> {
        self.inner.borrow().state.head().to_vec()
    }

    /// The current epoch (1 after genesis).
    #[wasm_bindgen(getter)]
    #[allow(clippy::cast_precision_loss)]
    pub fn epoch(&self) -> f64 {
        self.inner.borrow().state.epoch() as f64
    }

    /// The members: `{ userId, identityKey, admin, devices }` each (device ids).
    #[wasm_bindgen(getter, unchecked_return_type = "GroupMember[]")]
    pub fn members(&self) -> Array {
        let g = self.inner.borrow();
        g.state
            .members()
            .map(|r| {
                let devices: Array = r
                    .devices()
                    .iter()
                    .map(|d| JsValue::from_str(d.device_id().as_str()))
                    .collect();
                js::object(&[
                    ("userId", &JsValue::from_str(r.user_id().as_str())),
                    (
                        "identityKey",
                        &js::to_js(&r.identity_key().to_bytes()).into(),
                    ),
                    ("admin", &JsValue::from_bool(g.state.is_admin(r.user_id()))),
                    ("devices", &devices.into()),
                ])
            })
            .collect()
    }

    /// The registry slot through which `options.group` reaches this group (internal).
    #[wasm_bindgen(getter, js_name = __keysteadSlot)]
    pub fn keystead_slot(&self) -> u32 {
        self.slot
    }

    /// Opens the current epoch key with `device` (a member device) and caches it: needed
    /// before an admin proposes an entry on a group loaded with `fromLog`.
    pub fn unlock(&self, device: &Identity) -> std::result::Result<(), JsValue> {
        Ok(self.inner.borrow_mut().unlock(&device.keys())?)
    }

    /// Signs an entry adding the members of `records`.
    #[wasm_bindgen(js_name = addMembers, unchecked_return_type = "ProposedEntry")]
    pub fn add_members(
        &self,
        admin: &User,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] records: JsValue,
    ) -> std::result::Result<JsValue, JsValue> {
        let ops = parse_records(&records)?
            .into_iter()
            .map(Op::AddMember)
            .collect();
        self.run(admin, ops)
    }

    /// Signs an entry replacing members' records by newer versions (device changes).
    #[wasm_bindgen(js_name = updateMembers, unchecked_return_type = "ProposedEntry")]
    pub fn update_members(
        &self,
        admin: &User,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] records: JsValue,
    ) -> std::result::Result<JsValue, JsValue> {
        let ops = parse_records(&records)?
            .into_iter()
            .map(Op::UpdateMember)
            .collect();
        self.run(admin, ops)
    }

    /// Signs an entry removing members (a new epoch).
    #[wasm_bindgen(js_name = removeMembers, unchecked_return_type = "ProposedEntry")]
    pub fn remove_members(
        &self,
        admin: &User,
        #[wasm_bindgen(unchecked_param_type = "string[]")] user_ids: JsValue,
    ) -> std::result::Result<JsValue, JsValue> {
        let ops = parse_user_ids(&user_ids)?
            .into_iter()
            .map(Op::RemoveMember)
            .collect();
        self.run(admin, ops)
    }

    /// Signs an entry making members admins.
    #[wasm_bindgen(js_name = addAdmins, unchecked_return_type = "ProposedEntry")]
    pub fn add_admins(
        &self,
        admin: &User,
        #[wasm_bindgen(unchecked_param_type = "string[]")] user_ids: JsValue,
    ) -> std::result::Result<JsValue, JsValue> {
        let ops = parse_user_ids(&user_ids)?
            .into_iter()
            .map(Op::AddAdmin)
            .collect();
        self.run(admin, ops)
    }

    /// Signs an entry taking the admin role from members (a new epoch).
    #[wasm_bindgen(js_name = removeAdmins, unchecked_return_type = "ProposedEntry")]
    pub fn remove_admins(
        &self,
        admin: &User,
        #[wasm_bindgen(unchecked_param_type = "string[]")] user_ids: JsValue,
    ) -> std::result::Result<JsValue, JsValue> {
        let ops = parse_user_ids(&user_ids)?
            .into_iter()
            .map(Op::RemoveAdmin)
            .collect();
        self.run(admin, ops)
    }

    /// Signs an entry starting a new epoch without a membership change.
    #[wasm_bindgen(js_name = rotateGroup, unchecked_return_type = "ProposedEntry")]
    pub fn rotate_group(&self, admin: &User) -> std::result::Result<JsValue, JsValue> {
        self.run(admin, vec![Op::Rotate])
    }
}
