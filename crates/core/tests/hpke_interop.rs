//! Interoperability of Keystead's HPKE sealing with an independent implementation.
//!
//! `tests/interop/hpke_interop.py` (at the repository root) re-implements the `info` string,
//! the `KSS` sealed-key format and asymmetric EDEKs on top of the PyPI package `pyhpke`,
//! from the format description alone. These tests drive it in both directions: whatever
//! the Rust core seals, Python opens, and the other way round; and a changed key, `info` or
//! AAD fails on either side.
//!
//! The Python interpreter is `$KEYSTEAD_PYTHON` if set, else `<repo>/.venv/bin/python`,
//! created by `scripts/setup-venv.sh`. Without it the tests fail (they never skip).
//! `KEYSTEAD_INTEROP_SEED` (a u64) overrides the fixed RNG seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use chacha20::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use keystead_core::edek::{Edek, Mode};
use keystead_core::seal::{ENC_LEN, Purpose, SEALED_KEY_CT_LEN, SealContext, SealedKey};
use keystead_core::{
    ConfigId, Dek, EncryptionKeyPair, EncryptionPublicKey, Error, KeyVersion, RecipientId, TenantId,
};

// ---- the Python side -------------------------------------------------------------------

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

struct Python {
    interpreter: PathBuf,
    script: PathBuf,
}

/// Finds the interpreter once per test binary and checks that it can import pyhpke.
fn python() -> &'static Python {
    static PY: OnceLock<Python> = OnceLock::new();
    PY.get_or_init(|| {
        let root = repo_root();
        let (interpreter, from_env) = match std::env::var_os("KEYSTEAD_PYTHON") {
            Some(p) if !p.is_empty() => (PathBuf::from(p), true),
            _ => {
                let venv = root.join(".venv");
                let bin = if cfg!(windows) {
                    venv.join("Scripts").join("python.exe")
                } else {
                    venv.join("bin").join("python")
                };
                (bin, false)
            }
        };
        let setup_hint = "run `bash scripts/setup-venv.sh` at the repository root (it creates \
                          .venv/ from tests/interop/requirements.txt), or point KEYSTEAD_PYTHON \
                          at a Python that has those packages";
        if !from_env && !interpreter.exists() {
            panic!(
                "HPKE interop test: no Python venv at {}: {setup_hint}",
                interpreter.display()
            );
        }
        let script = root.join("tests").join("interop").join("hpke_interop.py");
        assert!(script.exists(), "missing {}", script.display());

        // Preflight: pyhpke importable, and (for the project venv) the pinned version.
        let out = Command::new(&interpreter)
            .args(["-c", "import pyhpke; print(pyhpke.__version__)"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "HPKE interop test: cannot run {}: {e}; {setup_hint}",
                    interpreter.display()
                )
            });
        assert!(
            out.status.success(),
            "HPKE interop test: {} cannot import pyhpke ({}); {setup_hint}",
            interpreter.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let requirements =
            std::fs::read_to_string(root.join("tests").join("interop").join("requirements.txt"))
                .expect("read tests/interop/requirements.txt");
        let pinned = requirements
            .lines()
            .find_map(|l| l.trim().strip_prefix("pyhpke=="))
            .expect("requirements.txt pins pyhpke")
            .trim()
            .to_owned();
        if version != pinned {
            assert!(
                from_env,
                "HPKE interop test: .venv has pyhpke {version}, requirements.txt pins \
                 {pinned}: {setup_hint}"
            );
            eprintln!("note: KEYSTEAD_PYTHON has pyhpke {version} (pinned: {pinned})");
        }
        Python {
            interpreter,
            script,
        }
    })
}

