//! The durable audit spool: per tenant, append-only checksummed segment files in the data
//! dir. A key operation's event is on disk (fdatasync) before the operation answers; one
//! writer thread takes every pending event, appends them and syncs each touched file once
//! (group commit), so the sync cost is shared by all requests of that moment.
//!
//! Layout: `<spool>/<tenant dir>/tenant` (the tenant id), `<no>.seg` segments (20-digit
//! number), `cursor-<sink>` delivery positions, `*.damaged-<offset>` bytes set aside by
//! recovery.
//!
//! Segment = 64-byte header (`KSTAUD01`, u64 LE number, u64 LE first seq, 32-byte
//! `prev_hash` of that first event, 8-byte check) then records
//! `u32 LE length ‖ u64 LE seq ‖ 8-byte check ‖ event JSON`, where a check is the first 8
//! bytes of SHA-256 over what precedes it in the header or record (length, seq, payload).

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, oneshot};

use super::chain::{self, CHECKPOINT, DAMAGED, DROPPED, GENESIS};
use super::{AuditError, AuditEvent};
use crate::util::rfc3339_now;

const MAGIC: &[u8; 8] = b"KSTAUD01";
/// Segment header length.
pub const HEADER_LEN: u64 = 64;
const HEADER: usize = 64;
/// Record header length.
pub const REC_HDR: usize = 20;
/// Longest event accepted (bytes of JSON).
pub const MAX_RECORD: usize = 1 << 20;
/// How far ahead of the write position the active segment is filled with zeros. A commit
/// then overwrites blocks that are already allocated and the file's size does not change,
/// so `fdatasync` has no metadata to journal: one device flush instead of several. Measured
/// on the development VM (ext4): 1.0 ms per appending 8 KB `fdatasync`, 0.15 ms per
/// overwriting one (docs/BENCHMARKS.md). Readers stop at the committed length; recovery
/// treats an all-zero tail as free space, not damage.
const PREALLOC: u64 = 1 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// What happens when a tenant's spool reaches its size bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// Refuse new events: key operations answer `503 audit_unavailable` (default).
    #[default]
    FailClosed,
    /// Delete the oldest undelivered segment; counted, and an event announcing the dropped
    /// range is added to the chain (delivered when the sink returns).
    DropOldest,
}

/// Spool settings.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// The spool directory (`<data dir>/audit/spool`).
    pub dir: PathBuf,
    /// This ES instance's name (the chain is per tenant and instance).
    pub instance: String,
    /// Bytes per tenant (all its segments).
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// When a tenant's spool is full.
    pub policy: FullPolicy,
    /// A signed checkpoint at least every this many events…
    pub checkpoint_events: u64,
    /// …and at least this often while events arrive.
    pub checkpoint_interval: Duration,
}

impl SpoolConfig {
    /// Defaults: 1 GiB per tenant, 8 MiB segments, fail closed, a checkpoint every 1000
    /// events or 10 s.
    pub fn new(dir: PathBuf, instance: String) -> Self {
        Self {
            dir,
            instance,
            max_bytes: 1 << 30,
            segment_bytes: 8 << 20,
            policy: FullPolicy::FailClosed,
            checkpoint_events: 1000,
            checkpoint_interval: Duration::from_secs(10),
        }
    }
}

/// One segment's committed extent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegMeta {
    pub no: u64,
    pub first_seq: u64,
    /// Committed bytes, header included.
    pub len: u64,
}

/// Delivery position of one sink: the next record to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub seg: u64,
    pub offset: u64,
    pub next_seq: u64,
}

/// State shared by the writer and the delivery tasks of one tenant.
pub(crate) struct TenantState {
    /// Oldest first; the last one is the active segment.
    pub segments: VecDeque<SegMeta>,
    /// Next seq to be written (committed events are below it).
    pub next_seq: u64,
    /// Bytes of all segments.
    pub bytes: u64,
    /// Events dropped by the `drop_oldest` policy since start.
    pub dropped: u64,
    /// Delivery positions of the tenant's live sinks.
    pub cursors: HashMap<String, Cursor>,
    /// Synced writes (group commits) and the events they made durable, since start.
    pub commits: u64,
    /// Events made durable since start.
    pub events: u64,
}

/// One tenant's spool.
pub(crate) struct TenantSpool {
    pub tenant: String,
    pub dir: PathBuf,
    pub state: Mutex<TenantState>,
    /// Woken after each commit.
    pub notify: Notify,
}

impl TenantSpool {
    pub fn lock(&self) -> MutexGuard<'_, TenantState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn segment_path(&self, no: u64) -> PathBuf {
        segment_path(&self.dir, no)
    }

    /// Deletes closed segments every live sink has passed.
    pub fn collect_garbage(&self) {
        let mut st = self.lock();
        if st.cursors.is_empty() {
            return;
        }
        let min_seg = st.cursors.values().map(|c| c.seg).min().unwrap_or(0);
        while st.segments.len() > 1 && st.segments[0].no < min_seg {
            let Some(seg) = st.segments.pop_front() else {
                break;
            };
            st.bytes = st.bytes.saturating_sub(seg.len);
            if let Err(e) = fs::remove_file(self.segment_path(seg.no)) {
                tracing::warn!(error = %e, segment = seg.no, "could not delete a delivered audit segment");
            }
        }
    }
}

