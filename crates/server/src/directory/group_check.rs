//! Verification of group log entries with keystead-core, and the bounded cache of verified
//! group states the append check starts from.
//!
//! The server checks what a client checks (framing, signature by the key the entry names,
//! signer an admin as of the parent, operations and sealed keys that fit the group), so a
//! log it stores is one clients will accept. Clients still verify the log themselves: the
//! server's check is a filter against garbage and mistakes, not something anyone relies on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keystead_core::groups::{GroupState, LogEntry};

use super::DirectoryError;
use super::store::{DirectoryStore, GroupHead};

/// Most group states kept in memory; beyond it the least recently used one is dropped.
pub const CACHE_GROUPS: usize = 256;

/// Page size when a state is rebuilt from the store.
const REBUILD_PAGE: usize = 1000;

/// Parses an entry and verifies its signature. A failure names the core error code only.
pub fn parse(entry: &[u8]) -> Result<LogEntry, DirectoryError> {
    LogEntry::parse(entry)
        .map_err(|e| DirectoryError::BadEntry(format!("entry does not verify: {}", e.code())))
}

/// The state after a genesis entry.
pub fn genesis(entry: &LogEntry) -> Result<GroupState, DirectoryError> {
    GroupState::genesis(entry).map_err(refused)
}

/// The state after `entry` applied to `state` (which is left as it was).
pub fn apply(state: &GroupState, entry: &LogEntry) -> Result<GroupState, DirectoryError> {
    let mut next = state.clone();
    next.apply(entry).map_err(refused)?;
    Ok(next)
}

fn refused(e: keystead_core::Error) -> DirectoryError {
    DirectoryError::BadEntry(format!("entry refused: {}", e.code()))
}

/// Why a state could not be rebuilt from the store: a storage failure, or a stored log that
/// does not verify (written before the server checked entries, or altered in the database).
#[derive(Debug)]
pub struct RebuildError(pub String);

/// Verifies the stored log of a group from genesis up to `head` and returns its state.
pub fn rebuild(
    store: &dyn DirectoryStore,
    tenant: &str,
    head: &GroupHead,
) -> Result<GroupState, RebuildError> {
    let mut state: Option<GroupState> = None;
    let mut from = 0u64;
    'pages: loop {
        let page = store
            .entries(tenant, &head.group_id, from, REBUILD_PAGE)
            .map_err(|e| RebuildError(e.to_string()))?;
        if page.is_empty() {
            break;
        }
        for rec in page {
            if rec.seq != from {
                return Err(RebuildError(format!(
                    "stored log skips from seq {from} to {}",
                    rec.seq
                )));
            }
            let entry = LogEntry::parse(&rec.entry).map_err(|e| {
                RebuildError(format!(
                    "stored entry {} does not verify: {}",
                    rec.seq,
                    e.code()
                ))
            })?;
            state = Some(
                match state.take() {
                    None => GroupState::genesis(&entry),
                    Some(mut s) => s.apply(&entry).map(|()| s),
                }
                .map_err(|e| {
                    RebuildError(format!("stored entry {} is refused: {}", rec.seq, e.code()))
                })?,
            );
            if rec.seq >= head.seq {
                break 'pages;
            }
            from = rec.seq.saturating_add(1);
        }
    }
    let state = state.ok_or_else(|| RebuildError("the stored log is empty".into()))?;
    if state.seq() != head.seq || state.head() != &head.hash {
        return Err(RebuildError(format!(
            "the stored log ends at seq {}, not at the head {}",
            state.seq(),
            head.seq
        )));
    }
    Ok(state)
}

/// Verified group states by (tenant, group id), each used only while it is at the group's
/// current head.
#[derive(Default)]
pub struct StateCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tick: u64,
    map: HashMap<(String, String), (u64, Arc<GroupState>)>,
}

