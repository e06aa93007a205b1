//! The fixed prefix of a group log entry, and the append check the server makes with it.
//!
//! ```text
//! entry = "KSL" 0x01 ‖ group id lp16 ‖ seq u64 BE (genesis = 0) ‖ parent hash [32]
//!         (all zero for genesis) ‖ ... ‖ signature [64]
//! entry hash = SHA-256(entire entry)
//! ```
//!
//! The prefix gives the cheap checks that come first: the order of the log and one child
//! per parent (compare-and-swap). The full check (signature, admin rules, operations and
//! sealed keys) is keystead-core's, in [`super::group_check`].

use sha2::{Digest, Sha256};

use super::DirectoryError;

/// Magic and version of a log entry.
pub const MAGIC: &[u8; 4] = b"KSL\x01";
/// Longest group id, in bytes.
pub const MAX_GROUP_ID: usize = 256;
/// Largest entry accepted, in bytes: 8 MiB, enough for a genesis or a removal in a group of
/// 10 000 members (about 5.3 MB and 1.5 MB). Base64 in a JSON body with a full member index
/// it stays within the group routes' body limit (`http::directory::MAX_GROUP_BODY`).
pub const MAX_ENTRY: usize = 8 * 1024 * 1024;
const SIG_LEN: usize = 64;

/// The prefix fields of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPrefix {
    /// The group the entry belongs to.
    pub group_id: String,
    /// Its sequence number.
    pub seq: u64,
    /// The hash of its parent (zero for genesis).
    pub parent: [u8; 32],
}

/// Parses the prefix; the rest of the entry must hold at least a signature.
pub fn parse(entry: &[u8]) -> Result<EntryPrefix, DirectoryError> {
    let bad = |m: &str| DirectoryError::BadEntry(m.to_owned());
    if entry.len() > MAX_ENTRY {
        return Err(bad("entry exceeds 8 MiB"));
    }
    let rest = entry
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("not a version-1 group log entry"))?;
    let (len, rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("entry ends inside the group id"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len == 0 || len > MAX_GROUP_ID || rest.len() < len {
        return Err(bad("bad group id length"));
    }
    let (id, rest) = rest.split_at(len);
    let group_id = std::str::from_utf8(id)
        .map_err(|_| bad("group id is not UTF-8"))?
        .to_owned();
    let (seq, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("entry ends inside the sequence number"))?;
    let (parent, rest) = rest
        .split_first_chunk::<32>()
        .ok_or_else(|| bad("entry ends inside the parent hash"))?;
    if rest.len() < SIG_LEN {
        return Err(bad("entry ends before its signature"));
    }
    Ok(EntryPrefix {
        group_id,
        seq: u64::from_be_bytes(*seq),
        parent: *parent,
    })
}

/// SHA-256 of an entry.
pub fn entry_hash(entry: &[u8]) -> [u8; 32] {
    Sha256::digest(entry).into()
}

/// Checks that `entry` may follow `current_head` (`None`: the group has no entry yet, so
/// this must be a genesis) and returns its (seq, hash). A wrong sequence number is
/// `BadEntry` (400); a parent that is not the head is `Conflict` (409): another child won.
/// The group id inside the entry is checked by the caller.
pub fn check_append(
    current_head: Option<(u64, [u8; 32])>,
    entry: &[u8],
) -> Result<(u64, [u8; 32]), DirectoryError> {
    let p = parse(entry)?;
    match current_head {
        None => {
            if p.seq != 0 || p.parent != [0; 32] {
                return Err(DirectoryError::BadEntry(
                    "a genesis entry has seq 0 and an all-zero parent".into(),
                ));
            }
        }
        Some((seq, hash)) => {
            let next = seq.checked_add(1).ok_or_else(|| {
                DirectoryError::BadEntry("the log is at its last sequence number".into())
            })?;
            if p.seq <= seq {
                // A child of an older entry: its parent has a child already.
                return Err(DirectoryError::Conflict(format!(
                    "entry {} exists already; the head is at {seq}",
                    p.seq
                )));
            }
            if p.seq != next {
                return Err(DirectoryError::BadEntry(format!(
                    "expected sequence number {next}, got {}",
                    p.seq
                )));
            }
            if p.parent != hash {
                return Err(DirectoryError::Conflict(
                    "the entry's parent is not the group's head".into(),
                ));
            }
        }
    }
    Ok((p.seq, entry_hash(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry with the given prefix and `body` followed by a dummy signature: enough for the
    /// prefix checks (the server's full check, and the real writer, are keystead-core's).
    fn build_for_tests(group_id: &str, seq: u64, parent: [u8; 32], body: &[u8]) -> Vec<u8> {
        let mut e = MAGIC.to_vec();
        let id = group_id.as_bytes();
        e.extend_from_slice(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_be_bytes());
        e.extend_from_slice(id);
        e.extend_from_slice(&seq.to_be_bytes());
        e.extend_from_slice(&parent);
        e.extend_from_slice(body);
        e.extend_from_slice(&[0x5a; SIG_LEN]);
        e
    }

    #[test]
    fn genesis_then_children() {
        let g = build_for_tests("g", 0, [0; 32], b"genesis");
        let (seq, h0) = check_append(None, &g).unwrap();
        assert_eq!((seq, h0), (0, entry_hash(&g)));
        let c1 = build_for_tests("g", 1, h0, b"one");
        assert_eq!(check_append(Some((0, h0)), &c1).unwrap().0, 1);
        // Genesis rules.
        assert!(matches!(
            check_append(None, &c1),
            Err(DirectoryError::BadEntry(_))
        ));
        // A sibling of c1 once c1 is the head: conflict.
        let h1 = entry_hash(&c1);
        let sibling = build_for_tests("g", 1, h0, b"other");
        assert!(matches!(
            check_append(Some((1, h1)), &sibling),
            Err(DirectoryError::Conflict(_))
        ));
        // Right seq, wrong parent: conflict; skipped seq: bad entry.
        let wrong_parent = build_for_tests("g", 2, [9; 32], b"x");
        assert!(matches!(
            check_append(Some((1, h1)), &wrong_parent),
            Err(DirectoryError::Conflict(_))
        ));
        let skipped = build_for_tests("g", 5, h1, b"x");
        assert!(matches!(
            check_append(Some((1, h1)), &skipped),
            Err(DirectoryError::BadEntry(_))
        ));
    }

    #[test]
    fn malformed_prefixes() {
        let good = build_for_tests("g", 0, [0; 32], b"");
        assert_eq!(parse(&good).unwrap().group_id, "g");
        for bad in [
            &b""[..],
            b"KSL\x02",
            &good[..good.len() - 1],
            &good[..10],
            b"KSL\x01\x00\x00",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
