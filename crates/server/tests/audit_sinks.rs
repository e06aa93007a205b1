//! The audit sinks against real receivers on 127.0.0.1: an HTTP webhook and a Splunk HEC
//! double (axum), a real rsyslog (`imtcp` + `mmpstrucdata`), a TLS syslog receiver
//! (tokio-rustls, rcgen CA), and files.
//!
//! rsyslog is required: without `rsyslogd` the syslog test fails with the command to
//! install it (CI installs the Debian package `rsyslog`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use common::conformance::{free_port, wait_for_port};
use common::pki::Ca;
use keystead_server::audit::sink::{SinkContext, SinkSettings, build};
use keystead_server::kms::net::OutboundPolicy;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// A guard against hangs, never a timing assertion.
const HANG: Duration = Duration::from_secs(20);

fn ctx(outbound: OutboundPolicy) -> SinkContext {
    SinkContext {
        outbound,
        // Created by the file sink on its first delivery.
        file_dir: std::env::temp_dir().join(format!(
            "keystead-sinks-files-{}-{}",
            std::process::id(),
            hex::encode(keystead_server::util::random_bytes::<6>())
        )),
        dev: false,
        timeout: Duration::from_secs(5),
        instance: "es-test-1".into(),
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "keystead-sinks-{what}-{}-{}",
        std::process::id(),
        hex::encode(keystead_server::util::random_bytes::<6>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings(v: Value) -> SinkSettings {
    SinkSettings::from_json(v.to_string().as_bytes()).unwrap()
}

/// Events as the spool holds them: compact JSON bytes, one with characters that need
/// escaping in syslog structured data and non-ASCII text; one written with spaces, to
/// show that bytes (not a re-serialisation) are forwarded.
fn events() -> Vec<Arc<[u8]>> {
    let a = json!({
        "id": "ev-1",
        "time": "2026-01-02T03:04:05.123Z",
        "tenant_id": "ac\"me\\]",
        "es_instance": "es-test-1",
        "seq": 1,
        "prev_hash": "00",
        "principal": "sk_1",
        "action": "unwrap",
        "outcome": "failure",
        "code": "kms_denied",
        "metadata": {"note": "quote \" backslash \\ bracket ] caf\u{e9} \u{1f511}"}
    });
    let b = br#"{"id": "ev-2", "time": "2026-01-02T03:04:06Z", "tenant_id": "acme", "seq": 2, "action": "wrap", "outcome": "success", "metadata": {}}"#;
    vec![
        Arc::from(serde_json::to_vec(&a).unwrap().as_slice()),
        Arc::from(&b[..]),
    ]
}

// ---------------------------------------------------------------- HTTP receivers

#[derive(Default)]
struct Received {
    requests: Mutex<Vec<(HeaderMap, Bytes)>>,
    /// The status to answer (200 when 0).
    status: AtomicU16,
}

async fn receive(
    State(r): State<Arc<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    r.requests.lock().unwrap().push((headers, body));
    match r.status.load(Ordering::SeqCst) {
        0 => (
            StatusCode::OK,
            [("retry-after", "0")],
            r#"{"text":"Success","code":0}"#,
        ),
        429 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "7")],
            "slow down, body-secret",
        ),
        s => (
            StatusCode::from_u16(s).unwrap(),
            [("retry-after", "1")],
            "internal body-secret",
        ),
    }
}

