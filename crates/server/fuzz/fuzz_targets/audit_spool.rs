//! The audit parsers on arbitrary bytes: the spool's segment reader (what recovery reads
//! back after a crash or disk damage) and `keystead audit verify` (a stream a SIEM, or an
//! attacker, hands the tenant).
//!
//! A record that parses re-frames to the same bytes; a header that parses re-encodes to
//! the same bytes; verify never panics. Errors are fine; panics, hangs and huge
//! allocations are findings.
#![no_main]

use keystead_server::audit::chain;
use keystead_server::audit::spool::{frame, header_bytes, parse_header, parse_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((no, first, prev)) = parse_header(data) {
        assert_eq!(&header_bytes(no, first, &prev)[..], &data[..64]);
    }
    let mut off = 0;
    while off < data.len() {
        match parse_record(&data[off..]) {
            Ok(Some(r)) => {
                let mut again = Vec::new();
                frame(&mut again, r.seq, r.payload);
                assert_eq!(&again[..], &data[off..off + r.size]);
                off += r.size;
            }
            _ => break,
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let report = chain::verify(text.lines(), &[]);
        let _ = report.render();
    }
});
