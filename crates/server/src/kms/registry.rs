//! From a stored KMS config to a live adapter.
//!
//! A config's `settings` are the provider's JSON settings. Settings that hold credentials
//! are stored sealed under the data dir's root key (AES-256-GCM, AAD binding tenant and
//! config id, prefix `sealed:v1:`), so the store never holds a credential in clear; the
//! configuration broker will replace this with settings sealed to the ES fleet key and
//! signed by the tenant's admin. Adapters are built once per (tenant, config, settings)
//! and shared by every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::net::OutboundPolicy;
use super::{Kms, KmsError};
use crate::kms::builtin::BuiltinKms;
use crate::store::KmsConfig;

/// The providers this build knows, as named in a config's `provider`.
pub const PROVIDERS: &[&str] = &["builtin", "aws", "gcp", "azure", "vault", "kmip", "pkcs11"];

/// What adapters need besides their own settings.
#[derive(Clone, Debug)]
pub struct BuildContext {
    /// Where outbound connections may go.
    pub outbound: OutboundPolicy,
    /// Per-call timeout (adapters set it on their HTTP clients and sockets as well).
    pub timeout: Duration,
}

/// Builds the adapter of a provider from its (unsealed) JSON settings.
pub fn build(
    provider: &str,
    settings: serde_json::Value,
    ctx: &BuildContext,
    builtin: &Arc<BuiltinKms>,
) -> Result<Arc<dyn Kms>, KmsError> {
    match provider {
        "builtin" => {
            if settings.as_object().is_some_and(|m| !m.is_empty()) {
                return Err(KmsError::Other(
                    "the builtin provider takes no settings".into(),
                ));
            }
            Ok(builtin.clone())
        }
        "aws" => super::aws::build(settings, ctx),
        "gcp" => super::gcp::build(settings, ctx),
        "azure" => super::azure::build(settings, ctx),
        "vault" => super::vault::build(settings, ctx),
        "kmip" => super::kmip::build(settings, ctx),
        "pkcs11" => super::pkcs11::build(settings, ctx),
        other => Err(KmsError::Other(format!(
            "KMS provider '{other}' is not available in this build (known: {})",
            PROVIDERS.join(", ")
        ))),
    }
}

/// (tenant, config) → (the stored settings the adapter was built from, the adapter).
type Adapters = HashMap<(String, String), (String, Arc<dyn Kms>)>;

/// Adapters by (tenant, config), rebuilt when the stored settings change.
#[derive(Default)]
pub struct Registry {
    adapters: Mutex<Adapters>,
}

impl Registry {
    /// The adapter of `config`: cached, or built from its settings (unsealed with
    /// `builtin`'s root key where sealed).
    pub fn get(
        &self,
        config: &KmsConfig,
        ctx: &BuildContext,
        builtin: &Arc<BuiltinKms>,
    ) -> Result<Arc<dyn Kms>, KmsError> {
        if config.provider == "builtin" {
            // The hot path of every embedded deployment: no lookup, no allocation.
            return Ok(builtin.clone());
        }
        let key = (config.tenant.clone(), config.id.clone());
        if let Some((settings, kms)) = self
            .adapters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && *settings == config.settings
        {
            return Ok(kms.clone());
        }
        let plain = builtin.open_settings(&config.tenant, &config.id, &config.settings)?;
        let value: serde_json::Value = serde_json::from_slice(&plain)
            .map_err(|e| KmsError::Other(format!("KMS settings are not JSON: {e}")))?;
        let kms = build(&config.provider, value, ctx, builtin)?;
        self.adapters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (config.settings.clone(), kms.clone()));
        Ok(kms)
    }
}