impl Python {
    /// Runs one request. The script answers with JSON and exit status 0 both on success and
    /// on an expected failure (decrypt, format); anything else is a broken test setup.
    fn call(&self, request: &Value) -> Value {
        let mut child = Command::new(&self.interpreter)
            .arg(&self.script)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.interpreter.display()));
        {
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(request.to_string().as_bytes())
                .expect("write request");
        }
        let out = child.wait_with_output().expect("wait for python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "python failed ({}) on op {}:\nstdout: {stdout}\nstderr: {stderr}",
            out.status,
            request["op"]
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("python answered non-JSON ({e}): {stdout}\n{stderr}"))
    }

    /// Runs a request that must succeed.
    fn ok(&self, request: Value) -> Value {
        let answer = self.call(&request);
        assert_eq!(
            answer["ok"],
            Value::Bool(true),
            "python op {} failed: {answer}",
            request["op"]
        );
        answer
    }

    /// Runs a request that must fail authentication (not parsing, not the request).
    fn decrypt_fails(&self, request: Value, what: &str) {
        let answer = self.call(&request);
        assert_eq!(
            answer["ok"],
            Value::Bool(false),
            "{what}: python op {} succeeded but must fail",
            request["op"]
        );
        assert_eq!(
            answer["error"], "decrypt",
            "{what}: expected a decrypt failure, got {answer}"
        );
    }
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("not a hex string: {v}")),
    )
    .expect("hex")
}

fn unhex32(v: &Value) -> [u8; 32] {
    unhex(v).try_into().expect("32 bytes")
}

// ---- test cases ------------------------------------------------------------------------

const DEFAULT_SEED: u64 = 0x6b65_7973_7465_6164; // "keystead"
const CASES: usize = 5;

/// One sealing scenario: a recipient key pair (and an unrelated one), and the context.
struct Case {
    name: String,
    purpose: Purpose,
    recipient: RecipientId,
    object: String,
    epoch: u64,
    aad: Vec<u8>,
    secret: [u8; 32],
    kp: EncryptionKeyPair,
    other: EncryptionKeyPair,
}

impl Case {
    fn fingerprint(&self) -> [u8; 32] {
        self.kp.public().fingerprint()
    }

    fn context<'a>(&'a self, fingerprint: &'a [u8; 32]) -> SealContext<'a> {
        SealContext {
            purpose: self.purpose,
            recipient_id: self.recipient.as_bytes(),
            fingerprint,
            object_id: self.object.as_bytes(),
            epoch: self.epoch,
        }
    }

    fn info(&self) -> Vec<u8> {
        self.context(&self.fingerprint()).info().expect("info")
    }

    fn rust_seal(&self, rng: &mut ChaCha20Rng) -> SealedKey {
        SealedKey::seal(
            rng,
            self.purpose,
            &self.recipient,
            self.kp.public(),
            &self.object,
            self.epoch,
            &self.aad,
            &self.secret,
        )
        .expect("seal")
    }
}

fn seed() -> u64 {
    match std::env::var("KEYSTEAD_INTEROP_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .expect("KEYSTEAD_INTEROP_SEED must be a u64"),
        Err(_) => DEFAULT_SEED,
    }
}

/// The RNG of one test (each test its own stream, so they can run in parallel) and its
/// cases: every purpose, ASCII, non-ASCII and maximum-length (256-byte) ids, epochs at the
/// edges and random, AADs from empty to 64 bytes.
fn setup(test: &str) -> (ChaCha20Rng, Vec<Case>) {
    let seed = seed();
    eprintln!("{test}: seed {seed} (set KEYSTEAD_INTEROP_SEED to vary)");
    let mut stream = [0u8; 32];
    stream[..8].copy_from_slice(&seed.to_be_bytes());
    let tag = test.as_bytes();
    let n = tag.len().min(24);
    stream[8..8 + n].copy_from_slice(&tag[..n]);
    let mut rng = ChaCha20Rng::from_seed(stream);

    let purposes = [Purpose::Edek, Purpose::Grant, Purpose::GroupKey];
    let cases = (0..CASES)
        .map(|i| {
            let recipient = match i {
                1 => String::from("Gerät-ü/Ω ✓ device"),
                2 => "r".repeat(256),
                _ => format!("device-{:016x}", rng.next_u64()),
            };
            let object = match i {
                1 => String::from("Dokument/äöü-42"),
                2 => "é".repeat(128), // 256 bytes of UTF-8
                _ => format!("doc-{:016x}", rng.next_u64()),
            };
            let epoch = match i {
                0 => 0,
                1 => u64::MAX,
                2 => 1,
                _ => rng.next_u64(),
            };
            let aad_len = match i {
                0 => 0,
                1 => 32,
                _ => usize::try_from(rng.next_u32() % 65).expect("small"),
            };
            let mut aad = vec![0u8; aad_len];
            rng.fill_bytes(&mut aad);
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let purpose = purposes[i % purposes.len()];
            Case {
                name: format!("case {i} ({})", purpose.label()),
                purpose,
                recipient: RecipientId::new(recipient).expect("recipient id"),
                object,
                epoch,
                aad,
                secret,
                kp: EncryptionKeyPair::generate(&mut rng),
                other: EncryptionKeyPair::generate(&mut rng),
            }
        })
        .collect();
    (rng, cases)
}

