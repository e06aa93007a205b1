//! `kms::kmip::ttlv::decode` on arbitrary bytes: the KMIP adapter's parser of whatever a
//! (possibly hostile) KMIP server sends back.
//!
//! On success: the item encodes again, and that encoding decodes to the same item and is
//! as long as the input (the decoder accepts exactly one item spanning the input, with its
//! padding present). Errors are fine; panics, hangs and huge allocations are findings.
#![no_main]

use keystead_server::kms::kmip::ttlv::{MAX_MESSAGE, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(item) = decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_MESSAGE + 8, "accepted an oversized message");
    let mut again = Vec::new();
    item.encode(&mut again).expect("a decoded item encodes");
    assert_eq!(again.len(), data.len(), "re-encoding changed the length");
    assert_eq!(decode(&again).expect("the re-encoding decodes"), item);
});
