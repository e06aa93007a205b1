//! Frozen vectors of the audit formats (docs/AUDIT.md): the canonical event form and its
//! chain hash, the checkpoint message and signature, a segment header and a record. A
//! change here breaks every tenant's verifier and every spool on disk: it needs a new
//! format version, not a new vector.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ed25519_dalek::SigningKey;
use keystead_server::audit::chain::{self, canonical, checkpoint_message, event_hash};
use keystead_server::audit::spool::{frame, header_bytes, parse_header, parse_record};
use keystead_server::audit::{AuditEvent, KmsInfo};
use serde_json::{Value, json};

fn event() -> AuditEvent {
    AuditEvent {
        action: "unwrap".into(),
        code: Some("kms_denied".into()),
        count: None,
        detail: None,
        es_instance: "es-1".into(),
        event: None,
        failures: None,
        id: "00112233445566778899aabbccddeeff".into(),
        kms: Some(KmsInfo {
            config_id: "aws-prod".into(),
            key_version: Some(3),
            provider: "aws".into(),
        }),
        metadata: json!({ "requesting_id": "user-17", "custom": { "k": "v" } }),
        outcome: "failure",
        prev_hash: "00".repeat(32),
        principal: "svc-billing".into(),
        seq: 1,
        tenant_id: "acme".into(),
        time: "2026-11-22T12:00:00Z".into(),
    }
}

const CANONICAL: &str = concat!(
    r#"{"action":"unwrap","code":"kms_denied","es_instance":"es-1","#,
    r#""id":"00112233445566778899aabbccddeeff","#,
    r#""kms":{"config_id":"aws-prod","key_version":3,"provider":"aws"},"#,
    r#""metadata":{"custom":{"k":"v"},"requesting_id":"user-17"},"outcome":"failure","#,
    r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
    r#""principal":"svc-billing","seq":1,"tenant_id":"acme","time":"2026-11-22T12:00:00Z"}"#
);

#[test]
fn event_canonical_form_and_hash() {
    let bytes = serde_json::to_vec(&event()).unwrap();
    assert_eq!(std::str::from_utf8(&bytes).unwrap(), CANONICAL);
    let reparsed: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(canonical(&reparsed), bytes);
    assert_eq!(
        hex::encode(event_hash(&bytes)),
        "38931edbb8c51e5592df4d0fd3873c5ce6599abdc43085ee7934f0102990532a"
    );
}

#[test]
fn checkpoint_message_and_signature() {
    let head = [0x11u8; 32];
    let m = checkpoint_message("acme", "es-1", 7, &head);
    assert_eq!(
        hex::encode(&m),
        "6b657973746561642f76312f61756469742d636865636b706f696e7400000461636d65000465732d3100000000000000071111111111111111111111111111111111111111111111111111111111111111"
    );
    let key = SigningKey::from_bytes(&[1u8; 32]);
    let d = chain::checkpoint_detail(&key, "acme", "es-1", 7, &head);
    assert_eq!(
        d["public_key"],
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    );
    assert_eq!(
        d["signature"],
        "ebf674ad1c5c3cfe8b534fee69f8cff2f539f7dc3bee26c7ccbfa6a6e4e7dd3a12790882bd800fa24e1cc0b08cf9622f4ee124f6a4a45048664ec04c2f634601"
    );
    assert_eq!(d["covers_seq"], 7);
    assert_eq!(d["head_hash"], "11".repeat(32));
}

#[test]
fn segment_header_and_record() {
    let h = header_bytes(2, 1001, &[0xab; 32]);
    assert_eq!(
        hex::encode(h),
        "4b535441554430310200000000000000e903000000000000abababababababababababababababababababababababababababababababab3134776dfbf76002"
    );
    assert_eq!(parse_header(&h), Some((2, 1001, [0xab; 32])));
    let mut rec = Vec::new();
    frame(&mut rec, 1001, br#"{"a":1}"#);
    assert_eq!(
        hex::encode(&rec),
        "07000000e903000000000000b518d7eabb517e967b2261223a317d"
    );
    let r = parse_record(&rec).unwrap().unwrap();
    assert_eq!(
        (r.seq, r.payload, r.size),
        (1001, &br#"{"a":1}"#[..], rec.len())
    );
}
