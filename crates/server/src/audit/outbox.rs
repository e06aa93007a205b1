//! Events of operator commands run outside the server (`keystead tenant
//! rotate-derivation-secret`, …). A running server owns the spool, so such a command writes
//! its events to an **outbox** file of its own (`<data dir>/audit/outbox/<pid>-<time>.jsonl`,
//! each event synced before the command goes on, the file locked while the command runs);
//! the server imports every unlocked outbox file into the tenants' chains at start and
//! every few seconds, then deletes it. Imported events get a fresh `id` (the original is
//! kept in `detail.outbox_id`), so an import interrupted by a crash and repeated records
//! the operations again rather than two contents under one id.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{AuditEvent, AuditSink, JsonLinesSink, KmsInfo};

/// The outbox directory of a data dir.
pub fn outbox_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit").join("outbox")
}

/// Creates this process's outbox file (mode 0600), locked until the returned sink is
/// dropped; each event is appended and synced.
pub fn create(data_dir: &Path) -> std::io::Result<JsonLinesSink> {
    let dir = outbox_dir(data_dir);
    fs::create_dir_all(&dir)?;
    let name = format!(
        "{}-{}-{}.jsonl",
        crate::util::unix_now(),
        std::process::id(),
        hex::encode(crate::util::random_bytes::<4>())
    );
    let mut o = OpenOptions::new();
    o.create_new(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let file = o.open(dir.join(name))?;
    file.lock()?;
    Ok(JsonLinesSink::from_file(file))
}

/// Rebuilds an event from its JSON (an outbox line).
fn event_from_json(v: &Value) -> Option<AuditEvent> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let opt = |k: &str| v.get(k).filter(|x| !x.is_null()).cloned();
    let outcome = match v.get("outcome")?.as_str()? {
        "success" => "success",
        _ => "failure",
    };
    let kms = v.get("kms").and_then(|k| {
        Some(KmsInfo {
            config_id: k.get("config_id")?.as_str()?.to_owned(),
            key_version: k
                .get("key_version")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            provider: k.get("provider")?.as_str()?.to_owned(),
        })
    });
    let usize_of = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    let mut detail = match opt("detail") {
        Some(Value::Object(m)) => m,
        Some(other) => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            m
        }
        None => serde_json::Map::new(),
    };
    detail.insert("outbox_id".into(), Value::String(s("id")?));
    Some(AuditEvent {
        action: s("action")?,
        code: s("code"),
        count: usize_of("count"),
        detail: Some(Value::Object(detail)),
        es_instance: String::new(),
        event: opt("event"),
        failures: usize_of("failures"),
        id: super::new_event_id(),
        kms,
        metadata: v.get("metadata").cloned().unwrap_or(Value::Null),
        outcome,
        prev_hash: String::new(),
        principal: s("principal")?,
        seq: 0,
        tenant_id: s("tenant_id")?,
        time: s("time")?,
    })
}

/// Imports every outbox file no command holds any more into `sink` (chained with
/// `instance`), deleting each file once all its events are recorded. Returns the number of
/// events imported.
pub async fn import(data_dir: &Path, instance: &str, sink: &dyn AuditSink) -> usize {
    let dir = outbox_dir(data_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut n = 0;
    for path in files {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // Still held by a running command: next time.
        if file.try_lock().is_err() {
            continue;
        }
        let mut ok = true;
        for line in BufReader::new(&file).lines() {
            let Ok(line) = line else {
                ok = false;
                break;
            };
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| event_from_json(&v));
            let Some(mut ev) = parsed else {
                // A torn last line of a crashed command: it never finished that write.
                tracing::warn!(file = %path.display(), "unreadable operator audit event skipped");
                continue;
            };
            ev.es_instance = instance.to_owned();
            if let Err(e) = sink.record(ev).await {
                tracing::error!(error = %e, "could not import operator audit events; will retry");
                ok = false;
                break;
            }
            n += 1;
        }
        if ok && let Err(e) = fs::remove_file(&path) {
            tracing::error!(error = %e, file = %path.display(), "could not delete an imported outbox file");
        }
    }
    n
}