fn segment_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("{no:020}.seg"))
}

/// The directory name of a tenant's spool: the id itself when it is short and plain,
/// otherwise a hash (reserved `_` prefix). The ES operator's own chain (events of
/// unknown tenants) is `_operator`.
pub(crate) fn tenant_dir_name(tenant: &str) -> String {
    if tenant.is_empty() {
        return "_operator".into();
    }
    let plain = tenant.len() <= 64
        && !tenant.starts_with(['.', '_'])
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        tenant.to_owned()
    } else {
        format!(
            "_h-{}",
            &hex::encode(Sha256::digest(tenant.as_bytes()))[..40]
        )
    }
}

fn check8(parts: &[&[u8]]) -> [u8; 8] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// A segment header: magic, number, first seq, that event's `prev_hash`, check.
pub fn header_bytes(no: u64, first_seq: u64, prev: &[u8; 32]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&no.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    h[24..56].copy_from_slice(prev);
    let c = check8(&[&h[..56]]);
    h[56..64].copy_from_slice(&c);
    h
}

/// Parses a segment header: (number, first seq, prev hash), or `None` if damaged.
pub fn parse_header(h: &[u8]) -> Option<(u64, u64, [u8; 32])> {
    if h.len() < HEADER || &h[..8] != MAGIC || check8(&[&h[..56]]) != h[56..64] {
        return None;
    }
    let no = u64::from_le_bytes(h[8..16].try_into().ok()?);
    let first = u64::from_le_bytes(h[16..24].try_into().ok()?);
    let prev: [u8; 32] = h[24..56].try_into().ok()?;
    Some((no, first, prev))
}

/// Appends one record (length, seq, check, event JSON) to `out`.
pub fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    out.extend_from_slice(&record_header(seq, payload));
    out.extend_from_slice(payload);
}

/// A record's header: length, seq, check.
fn record_header(seq: u64, payload: &[u8]) -> [u8; REC_HDR] {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let seq_b = seq.to_le_bytes();
    let c = check8(&[&len, &seq_b, payload]);
    let mut h = [0u8; REC_HDR];
    h[..4].copy_from_slice(&len);
    h[4..12].copy_from_slice(&seq_b);
    h[12..].copy_from_slice(&c);
    h
}

/// An event serialized on the caller's thread, with `prev_hash` empty and `seq` 0 and the
/// places of both remembered: the writer only splices the chain values in, and hands the
/// buffers back for the caller's thread to free (frees of another thread's allocations
/// contend on the allocator's locks: measured, see docs/BENCHMARKS.md).
pub(crate) struct Prepared {
    tenant: String,
    json: Vec<u8>,
    /// Where the hex `prev_hash` goes (the closing quote of `"prev_hash":""`).
    prev_at: usize,
    /// Where the `0` of `"seq":0` is.
    seq_at: usize,
    /// Counts towards the next checkpoint (every event but a checkpoint).
    counts: bool,
}

impl Prepared {
    pub(crate) fn new(mut ev: AuditEvent) -> std::io::Result<Self> {
        const PREV: &[u8] = b"\"prev_hash\":\"\"";
        const SEQ: &[u8] = b"\"seq\":0";
        ev.seq = 0;
        ev.prev_hash.clear();
        // Sized for a typical event (≈ 600 bytes), so serializing does not grow it 3 times.
        let mut json = Vec::with_capacity(1024);
        serde_json::to_writer(&mut json, &ev).map_err(std::io::Error::other)?;
        // The last occurrences are the top-level fields: the fields serialized after
        // `prev_hash` (principal, seq, tenant_id, time) and after `seq` (tenant_id, time)
        // are strings, inside which every quote is escaped, so neither pattern can occur
        // there. An earlier occurrence (a key inside `metadata`, say) is left alone.
        let find = |pat: &[u8]| json.windows(pat.len()).rposition(|w| w == pat);
        let (Some(prev), Some(seq)) = (find(PREV), find(SEQ)) else {
            return Err(std::io::Error::other("audit event without chain fields"));
        };
        let (prev_at, seq_at) = (prev + PREV.len() - 1, seq + SEQ.len() - 1);
        if prev_at >= seq_at || json.len() + 64 + 19 > MAX_RECORD {
            return Err(std::io::Error::other("audit event too large"));
        }
        Ok(Self {
            tenant: std::mem::take(&mut ev.tenant_id),
            json,
            prev_at,
            seq_at,
            counts: ev.action != CHECKPOINT,
        })
    }

    /// Appends the event's final JSON, with `seq` and `prev_hash` filled in, to `out`.
    fn write_final(&self, seq: u64, prev: &[u8; 32], out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(&self.json[..self.prev_at]);
        for b in prev {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
        out.extend_from_slice(&self.json[self.prev_at..self.seq_at]);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = seq;
        loop {
            i -= 1;
            digits[i] = b"0123456789"[(n % 10) as usize];
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[i..]);
        out.extend_from_slice(&self.json[self.seq_at + 1..]);
    }
}

/// One record read back from a segment.
pub struct Record<'a> {
    /// The event's seq.
    pub seq: u64,
    /// The event JSON.
    pub payload: &'a [u8],
    /// Bytes the record takes, header included.
    pub size: usize,
}

