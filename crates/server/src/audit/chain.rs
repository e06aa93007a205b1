//! Tamper evidence of the audit stream: a hash chain per (tenant, ES instance) and signed
//! checkpoints, and the verifier a tenant runs over what its SIEM received
//! (`keystead audit verify`).
//!
//! * An event's hash is `SHA-256("keystead/v1/audit-event\0" ‖ canonical JSON)`, where the
//!   canonical JSON is the event object with keys sorted and no whitespace (serde_json's
//!   number and string forms). The spool writes events in exactly that form, so the bytes a
//!   sink forwards are the hashed bytes; a SIEM that re-orders keys or re-indents does not
//!   break verification.
//! * Event `seq` counts from 1 per (tenant, instance); `prev_hash` is the hex hash of the
//!   event before (64 zeros for seq 1).
//! * A checkpoint is itself an event of the chain (`action: "checkpoint"`) whose `detail`
//!   carries `covers_seq`, `head_hash` (the hash of event `covers_seq`), the instance's
//!   Ed25519 `public_key` and a `signature` over
//!   `"keystead/v1/audit-checkpoint\0" ‖ lp16(tenant) ‖ lp16(instance) ‖ u64be(covers_seq)
//!   ‖ head_hash`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first event of a chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// Action of a checkpoint event.
pub const CHECKPOINT: &str = "checkpoint";

/// Action of the event announcing events dropped by the `drop_oldest` policy.
pub const DROPPED: &str = "audit_events_dropped";

/// Action of the event announcing spool bytes discarded as torn or corrupt.
pub const DAMAGED: &str = "audit_spool_damaged";

/// The hash of one event given its canonical JSON bytes.
pub fn event_hash(canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keystead/v1/audit-event\0");
    h.update(canonical);
    h.finalize().into()
}

/// Writes `v` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace.
pub fn canonical(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Strings cannot fail to serialize.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn lp16(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&b[..usize::from(n)]);
}

/// The message a checkpoint signs.
pub fn checkpoint_message(
    tenant: &str,
    instance: &str,
    covers_seq: u64,
    head: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(96 + tenant.len() + instance.len());
    m.extend_from_slice(b"keystead/v1/audit-checkpoint\0");
    lp16(&mut m, tenant);
    lp16(&mut m, instance);
    m.extend_from_slice(&covers_seq.to_be_bytes());
    m.extend_from_slice(head);
    m
}

/// The `detail` of a checkpoint event covering `covers_seq` whose hash is `head`.
pub fn checkpoint_detail(
    key: &SigningKey,
    tenant: &str,
    instance: &str,
    covers_seq: u64,
    head: &[u8; 32],
) -> Value {
    let sig = key.sign(&checkpoint_message(tenant, instance, covers_seq, head));
    serde_json::json!({
        "covers_seq": covers_seq,
        "head_hash": hex::encode(head),
        "public_key": hex::encode(key.verifying_key().as_bytes()),
        "signature": hex::encode(sig.to_bytes()),
    })
}

/// Finds the event object in one delivered line: a bare event, a Splunk HEC envelope
/// (`{"event": {...}}`), or a syslog line whose message is the event JSON.
pub fn parse_line(line: &str) -> Option<Map<String, Value>> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let pick = |v: Value| -> Option<Map<String, Value>> {
        let Value::Object(mut m) = v else { return None };
        if m.contains_key("seq") && m.contains_key("prev_hash") {
            return Some(m);
        }
        match m.remove("event") {
            Some(Value::Object(inner)) if inner.contains_key("seq") => Some(inner),
            _ => None,
        }
    };
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return pick(v);
    }
    // Syslog: the message follows the structured data; try each '{' from the left.
    for (i, _) in line.match_indices('{') {
        if let Ok(v) = serde_json::from_str::<Value>(&line[i..]) {
            return pick(v);
        }
    }
    None
}

