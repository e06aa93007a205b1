//! At-least-once delivery from the spool to each tenant's sinks: one task per (tenant,
//! sink) with its own cursor, retries with exponential backoff and jitter, so one dead SIEM
//! delays only its own tenant's events. A supervisor starts tasks for new tenants and
//! sinks and stops those of removed sinks.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::sink::{Sink, SinkError};
use super::spool::{self, Cursor, Spool, TenantSpool};
use crate::util::random_unit;

/// A tenant's sinks by id.
pub type SinkList = Vec<(String, Arc<dyn Sink>)>;

/// Counters per (tenant, sink id).
type StatsMap = Arc<Mutex<HashMap<(String, String), Arc<SinkStats>>>>;

/// Where the delivery tasks find a tenant's sinks (`tenant_sinks::TenantSinks` in the
/// server).
pub trait SinkSource: Send + Sync + 'static {
    /// The tenant's sinks by id; an error keeps the current tasks running.
    fn sinks_for(&self, tenant: &str) -> Result<SinkList, SinkError>;
}

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// Events per batch at most.
    pub batch_events: usize,
    /// Bytes per batch at most (roughly).
    pub batch_bytes: usize,
    /// One attempt's timeout.
    pub timeout: Duration,
    /// First retry delay; doubles per failure…
    pub backoff_min: Duration,
    /// …up to this.
    pub backoff_max: Duration,
    /// How often sink configurations are re-read.
    pub rescan: Duration,
    /// After a batch smaller than half of `batch_events`, wait this long for more events.
    pub linger: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            batch_events: 500,
            batch_bytes: 1 << 20,
            timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(60),
            rescan: Duration::from_secs(2),
            linger: Duration::from_millis(200),
        }
    }
}

/// Counters of one (tenant, sink).
#[derive(Default)]
pub(crate) struct SinkStats {
    pub kind: Mutex<&'static str>,
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    /// Unix seconds of the oldest undelivered event (0 = caught up).
    pub oldest_pending: AtomicU64,
}

struct Task {
    sink: Arc<dyn Sink>,
    handle: JoinHandle<()>,
}

/// The running delivery: supervisor plus one task per (tenant, sink).
pub struct Delivery {
    stop: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    tasks: Arc<Mutex<HashMap<(String, String), Task>>>,
    pub(crate) stats: StatsMap,
}

fn cursor_file(sink_id: &str) -> String {
    format!("cursor-{}", spool::tenant_dir_name(sink_id))
}

impl Delivery {
    /// Starts delivering `spool` to the sinks `source` names.
    pub fn start(
        spool: Arc<Spool>,
        source: Arc<dyn SinkSource>,
        opts: DeliveryOptions,
    ) -> Arc<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let d = Arc::new(Self {
            stop,
            supervisor: Mutex::new(None),
            tasks: Arc::new(Mutex::new(HashMap::new())),
            stats: Arc::new(Mutex::new(HashMap::new())),
        });
        let handle = tokio::spawn(supervise(
            spool,
            source,
            opts,
            d.tasks.clone(),
            d.stats.clone(),
            stop_rx,
        ));
        *d.supervisor.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        d
    }

    /// Stops the tasks: each delivers what it can until caught up or `grace` passes.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let sup = self
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(s) = sup {
            s.abort();
            let _ = s.await;
        }
        let tasks: Vec<Task> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, t)| t)
            .collect();
        let deadline = tokio::time::Instant::now() + grace;
        for t in tasks {
            let mut h = t.handle;
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                h.abort();
            }
        }
    }
}

async fn supervise(
    spool: Arc<Spool>,
    source: Arc<dyn SinkSource>,
    opts: DeliveryOptions,
    tasks: Arc<Mutex<HashMap<(String, String), Task>>>,
    stats: StatsMap,
    stop: watch::Receiver<bool>,
) {
    loop {
        for ts in spool.tenant_spools() {
            let sinks = match source.sinks_for(&ts.tenant) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(tenant = %ts.tenant, error = %e, "audit sinks of a tenant unavailable");
                    continue;
                }
            };
            let mut tasks_g = tasks.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<String> = sinks.iter().map(|(id, _)| id.clone()).collect();
            // Stop tasks of sinks that were removed; their cursors no longer hold segments.
            let gone: Vec<(String, String)> = tasks_g
                .keys()
                .filter(|(t, id)| *t == ts.tenant && !ids.contains(id))
                .cloned()
                .collect();
            for key in gone {
                if let Some(t) = tasks_g.remove(&key) {
                    t.handle.abort();
                }
                ts.lock().cursors.remove(&key.1);
                let _ = std::fs::remove_file(ts.dir.join(cursor_file(&key.1)));
            }
            for (id, sink) in sinks {
                let key = (ts.tenant.clone(), id.clone());
                if let Some(t) = tasks_g.get(&key) {
                    if Arc::ptr_eq(&t.sink, &sink) && !t.handle.is_finished() {
                        continue;
                    }
                    t.handle.abort();
                }
                let st = stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(key.clone())
                    .or_default()
                    .clone();
                *st.kind.lock().unwrap_or_else(|p| p.into_inner()) = sink.kind();
                let handle = tokio::spawn(deliver_loop(
                    ts.clone(),
                    id,
                    sink.clone(),
                    opts.clone(),
                    st,
                    stop.clone(),
                ));
                tasks_g.insert(key, Task { sink, handle });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(opts.rescan) => {}
            () = spool.new_tenant.notified() => {}
        }
    }
}

