//! Service keys: creation, hashing and constant-time verification, and the scope checks
//! that run before any tenant lookup.
//!
//! A secret looks like `ks_<id>_<43 base64url chars>`; only `SHA-256(secret)` is stored. The
//! id part is public (it names the key in audit events) and finds the record.

use std::collections::HashSet;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::store::{ServiceKey, Store};
use crate::util::{random_bytes, unix_now};

/// Operations a key may be scoped to.
pub const OPS: &[&str] = &[
    "wrap",
    "unwrap",
    "batch",
    "rekey",
    "derive",
    "events",
    "directory",
];

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Service-key id (public).
    pub key_id: String,
    /// Service-key name.
    pub name: String,
    /// Tenants in scope; `None` = all tenants.
    pub tenants: Option<HashSet<String>>,
    /// Operations in scope.
    pub ops: HashSet<String>,
}

impl Principal {
    /// Whether this key may act for every tenant (and so learn that a tenant does not exist).
    pub fn all_tenants(&self) -> bool {
        self.tenants.is_none()
    }

    /// Scope check, made before any tenant lookup: `403 tenant_forbidden` whether or not
    /// the tenant exists, then `403 operation_forbidden`.
    pub fn authorize(&self, tenant: &str, op: &str) -> Result<(), ApiError> {
        if let Some(t) = &self.tenants
            && !t.contains(tenant)
        {
            return Err(ApiError::tenant_forbidden());
        }
        if !self.ops.contains(op) {
            return Err(ApiError::operation_forbidden(op));
        }
        Ok(())
    }
}

/// A newly created key: the record to store and the secret to print once.
pub struct NewKey {
    /// What the store keeps.
    pub record: ServiceKey,
    /// The secret, shown once.
    pub secret: Zeroizing<String>,
}

/// Makes a new service key.
pub fn new_key(
    name: &str,
    tenants: Option<Vec<String>>,
    ops: Vec<String>,
    expires_at: Option<i64>,
) -> NewKey {
    let id = hex::encode(random_bytes::<6>());
    let secret_part = Zeroizing::new(random_bytes::<32>());
    let secret = Zeroizing::new(format!(
        "ks_{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret_part[..])
    ));
    let record = ServiceKey {
        id,
        name: name.to_owned(),
        secret_hash: Sha256::digest(secret.as_bytes()).into(),
        tenants,
        ops,
        expires_at,
        revoked: false,
        created_at: unix_now(),
    };
    NewKey { record, secret }
}

/// Verifies an `Authorization` header value. Every failure is the same `401`.
pub fn authenticate(store: &dyn Store, header: Option<&str>) -> Result<Principal, ApiError> {
    let secret = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthenticated)?;
    let id = secret
        .strip_prefix("ks_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id)
        .filter(|id| id.len() == 12)
        .ok_or_else(ApiError::unauthenticated)?;
    let lookup = || {
        store
            .service_key(id)
            .map_err(|_| ApiError::unauthenticated())
    };
    let mut record = lookup()?;
    if record.is_none() {
        // A key created a moment ago by `keystead service-key create` may not be in this
        // process's snapshot yet: look once more after a (rate-limited) re-read.
        if store.recheck().is_ok() {
            record = lookup()?;
        }
    }
    // Hash even when the id is unknown, so timing does not tell ids apart.
    let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let Some(record) = record else {
        return Err(ApiError::unauthenticated());
    };
    if !bool::from(presented.ct_eq(&record.secret_hash)) || record.revoked {
        return Err(ApiError::unauthenticated());
    }
    if record.expires_at.is_some_and(|e| unix_now() >= e) {
        return Err(ApiError::unauthenticated());
    }
    Ok(Principal {
        key_id: record.id,
        name: record.name,
        tenants: record.tenants.map(|t| t.into_iter().collect()),
        ops: record.ops.into_iter().collect(),
    })
}

/// Parses an expiry like `90d`, `12h`, `30m` into seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn keys_authenticate_and_fail_closed() {
        let store = SqliteStore::in_memory().unwrap();
        let k = new_key("svc", Some(vec!["acme".into()]), vec!["wrap".into()], None);
        store.create_service_key(&k.record).unwrap();
        let p = authenticate(&store, Some(&format!("Bearer {}", &*k.secret))).unwrap();
        assert_eq!(p.name, "svc");
        assert!(p.authorize("acme", "wrap").is_ok());
        assert_eq!(
            p.authorize("other", "wrap").unwrap_err().code,
            "tenant_forbidden"
        );
        assert_eq!(
            p.authorize("acme", "unwrap").unwrap_err().code,
            "operation_forbidden"
        );
        let mut wrong = k.secret.to_string();
        // Change the last character (to one it is not), so the secret is surely wrong.
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        for h in [
            None,
            Some("Basic x".to_owned()),
            Some(format!("Bearer {wrong}")),
            Some("Bearer ks_000000000000_x".into()),
        ] {
            assert_eq!(
                authenticate(&store, h.as_deref()).unwrap_err().code,
                "unauthenticated"
            );
        }
        store.revoke_service_key("svc").unwrap();
        assert!(authenticate(&store, Some(&format!("Bearer {}", &*k.secret))).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Some(90 * 86_400));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("0d"), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("5w"), None);
    }
}