/// The HPKE `enc` and ciphertext at the end of a KSS blob: `enc [32] | 0x0030 | ct [48]`.
fn kss_tail(blob: &[u8]) -> ([u8; ENC_LEN], [u8; SEALED_KEY_CT_LEN]) {
    let n = blob.len();
    let tail = ENC_LEN + 2 + SEALED_KEY_CT_LEN;
    assert!(n > tail);
    assert_eq!(
        &blob[n - SEALED_KEY_CT_LEN - 2..n - SEALED_KEY_CT_LEN],
        &[0, 48]
    );
    (
        blob[n - tail..n - tail + ENC_LEN].try_into().expect("enc"),
        blob[n - SEALED_KEY_CT_LEN..].try_into().expect("ct"),
    )
}

/// A copy of a KSS blob with another `enc` and ciphertext spliced in.
fn with_tail(blob: &[u8], enc: &[u8], ct: &[u8]) -> Vec<u8> {
    assert_eq!((enc.len(), ct.len()), (ENC_LEN, SEALED_KEY_CT_LEN));
    let head = blob.len() - (ENC_LEN + 2 + SEALED_KEY_CT_LEN);
    let mut out = blob[..head].to_vec();
    out.extend_from_slice(enc);
    out.extend_from_slice(&[0, 48]);
    out.extend_from_slice(ct);
    out
}

// ---- KSS: Rust -> Python ---------------------------------------------------------------

#[test]
fn rust_sealed_key_opens_in_python() {
    let py = python();
    let (mut rng, cases) = setup("rust_kss_to_py");
    for c in &cases {
        // Both sides derive the same public key and fingerprint from the private key.
        let keys = py.ok(json!({"op": "public_key", "sk": hex::encode(*c.kp.expose_secret())}));
        assert_eq!(unhex32(&keys["pk"]), c.kp.public().to_bytes(), "{}", c.name);
        assert_eq!(unhex32(&keys["fingerprint"]), c.fingerprint(), "{}", c.name);

        let sealed = c.rust_seal(&mut rng);
        let blob = sealed.to_bytes();
        let answer = py.ok(json!({
            "op": "open_kss",
            "kss": hex::encode(&blob),
            "sk": hex::encode(*c.kp.expose_secret()),
            "aad": hex::encode(&c.aad),
        }));
        assert_eq!(unhex32(&answer["secret"]), c.secret, "{}", c.name);
        // Python parsed the framing to the same fields and rebuilt the same info.
        assert_eq!(answer["purpose"], c.purpose.label(), "{}", c.name);
        assert_eq!(answer["recipient_id"], c.recipient.as_str(), "{}", c.name);
        assert_eq!(answer["object_id"], c.object.as_str(), "{}", c.name);
        assert_eq!(answer["epoch"].as_u64(), Some(c.epoch), "{}", c.name);
        assert_eq!(
            unhex32(&answer["fingerprint"]),
            c.fingerprint(),
            "{}",
            c.name
        );
        assert_eq!(unhex(&answer["info"]), c.info(), "{}", c.name);

        // Negative: wrong AAD, wrong key pair, and a blob whose epoch (hence info) changed.
        let mut wrong_aad = c.aad.clone();
        wrong_aad.push(0);
        py.decrypt_fails(
            json!({"op": "open_kss", "kss": hex::encode(&blob),
                   "sk": hex::encode(*c.kp.expose_secret()), "aad": hex::encode(&wrong_aad)}),
            &format!("{}: wrong aad", c.name),
        );
        py.decrypt_fails(
            json!({"op": "open_kss", "kss": hex::encode(&blob),
                   "sk": hex::encode(*c.other.expose_secret()), "aad": hex::encode(&c.aad)}),
            &format!("{}: wrong key pair", c.name),
        );
        let epoch_at = blob.len() - (ENC_LEN + 2 + SEALED_KEY_CT_LEN) - 8;
        assert_eq!(&blob[epoch_at..epoch_at + 8], &c.epoch.to_be_bytes());
        let mut moved = blob.clone();
        moved[epoch_at + 7] ^= 1;
        py.decrypt_fails(
            json!({"op": "open_kss", "kss": hex::encode(&moved),
                   "sk": hex::encode(*c.kp.expose_secret()), "aad": hex::encode(&c.aad)}),
            &format!("{}: epoch changed in the blob", c.name),
        );
    }
}