/// The `time` of an event JSON (RFC 3339 UTC as the ES writes it), in Unix seconds.
fn event_unix_time(event: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(event).ok()?;
    let rest = &s[s.find("\"time\":\"")? + 8..];
    let (secs, _) = crate::util::parse_rfc3339_utc(&rest[..rest.find('"')?])?;
    u64::try_from(secs).ok()
}

async fn deliver_loop(
    ts: Arc<TenantSpool>,
    sink_id: String,
    sink: Arc<dyn Sink>,
    opts: DeliveryOptions,
    stats: Arc<SinkStats>,
    mut stop: watch::Receiver<bool>,
) {
    let file = cursor_file(&sink_id);
    let mut cur: Cursor =
        spool::load_cursor(&ts.dir, &file).unwrap_or_else(|| spool::start_cursor(&ts));
    ts.lock().cursors.insert(sink_id.clone(), cur);
    let mut failures = 0u32;
    let scale = sink.batch_scale().max(1);
    let (max_events, max_bytes) = (
        opts.batch_events.saturating_mul(scale),
        opts.batch_bytes.saturating_mul(scale),
    );
    loop {
        let stopping = *stop.borrow();
        // Register interest before reading so a commit between the read and the wait wakes us.
        let notified = ts.notify.notified();
        let read = {
            let ts = ts.clone();
            tokio::task::spawn_blocking(move || spool::read_batch(&ts, cur, max_events, max_bytes))
                .await
        };
        let batch = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(tenant = %ts.tenant, error = %e, "could not read the audit spool");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => return,
        };
        if batch.events.is_empty() {
            stats.oldest_pending.store(0, Ordering::Relaxed);
            if batch.next != cur {
                cur = batch.next;
                persist(&ts, &sink_id, &file, cur);
            }
            if stopping {
                return;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        if let Some(t) = batch.events.first().and_then(|e| event_unix_time(e)) {
            stats.oldest_pending.store(t, Ordering::Relaxed);
        }
        let started = Instant::now();
        let res = match tokio::time::timeout(opts.timeout, sink.deliver(&batch.events)).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::new(format!(
                "delivery timed out after {:?}",
                opts.timeout
            ))),
        };
        match res {
            Ok(()) => {
                failures = 0;
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .events
                    .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                cur = batch.next;
                persist(&ts, &sink_id, &file, cur);
                ts.collect_garbage();
                // A small batch means delivery caught up: let events gather for a moment
                // so the sink gets fewer, larger batches (one request or fsync each)
                // instead of one per commit.
                if batch.events.len() < max_events / 2 && !*stop.borrow() {
                    tokio::select! {
                        () = tokio::time::sleep(opts.linger) => {}
                        _ = stop.changed() => {}
                    }
                }
                tracing::debug!(tenant = %ts.tenant, sink = %sink_id, events = batch.events.len(),
                    elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), "audit batch delivered");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                stats.failures.fetch_add(1, Ordering::Relaxed);
                let exp = opts
                    .backoff_min
                    .saturating_mul(1u32 << failures.min(16).saturating_sub(1))
                    .min(opts.backoff_max);
                // Full jitter on the upper half, so tasks of many tenants do not align.
                let delay = e
                    .retry_after
                    .unwrap_or_else(|| exp.mul_f64(0.5 + 0.5 * random_unit()))
                    .min(opts.backoff_max);
                tracing::warn!(tenant = %ts.tenant, sink = %sink_id, kind = sink.kind(), error = %e,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "audit delivery failed; will retry");
                if stopping {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => { if *stop.borrow() { return; } }
                }
            }
        }
    }
}

fn persist(ts: &TenantSpool, sink_id: &str, file: &str, cur: Cursor) {
    ts.lock().cursors.insert(sink_id.to_owned(), cur);
    if let Err(e) = spool::store_cursor(&ts.dir, file, cur) {
        tracing::warn!(tenant = %ts.tenant, error = %e, "could not persist an audit cursor (events may be re-delivered)");
    }
}

