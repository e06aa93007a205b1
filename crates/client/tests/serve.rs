//! The client against a real `keystead serve` process on 127.0.0.1, set up and changed
//! only through `keystead` commands (tenant create, service-key create, rotate-key,
//! rotate-derivation-secret, finish-derivation-rotation), as an operator would.
//!
//! The `keystead` commands run in child processes of this test binary: with
//! `KEYSTEAD_TEST_CHILD_ARGS` set, the `keystead_child` test runs
//! `keystead_server::cli::main_with_args` (the binary's own entry point) and exits. This
//! tests the code of this build without depending on a separately built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keystead_client::{Client, Document, Error, Metadata, ServiceKey};
use keystead_core::envelope::EncryptedDocument;

const CHILD_ENV: &str = "KEYSTEAD_TEST_CHILD_ARGS";

/// Runs `keystead <args>` when this binary was started as a child (see the module doc).
#[test]
fn keystead_child() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let code =
        keystead_server::cli::main_with_args(std::iter::once("keystead".to_owned()).chain(args));
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

fn child(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "keystead_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, serde_json::to_string(args).unwrap());
    c
}

/// A `keystead serve` process with its data dir; killed and removed on drop.
struct Serve {
    dir: PathBuf,
    url: String,
    proc: Child,
}

impl Serve {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "keystead-serve-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let mut s = Self {
            dir: dir.clone(),
            url: String::new(),
            proc: child(&[
                "--data-dir",
                dir.to_str().unwrap(),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        };
        // The serving log line names the bound address.
        let stderr = s.proc.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["fields"]["message"] == "keystead serving"
                {
                    let _ = tx.send(v["fields"]["listen"].as_str().unwrap().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("keystead serve did not report its address");
        s.url = format!("http://{addr}");
        s
    }

    /// Runs an admin command against the server's data dir; returns its stdout.
    fn keystead(&self, args: &[&str]) -> String {
        let mut all = vec!["--data-dir", self.dir.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = child(&all).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "keystead {args:?} failed: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn tenant(&self, id: &str, mode: &str) {
        self.keystead(&["tenant", "create", id, "--mode", mode]);
    }

    fn client(&self, name: &str) -> Client {
        let out = self.keystead(&["service-key", "create", name, "--all-tenants"]);
        // The test harness of the child prints its own progress around the key.
        let secret = out
            .split_whitespace()
            .find(|w| w.starts_with("ks_"))
            .unwrap_or_else(|| panic!("no key printed: {out}"));
        Client::new(&self.url, ServiceKey::new(secret)).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Admin changes reach the running server within a second (its store re-reads).
async fn let_the_server_see_it() {
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

fn doc(tenant: &str, id: &str, email: &str) -> Document {
    Document::new(tenant, id)
        .unwrap()
        .field("email", email.as_bytes())
        .unwrap()
        .field("note", b"likes compilers")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_round_trip_and_stay_bound_to_tenant_document_and_field() {
    let es = Serve::start();
    es.tenant("acme", "leasing");
    es.tenant("globex", "leasing");
    es.tenant("remote-co", "remote");
    // No wait: a key or tenant the server has not seen yet is looked up again at once.
    let c = es.client("app");
    let md = Metadata::new("user-1");

    for tenant in ["acme", "remote-co"] {
        let d = doc(tenant, "customer/1", "ada@example.com");
        let attached = c.encrypt(&md, &d).await.unwrap().to_bytes().unwrap();
        let back = c.decrypt(&md, &attached).await.unwrap();
        assert_eq!(back.get("email"), Some(&b"ada@example.com"[..]));
        let (det, edek) = c.encrypt_detached(&md, &d).await.unwrap();
        let back = c
            .decrypt_detached(&md, &det.to_bytes().unwrap(), &edek)
            .await
            .unwrap();
        assert_eq!(back.get("note"), Some(&b"likes compilers"[..]));
    }

    // A field moved into another document (same tenant, same path) fails to decrypt.
    let a = c.encrypt(&md, &doc("acme", "a", "a@x")).await.unwrap();
    let b = c.encrypt(&md, &doc("acme", "b", "b@x")).await.unwrap();
    let mut fields = b.fields().to_vec();
    assert_eq!(fields[0].0, a.fields()[0].0);
    fields[0] = a.fields()[0].clone();
    let intact = forge(&b, "b", b.fields().to_vec());
    assert_eq!(
        intact,
        b.to_bytes().unwrap(),
        "the forger re-encodes faithfully"
    );
    let forged = forge(&b, "b", fields);
    assert!(matches!(
        c.decrypt(&md, &forged).await,
        Err(Error::Crypto(_))
    ));
    // The same between tenants: acme's field inside globex's document (same document id).
    let g = c.encrypt(&md, &doc("globex", "a", "g@x")).await.unwrap();
    let mut fields = g.fields().to_vec();
    fields[0] = a.fields()[0].clone();
    let forged = forge(&g, "a", fields);
    assert!(matches!(
        c.decrypt(&md, &forged).await,
        Err(Error::Crypto(_))
    ));
    let intact = forge(&g, "a", g.fields().to_vec());
    assert_eq!(
        c.decrypt(&md, &intact).await.unwrap().get("email"),
        Some(&b"g@x"[..])
    );

    // A document of acme presented as globex's. Attached: the EDEK inside names acme, so
    // the client refuses before any call. Detached: the ES refuses acme's EDEK for globex.
    let as_globex = forge_tenant(&a.to_bytes().unwrap(), "acme", "globex");
    let err = c.decrypt(&md, &as_globex).await.unwrap_err();
    assert!(matches!(err, Error::Crypto(_)), "{err}");
    let (det, edek) = c
        .encrypt_detached(&md, &doc("acme", "d/1", "d@x"))
        .await
        .unwrap();
    let as_globex = forge_tenant(&det.to_bytes().unwrap(), "acme", "globex");
    let err = c
        .decrypt_detached(&md, &as_globex, &edek)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("edek_invalid"), "{err}");

    // Batches succeed per document.
    let docs: Vec<Document> = (0..5)
        .map(|i| doc("acme", &format!("batch/{i}"), &format!("u{i}@x")))
        .collect();
    let enc: Vec<Vec<u8>> = c
        .encrypt_batch(&md, &docs)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().to_bytes().unwrap())
        .collect();
    let mut mixed = enc.clone();
    let last = mixed[2].len() - 1;
    mixed[2][last] ^= 1; // a field's tag
    mixed.push(b"not a document".to_vec());
    let out = c.decrypt_batch(&md, &mixed).await.unwrap();
    assert_eq!(out.len(), 6);
    for (i, r) in out.iter().enumerate() {
        match i {
            2 | 5 => assert!(r.is_err(), "item {i} must fail"),
            _ => assert_eq!(
                r.as_ref().unwrap().get("email"),
                Some(format!("u{i}@x").as_bytes())
            ),
        }
    }

    // Rekey after the operator rotated the tenant's key: same data, new EDEK.
    let (det, edek) = c
        .encrypt_detached(&md, &doc("remote-co", "r/1", "r@x"))
        .await
        .unwrap();
    es.keystead(&["tenant", "rotate-key", "remote-co"]);
    let_the_server_see_it().await;
    let new = c.rekey(&md, "remote-co", &edek).await.unwrap();
    assert_ne!(new, edek);
    let back = c
        .decrypt_detached(&md, &det.to_bytes().unwrap(), &new)
        .await
        .unwrap();
    assert_eq!(back.get("email"), Some(&b"r@x"[..]));
}

/// Rebuilds an attached document with another document id and fields.
fn forge(
    d: &EncryptedDocument,
    id: &str,
    fields: Vec<(keystead_core::FieldPath, Vec<u8>)>,
) -> Vec<u8> {
    // Re-encode with the public format: "KSD" 1 | form 2 | lp16 tenant | lp16 doc | lp16 edek
    // | count | fields.
    let mut out = b"KSD\x01\x02".to_vec();
    let lp16 = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&u16::try_from(b.len()).unwrap().to_be_bytes());
        out.extend_from_slice(b);
    };
    lp16(&mut out, d.tenant().as_bytes());
    lp16(&mut out, id.as_bytes());
    lp16(&mut out, &d.edek().unwrap().to_bytes());
    out.extend_from_slice(&u16::try_from(fields.len()).unwrap().to_be_bytes());
    for (p, f) in &fields {
        lp16(&mut out, p.as_bytes());
        out.extend_from_slice(&u32::try_from(f.len()).unwrap().to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Replaces the document's tenant id (same length) in the document header only.
fn forge_tenant(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let d = EncryptedDocument::parse(bytes).unwrap();
    assert_eq!(d.tenant().as_str(), from);
    let mut out = bytes[..5].to_vec();
    out.extend_from_slice(&u16::try_from(to.len()).unwrap().to_be_bytes());
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(&bytes[5 + 2 + from.len()..]);
    out
}

/// One row of a table with a deterministic column and a blind-index column.
struct Row {
    id: usize,
    email_det: Vec<u8>,
    email_idx: Vec<u8>,
}

async fn insert(c: &Client, md: &Metadata, rows: &mut Vec<Row>, email: &str) {
    rows.push(Row {
        id: rows.len(),
        email_det: c
            .encrypt_deterministic(md, "acme", "email", email.as_bytes())
            .await
            .unwrap(),
        email_idx: c
            .blind_index(md, "acme", "email", email.as_bytes())
            .await
            .unwrap(),
    });
}

/// `SELECT id WHERE email_det IN (..)` and `... WHERE email_idx IN (..)`.
async fn find(c: &Client, md: &Metadata, rows: &[Row], email: &str) -> (Vec<usize>, Vec<usize>) {
    let det = c
        .deterministic_query(md, "acme", "email", email.as_bytes())
        .await
        .unwrap();
    let idx = c
        .blind_index_query(md, "acme", "email", email.as_bytes())
        .await
        .unwrap();
    assert_eq!(det.len(), idx.len(), "one candidate per live secret");
    (
        rows.iter()
            .filter(|r| det.contains(&r.email_det))
            .map(|r| r.id)
            .collect(),
        rows.iter()
            .filter(|r| idx.contains(&r.email_idx))
            .map(|r| r.id)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searchable_fields_find_records_written_before_and_after_a_rotation() {
    let es = Serve::start();
    es.tenant("acme", "leasing");
    es.tenant("globex", "remote");
    let c = es.client("app");
    let_the_server_see_it().await;
    let md = Metadata::new("search-job");

    // Deterministic: same tenant + path + value → same bytes; anything else differs.
    let e1 = c
        .encrypt_deterministic(&md, "acme", "email", b"ada@x")
        .await
        .unwrap();
    assert_eq!(
        c.encrypt_deterministic(&md, "acme", "email", b"ada@x")
            .await
            .unwrap(),
        e1
    );
    assert_ne!(
        c.encrypt_deterministic(&md, "acme", "alt_email", b"ada@x")
            .await
            .unwrap(),
        e1
    );
    assert_ne!(
        c.encrypt_deterministic(&md, "globex", "email", b"ada@x")
            .await
            .unwrap(),
        e1
    );
    assert_ne!(
        c.encrypt_deterministic(&md, "acme", "email", b"ada@y")
            .await
            .unwrap(),
        e1
    );
    assert_eq!(
        &c.decrypt_deterministic(&md, "acme", "email", &e1)
            .await
            .unwrap()[..],
        b"ada@x"
    );
    // Bound to tenant and path: decrypting as another is an error.
    assert!(
        c.decrypt_deterministic(&md, "acme", "alt_email", &e1)
            .await
            .is_err()
    );
    assert!(
        c.decrypt_deterministic(&md, "globex", "email", &e1)
            .await
            .is_err()
    );
    let i1 = c.blind_index(&md, "acme", "email", b"ada@x").await.unwrap();
    assert_eq!(i1.len(), 16);
    assert_eq!(
        c.blind_index(&md, "acme", "email", b"ada@x").await.unwrap(),
        i1
    );
    assert_ne!(
        c.blind_index(&md, "globex", "email", b"ada@x")
            .await
            .unwrap(),
        i1
    );
    assert_ne!(
        c.blind_index(&md, "acme", "alt_email", b"ada@x")
            .await
            .unwrap(),
        i1
    );

    let mut rows = Vec::new();
    for e in ["ada@x", "bob@x", "ada@x"] {
        insert(&c, &md, &mut rows, e).await;
    }
    assert_eq!(
        find(&c, &md, &rows, "ada@x").await,
        (vec![0, 2], vec![0, 2])
    );

    // The operator starts a rotation; new rows are written under the new secret.
    es.keystead(&["tenant", "rotate-derivation-secret", "acme"]);
    let_the_server_see_it().await;
    c.forget_derived_keys();
    for e in ["ada@x", "cy@x"] {
        insert(&c, &md, &mut rows, e).await;
    }
    assert_ne!(
        rows[3].email_det, rows[0].email_det,
        "written under the new secret"
    );
    assert_ne!(rows[3].email_idx, rows[0].email_idx);
    // Queries find rows from before and after the rotation.
    assert_eq!(
        find(&c, &md, &rows, "ada@x").await,
        (vec![0, 2, 3], vec![0, 2, 3])
    );
    assert_eq!(find(&c, &md, &rows, "bob@x").await, (vec![1], vec![1]));
    assert_eq!(find(&c, &md, &rows, "cy@x").await, (vec![4], vec![4]));
    for r in &rows {
        c.decrypt_deterministic(&md, "acme", "email", &r.email_det)
            .await
            .unwrap();
    }

    // The application rewrites old rows under the current secret, then the operator
    // finishes the rotation.
    for row in rows.iter_mut().take(3) {
        let email = c
            .decrypt_deterministic(&md, "acme", "email", &row.email_det)
            .await
            .unwrap();
        let mut fresh = Vec::new();
        insert(&c, &md, &mut fresh, std::str::from_utf8(&email).unwrap()).await;
        row.email_det = fresh[0].email_det.clone();
        row.email_idx = fresh[0].email_idx.clone();
    }
    let stale = e1.clone(); // never rewritten
    es.keystead(&["tenant", "finish-derivation-rotation", "acme"]);
    let_the_server_see_it().await;
    c.forget_derived_keys();
    assert_eq!(
        find(&c, &md, &rows, "ada@x").await,
        (vec![0, 2, 3], vec![0, 2, 3])
    );
    let err = c
        .decrypt_deterministic(&md, "acme", "email", &stale)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("secret_retired"), "{err}");
    let listed = es.keystead(&["tenant", "derivation-secrets", "acme"]);
    assert!(
        listed.contains("ds-1\tretired") && listed.contains("ds-2\tcurrent"),
        "{listed}"
    );
}