// ---- KSS: Python -> Rust ---------------------------------------------------------------

#[test]
fn python_sealed_key_opens_in_rust() {
    let py = python();
    let (_rng, cases) = setup("py_kss_to_rust");
    for c in &cases {
        let answer = py.ok(json!({
            "op": "seal_kss",
            "purpose": c.purpose.label(),
            "recipient_id": c.recipient.as_str(),
            "pk": hex::encode(c.kp.public().to_bytes()),
            "object_id": c.object,
            "epoch": c.epoch,
            "aad": hex::encode(&c.aad),
            "secret": hex::encode(c.secret),
        }));
        assert_eq!(unhex(&answer["info"]), c.info(), "{}: info differs", c.name);
        let blob = unhex(&answer["kss"]);
        let sealed = SealedKey::parse(&blob).expect("Rust parses the Python KSS blob");
        assert_eq!(
            sealed.to_bytes(),
            blob,
            "{}: framing does not round-trip",
            c.name
        );
        assert_eq!(sealed.purpose(), c.purpose, "{}", c.name);
        assert_eq!(sealed.recipient_id(), &c.recipient, "{}", c.name);
        assert_eq!(sealed.object_id(), c.object, "{}", c.name);
        assert_eq!(sealed.epoch(), c.epoch, "{}", c.name);
        assert_eq!(sealed.fingerprint(), &c.fingerprint(), "{}", c.name);

        let secret = sealed
            .open(&c.kp, &c.aad)
            .expect("Rust opens the Python KSS blob");
        assert_eq!(*secret, c.secret, "{}", c.name);

        // Negative: wrong AAD and wrong key pair.
        let mut wrong_aad = c.aad.clone();
        wrong_aad.push(0x80);
        assert_eq!(
            sealed.open(&c.kp, &wrong_aad).err(),
            Some(Error::Decrypt),
            "{}",
            c.name
        );
        if !c.aad.is_empty() {
            assert_eq!(
                sealed.open(&c.kp, &[]).err(),
                Some(Error::Decrypt),
                "{}",
                c.name
            );
        }
        assert_eq!(
            sealed.open(&c.other, &c.aad).err(),
            Some(Error::Decrypt),
            "{}",
            c.name
        );
    }
}

// ---- raw HPKE with the info string, Rust -> Python -------------------------------------