async fn http_receiver(path: &str) -> (String, Arc<Received>) {
    let r = Arc::new(Received::default());
    let app = Router::new()
        .route(path, post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}{path}"), r)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn webhook_posts_batches_as_json_arrays_of_unchanged_events() {
    let (url, rx) = http_receiver("/hook").await;
    let sink = build(
        &settings(json!({"kind": "webhook", "url": url, "token": "tok-SECRET-1"})),
        &ctx(OutboundPolicy::allow_loopback_for_tests()),
    )
    .unwrap();
    assert_eq!(sink.kind(), "webhook");
    let ev = events();
    sink.deliver(&ev).await.unwrap();
    {
        let reqs = rx.requests.lock().unwrap();
        assert_eq!(reqs.len(), 1);
        let (h, body) = &reqs[0];
        assert_eq!(header(h, "authorization"), "Bearer tok-SECRET-1");
        assert_eq!(header(h, "content-type"), "application/json");
        // Exactly `[e1,e2]`, each event's bytes unchanged.
        let mut want = b"[".to_vec();
        want.extend_from_slice(&ev[0]);
        want.push(b',');
        want.extend_from_slice(&ev[1]);
        want.push(b']');
        assert_eq!(&body[..], &want[..]);
        let arr: Vec<Value> = serde_json::from_slice(body).unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[1]["id"], "ev-2");
    }

    // 500: an error naming the status, never the body or the token.
    rx.status.store(500, Ordering::SeqCst);
    let e = sink.deliver(&ev).await.unwrap_err();
    assert!(e.message.contains("500"), "{}", e.message);
    assert!(e.retry_after.is_none());
    for leak in ["body-secret", "SECRET-1"] {
        assert!(!e.message.contains(leak), "{}", e.message);
        assert!(!format!("{e:?}").contains(leak));
    }
    // 429 and 503 carry Retry-After.
    rx.status.store(429, Ordering::SeqCst);
    let e = sink.deliver(&ev).await.unwrap_err();
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)), "{}", e.message);
    rx.status.store(503, Ordering::SeqCst);
    let e = sink.deliver(&ev).await.unwrap_err();
    assert_eq!(e.retry_after, Some(Duration::from_secs(1)), "{}", e.message);
    // 4xx other than 429: an error without Retry-After.
    rx.status.store(401, Ordering::SeqCst);
    let e = sink.deliver(&ev).await.unwrap_err();
    assert!(
        e.message.contains("401") && e.retry_after.is_none(),
        "{}",
        e.message
    );
    rx.status.store(0, Ordering::SeqCst);

    // Without a token: no Authorization header.
    let bare = build(
        &settings(json!({"kind": "webhook", "url": url})),
        &ctx(OutboundPolicy::allow_loopback_for_tests()),
    )
    .unwrap();
    bare.deliver(&ev[..1]).await.unwrap();
    let reqs = rx.requests.lock().unwrap();
    assert!(reqs.last().unwrap().0.get("authorization").is_none());
}

#[tokio::test]
async fn webhook_transport_errors_and_the_outbound_policy() {
    // Nothing listens: a transport error.
    let port = free_port();
    let sink = build(
        &settings(
            json!({"kind": "webhook", "url": format!("http://127.0.0.1:{port}/x?key=q-SECRET")}),
        ),
        &ctx(OutboundPolicy::allow_loopback_for_tests()),
    )
    .unwrap();
    let e = sink.deliver(&events()).await.unwrap_err();
    assert!(!e.message.contains("q-SECRET"), "{}", e.message);

    // The default policy: no plain HTTP, no loopback or private literals.
    let strict = ctx(OutboundPolicy::default());
    for url in [
        "http://127.0.0.1:1/",
        "https://127.0.0.1:1/",
        "https://10.1.2.3/hook",
        "https://[::1]:8443/",
        "https://169.254.169.254/latest",
    ] {
        let s = settings(json!({"kind": "webhook", "url": url}));
        assert!(build(&s, &strict).is_err(), "{url} was accepted");
    }
    // A name that resolves to loopback passes the build but is refused on connect.
    let (url, rx) = http_receiver("/hook").await;
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    let plain_only = ctx(OutboundPolicy {
        allow_plain_http: true,
        ..OutboundPolicy::default()
    });
    let s = settings(json!({"kind": "webhook", "url": format!("http://localhost:{port}/hook")}));
    let sink = build(&s, &plain_only).unwrap();
    let e = sink.deliver(&events()).await.unwrap_err();
    assert!(e.message.contains("non-public"), "{}", e.message);
    assert!(rx.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn splunk_hec_wraps_each_event_unchanged() {
    let (url, rx) = http_receiver("/services/collector/event").await;
    let sink = build(
        &settings(json!({
            "kind": "splunk_hec", "url": url, "token": "hec-SECRET-2", "index": "audit"
        })),
        &ctx(OutboundPolicy::allow_loopback_for_tests()),
    )
    .unwrap();
    assert_eq!(sink.kind(), "splunk_hec");
    let ev = events();
    sink.deliver(&ev).await.unwrap();
    {
        let reqs = rx.requests.lock().unwrap();
        let (h, body) = &reqs[0];
        assert_eq!(header(h, "authorization"), "Splunk hec-SECRET-2");
        let objs: Vec<Value> = serde_json::Deserializer::from_slice(body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(objs.len(), 2);
        for (o, e) in objs.iter().zip(&ev) {
            assert_eq!(o["event"], serde_json::from_slice::<Value>(e).unwrap());
            assert_eq!(o["host"], "es-test-1");
            assert_eq!(o["source"], "keystead");
            assert_eq!(o["sourcetype"], "keystead:audit");
            assert_eq!(o["index"], "audit");
        }
        assert_eq!(objs[0]["time"].as_f64(), Some(1_767_323_045.123));
        assert_eq!(objs[1]["time"].as_f64(), Some(1_767_323_046.0));
        // The event bytes themselves are in the body, unchanged.
        let text = std::str::from_utf8(body).unwrap();
        for e in &ev {
            assert!(text.contains(&format!("\"event\":{}}}", std::str::from_utf8(e).unwrap())));
        }
    }
    rx.status.store(403, Ordering::SeqCst);
    let e = sink.deliver(&ev).await.unwrap_err();
    assert!(e.message.contains("403"), "{}", e.message);
    assert!(!e.message.contains("SECRET") && !e.message.contains("body-secret"));
}

// ---------------------------------------------------------------- rsyslog

fn rsyslogd() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("rsyslogd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/rsyslogd")])
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "rsyslogd is missing: install it (`apt-get install -y rsyslog`); the syslog \
                 sink is tested against a real rsyslog"
            )
        })
}