/// A record whose length or check does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// Parses the record at the start of `buf`: `Ok(None)` when `buf` ends before it does
/// (incomplete), `Err(Corrupt)` when it is corrupt.
pub fn parse_record(buf: &[u8]) -> Result<Option<Record<'_>>, Corrupt> {
    if buf.len() < REC_HDR {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().map_err(|_| Corrupt)?) as usize;
    if len == 0 || len > MAX_RECORD {
        return Err(Corrupt);
    }
    if buf.len() < REC_HDR + len {
        return Ok(None);
    }
    let seq = u64::from_le_bytes(buf[4..12].try_into().map_err(|_| Corrupt)?);
    let payload = &buf[REC_HDR..REC_HDR + len];
    if check8(&[&buf[..4], &buf[4..12], payload]) != buf[12..20] {
        return Err(Corrupt);
    }
    Ok(Some(Record {
        seq,
        payload,
        size: REC_HDR + len,
    }))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn create_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create_new(true).read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

// ---- recovery ---------------------------------------------------------------------------

/// Damaged bytes recovery set aside: (segment, offset, discarded bytes, lost seq range if
/// known).
type Damage = (u64, u64, u64, Option<(u64, u64)>);

/// What recovery found in one tenant's directory.
struct Recovered {
    segments: VecDeque<SegMeta>,
    next_seq: u64,
    head: [u8; 32],
    /// Damage to announce.
    damage: Vec<Damage>,
}

fn set_aside(path: &Path, offset: u64, bytes: &[u8]) {
    let aside = path.with_extension(format!("damaged-{offset}"));
    if let Err(e) = fs::write(&aside, bytes) {
        tracing::error!(error = %e, "could not set aside damaged audit spool bytes");
    }
}

fn recover_dir(dir: &Path) -> std::io::Result<Recovered> {
    let mut nos: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    nos.sort_unstable();
    let mut rec = Recovered {
        segments: VecDeque::new(),
        next_seq: 1,
        head: GENESIS,
        damage: Vec::new(),
    };
    let count = nos.len();
    for (i, no) in nos.into_iter().enumerate() {
        let path = segment_path(dir, no);
        let data = fs::read(&path)?;
        let Some((hno, first, prev)) = parse_header(&data).filter(|h| h.0 == no) else {
            tracing::error!(path = %path.display(), "audit spool segment with a damaged header set aside");
            set_aside(&path, 0, &data);
            fs::remove_file(&path)?;
            rec.damage.push((no, 0, data.len() as u64, None));
            continue;
        };
        let mut off = HEADER;
        let mut seq = first;
        let mut head = prev;
        let mut bad = false;
        while off < data.len() {
            match parse_record(&data[off..]) {
                Ok(Some(r)) if r.seq == seq => {
                    head = chain::event_hash(r.payload);
                    seq += 1;
                    off += r.size;
                }
                _ => {
                    bad = true;
                    break;
                }
            }
        }
        if bad && data[off..].iter().all(|b| *b == 0) {
            // Zero-filled space ahead of the last commit (see PREALLOC), not damage.
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(off as u64)?;
            f.sync_all()?;
            bad = false;
        }
        if bad {
            let discarded = (data.len() - off) as u64;
            let last = i + 1 == count;
            if last {
                tracing::warn!(path = %path.display(), offset = off, bytes = discarded,
                    "torn tail of the active audit segment set aside (never acknowledged)");
            } else {
                tracing::error!(path = %path.display(), offset = off, bytes = discarded,
                    "corrupt audit segment: the intact events before the damage are kept");
            }
            set_aside(&path, off as u64, &data[off..]);
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(off as u64)?;
            f.sync_all()?;
            rec.damage.push((hno, off as u64, discarded, None));
        }
        // Events lost between the previous segment's intact end and this segment's start
        // (a corrupt tail or a header-damaged segment in between) are announced as a range.
        if !rec.segments.is_empty()
            && first > rec.next_seq
            && let Some(d) = rec.damage.iter_mut().rev().find(|d| d.3.is_none())
        {
            d.3 = Some((rec.next_seq, first - 1));
        }
        rec.segments.push_back(SegMeta {
            no: hno,
            first_seq: first,
            len: off as u64,
        });
        rec.next_seq = seq;
        rec.head = head;
    }
    Ok(rec)
}

// ---- the writer ---------------------------------------------------------------------------

enum Msg {
    Append(Prepared, oneshot::Sender<Reply>),
    Shutdown(oneshot::Sender<()>),
}

/// The answer to an append, and the event handed back to be freed by its caller.
type Reply = (Result<(), AuditError>, Option<Prepared>);

/// An appended event waiting for its commit.
struct Waiter {
    done: oneshot::Sender<Reply>,
    event: Prepared,
}

impl Waiter {
    fn answer(self, res: Result<(), AuditError>) {
        let _ = self.done.send((res, Some(self.event)));
    }
}

struct WTenant {
    spool: Arc<TenantSpool>,
    file: File,
    seg_no: u64,
    seg_len: u64,
    /// Bytes of the active segment file (its committed length plus the zero-filled space
    /// ahead of it).
    alloc_len: u64,
    /// Committed chain state.
    next_seq: u64,
    head: [u8; 32],
    /// Pending (this batch) chain state and bytes.
    pend_seq: u64,
    pend_head: [u8; 32],
    buf: Vec<u8>,
    waiters: Vec<Waiter>,
    since_cp: u64,
    last_cp: Instant,
    /// First seq of the drops announced since delivery last passed an announcement, and
    /// the seq of that announcement: a new announcement covers earlier ones that may
    /// themselves have been dropped.
    drop_first: Option<u64>,
    drop_announced: u64,
}