impl StateCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every write is one insert
        // or remove), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached state of the group if it is at `head`; a stale one is dropped.
    pub fn get(&self, tenant: &str, head: &GroupHead) -> Option<Arc<GroupState>> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let key = (tenant.to_owned(), head.group_id.clone());
        let slot = g.map.get_mut(&key)?;
        if slot.1.seq() == head.seq && slot.1.head() == &head.hash {
            slot.0 = tick;
            return Some(slot.1.clone());
        }
        if slot.1.seq() <= head.seq {
            g.map.remove(&key);
        }
        None
    }

    /// Stores the state of a group after the store accepted its newest entry; never
    /// replaces a newer state by an older one.
    pub fn put(&self, tenant: &str, state: Arc<GroupState>) {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let key = (tenant.to_owned(), state.group_id().as_str().to_owned());
        if let Some(old) = g.map.get(&key)
            && old.1.seq() > state.seq()
        {
            return;
        }
        if !g.map.contains_key(&key) && g.map.len() >= CACHE_GROUPS {
            let oldest = g
                .map
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                g.map.remove(&k);
            }
        }
        g.map.insert(key, (tick, state));
    }

    /// Drops every state (tests: forces a rebuild from the store).
    pub fn clear(&self) {
        self.lock().map.clear();
    }

    /// How many states are cached.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no state is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use keystead_core::device::DeviceKeys;
    use keystead_core::groups::{History, Op, UserIdentity};
    use keystead_core::{GroupId, RecipientId, UserId};

    use super::*;
    use crate::util::os_rng;

    fn group(id: &str) -> (UserIdentity, GroupState, keystead_core::groups::EpochKey) {
        let mut rng = os_rng();
        let ada = UserIdentity::generate(&mut rng, UserId::new("ada").unwrap());
        let dev = DeviceKeys::generate(&mut rng, RecipientId::new("ada/d0").unwrap());
        let rec = ada
            .sign_record(1, vec![ada.certify(&dev).unwrap()])
            .unwrap();
        let p = GroupState::create(
            &mut rng,
            GroupId::new(id).unwrap(),
            History::All,
            &ada,
            vec![rec],
        )
        .unwrap();
        let state = genesis(&parse(p.entry.to_bytes()).unwrap()).unwrap();
        (ada, state, p.new_epoch_key.unwrap())
    }

    fn head_of(s: &GroupState) -> GroupHead {
        GroupHead {
            group_id: s.group_id().as_str().to_owned(),
            seq: s.seq(),
            hash: *s.head(),
        }
    }

    #[test]
    fn cache_serves_only_the_state_at_the_head() {
        let (ada, s0, key) = group("g");
        let cache = StateCache::default();
        cache.put("t", Arc::new(s0.clone()));
        assert!(cache.get("t", &head_of(&s0)).is_some());
        assert!(cache.get("u", &head_of(&s0)).is_none());
        // Another writer moved the head: the cached state is stale, not served, dropped.
        let p = s0
            .propose(&mut os_rng(), &ada, vec![Op::Rotate], Some(&key))
            .unwrap();
        let s1 = apply(&s0, &parse(p.entry.to_bytes()).unwrap()).unwrap();
        assert_eq!(s0.seq(), 0);
        assert!(cache.get("t", &head_of(&s1)).is_none());
        assert!(cache.is_empty());
        // Same seq, other hash: not served either.
        cache.put("t", Arc::new(s1.clone()));
        let mut forged = head_of(&s1);
        forged.hash[0] ^= 1;
        assert!(cache.get("t", &forged).is_none());
        // An older state never replaces a newer one.
        cache.put("t", Arc::new(s1.clone()));
        cache.put("t", Arc::new(s0.clone()));
        assert!(cache.get("t", &head_of(&s1)).is_some());
    }

    #[test]
    fn cache_is_bounded_and_drops_the_least_recently_used() {
        let (_, s, _) = group("g");
        let cache = StateCache::default();
        for i in 0..CACHE_GROUPS {
            cache.put(&format!("t{i}"), Arc::new(s.clone()));
        }
        // t0 used recently: t1 is the one dropped.
        assert!(cache.get("t0", &head_of(&s)).is_some());
        cache.put("new", Arc::new(s.clone()));
        assert_eq!(cache.len(), CACHE_GROUPS);
        assert!(cache.get("t0", &head_of(&s)).is_some());
        assert!(cache.get("t1", &head_of(&s)).is_none());
        assert!(cache.get("new", &head_of(&s)).is_some());
    }
}
