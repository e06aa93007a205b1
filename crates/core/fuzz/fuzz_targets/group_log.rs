//! `groups::LogEntry::parse` and `GroupState` on arbitrary bytes.
//!
//! The input is read as a sequence of `u32`-length-prefixed entries. Each entry that parses
//! must round-trip byte for byte and hash to SHA-256 of its bytes; then the sequence is
//! verified as a whole log (`GroupState::from_log`), and each entry is also offered as the
//! next entry of the fixed two-member group of `group_fixture` (as genesis, and applied to its state). None of
//! this may panic; a state that verifies must be internally consistent.
#![no_main]

use std::sync::OnceLock;

use keystead_core::groups::{GroupState, LogEntry};
use keystead_core_fuzz::group_fixture;
use libfuzzer_sys::fuzz_target;

fn fixed_state() -> &'static GroupState {
    static STATE: OnceLock<GroupState> = OnceLock::new();
    STATE.get_or_init(|| group_fixture().state)
}

fuzz_target!(|data: &[u8]| {
    let mut entries = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        let take = n.min(rest.len());
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        if let Ok(e) = LogEntry::parse(chunk) {
            assert_eq!(e.to_bytes(), chunk, "entry round trip");
            assert_eq!(e.hash(), keystead_core::__private::sha256(&[chunk]));
            let _ = GroupState::genesis(&e);
            let mut s = fixed_state().clone();
            if s.apply(&e).is_ok() {
                assert_eq!(s.seq(), 1);
                assert_eq!(s.head(), &e.hash());
            }
            entries.push(e);
        }
    }
    if let Ok(s) = GroupState::from_log(&entries, None) {
        assert_eq!(s.seq() as usize + 1, entries.len());
        assert_eq!(s.check_checkpoint(&s.checkpoint()), Ok(()));
        assert!(s.admins().count() >= 1);
    }
});