/// The spool: the writer thread's mailbox and every tenant's shared state.
pub struct Spool {
    cfg: SpoolConfig,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    pub(crate) tenants: Mutex<HashMap<String, Arc<TenantSpool>>>,
    /// Woken when a tenant spool appears (the delivery supervisor starts its sinks).
    pub(crate) new_tenant: Notify,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held until shutdown: one writer per spool directory.
    lock: Mutex<Option<File>>,
}

impl Spool {
    /// Opens the spool: recovers every tenant's segments (setting torn or corrupt bytes
    /// aside, keeping the intact events before them) and starts the writer thread.
    pub fn open(cfg: SpoolConfig, key: SigningKey) -> std::io::Result<Arc<Self>> {
        fs::create_dir_all(&cfg.dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cfg.dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::other(format!(
                    "the audit spool {} is in use by another keystead process",
                    cfg.dir.display()
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let (tx, rx) = mpsc::channel();
        let spool = Arc::new(Self {
            cfg: cfg.clone(),
            tx: Mutex::new(Some(tx)),
            tenants: Mutex::new(HashMap::new()),
            new_tenant: Notify::new(),
            thread: Mutex::new(None),
            lock: Mutex::new(Some(lock)),
        });
        let mut writer = Writer {
            cfg,
            key,
            spool: Arc::downgrade(&spool),
            tenants: HashMap::new(),
        };
        writer.recover_all()?;
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(&rx))?;
        *spool.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(spool)
    }

    /// The settings.
    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    /// Appends an event (its `seq` and `prev_hash` are set here) and returns once it is on
    /// disk, or with an error if it cannot be (spool full under `fail_closed`, I/O error,
    /// shut down).
    pub async fn append(&self, ev: AuditEvent) -> Result<(), AuditError> {
        let ev =
            Prepared::new(ev).map_err(|e| AuditError(format!("audit event not recorded: {e}")))?;
        let (done, wait) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let Some(tx) = tx.as_ref() else {
                return Err(AuditError("audit spool is shut down".into()));
            };
            tx.send(Msg::Append(ev, done))
                .map_err(|_| AuditError("audit writer stopped".into()))?;
        }
        match wait.await {
            // `_event` (the caller's own allocations) is dropped here, on this thread.
            Ok((res, _event)) => res,
            Err(_) => Err(AuditError("audit writer stopped".into())),
        }
    }

    /// Writes a final checkpoint for every tenant with unsigned events and stops the
    /// writer. Appends after this fail.
    pub async fn shutdown(&self) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = tx {
            let (done, wait) = oneshot::channel();
            if tx.send(Msg::Shutdown(done)).is_ok() {
                let _ = wait.await;
            }
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        // The writer is gone: another process (or a new spool) may take over.
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    /// Every tenant spool (for delivery and metrics).
    pub(crate) fn tenant_spools(&self) -> Vec<Arc<TenantSpool>> {
        self.tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

struct Writer {
    cfg: SpoolConfig,
    key: SigningKey,
    spool: std::sync::Weak<Spool>,
    tenants: HashMap<String, WTenant>,
}

impl Writer {
    fn recover_all(&mut self) -> std::io::Result<()> {
        for entry in fs::read_dir(&self.cfg.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let dir = entry.path();
            let Ok(tenant) = fs::read_to_string(dir.join("tenant")) else {
                tracing::warn!(dir = %dir.display(), "audit spool directory without a tenant file ignored");
                continue;
            };
            self.open_tenant(&tenant, Some(dir))?;
        }
        // Announce damage found by recovery (delivered like any event).
        let names: Vec<String> = self.tenants.keys().cloned().collect();
        for t in names {
            self.commit(&t);
        }
        Ok(())
    }

    /// Opens (recovering) or creates a tenant's spool.
    fn open_tenant(&mut self, tenant: &str, existing: Option<PathBuf>) -> std::io::Result<()> {
        let dir = existing.unwrap_or_else(|| self.cfg.dir.join(tenant_dir_name(tenant)));
        fs::create_dir_all(&dir)?;
        let tfile = dir.join("tenant");
        if !tfile.exists() {
            fs::write(&tfile, tenant)?;
        }
        let mut rec = recover_dir(&dir)?;
        if rec.segments.is_empty() {
            let no = 1;
            let mut f = create_private(&segment_path(&dir, no))?;
            f.write_all(&header_bytes(no, rec.next_seq, &rec.head))?;
            f.sync_all()?;
            sync_dir(&dir);
            rec.segments.push_back(SegMeta {
                no,
                first_seq: rec.next_seq,
                len: HEADER_LEN,
            });
        }
        let active = *rec.segments.back().unwrap_or(&SegMeta {
            no: 1,
            first_seq: 1,
            len: HEADER_LEN,
        });
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(&dir, active.no))?;
        let bytes = rec.segments.iter().map(|s| s.len).sum();
        let spool = Arc::new(TenantSpool {
            tenant: tenant.to_owned(),
            dir,
            state: Mutex::new(TenantState {
                segments: rec.segments,
                next_seq: rec.next_seq,
                bytes,
                dropped: 0,
                cursors: HashMap::new(),
                commits: 0,
                events: 0,
            }),
            notify: Notify::new(),
        });
        let mut wt = WTenant {
            spool: spool.clone(),
            file,
            seg_no: active.no,
            seg_len: active.len,
            alloc_len: active.len,
            next_seq: rec.next_seq,
            head: rec.head,
            pend_seq: rec.next_seq,
            pend_head: rec.head,
            buf: Vec::new(),
            waiters: Vec::new(),
            since_cp: 0,
            last_cp: Instant::now(),
            drop_first: None,
            drop_announced: 0,
        };
        for (seg, offset, bytes, lost) in rec.damage {
            let mut detail = json!({ "segment": seg, "offset": offset, "discarded_bytes": bytes });
            if let Some((a, b)) = lost {
                detail["first_seq"] = json!(a);
                detail["last_seq"] = json!(b);
            }
            let ev = self.system_event(tenant, DAMAGED, "failure", detail);
            self.push(&mut wt, ev)?;
        }
        self.tenants.insert(tenant.to_owned(), wt);
        if let Some(s) = self.spool.upgrade() {
            s.tenants
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tenant.to_owned(), spool);
            s.new_tenant.notify_waiters();
        }
        Ok(())
    }

    fn system_event(
        &self,
        tenant: &str,
        action: &str,
        outcome: &'static str,
        detail: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            id: crate::audit::new_event_id(),
            time: rfc3339_now(),
            tenant_id: tenant.to_owned(),
            es_instance: self.cfg.instance.clone(),
            principal: "system".into(),
            action: action.to_owned(),
            outcome,
            code: (outcome == "failure").then(|| action.to_owned()),
            kms: None,
            detail: Some(detail),
            count: None,
            failures: None,
            metadata: json!({}),
            event: None,
            seq: 0,
            prev_hash: String::new(),
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        let tick = Duration::from_millis(200).min(self.cfg.checkpoint_interval);
        loop {
            let first = match rx.recv_timeout(tick) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.final_checkpoints();
                    return;
                }
            };
            let mut touched: Vec<String> = Vec::new();
            let mut shutdown = None;
            let mut next = first;
            let mut taken = 0usize;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append(ev, done) => self.accept(ev, done, &mut touched),
                    Msg::Shutdown(done) => {
                        shutdown = Some(done);
                        break;
                    }
                }
                taken += 1;
                if taken < 8192 {
                    next = rx.try_recv().ok();
                }
            }
            // Time-based checkpoints.
            let due: Vec<String> = self
                .tenants
                .iter()
                .filter(|(_, w)| {
                    w.since_cp > 0 && w.last_cp.elapsed() >= self.cfg.checkpoint_interval
                })
                .map(|(t, _)| t.clone())
                .collect();
            for t in due {
                self.checkpoint(&t);
                if !touched.contains(&t) {
                    touched.push(t);
                }
            }
            for t in &touched {
                self.commit(t);
            }
            if let Some(done) = shutdown {
                self.final_checkpoints();
                let _ = done.send(());
                return;
            }
        }
    }

    fn final_checkpoints(&mut self) {
        let names: Vec<String> = self
            .tenants
            .iter()
            .filter(|(_, w)| w.since_cp > 0)
            .map(|(t, _)| t.clone())
            .collect();
        for t in names {
            self.checkpoint(&t);
            self.commit(&t);
        }
        // A clean stop leaves no zero-filled space behind (recovery would trim it anyway).
        for wt in self.tenants.values_mut() {
            if wt.alloc_len > wt.seg_len && wt.file.set_len(wt.seg_len).is_ok() {
                wt.alloc_len = wt.seg_len;
            }
        }
    }

    fn accept(&mut self, ev: Prepared, done: oneshot::Sender<Reply>, touched: &mut Vec<String>) {
        if !self.tenants.contains_key(&ev.tenant)
            && let Err(e) = self.open_tenant(&ev.tenant, None)
        {
            tracing::error!(error = %e, "could not open a tenant's audit spool");
            let _ = done.send((Err(AuditError("audit spool unavailable".into())), Some(ev)));
            return;
        }
        if !touched.contains(&ev.tenant) {
            touched.push(ev.tenant.clone());
        }
        // `remove_entry` and re-inserting the same key: no allocation per event.
        let Some((name, mut wt)) = self.tenants.remove_entry(&ev.tenant) else {
            return;
        };
        let res = self.make_room(&mut wt).and_then(|()| {
            self.push_prepared(&mut wt, &ev)
                .map_err(|e| AuditError(format!("audit spool write failed: {e}")))
        });
        let mut checkpoint = None;
        match res {
            Ok(()) => {
                if wt.since_cp >= self.cfg.checkpoint_events {
                    checkpoint = Some(name.clone());
                }
                wt.waiters.push(Waiter { done, event: ev });
            }
            Err(e) => {
                let _ = done.send((Err(e), Some(ev)));
            }
        }
        self.tenants.insert(name, wt);
        if let Some(t) = checkpoint {
            self.checkpoint(&t);
        }
    }

    /// Applies the size bound before an append.
    fn make_room(&self, wt: &mut WTenant) -> Result<(), AuditError> {
        let est = 2048u64;
        let over = |wt: &WTenant| {
            let st = wt.spool.lock();
            st.bytes + wt.buf.len() as u64 + est > self.cfg.max_bytes
        };
        if !over(wt) {
            return Ok(());
        }
        match self.cfg.policy {
            FullPolicy::FailClosed => Err(AuditError("the tenant's audit spool is full".into())),
            FullPolicy::DropOldest => {
                // Close the active segment so there is something to drop.
                if wt.spool.lock().segments.len() < 2 {
                    self.flush(wt).map_err(|e| AuditError(e.to_string()))?;
                    self.rotate(wt).map_err(|e| AuditError(e.to_string()))?;
                }
                let mut lost: Option<(u64, u64)> = None;
                while over(wt) {
                    let mut st = wt.spool.lock();
                    if st.segments.len() < 2 {
                        break;
                    }
                    let Some(seg) = st.segments.pop_front() else {
                        break;
                    };
                    let next_first = st.segments[0].first_seq;
                    st.bytes = st.bytes.saturating_sub(seg.len);
                    let n = next_first.saturating_sub(seg.first_seq);
                    st.dropped += n;
                    drop(st);
                    let _ = fs::remove_file(wt.spool.segment_path(seg.no));
                    if n > 0 {
                        lost = Some((lost.map_or(seg.first_seq, |l| l.0), next_first - 1));
                    }
                }
                if let Some((mut a, b)) = lost {
                    let delivered_past = {
                        let st = wt.spool.lock();
                        st.cursors.values().map(|c| c.next_seq).min().unwrap_or(0)
                    };
                    match wt.drop_first {
                        Some(f) if delivered_past <= wt.drop_announced => a = a.min(f),
                        _ => {}
                    }
                    wt.drop_first = Some(a);
                    tracing::warn!(tenant = %wt.spool.tenant, first = a, last = b, "audit spool full: oldest events dropped (drop_oldest)");
                    let ev = self.system_event(
                        &wt.spool.tenant.clone(),
                        DROPPED,
                        "failure",
                        json!({ "first_seq": a, "last_seq": b, "events": b - a + 1 }),
                    );
                    self.push(wt, ev).map_err(|e| AuditError(e.to_string()))?;
                    wt.drop_announced = wt.pend_seq - 1;
                }
                if over(wt) {
                    return Err(AuditError("the tenant's audit spool is full".into()));
                }
                Ok(())
            }
        }
    }

    /// Chains and frames one of the writer's own events (checkpoint, damage, drops).
    fn push(&self, wt: &mut WTenant, ev: AuditEvent) -> std::io::Result<()> {
        let ev = Prepared::new(ev)?;
        self.push_prepared(wt, &ev)
    }

    /// Chains and frames one event into the tenant's pending buffer, rotating segments.
    fn push_prepared(&self, wt: &mut WTenant, ev: &Prepared) -> std::io::Result<()> {
        if wt.seg_len + wt.buf.len() as u64 >= self.cfg.segment_bytes {
            self.flush(wt)?;
            self.rotate(wt)?;
        }
        // The record is built in place: header space, the final JSON, then the header.
        let start = wt.buf.len();
        wt.buf.extend_from_slice(&[0u8; REC_HDR]);
        ev.write_final(wt.pend_seq, &wt.pend_head, &mut wt.buf);
        let payload = &wt.buf[start + REC_HDR..];
        if payload.len() > MAX_RECORD {
            wt.buf.truncate(start);
            return Err(std::io::Error::other("audit event too large"));
        }
        let head = chain::event_hash(payload);
        let hdr = record_header(wt.pend_seq, payload);
        wt.buf[start..start + REC_HDR].copy_from_slice(&hdr);
        wt.pend_head = head;
        wt.pend_seq += 1;
        if ev.counts {
            wt.since_cp += 1;
        }
        Ok(())
    }

    fn checkpoint(&mut self, tenant: &str) {
        let Some(mut wt) = self.tenants.remove(tenant) else {
            return;
        };
        if wt.pend_seq > 1 {
            let covers = wt.pend_seq - 1;
            let detail = chain::checkpoint_detail(
                &self.key,
                tenant,
                &self.cfg.instance,
                covers,
                &wt.pend_head,
            );
            let ev = self.system_event(tenant, CHECKPOINT, "success", detail);
            if let Err(e) = self.push(&mut wt, ev) {
                tracing::error!(error = %e, "could not write an audit checkpoint");
            }
        }
        wt.since_cp = 0;
        wt.last_cp = Instant::now();
        self.tenants.insert(tenant.to_owned(), wt);
    }

    /// Writes and syncs the pending buffer; publishes the new committed extent.
    fn flush(&self, wt: &mut WTenant) -> std::io::Result<()> {
        if wt.buf.is_empty() {
            return Ok(());
        }
        let res = self.write_batch(wt);
        if let Err(e) = res {
            // Undo: nothing past the committed length counts; the chain goes back too.
            let _ = wt.file.set_len(wt.seg_len);
            wt.alloc_len = wt.seg_len;
            wt.buf.clear();
            wt.pend_seq = wt.next_seq;
            wt.pend_head = wt.head;
            // Their events are gone: those operations fail closed (a waiter whose event was
            // synced by an earlier flush of this batch fails too: safe, never the reverse).
            let failed = AuditError(format!("audit spool write failed: {e}"));
            for w in wt.waiters.drain(..) {
                w.answer(Err(failed.clone()));
            }
            wt.spool.notify.notify_waiters();
            return Err(e);
        }
        wt.seg_len += wt.buf.len() as u64;
        {
            let mut st = wt.spool.lock();
            st.bytes += wt.buf.len() as u64;
            if let Some(seg) = st.segments.back_mut() {
                seg.len = wt.seg_len;
            }
            st.commits += 1;
            st.events += wt.pend_seq - wt.next_seq;
            st.next_seq = wt.pend_seq;
        }
        wt.buf.clear();
        wt.next_seq = wt.pend_seq;
        wt.head = wt.pend_head;
        wt.spool.notify.notify_waiters();
        Ok(())
    }

    /// Writes the pending buffer at the committed end of the active segment (zero-filling
    /// the file ahead first when the buffer would pass the filled part) and syncs it.
    fn write_batch(&self, wt: &mut WTenant) -> std::io::Result<()> {
        let end = wt.seg_len + wt.buf.len() as u64;
        if end > wt.alloc_len {
            // Never fill past the segment size (tests use tiny segments) unless the batch
            // itself does.
            let target = (end + PREALLOC).min(self.cfg.segment_bytes.max(end));
            wt.file.seek(SeekFrom::Start(wt.alloc_len))?;
            let mut left = target - wt.alloc_len;
            while left > 0 {
                let n = usize::try_from(left)
                    .unwrap_or(ZEROS.len())
                    .min(ZEROS.len());
                wt.file.write_all(&ZEROS[..n])?;
                left -= n as u64;
            }
            wt.alloc_len = target;
        }
        wt.file.seek(SeekFrom::Start(wt.seg_len))?;
        wt.file.write_all(&wt.buf)?;
        wt.file.sync_data()
    }

    /// Starts a new segment after the active one (flushed before).
    fn rotate(&self, wt: &mut WTenant) -> std::io::Result<()> {
        // The closed segment keeps only its records: drop the zero-filled space ahead.
        // (Not synced: after a crash recovery trims an all-zero tail anyway.)
        if let Err(e) = wt.file.set_len(wt.seg_len) {
            tracing::warn!(error = %e, "could not trim a closed audit segment");
        }
        let no = wt.seg_no + 1;
        let path = wt.spool.segment_path(no);
        let mut f = create_private(&path)?;
        f.write_all(&header_bytes(no, wt.next_seq, &wt.head))?;
        f.sync_all()?;
        sync_dir(&wt.spool.dir);
        wt.file = f;
        wt.seg_no = no;
        wt.seg_len = HEADER_LEN;
        wt.alloc_len = HEADER_LEN;
        let mut st = wt.spool.lock();
        st.segments.push_back(SegMeta {
            no,
            first_seq: wt.next_seq,
            len: HEADER_LEN,
        });
        st.bytes += HEADER_LEN;
        Ok(())
    }

    /// Commits a tenant's pending events and answers their waiters.
    fn commit(&mut self, tenant: &str) {
        let Some(wt) = self.tenants.get_mut(tenant) else {
            return;
        };
        let waiters = std::mem::take(&mut wt.waiters);
        let res = self.flush_by_name(tenant);
        for w in waiters {
            w.answer(res.clone());
        }
    }

    fn flush_by_name(&mut self, tenant: &str) -> Result<(), AuditError> {
        let Some(mut wt) = self.tenants.remove(tenant) else {
            return Err(AuditError("no spool".into()));
        };
        let res = self.flush(&mut wt).map_err(|e| {
            tracing::error!(error = %e, tenant = %tenant, "audit spool write failed; failing closed");
            AuditError(format!("audit spool write failed: {e}"))
        });
        self.tenants.insert(tenant.to_owned(), wt);
        res
    }
}

