//! Which sinks a tenant's events go to: the tenant's own (from the store, settings opened
//! with the root key), else the operator's defaults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Sink, SinkContext, SinkError, SinkSettings, build};
use crate::kms::builtin::BuiltinKms;
use crate::store::Store;

/// The name under which a sink's settings are sealed (`BuiltinKms::seal_settings`).
pub fn sealing_label(sink_id: &str) -> String {
    format!("sink:{sink_id}")
}

/// A sink with its id (the tenant's sink id, or the default's name).
pub type NamedSink = (String, Arc<dyn Sink>);

struct Cached {
    /// The stored (sealed) settings the sink was built from.
    stored: String,
    sink: Arc<dyn Sink>,
}

/// Resolves and caches the sinks of tenants.
///
/// A tenant's sinks are built once and kept until their stored settings change (another
/// `tenant add-sink` of the same id), so a delivery does not reopen sealed settings or
/// reconnect. Removed sinks are dropped from the cache at the tenant's next lookup.
pub struct Resolver {
    store: Arc<dyn Store>,
    kms: Arc<BuiltinKms>,
    ctx: SinkContext,
    defaults: Vec<NamedSink>,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl Resolver {
    /// A resolver over `store`; `defaults` (sink id, settings) serve tenants without sinks
    /// of their own. Fails if a default does not build in `ctx`.
    pub fn new(
        store: Arc<dyn Store>,
        kms: Arc<BuiltinKms>,
        ctx: SinkContext,
        defaults: Vec<(String, SinkSettings)>,
    ) -> Result<Self, SinkError> {
        let defaults = defaults
            .into_iter()
            .map(|(id, settings)| {
                build(&settings, &ctx)
                    .map(|s| (id.clone(), s))
                    .map_err(|e| SinkError::new(format!("default audit sink {id}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            store,
            kms,
            ctx,
            defaults,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The sinks `tenant`'s events go to, with their ids: its configured sinks in id
    /// order, or the defaults when it has none. An error when the store fails or a
    /// configured sink does not open or build (its events wait in the spool meanwhile).
    pub fn sinks_for(&self, tenant: &str) -> Result<Vec<NamedSink>, SinkError> {
        let records = self
            .store
            .sinks(tenant)
            .map_err(|e| SinkError::new(format!("audit sinks of {tenant}: {e}")))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Forget this tenant's sinks that were removed (or whose settings changed below).
        cache.retain(|(t, id), _| t != tenant || records.iter().any(|r| &r.id == id));
        if records.is_empty() {
            return Ok(self.defaults.clone());
        }
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let key = (tenant.to_owned(), r.id.clone());
            if let Some(c) = cache.get(&key)
                && c.stored == r.settings
            {
                out.push((r.id, c.sink.clone()));
                continue;
            }
            let what = || format!("audit sink {} of tenant {tenant}", r.id);
            let raw = self
                .kms
                .open_settings(tenant, &sealing_label(&r.id), &r.settings)
                .map_err(|e| SinkError::new(format!("{}: {e}", what())))?;
            let settings = SinkSettings::from_json(&raw)
                .map_err(|e| SinkError::new(format!("{}: {e}", what())))?;
            if settings.kind() != r.kind {
                return Err(SinkError::new(format!(
                    "{}: stored as {} but its settings are {}",
                    what(),
                    r.kind,
                    settings.kind()
                )));
            }
            let sink = build(&settings, &self.ctx)
                .map_err(|e| SinkError::new(format!("{}: {e}", what())))?;
            cache.insert(
                key,
                Cached {
                    stored: r.settings,
                    sink: sink.clone(),
                },
            );
            out.push((r.id, sink));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::kms::builtin::RootKey;
    use crate::kms::net::OutboundPolicy;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{ConfigState, KmsConfig, SinkRecord, Tenant, TenantMode};

    fn setup() -> (Arc<dyn Store>, Arc<BuiltinKms>, SinkContext) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        for t in ["acme", "globex"] {
            store
                .create_tenant(
                    &Tenant {
                        id: t.into(),
                        mode: TenantMode::Remote,
                        primary_config: "c".into(),
                        disabled: false,
                        lease_secs: 3600,
                        renew_secs: 1200,
                    },
                    &KmsConfig {
                        tenant: t.into(),
                        id: "c".into(),
                        provider: "builtin".into(),
                        state: ConfigState::Active,
                        settings: "{}".into(),
                    },
                )
                .unwrap();
        }
        let kms = Arc::new(BuiltinKms::new(RootKey::from_bytes([7; 32]), store.clone()));
        let ctx = SinkContext {
            outbound: OutboundPolicy::allow_loopback_for_tests(),
            file_dir: std::env::temp_dir(),
            dev: false,
            timeout: Duration::from_secs(5),
            instance: "es-1".into(),
        };
        (store, kms, ctx)
    }

    fn put(store: &Arc<dyn Store>, kms: &BuiltinKms, tenant: &str, id: &str, json: &str) {
        let kind = SinkSettings::from_json(json.as_bytes()).unwrap().kind();
        store
            .put_sink(&SinkRecord {
                tenant: tenant.into(),
                id: id.into(),
                kind: kind.into(),
                settings: kms
                    .seal_settings(tenant, &sealing_label(id), json.as_bytes())
                    .unwrap(),
            })
            .unwrap();
    }

    fn ids(v: &[NamedSink]) -> Vec<(&str, &'static str)> {
        v.iter().map(|(id, s)| (id.as_str(), s.kind())).collect()
    }

    #[test]
    fn tenant_sinks_are_cached_rebuilt_on_change_and_default_otherwise() {
        let (store, kms, ctx) = setup();
        let defaults = vec![(
            "default".to_owned(),
            SinkSettings::File {
                path: "all.jsonl".into(),
            },
        )];
        let r = Resolver::new(store.clone(), kms.clone(), ctx.clone(), defaults).unwrap();
        assert_eq!(ids(&r.sinks_for("acme").unwrap()), [("default", "file")]);

        put(
            &store,
            &kms,
            "acme",
            "hook",
            r#"{"kind":"webhook","url":"http://127.0.0.1:9/h","token":"t"}"#,
        );
        put(
            &store,
            &kms,
            "acme",
            "arch",
            r#"{"kind":"file","path":"acme.jsonl"}"#,
        );
        let first = r.sinks_for("acme").unwrap();
        assert_eq!(ids(&first), [("arch", "file"), ("hook", "webhook")]);
        // Cached: the same instances while the stored settings are unchanged.
        let again = r.sinks_for("acme").unwrap();
        assert!(Arc::ptr_eq(&first[0].1, &again[0].1));
        assert!(Arc::ptr_eq(&first[1].1, &again[1].1));
        // Changed settings: that sink is rebuilt, the other kept.
        put(
            &store,
            &kms,
            "acme",
            "hook",
            r#"{"kind":"webhook","url":"http://127.0.0.1:9/h2"}"#,
        );
        let changed = r.sinks_for("acme").unwrap();
        assert!(Arc::ptr_eq(&first[0].1, &changed[0].1));
        assert!(!Arc::ptr_eq(&first[1].1, &changed[1].1));
        // Other tenants still get the defaults; removing all sinks returns to them.
        assert_eq!(ids(&r.sinks_for("globex").unwrap()), [("default", "file")]);
        assert!(store.remove_sink("acme", "hook").unwrap());
        assert!(store.remove_sink("acme", "arch").unwrap());
        assert_eq!(ids(&r.sinks_for("acme").unwrap()), [("default", "file")]);
        assert!(r.cache.lock().unwrap().is_empty());
    }

    #[test]
    fn bad_stored_sinks_and_defaults_are_errors() {
        let (store, kms, ctx) = setup();
        // A default that does not build (stdout outside --dev).
        assert!(
            Resolver::new(
                store.clone(),
                kms.clone(),
                ctx.clone(),
                vec![("d".into(), SinkSettings::Stdout)]
            )
            .is_err()
        );
        let r = Resolver::new(store.clone(), kms.clone(), ctx, Vec::new()).unwrap();
        assert!(r.sinks_for("acme").unwrap().is_empty());
        // Settings sealed for another sink id do not open.
        store
            .put_sink(&SinkRecord {
                tenant: "acme".into(),
                id: "a".into(),
                kind: "file".into(),
                settings: kms
                    .seal_settings(
                        "acme",
                        &sealing_label("b"),
                        br#"{"kind":"file","path":"x"}"#,
                    )
                    .unwrap(),
            })
            .unwrap();
        let e = r.sinks_for("acme").err().unwrap();
        assert!(
            e.message.contains("audit sink a of tenant acme"),
            "{}",
            e.message
        );
        // A kind that does not match the settings.
        store
            .put_sink(&SinkRecord {
                tenant: "acme".into(),
                id: "a".into(),
                kind: "webhook".into(),
                settings: kms
                    .seal_settings(
                        "acme",
                        &sealing_label("a"),
                        br#"{"kind":"file","path":"x"}"#,
                    )
                    .unwrap(),
            })
            .unwrap();
        assert!(r.sinks_for("acme").is_err());
        // Settings the context refuses (a path escaping the directory).
        put(
            &store,
            &kms,
            "acme",
            "a",
            r#"{"kind":"file","path":"../x"}"#,
        );
        assert!(r.sinks_for("acme").is_err());
        put(&store, &kms, "acme", "a", r#"{"kind":"file","path":"x"}"#);
        assert_eq!(ids(&r.sinks_for("acme").unwrap()), [("a", "file")]);
    }
}