/// One problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Events missing from a chain (`first..=last`), not announced by a drop event.
    Gap {
        /// Chain (tenant, instance).
        chain: (String, String),
        /// First missing seq.
        first: u64,
        /// Last missing seq.
        last: u64,
    },
    /// Events the ES announced as dropped by the `drop_oldest` policy or as lost spool bytes.
    Announced {
        /// Chain (tenant, instance).
        chain: (String, String),
        /// First missing seq.
        first: u64,
        /// Last missing seq.
        last: u64,
    },
    /// An event whose hash does not match the next event's `prev_hash` (it, or the chain
    /// link, was edited).
    Edited {
        /// Chain (tenant, instance).
        chain: (String, String),
        /// Seq of the event that does not match.
        seq: u64,
    },
    /// Two different events with one seq, or one id with two contents.
    Conflict {
        /// Chain (tenant, instance).
        chain: (String, String),
        /// The seq concerned.
        seq: u64,
    },
    /// An event delivered after a later one of its chain (not a re-delivery).
    Reordered {
        /// Chain (tenant, instance).
        chain: (String, String),
        /// Seq of the event that came late.
        seq: u64,
    },
    /// A checkpoint whose signature or head does not verify, or by an untrusted key.
    BadCheckpoint {
        /// Chain (tenant, instance).
        chain: (String, String),
        /// Seq of the checkpoint event.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// A line that holds no audit event.
    Unparsable {
        /// 1-based line number.
        line: usize,
    },
}

/// What `verify` concluded.
#[derive(Debug, Default)]
pub struct Report {
    /// Events read (with duplicates).
    pub events: usize,
    /// Re-deliveries of an identical event (at-least-once delivery; harmless).
    pub duplicates: usize,
    /// Per chain: (highest seq seen, highest seq covered by a verified checkpoint).
    pub chains: BTreeMap<(String, String), (u64, u64)>,
    /// Problems, in the order found.
    pub findings: Vec<Finding>,
    /// Checkpoints verified.
    pub checkpoints: usize,
}

impl Report {
    /// True when nothing is wrong (announced drops are reported but are not tampering).
    pub fn ok(&self) -> bool {
        self.findings
            .iter()
            .all(|f| matches!(f, Finding::Announced { .. }))
    }

    /// A human-readable summary.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} events read, {} duplicate deliveries, {} checkpoints verified",
            self.events, self.duplicates, self.checkpoints
        );
        for ((tenant, instance), (last, covered)) in &self.chains {
            let _ = write!(
                s,
                "chain tenant={tenant:?} instance={instance:?}: seq 1..={last}, signed up to {covered}"
            );
            if last > covered {
                let _ = write!(
                    s,
                    " ({} newest events not yet covered by a checkpoint)",
                    last - covered
                );
            }
            s.push('\n');
        }
        for f in &self.findings {
            let line = match f {
                Finding::Gap { chain, first, last } => {
                    format!("GAP {chain:?}: events {first}..={last} missing")
                }
                Finding::Announced { chain, first, last } => format!(
                    "announced loss {chain:?}: events {first}..={last} dropped or damaged in the ES spool (an event says so)"
                ),
                Finding::Edited { chain, seq } => {
                    format!("EDITED {chain:?}: event {seq} does not match the chain")
                }
                Finding::Conflict { chain, seq } => {
                    format!("CONFLICT {chain:?}: two different events claim seq {seq}")
                }
                Finding::Reordered { chain, seq } => {
                    format!("REORDERED {chain:?}: event {seq} arrived after a later event")
                }
                Finding::BadCheckpoint { chain, seq, reason } => {
                    format!("BAD CHECKPOINT {chain:?} at {seq}: {reason}")
                }
                Finding::Unparsable { line } => format!("line {line}: no audit event"),
            };
            s.push_str(&line);
            s.push('\n');
        }
        s.push_str(if self.ok() { "OK\n" } else { "FAILED\n" });
        s
    }
}

