//! The server's [`SinkSource`]: a tenant's own sinks (stored sealed, see `sink::Resolver`),
//! or the operator's default sinks for tenants that configured none. A default `file`
//! sink's `{tenant}` is replaced by the tenant's spool directory name, so each tenant gets
//! its own file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::deliver::{SinkList, SinkSource};
use super::sink::{self, Resolver, SinkContext, SinkError, SinkSettings};
use super::spool::tenant_dir_name;
use crate::kms::builtin::BuiltinKms;
use crate::store::Store;

/// Sinks per tenant: configured ones through the resolver, defaults built per tenant.
pub struct TenantSinks {
    resolver: Resolver,
    ctx: SinkContext,
    defaults: Vec<(String, SinkSettings)>,
    built: Mutex<HashMap<String, SinkList>>,
}

impl TenantSinks {
    /// A source over the store's per-tenant sinks with `defaults` for the others. Fails
    /// when a default does not build (checked once, for a sample tenant).
    pub fn new(
        store: Arc<dyn Store>,
        builtin: Arc<BuiltinKms>,
        ctx: SinkContext,
        defaults: Vec<(String, SinkSettings)>,
    ) -> Result<Self, SinkError> {
        let s = Self {
            resolver: Resolver::new(store, builtin, ctx.clone(), Vec::new())?,
            ctx,
            defaults,
            built: Mutex::new(HashMap::new()),
        };
        s.defaults_for("_check")?;
        s.built.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(s)
    }

    fn defaults_for(&self, tenant: &str) -> Result<SinkList, SinkError> {
        let mut cache = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = cache.get(tenant) {
            return Ok(v.clone());
        }
        let mut v = Vec::new();
        for (id, settings) in &self.defaults {
            let settings = match settings {
                SinkSettings::File { path } => SinkSettings::File {
                    path: path.replace("{tenant}", &tenant_dir_name(tenant)),
                },
                other => other.clone(),
            };
            let built = sink::build(&settings, &self.ctx)
                .map_err(|e| SinkError::new(format!("default audit sink {id}: {e}")))?;
            v.push((id.clone(), built));
        }
        cache.insert(tenant.to_owned(), v.clone());
        Ok(v)
    }
}

impl SinkSource for TenantSinks {
    fn sinks_for(&self, tenant: &str) -> Result<SinkList, SinkError> {
        let own = self.resolver.sinks_for(tenant)?;
        if own.is_empty() {
            self.defaults_for(tenant)
        } else {
            Ok(own)
        }
    }
}