// ---- reading (delivery) --------------------------------------------------------------------

/// A batch read for one sink.
pub(crate) struct Batch {
    pub events: Vec<Arc<[u8]>>,
    /// Position after the batch.
    pub next: Cursor,
}

/// Where a new sink starts: the oldest retained event.
pub(crate) fn start_cursor(spool: &TenantSpool) -> Cursor {
    let st = spool.lock();
    let front = st.segments.front().copied().unwrap_or(SegMeta {
        no: 1,
        first_seq: 1,
        len: HEADER_LEN,
    });
    Cursor {
        seg: front.no,
        offset: HEADER_LEN,
        next_seq: front.first_seq,
    }
}

/// Reads up to `max_events` / `max_bytes` committed events from `cur`.
pub(crate) fn read_batch(
    spool: &TenantSpool,
    mut cur: Cursor,
    max_events: usize,
    max_bytes: usize,
) -> std::io::Result<Batch> {
    let mut events = Vec::new();
    let mut corrupt = false;
    loop {
        let (seg, has_next) = {
            let st = spool.lock();
            let Some(front) = st.segments.front() else {
                break;
            };
            if cur.seg < front.no {
                // Dropped under the size bound: continue at the oldest kept segment.
                cur = Cursor {
                    seg: front.no,
                    offset: HEADER_LEN,
                    next_seq: front.first_seq,
                };
            }
            let Some(i) = st.segments.iter().position(|s| s.no == cur.seg) else {
                break;
            };
            (st.segments[i], i + 1 < st.segments.len())
        };
        if cur.offset >= seg.len {
            if has_next && events.is_empty() {
                let st = spool.lock();
                if let Some(n) = st.segments.iter().find(|s| s.no > seg.no) {
                    cur = Cursor {
                        seg: n.no,
                        offset: HEADER_LEN,
                        next_seq: n.first_seq,
                    };
                    continue;
                }
            }
            break;
        }
        let want = (seg.len - cur.offset).min(max_bytes as u64 + (REC_HDR + MAX_RECORD) as u64);
        let mut f = File::open(spool.segment_path(seg.no))?;
        f.seek(SeekFrom::Start(cur.offset))?;
        // Read without zero-filling the buffer first.
        let want = usize::try_from(want).unwrap_or(max_bytes);
        let mut buf = Vec::with_capacity(want);
        (&mut f).take(want as u64).read_to_end(&mut buf)?;
        if buf.len() < want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "audit segment shorter than its committed length",
            ));
        }
        let mut off = 0usize;
        let mut size = 0usize;
        while off < buf.len() && events.len() < max_events && size < max_bytes {
            match parse_record(&buf[off..]) {
                Ok(Some(r)) => {
                    events.push(Arc::from(r.payload));
                    size += r.size;
                    off += r.size;
                    cur.next_seq = r.seq + 1;
                }
                Ok(None) => break,
                Err(Corrupt) => {
                    tracing::error!(tenant = %spool.tenant, segment = seg.no, offset = cur.offset + off as u64,
                        "corrupt audit record while delivering; skipping to the next segment");
                    corrupt = true;
                    break;
                }
            }
        }
        cur.offset += off as u64;
        if corrupt {
            cur.offset = seg.len;
        }
        break;
    }
    Ok(Batch { events, next: cur })
}