#[test]
fn raw_rust_seal_python_open() {
    let py = python();
    let (mut rng, cases) = setup("raw_rust_to_py");
    for c in &cases {
        let blob = c.rust_seal(&mut rng).to_bytes();
        let (enc, ct) = kss_tail(&blob);
        let sk = hex::encode(*c.kp.expose_secret());
        let open = |info: &[u8], aad: &[u8]| {
            json!({"op": "open_raw", "sk": sk, "enc": hex::encode(enc),
                   "info": hex::encode(info), "aad": hex::encode(aad), "ct": hex::encode(ct)})
        };
        let answer = py.ok(open(&c.info(), &c.aad));
        assert_eq!(unhex(&answer["plaintext"]), c.secret, "{}", c.name);

        // Every field of the info is bound: change any one and Python must refuse.
        let fp = c.fingerprint();
        let other_fp = c.other.public().fingerprint();
        let other_purpose = match c.purpose {
            Purpose::Grant => Purpose::GroupKey,
            _ => Purpose::Grant,
        };
        let longer_recipient = format!("{}x", c.recipient);
        let mut variants: Vec<(&str, Vec<u8>)> = vec![
            (
                "purpose",
                SealContext {
                    purpose: other_purpose,
                    ..c.context(&fp)
                }
                .info()
                .expect("info"),
            ),
            (
                "recipient",
                SealContext {
                    recipient_id: longer_recipient.as_bytes(),
                    ..c.context(&fp)
                }
                .info()
                .expect("info"),
            ),
            ("fingerprint", c.context(&other_fp).info().expect("info")),
            (
                "object",
                SealContext {
                    object_id: b"another-object",
                    ..c.context(&fp)
                }
                .info()
                .expect("info"),
            ),
            (
                "epoch",
                SealContext {
                    epoch: c.epoch.wrapping_add(1),
                    ..c.context(&fp)
                }
                .info()
                .expect("info"),
            ),
            ("empty", Vec::new()),
        ];
        let mut flipped = c.info();
        *flipped.last_mut().expect("non-empty") ^= 0x01;
        variants.push(("last byte flipped", flipped));
        let mut truncated = c.info();
        truncated.pop();
        variants.push(("truncated", truncated));
        for (what, info) in &variants {
            assert_ne!(info, &c.info());
            py.decrypt_fails(
                open(info, &c.aad),
                &format!("{}: modified info ({what})", c.name),
            );
        }
        let mut wrong_aad = c.aad.clone();
        wrong_aad.insert(0, 0xff);
        py.decrypt_fails(
            open(&c.info(), &wrong_aad),
            &format!("{}: wrong aad", c.name),
        );
    }
}

// ---- raw HPKE with the info string, Python -> Rust -------------------------------------

#[test]
fn raw_python_seal_rust_open() {
    let py = python();
    let (mut rng, cases) = setup("raw_py_to_rust");
    for c in &cases {
        // Python seals with the info Rust computes; Rust opens it through a KSS frame whose
        // header (hence recomputed info) is Rust's own.
        let frame = c.rust_seal(&mut rng).to_bytes();
        let seal = |pk: &EncryptionPublicKey, info: &[u8]| {
            let answer = py.ok(json!({
                "op": "seal_raw", "pk": hex::encode(pk.to_bytes()), "info": hex::encode(info),
                "aad": hex::encode(&c.aad), "plaintext": hex::encode(c.secret),
            }));
            with_tail(&frame, &unhex(&answer["enc"]), &unhex(&answer["ct"]))
        };

        let blob = seal(c.kp.public(), &c.info());
        let sealed = SealedKey::parse(&blob).expect("parse");
        assert_eq!(
            *sealed.open(&c.kp, &c.aad).expect("open"),
            c.secret,
            "{}",
            c.name
        );

        // Negative: sealed under another info (epoch + 1), framed as the original.
        let fp = c.fingerprint();
        let moved = SealContext {
            epoch: c.epoch.wrapping_add(1),
            ..c.context(&fp)
        };
        let blob = seal(c.kp.public(), &moved.info().expect("info"));
        let sealed = SealedKey::parse(&blob).expect("parse");
        assert_eq!(
            sealed.open(&c.kp, &c.aad).err(),
            Some(Error::Decrypt),
            "{}",
            c.name
        );

        // Negative: HPKE-sealed to another public key but labelled with this key's
        // fingerprint, so the fingerprint check passes and the KEM itself must fail.
        let blob = seal(c.other.public(), &c.info());
        let sealed = SealedKey::parse(&blob).expect("parse");
        assert_eq!(
            sealed.open(&c.kp, &c.aad).err(),
            Some(Error::Decrypt),
            "{}",
            c.name
        );
    }
}

// ---- asymmetric EDEKs ------------------------------------------------------------------

fn edek_ids(i: usize) -> (TenantId, ConfigId, KeyVersion) {
    let (tenant, config) = match i {
        1 => (String::from("Mandant-Müller"), String::from("kms/ü-1")),
        2 => ("t".repeat(256), "c".repeat(256)),
        _ => (format!("tenant-{i}"), format!("config-{i}")),
    };
    let version = match i {
        0 => 0,
        1 => u32::MAX,
        _ => u32::try_from(i * 7919).expect("small"),
    };
    (
        TenantId::new(tenant).expect("tenant"),
        ConfigId::new(config).expect("config"),
        KeyVersion(version),
    )
}

