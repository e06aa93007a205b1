//! The operator commands for a tenant's KMS configs, run the way an operator runs them
//! (`keystead --data-dir DIR tenant ...`): add a config (settings sealed at rest, bad
//! settings refused before anything is stored), set the primary, retire (refused for the
//! primary and while derivation secrets are still wrapped by it), list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use keystead_server::cli::{main_with_args, open_data_dir};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "keystead-cli-kms-{}-{}",
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

#[test]
fn add_set_primary_retire_and_list_configs() {
    let d = dir();
    assert!(run(&d, &["tenant", "create", "acme", "--mode", "remote"]));
    let settings = d.join("own.json");
    std::fs::write(&settings, "{}").unwrap();
    let s = settings.to_str().unwrap();

    // Unknown provider, unknown settings field, bad JSON: refused, nothing stored.
    std::fs::write(d.join("bad.json"), "{\"nope\": 1}").unwrap();
    std::fs::write(d.join("notjson.json"), "{").unwrap();
    let bad = d.join("bad.json");
    let notjson = d.join("notjson.json");
    for (provider, file) in [
        ("nosuch", s),
        ("builtin", bad.to_str().unwrap()),
        ("builtin", notjson.to_str().unwrap()),
    ] {
        assert!(!run(
            &d,
            &[
                "tenant",
                "add-kms-config",
                "acme",
                "own-1",
                "--provider",
                provider,
                "--settings",
                file
            ]
        ));
    }
    // A fresh store per check: the CLI wrote through its own connection.
    let store = || open_data_dir(&d).unwrap().0;
    let builtin = open_data_dir(&d).unwrap().1;
    assert_eq!(store().configs("acme").unwrap().len(), 1);

    assert!(run(
        &d,
        &[
            "tenant",
            "add-kms-config",
            "acme",
            "own-1",
            "--provider",
            "builtin",
            "--settings",
            s
        ]
    ));
    // The same id twice: refused.
    assert!(!run(
        &d,
        &[
            "tenant",
            "add-kms-config",
            "acme",
            "own-1",
            "--provider",
            "builtin",
            "--settings",
            s
        ]
    ));
    // Stored sealed, and it opens to what was given.
    let c = store().config("acme", "own-1").unwrap().unwrap();
    assert!(c.settings.starts_with("sealed:v1:"), "{}", c.settings);
    assert_eq!(
        &builtin.open_settings("acme", "own-1", &c.settings).unwrap()[..],
        b"{}"
    );
    // Sealing binds tenant and config: the blob does not open as another config's.
    assert!(builtin.open_settings("acme", "own-2", &c.settings).is_err());

    // The primary cannot be retired; an unknown config cannot become primary.
    assert!(!run(&d, &["tenant", "retire-config", "acme", "builtin-1"]));
    assert!(!run(&d, &["tenant", "set-primary", "acme", "nosuch"]));
    builtin.create_version("acme", "own-1").unwrap();
    assert!(run(&d, &["tenant", "set-primary", "acme", "own-1"]));
    assert_eq!(
        store().tenant("acme").unwrap().unwrap().primary_config,
        "own-1"
    );
    assert!(run(&d, &["tenant", "retire-config", "acme", "builtin-1"]));
    assert!(run(&d, &["tenant", "configs", "acme"]));
    let states: Vec<_> = store()
        .configs("acme")
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.state))
        .collect();
    assert!(states.contains(&(
        "builtin-1".into(),
        keystead_server::store::ConfigState::Retired
    )));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn retiring_a_config_that_still_wraps_derivation_secrets_is_refused() {
    let d = dir();
    assert!(run(&d, &["tenant", "create", "acme"]));
    // The first derivation secret, wrapped by builtin-1.
    assert!(run(&d, &["tenant", "rotate-derivation-secret", "acme"]));
    let settings = d.join("own.json");
    std::fs::write(&settings, "{}").unwrap();
    assert!(run(
        &d,
        &[
            "tenant",
            "add-kms-config",
            "acme",
            "own-1",
            "--provider",
            "builtin",
            "--settings",
            settings.to_str().unwrap(),
            "--primary"
        ]
    ));
    open_data_dir(&d)
        .unwrap()
        .1
        .create_version("acme", "own-1")
        .unwrap();
    assert!(!run(&d, &["tenant", "retire-config", "acme", "builtin-1"]));
    assert!(run(&d, &["tenant", "rewrap-derivation-secrets", "acme"]));
    assert!(
        open_data_dir(&d)
            .unwrap()
            .0
            .derivation_secrets("acme")
            .unwrap()
            .iter()
            .all(|s| s.config == "own-1")
    );
    assert!(run(&d, &["tenant", "retire-config", "acme", "builtin-1"]));
    std::fs::remove_dir_all(&d).ok();
}
