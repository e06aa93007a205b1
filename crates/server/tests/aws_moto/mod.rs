//! The AWS KMS peer of the aws adapter's tests and benchmark: `moto_server` (moto, from the
//! project venv: `bash scripts/setup-venv.sh`) on a free port of 127.0.0.1.
//!
//! moto keeps its keys in memory, so "the KMS is down" is SIGSTOP / SIGCONT of the moto
//! process: a hung KMS (accepts connections, never answers) that comes back with the same
//! keys. Restarting it would lose the key material and every EDEK made before.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keystead_server::kms::net::OutboundPolicy;
use keystead_server::kms::registry::BuildContext;
use serde_json::{Value, json};

use crate::common::conformance::{Peer, free_port, venv_bin, wait_for_port};

/// Credentials moto accepts (it checks none); the secret must never show up anywhere.
pub const ACCESS_KEY_ID: &str = "AKIAKEYSTEADTEST";
pub const SECRET_ACCESS_KEY: &str = "keystead-test-secret-access-key-0000";

pub fn settings(endpoint: &str, key_id: &str) -> Value {
    json!({
        "region": "us-east-1",
        "key_id": key_id,
        "endpoint_url": endpoint,
        "credentials": {"access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY},
    })
}

/// A generous context for test setup (moto imports its KMS backend on the first call).
pub fn setup_context() -> BuildContext {
    BuildContext {
        outbound: OutboundPolicy::allow_loopback_for_tests(),
        timeout: Duration::from_secs(20),
    }
}

/// `moto_server` on a free port of 127.0.0.1, in its own temporary directory; killed (even
/// while stopped) and reaped on drop, so a failing test leaves no process behind.
pub struct Moto {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto and waits until it listens.
    pub async fn start() -> Self {
        let bin = venv_bin("moto_server");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("keystead-moto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let moto = Self {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait_for_port(port, Duration::from_secs(60)).await;
        moto
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig} moto_server failed");
    }

    /// Creates a symmetric key through the SDK and warms moto up (first calls are slow);
    /// returns the key ARN.
    pub async fn create_key(&self) -> String {
        let (client, _) = keystead_server::kms::aws::sdk_client(
            settings(&self.endpoint, "bootstrap"),
            &setup_context(),
        )
        .unwrap();
        let meta = client
            .create_key()
            .description("keystead kms_aws test key")
            .send()
            .await
            .expect("CreateKey at moto")
            .key_metadata
            .expect("key metadata");
        let arn = meta.arn.expect("key ARN");
        let out = client
            .generate_data_key()
            .key_id(&arn)
            .number_of_bytes(32)
            .send()
            .await
            .expect("warm-up GenerateDataKey");
        client
            .decrypt()
            .key_id(&arn)
            .ciphertext_blob(out.ciphertext_blob.expect("blob"))
            .send()
            .await
            .expect("warm-up Decrypt");
        arn
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Peer for Moto {
    async fn stop(&mut self) {
        self.signal("-STOP");
    }
    async fn start(&mut self) {
        self.signal("-CONT");
    }
}
