//! What the key directory keeps, behind one trait ([`DirectoryStore`]) that SQLite
//! implements (`store::sqlite`, migration 4) and PostgreSQL can implement later. Every
//! compare-and-swap (user record version, group head, access-block version, single-use
//! token) is one transaction inside the store, so concurrent replicas on one database
//! cannot both win.
//!
//! Nothing here is secret to the server: public keys, signed records and certificates,
//! sealed blobs. Tokens are stored as SHA-256 hashes only.

use crate::store::StoreResult;

/// A user's slot and current signed user record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// User id (unique per tenant), chosen by the vendor.
    pub user_id: String,
    /// The user's Ed25519 identity public key; `None` until enrollment.
    pub identity_key: Option<[u8; 32]>,
    /// The signed user record (opaque to the server: a keystead-core format).
    pub record: Vec<u8>,
    /// 0 before enrollment; each accepted record adds one.
    pub version: u64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A device registered for a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Owning user.
    pub user_id: String,
    /// Device id, unique per tenant (it names the signer of device-signed requests).
    pub device_id: String,
    /// The device's Ed25519 public key (verifies its request signatures).
    pub signing_key: [u8; 32],
    /// The device certificate signed by the user's identity key (opaque to the server).
    pub certificate: Vec<u8>,
}

/// What an accepted user-record update changes.
#[derive(Clone, Debug, Default)]
pub struct UserUpdate {
    /// The new signed user record.
    pub record: Vec<u8>,
    /// The identity key, set on enrollment (must match when already set).
    pub identity_key: Option<[u8; 32]>,
    /// Devices to add.
    pub add_devices: Vec<DeviceRecord>,
    /// Device ids to remove (they stop authenticating at once).
    pub remove_devices: Vec<String>,
}

/// Kinds of single-use tokens the vendor mints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Registers the identity key and a device.
    Enrollment,
    /// Releases the escrow blob once.
    Reauthentication,
}

impl TokenKind {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Enrollment => "enrollment",
            TokenKind::Reauthentication => "reauthentication",
        }
    }
    /// Parses the stored and API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enrollment" => Some(TokenKind::Enrollment),
            "reauthentication" => Some(TokenKind::Reauthentication),
            _ => None,
        }
    }
}

/// A stored token (hash only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Tenant it is valid for.
    pub tenant: String,
    /// User it is valid for.
    pub user_id: String,
    /// What it allows.
    pub kind: TokenKind,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// One entry of a group log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntryRecord {
    /// Sequence number (genesis = 0).
    pub seq: u64,
    /// SHA-256 of the entry bytes.
    pub hash: [u8; 32],
    /// The signed entry.
    pub entry: Vec<u8>,
}

/// A group's head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupHead {
    /// Group id.
    pub group_id: String,
    /// Sequence number of the newest entry.
    pub seq: u64,
    /// Hash of the newest entry.
    pub hash: [u8; 32],
}

/// A stored access block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessBlock {
    /// 1 for the first block of a document; each replacement adds one.
    pub version: u64,
    /// The block (opaque: grants sealed to devices).
    pub block: Vec<u8>,
}

/// Metadata of a stored attachment blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// User whose device uploaded the current content (only that user may replace it).
    pub owner: String,
}