/// Loads a sink's persisted cursor.
pub(crate) fn load_cursor(dir: &Path, sink_file: &str) -> Option<Cursor> {
    let s = fs::read_to_string(dir.join(sink_file)).ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some(Cursor {
        seg: it.next()??,
        offset: it.next()??,
        next_seq: it.next()??,
    })
}

/// Persists a sink's cursor (write + rename; not synced: losing it only re-delivers).
pub(crate) fn store_cursor(dir: &Path, sink_file: &str, c: Cursor) -> std::io::Result<()> {
    let tmp = dir.join(format!("{sink_file}.tmp"));
    fs::write(&tmp, format!("{} {} {}\n", c.seg, c.offset, c.next_seq))?;
    fs::rename(&tmp, dir.join(sink_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_events_splice_into_exactly_the_serialized_form() {
        // Chain field names inside metadata, detail and string values must not be touched.
        let ev = AuditEvent {
            action: "wrap".into(),
            code: None,
            count: Some(3),
            detail: Some(json!({"prev_hash": "", "seq": 0})),
            es_instance: "es-1".into(),
            event: None,
            failures: None,
            id: "id-1".into(),
            kms: None,
            metadata: json!({"requesting_id": "u", "custom": {"\"seq\":0": "\"prev_hash\":\"\"", "seq": "0"}}),
            outcome: "success",
            prev_hash: "stale".into(),
            principal: "\"seq\":0 \"prev_hash\":\"\"".into(),
            seq: 42,
            tenant_id: "acme \"seq\":0".into(),
            time: "2026-11-22T12:00:00Z".into(),
        };
        let p = Prepared::new(ev.clone()).unwrap();
        assert_eq!(p.tenant, ev.tenant_id);
        for seq in [0, 1, 9, 10, 12345, u64::MAX] {
            let prev = [seq.to_le_bytes()[0] ^ 0xa5; 32];
            let mut want = ev.clone();
            want.seq = seq;
            want.prev_hash = hex::encode(prev);
            let mut got = b"already here".to_vec();
            p.write_final(seq, &prev, &mut got);
            assert_eq!(
                String::from_utf8_lossy(&got[12..]),
                String::from_utf8_lossy(&serde_json::to_vec(&want).unwrap()),
                "seq {seq}"
            );
        }
    }

    #[test]
    fn records_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        frame(&mut buf, 7, b"{\"a\":1}");
        let r = parse_record(&buf).unwrap().unwrap();
        assert_eq!(
            (r.seq, r.payload, r.size),
            (7, &b"{\"a\":1}"[..], buf.len())
        );
        assert!(
            parse_record(&buf[..buf.len() - 1]).unwrap().is_none(),
            "torn = incomplete"
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                !matches!(parse_record(&bad), Ok(Some(r)) if r.payload == b"{\"a\":1}" && r.seq == 7),
                "flip at {i} undetected"
            );
        }
    }

    #[test]
    fn header_round_trip_and_check() {
        let h = header_bytes(3, 42, &[9; 32]);
        assert_eq!(parse_header(&h), Some((3, 42, [9; 32])));
        let mut bad = h;
        bad[20] ^= 1;
        assert_eq!(parse_header(&bad), None);
    }

    #[test]
    fn tenant_dir_names_are_safe() {
        assert_eq!(tenant_dir_name("acme"), "acme");
        assert_eq!(tenant_dir_name(""), "_operator");
        for t in ["../x", "_operator", ".hidden", "a/b", "ü", &"x".repeat(65)] {
            let d = tenant_dir_name(t);
            assert!(d.starts_with("_h-"), "{t} -> {d}");
        }
    }
}