#[test]
fn asymmetric_edek_rust_wrap_python_unwrap() {
    let py = python();
    let (mut rng, cases) = setup("edek_rust_to_py");
    for (i, c) in cases.iter().enumerate() {
        let (tenant, config, version) = edek_ids(i);
        let dek = Dek::generate(&mut rng);
        let edek = Edek::wrap_asymmetric(
            &mut rng,
            tenant.clone(),
            config.clone(),
            version,
            c.kp.public(),
            &dek,
        )
        .expect("wrap");
        assert_eq!(edek.mode(), Mode::Asymmetric);
        let bytes = edek.to_bytes();
        let sk = hex::encode(*c.kp.expose_secret());

        let answer = py.ok(json!({"op": "open_edek", "edek": hex::encode(&bytes), "sk": sk}));
        assert_eq!(&unhex32(&answer["dek"]), dek.expose_secret(), "edek {i}");
        assert_eq!(answer["tenant_id"], tenant.as_str());
        assert_eq!(answer["config_id"], config.as_str());
        assert_eq!(answer["key_version"].as_u64(), Some(u64::from(version.0)));
        let fp = c.fingerprint();
        let expected_info = SealContext {
            purpose: Purpose::Edek,
            recipient_id: tenant.as_bytes(),
            fingerprint: &fp,
            object_id: config.as_bytes(),
            epoch: u64::from(version.0),
        }
        .info()
        .expect("info");
        assert_eq!(unhex(&answer["info"]), expected_info, "edek {i}: info");
        let header = edek.header().as_bytes();
        let mut expected_aad = u32::try_from(header.len())
            .expect("len")
            .to_be_bytes()
            .to_vec();
        expected_aad.extend_from_slice(header);
        assert_eq!(unhex(&answer["aad"]), expected_aad, "edek {i}: aad");

        // Negative: another tenant key, and a header changed (key version) after sealing.
        py.decrypt_fails(
            json!({"op": "open_edek", "edek": hex::encode(&bytes),
                   "sk": hex::encode(*c.other.expose_secret())}),
            &format!("edek {i}: wrong tenant key"),
        );
        let version_at = header.len() - 32 - 4;
        let mut moved = bytes.clone();
        moved[version_at + 3] ^= 0x01;
        py.decrypt_fails(
            json!({"op": "open_edek", "edek": hex::encode(&moved), "sk": sk}),
            &format!("edek {i}: key version changed"),
        );
    }
}

#[test]
fn asymmetric_edek_python_wrap_rust_unwrap() {
    let py = python();
    let (mut rng, cases) = setup("edek_py_to_rust");
    for (i, c) in cases.iter().enumerate() {
        let (tenant, config, version) = edek_ids(i);
        let dek = Dek::generate(&mut rng);
        let answer = py.ok(json!({
            "op": "seal_edek", "tenant_id": tenant.as_str(), "config_id": config.as_str(),
            "key_version": version.0, "pk": hex::encode(c.kp.public().to_bytes()),
            "dek": hex::encode(dek.expose_secret()),
        }));
        let bytes = unhex(&answer["edek"]);
        let edek = Edek::parse(&bytes).expect("Rust parses the Python EDEK");
        assert_eq!(
            edek.to_bytes(),
            bytes,
            "edek {i}: framing does not round-trip"
        );
        assert_eq!(edek.mode(), Mode::Asymmetric);
        assert_eq!(edek.tenant(), &tenant);
        assert_eq!(edek.config_id(), &config);
        assert_eq!(edek.key_version(), version);
        let opened = edek
            .unwrap_asymmetric(&c.kp)
            .expect("Rust unwraps the Python EDEK");
        assert!(opened.ct_eq(&dek), "edek {i}: DEK differs");
        assert_eq!(edek.unwrap_asymmetric(&c.other).err(), Some(Error::Decrypt));
    }
}