/// Storage of the key directory. Methods are synchronous and short (one transaction each),
/// like [`crate::store::Store`]'s.
pub trait DirectoryStore: Send + Sync + 'static {
    /// Creates an empty user slot; `Conflict` if it exists.
    fn create_user(&self, tenant: &str, user_id: &str, now: i64) -> StoreResult<()>;
    /// A user by id.
    fn user(&self, tenant: &str, user_id: &str) -> StoreResult<Option<UserRecord>>;
    /// The live (not removed) devices of a user.
    fn devices(&self, tenant: &str, user_id: &str) -> StoreResult<Vec<DeviceRecord>>;
    /// A live device by id.
    fn device(&self, tenant: &str, device_id: &str) -> StoreResult<Option<DeviceRecord>>;
    /// Applies `update` if the user's version is `expected_version` (`Conflict` otherwise,
    /// or when an added device id is taken, or the identity key differs from the one set;
    /// `NotFound` without the user). Returns the new version.
    fn update_user(
        &self,
        tenant: &str,
        user_id: &str,
        expected_version: u64,
        update: &UserUpdate,
    ) -> StoreResult<u64>;

    /// Stores a token hash.
    fn put_token(&self, token: &TokenRecord) -> StoreResult<()>;
    /// Consumes a token: returns its record and deletes it, in one transaction, if it
    /// exists, is of `kind` for (tenant, user) and has not expired at `now`. Expired tokens
    /// of every user are swept on the way.
    fn take_token(
        &self,
        hash: &[u8; 32],
        tenant: &str,
        user_id: &str,
        kind: TokenKind,
        now: i64,
    ) -> StoreResult<Option<TokenRecord>>;

    /// Replaces a user's escrow blob.
    fn put_escrow(&self, tenant: &str, user_id: &str, blob: &[u8], now: i64) -> StoreResult<()>;
    /// A user's escrow blob.
    fn escrow(&self, tenant: &str, user_id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Records an escrow fetch attempt (`ok` = released) and returns the attempts since
    /// `since` (oldest first) as (time, ok), including this one. Older attempts are swept.
    fn escrow_attempt(
        &self,
        tenant: &str,
        user_id: &str,
        now: i64,
        ok: bool,
        since: i64,
    ) -> StoreResult<Vec<(i64, bool)>>;
    /// The escrow fetch attempts since `since`, oldest first, without recording one.
    fn escrow_attempts(
        &self,
        tenant: &str,
        user_id: &str,
        since: i64,
    ) -> StoreResult<Vec<(i64, bool)>>;

    /// Creates a group with its genesis entry (seq 0); `Conflict` if it exists.
    fn create_group(
        &self,
        tenant: &str,
        group_id: &str,
        genesis: &LogEntryRecord,
        members: &[String],
    ) -> StoreResult<()>;
    /// A group's head.
    fn group_head(&self, tenant: &str, group_id: &str) -> StoreResult<Option<GroupHead>>;
    /// Appends `entry` if the head is still (`parent_seq`, `parent_hash`): the
    /// compare-and-swap that gives each parent at most one child (`Conflict` otherwise).
    /// `members`, when given, replaces the group's member index.
    fn append_entry(
        &self,
        tenant: &str,
        group_id: &str,
        parent: (u64, [u8; 32]),
        entry: &LogEntryRecord,
        members: Option<&[String]>,
    ) -> StoreResult<()>;
    /// Entries with seq ≥ `from`, at most `limit`, in order.
    fn entries(
        &self,
        tenant: &str,
        group_id: &str,
        from: u64,
        limit: usize,
    ) -> StoreResult<Vec<LogEntryRecord>>;
    /// Whether `user_id` is in the group's member index.
    fn is_member(&self, tenant: &str, group_id: &str, user_id: &str) -> StoreResult<bool>;
    /// Heads of the groups whose member index holds `user_id`.
    fn groups_of(&self, tenant: &str, user_id: &str) -> StoreResult<Vec<GroupHead>>;

    /// A document's access block.
    fn access_block(&self, tenant: &str, doc_id: &str) -> StoreResult<Option<AccessBlock>>;
    /// Stores an access block if the current version is `expected_version` (0 = none yet);
    /// `Conflict` otherwise. Returns the new version.
    fn put_access_block(
        &self,
        tenant: &str,
        doc_id: &str,
        expected_version: u64,
        block: &[u8],
    ) -> StoreResult<u64>;

    /// Metadata of a blob.
    fn blob(&self, tenant: &str, blob_id: &str) -> StoreResult<Option<BlobMeta>>;
    /// Records (or replaces) a blob's metadata.
    fn put_blob(&self, tenant: &str, blob_id: &str, meta: &BlobMeta, now: i64) -> StoreResult<()>;
}