/// Prometheus text of the spool and delivery: depth, oldest undelivered age and bytes per
/// tenant; events, batches and failures per sink.
pub(crate) fn render_metrics(spool: &Spool, delivery: Option<&Delivery>, now_unix: u64) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut out = String::new();
    let mut depth = String::new();
    let mut bytes = String::new();
    let mut dropped = String::new();
    let mut commits = String::new();
    let mut events = String::new();
    for ts in spool.tenant_spools() {
        let st = ts.lock();
        let front = st.segments.front().map_or(st.next_seq, |s| s.first_seq);
        let low = st
            .cursors
            .values()
            .map(|c| c.next_seq)
            .min()
            .unwrap_or(front);
        let t = esc(&ts.tenant);
        let _ = writeln!(
            depth,
            "keystead_audit_spool_depth{{tenant=\"{t}\"}} {}",
            st.next_seq.saturating_sub(low)
        );
        let _ = writeln!(
            bytes,
            "keystead_audit_spool_bytes{{tenant=\"{t}\"}} {}",
            st.bytes
        );
        let _ = writeln!(
            commits,
            "keystead_audit_commits_total{{tenant=\"{t}\"}} {}",
            st.commits
        );
        let _ = writeln!(
            events,
            "keystead_audit_events_total{{tenant=\"{t}\"}} {}",
            st.events
        );
        let _ = writeln!(
            dropped,
            "keystead_audit_events_dropped_total{{tenant=\"{t}\"}} {}",
            st.dropped
        );
    }
    out.push_str("# HELP keystead_audit_spool_depth Audit events not yet delivered to every sink of the tenant.\n# TYPE keystead_audit_spool_depth gauge\n");
    out.push_str(&depth);
    out.push_str("# HELP keystead_audit_spool_bytes Bytes of the tenant's audit spool segments.\n# TYPE keystead_audit_spool_bytes gauge\n");
    out.push_str(&bytes);
    out.push_str("# HELP keystead_audit_events_dropped_total Audit events dropped by the drop_oldest policy.\n# TYPE keystead_audit_events_dropped_total counter\n");
    out.push_str(&dropped);
    out.push_str("# HELP keystead_audit_commits_total Synced spool writes (group commits); events_total / commits_total is the mean batch.\n# TYPE keystead_audit_commits_total counter\n");
    out.push_str(&commits);
    out.push_str("# HELP keystead_audit_events_total Audit events made durable.\n# TYPE keystead_audit_events_total counter\n");
    out.push_str(&events);
    if let Some(d) = delivery {
        let stats = d.stats.lock().unwrap_or_else(|p| p.into_inner());
        let mut age: HashMap<String, u64> = HashMap::new();
        let mut lines = [String::new(), String::new(), String::new()];
        for ((tenant, sink), s) in stats.iter() {
            let labels = format!(
                "tenant=\"{}\",sink=\"{}\",kind=\"{}\"",
                esc(tenant),
                esc(sink),
                *s.kind.lock().unwrap_or_else(|p| p.into_inner())
            );
            let _ = writeln!(
                lines[0],
                "keystead_audit_delivered_events_total{{{labels}}} {}",
                s.events.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                lines[1],
                "keystead_audit_delivered_batches_total{{{labels}}} {}",
                s.batches.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                lines[2],
                "keystead_audit_delivery_failures_total{{{labels}}} {}",
                s.failures.load(Ordering::Relaxed)
            );
            let oldest = s.oldest_pending.load(Ordering::Relaxed);
            if oldest > 0 {
                let a = now_unix.saturating_sub(oldest);
                let e = age.entry(tenant.clone()).or_default();
                *e = (*e).max(a);
            } else {
                age.entry(tenant.clone()).or_default();
            }
        }
        out.push_str("# HELP keystead_audit_oldest_undelivered_seconds Age of the oldest audit event a sink of the tenant has not accepted.\n# TYPE keystead_audit_oldest_undelivered_seconds gauge\n");
        for (t, a) in &age {
            let _ = writeln!(
                out,
                "keystead_audit_oldest_undelivered_seconds{{tenant=\"{}\"}} {a}",
                esc(t)
            );
        }
        for (i, (name, help)) in [
            (
                "keystead_audit_delivered_events_total",
                "Audit events accepted by a sink.",
            ),
            (
                "keystead_audit_delivered_batches_total",
                "Audit batches accepted by a sink.",
            ),
            (
                "keystead_audit_delivery_failures_total",
                "Failed audit delivery attempts per sink.",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            out.push_str(&lines[i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_parses() {
        assert_eq!(
            event_unix_time(br#"{"id":"x","time":"1970-01-01T00:00:00Z"}"#),
            Some(0)
        );
        assert_eq!(
            event_unix_time(br#"{"time":"2026-11-22T10:00:00.123Z"}"#),
            Some(1_795_341_600)
        );
        assert_eq!(event_unix_time(br#"{"time":"bad"}"#), None);
    }
}