struct Seen {
    hash: [u8; 32],
    prev: Option<[u8; 32]>,
    checkpoint: Option<Map<String, Value>>,
    announces: Option<(u64, u64)>,
}

/// Verifies a delivered stream (one event per line, in arrival order). `trusted` are the
/// ES instances' checkpoint public keys the tenant pinned; empty = accept the key a
/// checkpoint names (integrity without authenticity).
pub fn verify<'a>(lines: impl IntoIterator<Item = &'a str>, trusted: &[VerifyingKey]) -> Report {
    let mut report = Report::default();
    let mut by_id: HashMap<String, [u8; 32]> = HashMap::new();
    let mut chains: BTreeMap<(String, String), BTreeMap<u64, Seen>> = BTreeMap::new();
    let mut max_seq: HashMap<(String, String), u64> = HashMap::new();

    for (n, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some(ev) = parse_line(line) else {
            report.findings.push(Finding::Unparsable { line: n + 1 });
            continue;
        };
        report.events += 1;
        let s = |k: &str| {
            ev.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let chain = (s("tenant_id"), s("es_instance"));
        let (Some(seq), Some(prev)) = (
            ev.get("seq").and_then(Value::as_u64),
            ev.get("prev_hash")
                .and_then(Value::as_str)
                .and_then(decode32),
        ) else {
            report.findings.push(Finding::Unparsable { line: n + 1 });
            continue;
        };
        let canon = canonical(&Value::Object(ev.clone()));
        let hash = event_hash(&canon);
        let id = s("id");
        if let Some(h) = by_id.get(&id) {
            if *h == hash {
                report.duplicates += 1;
            } else {
                report.findings.push(Finding::Conflict { chain, seq });
            }
            continue;
        }
        by_id.insert(id, hash);
        let top = max_seq.entry(chain.clone()).or_insert(0);
        if seq < *top {
            report.findings.push(Finding::Reordered {
                chain: chain.clone(),
                seq,
            });
        }
        *top = (*top).max(seq);
        let action = s("action");
        let detail = ev.get("detail").and_then(Value::as_object);
        let announces = (action == DROPPED || action == DAMAGED)
            .then(|| {
                let d = detail?;
                Some((d.get("first_seq")?.as_u64()?, d.get("last_seq")?.as_u64()?))
            })
            .flatten();
        let seen = Seen {
            hash,
            prev: Some(prev),
            checkpoint: (action == CHECKPOINT).then(|| detail.cloned().unwrap_or_default()),
            announces,
        };
        let entries = chains.entry(chain.clone()).or_default();
        if let Some(other) = entries.get(&seq) {
            if other.hash != hash {
                report.findings.push(Finding::Conflict { chain, seq });
            }
            continue;
        }
        entries.insert(seq, seen);
    }

    for (chain, entries) in &chains {
        let announced: Vec<(u64, u64)> = entries.values().filter_map(|e| e.announces).collect();
        let mut covered = 0u64;
        let mut expected = 1u64;
        let mut prev_hash: Option<[u8; 32]> = None;
        for (&seq, e) in entries {
            if seq > expected {
                let (first, last) = (expected, seq - 1);
                let is_announced = announced.iter().any(|&(a, b)| a <= first && last <= b);
                report.findings.push(if is_announced {
                    Finding::Announced {
                        chain: chain.clone(),
                        first,
                        last,
                    }
                } else {
                    Finding::Gap {
                        chain: chain.clone(),
                        first,
                        last,
                    }
                });
                prev_hash = None;
            }
            if seq == 1 && e.prev != Some(GENESIS) {
                report.findings.push(Finding::Edited {
                    chain: chain.clone(),
                    seq,
                });
            }
            if let (Some(p), Some(claimed)) = (prev_hash, e.prev)
                && p != claimed
            {
                report.findings.push(Finding::Edited {
                    chain: chain.clone(),
                    seq: seq - 1,
                });
            }
            if let Some(cp) = &e.checkpoint {
                match check_checkpoint(chain, cp, entries, trusted) {
                    Ok(c) => {
                        report.checkpoints += 1;
                        // A checkpoint right after the head it signs covers itself too:
                        // its meaningful fields are the signed ones.
                        let c = if c + 1 == seq { seq } else { c };
                        covered = covered.max(c);
                    }
                    Err(reason) => report.findings.push(Finding::BadCheckpoint {
                        chain: chain.clone(),
                        seq,
                        reason,
                    }),
                }
            }
            prev_hash = Some(e.hash);
            expected = seq + 1;
        }
        report
            .chains
            .insert(chain.clone(), (expected.saturating_sub(1), covered));
    }
    report
}

fn check_checkpoint(
    (tenant, instance): &(String, String),
    cp: &Map<String, Value>,
    entries: &BTreeMap<u64, Seen>,
    trusted: &[VerifyingKey],
) -> Result<u64, String> {
    let covers = cp
        .get("covers_seq")
        .and_then(Value::as_u64)
        .ok_or("no covers_seq")?;
    let head = cp
        .get("head_hash")
        .and_then(Value::as_str)
        .and_then(decode32)
        .ok_or("no head_hash")?;
    let key = cp
        .get("public_key")
        .and_then(Value::as_str)
        .and_then(decode32)
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .ok_or("no valid public_key")?;
    let sig = cp
        .get("signature")
        .and_then(Value::as_str)
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or("no valid signature")?;
    if !trusted.is_empty() && !trusted.contains(&key) {
        return Err(format!(
            "signed by {} which is not a trusted key",
            hex::encode(key.as_bytes())
        ));
    }
    key.verify_strict(&checkpoint_message(tenant, instance, covers, &head), &sig)
        .map_err(|_| "signature does not verify".to_owned())?;
    match entries.get(&covers) {
        Some(e) if e.hash == head => Ok(covers),
        Some(_) => Err(format!("event {covers} differs from the signed head")),
        // The covered event is missing: the gap is reported on its own.
        None => Ok(covers),
    }
}

fn decode32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// The `VerifyingKey` printed by `keystead audit public-key` (hex).
pub fn parse_public_key(hex_key: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&decode32(hex_key.trim())?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"\u00e9\n"}}"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical(&v)).unwrap(),
            "{\"a\":{\"c\":\"é\\n\",\"d\":[{\"y\":2,\"z\":1}]},\"b\":1}"
        );
    }

    #[test]
    fn parse_line_accepts_bare_hec_and_syslog_forms() {
        let ev = json!({"seq": 1, "prev_hash": "00", "id": "x"});
        let bare = ev.to_string();
        let hec = json!({"time": 1, "event": ev}).to_string();
        let syslog = format!(
            r#"<110>1 2026-11-22T10:00:00Z es keystead - wrap [keystead@32473 id="x" a="{{]"] {bare}"#
        );
        for l in [bare.as_str(), hec.as_str(), syslog.as_str()] {
            assert_eq!(parse_line(l).unwrap().get("id"), Some(&json!("x")), "{l}");
        }
        assert!(parse_line("not json").is_none());
        assert!(parse_line(r#"{"other":1}"#).is_none());
    }

    #[test]
    fn checkpoint_message_binds_every_field() {
        let h = [7u8; 32];
        let base = checkpoint_message("t", "i", 5, &h);
        assert_ne!(base, checkpoint_message("t2", "i", 5, &h));
        assert_ne!(base, checkpoint_message("t", "i2", 5, &h));
        assert_ne!(base, checkpoint_message("t", "i", 6, &h));
        assert_ne!(base, checkpoint_message("t", "i", 5, &[8u8; 32]));
        // Length prefixes: ("ab","c") and ("a","bc") differ.
        assert_ne!(
            checkpoint_message("ab", "c", 1, &h),
            checkpoint_message("a", "bc", 1, &h)
        );
    }
}