/// rsyslog receiving RFC 6587 frames on `port` and writing, per message, a tab-separated
/// line: raw structured data, MSGID, HOSTNAME, APP-NAME, severity, facility, the SD as
/// parsed by mmpstrucdata (JSON), and MSG.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Rsyslog {
    async fn start(dir: &Path, port: u16) -> Self {
        let conf = format!(
            r#"global(workDirectory="{dir}" processInternalMessages="on" maxMessageSize="64k")
module(load="imtcp")
module(load="mmpstrucdata")
template(name="fields" type="list") {{
  property(name="structured-data") constant(value="\t")
  property(name="msgid") constant(value="\t")
  property(name="hostname") constant(value="\t")
  property(name="app-name") constant(value="\t")
  property(name="syslogseverity") constant(value="\t")
  property(name="syslogfacility") constant(value="\t")
  property(name="$!rfc5424-sd") constant(value="\t")
  property(name="msg") constant(value="\n")
}}
ruleset(name="keystead") {{
  action(type="mmpstrucdata")
  action(type="omfile" file="{dir}/received.log" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="keystead")
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let mut r = Self {
            dir: dir.to_path_buf(),
            port,
            child: None,
            starts: 0,
        };
        r.run().await;
        r
    }

    async fn run(&mut self) {
        self.starts += 1;
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join(format!("rsyslogd-{}.pid", self.starts)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslogd.stderr")).unwrap())
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        wait_for_port(self.port, HANG).await;
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for `n` received lines in total and returns them.
    async fn lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + HANG;
        loop {
            let text = std::fs::read_to_string(self.dir.join("received.log")).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslog wrote {} of {n} lines; stderr: {}",
                lines.len(),
                std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_to_rsyslog() {
    let bin = rsyslogd();
    assert!(bin.exists());
    let dir = temp_dir("rsyslog");
    let port = free_port();
    let mut rs = Rsyslog::start(&dir, port).await;

    let sink = build(
        &settings(json!({
            "kind": "syslog", "address": format!("127.0.0.1:{port}"), "facility": 10
        })),
        &ctx(OutboundPolicy::allow_loopback_for_tests()),
    )
    .unwrap();
    assert_eq!(sink.kind(), "syslog");
    let ev = events();
    sink.deliver(&ev).await.unwrap();
    let lines = rs.lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, e) in lines.iter().zip(&ev) {
        let f: Vec<&str> = line.splitn(8, '\t').collect();
        assert_eq!(f.len(), 8, "{line}");
        let event: Value = serde_json::from_slice(e).unwrap();
        // MSG is the event JSON, byte for byte.
        assert_eq!(f[7].as_bytes(), &e[..], "MSG differs");
        assert_eq!(f[1], event["action"].as_str().unwrap(), "MSGID");
        assert_eq!(f[2], "es-test-1", "HOSTNAME");
        assert_eq!(f[3], "keystead", "APP-NAME");
        let severity = if event["outcome"] == "success" {
            "5"
        } else {
            "4"
        };
        assert_eq!(f[4], severity);
        assert_eq!(f[5], "10", "facility");
        assert!(f[0].starts_with("[keystead@32473 "), "{}", f[0]);
        // rsyslog parsed the structured data and undid the escaping.
        let sd: Value = serde_json::from_str(f[6]).unwrap_or_else(|e| panic!("{e}: {}", f[6]));
        let params = &sd["keystead@32473"];
        assert_eq!(params["id"], event["id"]);
        assert_eq!(params["tenant"], event["tenant_id"]);
        assert_eq!(params["seq"], event["seq"].to_string());
        assert_eq!(params["action"], event["action"]);
        assert_eq!(params["outcome"], event["outcome"]);
    }
    // The escaped tenant as it went over the wire.
    assert!(
        lines[0].starts_with(r#"[keystead@32473 id="ev-1" tenant="ac\"me\\\]""#),
        "{}",
        lines[0]
    );

    // rsyslog gone: the batch fails (the connection is seen closed, reconnecting fails).
    rs.stop();
    let e = sink.deliver(&ev[1..]).await.unwrap_err();
    assert!(e.message.contains("syslog 127.0.0.1"), "{}", e.message);
    // Back: the sink reconnects and the next batch arrives.
    rs.run().await;
    sink.deliver(&ev[1..]).await.unwrap();
    let lines = rs.lines(3).await;
    assert_eq!(lines.len(), 3);
    assert!(lines[2].ends_with(std::str::from_utf8(&ev[1]).unwrap()));
    drop(rs);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- syslog over TLS

/// A TLS syslog receiver.
struct TlsReceiver {
    port: u16,
    /// Each message of the octet-counted frames received.
    messages: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    /// Tells the receiver to close the current connection.
    hang_up: Arc<tokio::sync::Notify>,
    /// Signalled once it has.
    closed: Arc<tokio::sync::Notify>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

async fn tls_receiver(ca: &Ca) -> TlsReceiver {
    let leaf = ca.server();
    let dir = temp_dir("tls");
    std::fs::write(dir.join("cert.pem"), &leaf.cert).unwrap();
    std::fs::write(dir.join("key.pem"), &leaf.key).unwrap();
    let config = keystead_server::tls::load_server_config(&keystead_server::tls::TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        client_ca: None,
    })
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let hang_up = Arc::new(tokio::sync::Notify::new());
    let closed = Arc::new(tokio::sync::Notify::new());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (hang, done, count) = (hang_up.clone(), closed.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            let (hang, done, count) = (hang.clone(), done.clone(), count.clone());
            // One task per connection: a stalled or failed handshake does not hold up the
            // next client.
            tokio::spawn(async move {
                // A failed handshake (the wrong-name and untrusted-CA clients) is not a
                // connection.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut r = BufReader::new(tls);
                loop {
                    let mut len = Vec::new();
                    tokio::select! {
                        n = r.read_until(b' ', &mut len) => {
                            if n.unwrap_or(0) == 0 {
                                return;
                            }
                        }
                        () = hang.notified() => break,
                    }
                    let len: usize = std::str::from_utf8(&len[..len.len() - 1])
                        .unwrap()
                        .parse()
                        .expect("an octet count");
                    let mut msg = vec![0; len];
                    r.read_exact(&mut msg).await.unwrap();
                    tx.send(msg).unwrap();
                }
                // Closing: TLS close_notify, then FIN.
                let mut tls = r.into_inner();
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                drop(tls);
                done.notify_one();
            });
        }
    });
    TlsReceiver {
        port,
        messages: rx,
        hang_up,
        closed,
        accepted,
    }
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) -> String {
    let m = tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("no syslog frame arrived")
        .unwrap();
    String::from_utf8(m).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_with_octet_counting() {
    let ca = Ca::new("keystead syslog test CA");
    let mut recv = tls_receiver(&ca).await;
    let rx = &mut recv.messages;
    let port = recv.port;
    let policy = OutboundPolicy {
        allow_plain_http: false,
        extra_roots_pem: vec![ca.pem().into_bytes()],
        ..OutboundPolicy::allow_loopback_for_tests()
    };
    let address = format!("127.0.0.1:{port}");
    // Plain TCP is refused when the policy refuses plain transport.
    let plain = settings(json!({"kind": "syslog", "address": address}));
    let e = build(&plain, &ctx(policy.clone())).err().unwrap();
    assert!(e.message.contains("plain"), "{}", e.message);

    let sink = build(
        &settings(json!({
            "kind": "syslog", "address": address, "tls": true, "server_name": "localhost",
            "app_name": "ks-audit"
        })),
        &ctx(policy.clone()),
    )
    .unwrap();
    let ev = events();
    sink.deliver(&ev).await.unwrap();
    let m1 = next(rx).await;
    let m2 = next(rx).await;
    let ev0 = std::str::from_utf8(&ev[0]).unwrap();
    assert_eq!(
        m1,
        format!(
            "<108>1 2026-01-02T03:04:05.123Z es-test-1 ks-audit - unwrap [keystead@32473 \
             id=\"ev-1\" tenant=\"ac\\\"me\\\\\\]\" seq=\"1\" action=\"unwrap\" \
             outcome=\"failure\"] {ev0}"
        )
    );
    assert!(
        m2.starts_with("<109>1 2026-01-02T03:04:06Z es-test-1 ks-audit - wrap "),
        "{m2}"
    );
    assert!(m2.ends_with(std::str::from_utf8(&ev[1]).unwrap()));

    // The receiver hangs up between batches: the next batch goes over a new connection.
    recv.hang_up.notify_one();
    recv.closed.notified().await;
    sink.deliver(&ev[1..]).await.unwrap();
    assert!(
        next(rx)
            .await
            .ends_with(std::str::from_utf8(&ev[1]).unwrap())
    );
    assert_eq!(recv.accepted.load(Ordering::SeqCst), 2);

    // A certificate for another name: the handshake fails, the batch is an error.
    let wrong = build(
        &settings(json!({
            "kind": "syslog", "address": address, "tls": true, "server_name": "siem.example.com"
        })),
        &ctx(policy.clone()),
    )
    .unwrap();
    let e = wrong.deliver(&ev).await.unwrap_err();
    assert!(e.message.contains("TLS"), "{}", e.message);
    // An untrusted CA: the same.
    let untrusted = build(
        &settings(json!({"kind": "syslog", "address": address, "tls": true})),
        &ctx(OutboundPolicy {
            extra_roots_pem: Vec::new(),
            ..policy
        }),
    )
    .unwrap();
    assert!(untrusted.deliver(&ev).await.is_err());
}

// ---------------------------------------------------------------- files

#[tokio::test]
async fn file_sink_appends_lines_inside_its_directory() {
    let c = ctx(OutboundPolicy::default());
    for bad in ["/etc/keystead.jsonl", "../escape.jsonl", "a/../../b", ""] {
        let e = build(&settings(json!({"kind": "file", "path": bad})), &c).err();
        assert!(e.is_some(), "{bad} was accepted");
    }
    let sink = build(
        &settings(json!({"kind": "file", "path": "acme/audit.jsonl"})),
        &c,
    )
    .unwrap();
    assert_eq!(sink.kind(), "file");
    let ev = events();
    sink.deliver(&ev).await.unwrap();
    sink.deliver(&ev[..1]).await.unwrap();
    let path = c.file_dir.join("acme/audit.jsonl");
    let mut want = Vec::new();
    for e in [&ev[0], &ev[1], &ev[0]] {
        want.extend_from_slice(e);
        want.push(b'\n');
    }
    assert_eq!(std::fs::read(&path).unwrap(), want);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // An event that is not one line of JSON is refused, nothing written.
    let bad: Arc<[u8]> = Arc::from(&b"{\"a\":\n1}"[..]);
    assert!(sink.deliver(&[bad]).await.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), want);
    // A path that cannot be written (a directory in the way): an error.
    std::fs::create_dir_all(c.file_dir.join("dir.jsonl")).unwrap();
    let blocked = build(&settings(json!({"kind": "file", "path": "dir.jsonl"})), &c).unwrap();
    assert!(blocked.deliver(&ev).await.is_err());
    std::fs::remove_dir_all(&c.file_dir).unwrap();
}

#[test]
fn stdout_only_in_dev() {
    let c = ctx(OutboundPolicy::default());
    let e = build(&SinkSettings::Stdout, &c).err().unwrap();
    assert!(e.message.contains("--dev"), "{}", e.message);
    let dev = SinkContext { dev: true, ..c };
    assert_eq!(build(&SinkSettings::Stdout, &dev).unwrap().kind(), "stdout");
}
