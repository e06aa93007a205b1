//! The operator commands for a tenant's audit sinks, run as an operator runs them
//! (`keystead --data-dir DIR tenant ...`): add (settings validated by building the sink,
//! stored sealed, replaced by a second add), list (ids and kinds only), remove.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use keystead_server::audit::sink::{SinkSettings, sealing_label};
use keystead_server::cli::{main_with_args, open_data_dir};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "keystead-cli-sinks-{}-{}",
        std::process::id(),
        hex::encode(keystead_server::util::random_bytes::<6>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(dir: &Path, args: &[&str]) -> bool {
    let mut all = vec!["keystead", "--data-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    main_with_args(all) == ExitCode::SUCCESS
}

fn add(dir: &Path, tenant: &str, id: &str, json: &str, extra: &[&str]) -> bool {
    let f = dir.join("sink.json");
    std::fs::write(&f, json).unwrap();
    let mut args = extra.to_vec();
    args.extend_from_slice(&[
        "tenant",
        "add-sink",
        tenant,
        id,
        "--settings",
        f.to_str().unwrap(),
    ]);
    run(dir, &args)
}

#[test]
fn add_list_replace_and_remove_sinks() {
    let d = dir();
    assert!(run(&d, &["tenant", "create", "acme"]));
    let store = || open_data_dir(&d).unwrap().0;
    let builtin = open_data_dir(&d).unwrap().1;

    // Refused before anything is stored: unknown tenant, bad id, bad JSON, unknown kind,
    // unknown field, stdout outside dev, a path escaping the directory, plain http and a
    // private address under the default outbound policy, plain-TCP syslog.
    let hook =
        r#"{"kind":"webhook","url":"https://siem.example.com/hook","token":"tok-SECRET-42"}"#;
    assert!(!add(&d, "nosuch", "a", hook, &[]));
    for id in ["", "a b", "x/y", &"x".repeat(65)] {
        assert!(!add(&d, "acme", id, hook, &[]), "sink id {id:?}");
    }
    for bad in [
        "{",
        r#"{"kind":"pigeon"}"#,
        r#"{"kind":"webhook","url":"https://siem.example.com/","tokn":"x"}"#,
        r#"{"kind":"stdout"}"#,
        r#"{"kind":"file","path":"../../etc/cron.d/x"}"#,
        r#"{"kind":"webhook","url":"http://siem.example.com/"}"#,
        r#"{"kind":"webhook","url":"https://10.0.0.7/"}"#,
        r#"{"kind":"splunk_hec","url":"https://127.0.0.1:8088/services/collector/event","token":"t"}"#,
        r#"{"kind":"syslog","address":"siem.example.com:514"}"#,
    ] {
        assert!(!add(&d, "acme", "a", bad, &[]), "{bad} was accepted");
    }
    assert!(store().sinks("acme").unwrap().is_empty());

    // Added; stored sealed (the token is not in the column), opening to what was given.
    assert!(add(&d, "acme", "siem", hook, &[]));
    assert!(add(
        &d,
        "acme",
        "archive",
        r#"{"kind":"file","path":"acme/audit.jsonl"}"#,
        &[]
    ));
    assert!(add(
        &d,
        "acme",
        "syslog-1",
        r#"{"kind":"syslog","address":"siem.example.com:6514","tls":true}"#,
        &[]
    ));
    let sinks = store().sinks("acme").unwrap();
    let listed: Vec<_> = sinks
        .iter()
        .map(|s| (s.id.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("archive", "file"),
            ("siem", "webhook"),
            ("syslog-1", "syslog")
        ]
    );
    let siem = &sinks[1];
    assert!(siem.settings.starts_with("sealed:v1:"), "{}", siem.settings);
    assert!(!siem.settings.contains("SECRET"));
    assert!(!siem.settings.contains("siem.example.com"));
    let opened = builtin
        .open_settings("acme", &sealing_label("siem"), &siem.settings)
        .unwrap();
    assert_eq!(&opened[..], hook.as_bytes());
    assert!(SinkSettings::from_json(&opened).is_ok());
    // Bound to its sink id: it does not open as another sink's.
    assert!(
        builtin
            .open_settings("acme", &sealing_label("archive"), &siem.settings)
            .is_err()
    );
    // The raw database file does not hold the token either.
    let db = std::fs::read(d.join("keystead.db")).unwrap();
    let wal = std::fs::read(d.join("keystead.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(13).any(|w| w == b"tok-SECRET-42"));
    }
    assert!(run(&d, &["tenant", "sinks", "acme"]));

    // A second add of the same id replaces it.
    assert!(add(
        &d,
        "acme",
        "siem",
        r#"{"kind":"splunk_hec","url":"https://siem.example.com:8088/services/collector/event","token":"hec-2"}"#,
        &[]
    ));
    let sinks = store().sinks("acme").unwrap();
    assert_eq!(sinks.len(), 3);
    assert_eq!(sinks[1].kind, "splunk_hec");

    // An [outbound] allow-list admits a private address; a dev config admits stdout.
    let conf = d.join("keystead.toml");
    std::fs::write(
        &conf,
        "dev = true\n[outbound]\nallow = [\"10.0.0.0/8\"]\nallow_plain_http = true\n",
    )
    .unwrap();
    let with_conf = ["--config", conf.to_str().unwrap()];
    assert!(add(
        &d,
        "acme",
        "internal",
        r#"{"kind":"webhook","url":"http://10.0.0.7/hook"}"#,
        &with_conf
    ));
    assert!(add(
        &d,
        "acme",
        "console",
        r#"{"kind":"stdout"}"#,
        &with_conf
    ));
    assert_eq!(store().sinks("acme").unwrap().len(), 5);

    // Remove: known ids only.
    assert!(run(&d, &["tenant", "remove-sink", "acme", "internal"]));
    assert!(!run(&d, &["tenant", "remove-sink", "acme", "internal"]));
    assert!(!run(&d, &["tenant", "remove-sink", "nosuch", "siem"]));
    assert!(!run(&d, &["tenant", "sinks", "nosuch"]));
    let ids: Vec<_> = store()
        .sinks("acme")
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["archive", "console", "siem", "syslog-1"]);
    std::fs::remove_dir_all(&d).unwrap();
}
