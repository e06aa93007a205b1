//! [`DirectoryStore`] on SQLite (tables of migration 4). Directory records are read from the
//! database, not from the snapshot: they are many and change on the request path. Every
//! compare-and-swap runs in one `IMMEDIATE` transaction.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::{SqliteStore, db};
use crate::directory::store::{
    AccessBlock, BlobMeta, DeviceRecord, DirectoryStore, GroupHead, LogEntryRecord, TokenKind,
    TokenRecord, UserRecord, UserUpdate,
};
use crate::store::{StoreError, StoreResult};

fn arr32(v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "expected 32 bytes".into(),
        )
    })
}

fn i64_of(n: u64) -> StoreResult<i64> {
    i64::try_from(n).map_err(|_| StoreError::Db("value out of range".into()))
}

impl SqliteStore {
    /// Runs `f` in an immediate (write-locking) transaction, without reloading the snapshot.
    fn dir_tx<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }
}

fn head_tx(tx: &Transaction<'_>, tenant: &str, group_id: &str) -> StoreResult<Option<GroupHead>> {
    tx.query_row(
        "SELECT head_seq, head_hash FROM dir_groups WHERE tenant = ?1 AND group_id = ?2",
        params![tenant, group_id],
        |r| {
            Ok(GroupHead {
                group_id: group_id.to_owned(),
                seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                hash: arr32(r.get(1)?)?,
            })
        },
    )
    .optional()
    .map_err(db)
}

fn set_members(
    tx: &Transaction<'_>,
    tenant: &str,
    group_id: &str,
    members: &[String],
) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM dir_group_members WHERE tenant = ?1 AND group_id = ?2",
        params![tenant, group_id],
    )
    .map_err(db)?;
    for m in members {
        tx.execute(
            "INSERT OR IGNORE INTO dir_group_members (tenant, group_id, user_id) VALUES (?1, ?2, ?3)",
            params![tenant, group_id, m],
        )
        .map_err(db)?;
    }
    Ok(())
}

fn insert_entry(
    tx: &Transaction<'_>,
    tenant: &str,
    group_id: &str,
    e: &LogEntryRecord,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO dir_group_entries (tenant, group_id, seq, hash, entry) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant, group_id, i64_of(e.seq)?, &e.hash[..], e.entry],
    )
    .map_err(|err| match err {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("entry {} of group exists", e.seq))
        }
        other => db(other),
    })?;
    Ok(())
}

impl DirectoryStore for SqliteStore {
    fn create_user(&self, tenant: &str, user_id: &str, now: i64) -> StoreResult<()> {
        self.dir_tx(|tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO dir_users (tenant, user_id, identity_key, record, version, created_at)
                     VALUES (?1, ?2, NULL, x'', 0, ?3)",
                    params![tenant, user_id, now],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("user {user_id}")));
            }
            Ok(())
        })
    }

    fn user(&self, tenant: &str, user_id: &str) -> StoreResult<Option<UserRecord>> {
        self.lock()
            .query_row(
                "SELECT identity_key, record, version, created_at FROM dir_users
                 WHERE tenant = ?1 AND user_id = ?2",
                params![tenant, user_id],
                |r| {
                    Ok(UserRecord {
                        user_id: user_id.to_owned(),
                        identity_key: r.get::<_, Option<Vec<u8>>>(0)?.map(arr32).transpose()?,
                        record: r.get(1)?,
                        version: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db)
    }

    fn devices(&self, tenant: &str, user_id: &str) -> StoreResult<Vec<DeviceRecord>> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT device_id, signing_key, certificate FROM dir_devices
                 WHERE tenant = ?1 AND user_id = ?2 AND removed = 0 ORDER BY device_id",
            )
            .map_err(db)?;
        let rows = st
            .query_map(params![tenant, user_id], |r| {
                Ok(DeviceRecord {
                    user_id: user_id.to_owned(),
                    device_id: r.get(0)?,
                    signing_key: arr32(r.get(1)?)?,
                    certificate: r.get(2)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn device(&self, tenant: &str, device_id: &str) -> StoreResult<Option<DeviceRecord>> {
        self.lock()
            .query_row(
                "SELECT user_id, signing_key, certificate FROM dir_devices
                 WHERE tenant = ?1 AND device_id = ?2 AND removed = 0",
                params![tenant, device_id],
                |r| {
                    Ok(DeviceRecord {
                        user_id: r.get(0)?,
                        device_id: device_id.to_owned(),
                        signing_key: arr32(r.get(1)?)?,
                        certificate: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db)
    }

    fn update_user(
        &self,
        tenant: &str,
        user_id: &str,
        expected_version: u64,
        u: &UserUpdate,
    ) -> StoreResult<u64> {
        self.dir_tx(|tx| {
            let row: Option<(Option<Vec<u8>>, i64)> = tx
                .query_row(
                    "SELECT identity_key, version FROM dir_users WHERE tenant = ?1 AND user_id = ?2",
                    params![tenant, user_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            let Some((identity, version)) = row else {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            };
            if version != i64_of(expected_version)? {
                return Err(StoreError::Conflict(format!(
                    "user record is at version {version}"
                )));
            }
            let identity = match (identity, u.identity_key) {
                (Some(have), Some(new)) if have != new => {
                    return Err(StoreError::Conflict(
                        "the user's identity key is set already".into(),
                    ));
                }
                (Some(have), _) => Some(have),
                (None, new) => new.map(|k| k.to_vec()),
            };
            let next = version + 1;
            tx.execute(
                "UPDATE dir_users SET identity_key = ?3, record = ?4, version = ?5
                 WHERE tenant = ?1 AND user_id = ?2",
                params![tenant, user_id, identity, u.record, next],
            )
            .map_err(db)?;
            for d in &u.remove_devices {
                let n = tx
                    .execute(
                        "UPDATE dir_devices SET removed = 1
                         WHERE tenant = ?1 AND user_id = ?2 AND device_id = ?3 AND removed = 0",
                        params![tenant, user_id, d],
                    )
                    .map_err(db)?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("device {d}")));
                }
            }
            for d in &u.add_devices {
                // Device ids are never reused, removed ones included: an old signature
                // must never verify under a new key of the same name.
                tx.execute(
                    "INSERT INTO dir_devices (tenant, device_id, user_id, signing_key, certificate)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![tenant, d.device_id, user_id, &d.signing_key[..], d.certificate],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        StoreError::Conflict(format!("device id {} is taken", d.device_id))
                    }
                    other => db(other),
                })?;
            }
            u64::try_from(next).map_err(|_| StoreError::Db("version out of range".into()))
        })
    }

    fn put_token(&self, t: &TokenRecord) -> StoreResult<()> {
        self.dir_tx(|tx| {
            tx.execute(
                "INSERT INTO dir_tokens (hash, tenant, user_id, kind, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&t.hash[..], t.tenant, t.user_id, t.kind.as_str(), t.expires_at],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn take_token(
        &self,
        hash: &[u8; 32],
        tenant: &str,
        user_id: &str,
        kind: TokenKind,
        now: i64,
    ) -> StoreResult<Option<TokenRecord>> {
        self.dir_tx(|tx| {
            tx.execute(
                "DELETE FROM dir_tokens WHERE expires_at <= ?1",
                params![now],
            )
            .map_err(db)?;
            let found: Option<(String, String, String, i64)> = tx
                .query_row(
                    "SELECT tenant, user_id, kind, expires_at FROM dir_tokens WHERE hash = ?1",
                    params![&hash[..]],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db)?;
            let Some((t, u, k, exp)) = found else {
                return Ok(None);
            };
            if t != tenant || u != user_id || k != kind.as_str() {
                // Not consumed: a token presented to the wrong route or user stays valid
                // for its own (it was not disclosed by this, it was the caller's).
                return Ok(None);
            }
            tx.execute("DELETE FROM dir_tokens WHERE hash = ?1", params![&hash[..]])
                .map_err(db)?;
            Ok(Some(TokenRecord {
                hash: *hash,
                tenant: t,
                user_id: u,
                kind,
                expires_at: exp,
            }))
        })
    }

    fn put_escrow(&self, tenant: &str, user_id: &str, blob: &[u8], now: i64) -> StoreResult<()> {
        self.dir_tx(|tx| {
            tx.execute(
                "INSERT INTO dir_escrow (tenant, user_id, blob, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, user_id) DO UPDATE SET blob = excluded.blob, updated_at = excluded.updated_at",
                params![tenant, user_id, blob, now],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn escrow(&self, tenant: &str, user_id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.lock()
            .query_row(
                "SELECT blob FROM dir_escrow WHERE tenant = ?1 AND user_id = ?2",
                params![tenant, user_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
    }

    fn escrow_attempt(
        &self,
        tenant: &str,
        user_id: &str,
        now: i64,
        ok: bool,
        since: i64,
    ) -> StoreResult<Vec<(i64, bool)>> {
        self.dir_tx(|tx| {
            tx.execute(
                "DELETE FROM dir_escrow_attempts WHERE tenant = ?1 AND user_id = ?2 AND at < ?3",
                params![tenant, user_id, since],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT INTO dir_escrow_attempts (tenant, user_id, at, ok) VALUES (?1, ?2, ?3, ?4)",
                params![tenant, user_id, now, ok],
            )
            .map_err(db)?;
            attempts_tx(tx, tenant, user_id, since)
        })
    }

    fn escrow_attempts(
        &self,
        tenant: &str,
        user_id: &str,
        since: i64,
    ) -> StoreResult<Vec<(i64, bool)>> {
        self.dir_tx(|tx| attempts_tx(tx, tenant, user_id, since))
    }

    fn create_group(
        &self,
        tenant: &str,
        group_id: &str,
        genesis: &LogEntryRecord,
        members: &[String],
    ) -> StoreResult<()> {
        self.dir_tx(|tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO dir_groups (tenant, group_id, head_seq, head_hash) VALUES (?1, ?2, ?3, ?4)",
                    params![tenant, group_id, i64_of(genesis.seq)?, &genesis.hash[..]],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("group {group_id}")));
            }
            insert_entry(tx, tenant, group_id, genesis)?;
            set_members(tx, tenant, group_id, members)
        })
    }

    fn group_head(&self, tenant: &str, group_id: &str) -> StoreResult<Option<GroupHead>> {
        self.dir_tx(|tx| head_tx(tx, tenant, group_id))
    }

    fn append_entry(
        &self,
        tenant: &str,
        group_id: &str,
        parent: (u64, [u8; 32]),
        entry: &LogEntryRecord,
        members: Option<&[String]>,
    ) -> StoreResult<()> {
        self.dir_tx(|tx| {
            let head = head_tx(tx, tenant, group_id)?
                .ok_or_else(|| StoreError::NotFound(format!("group {group_id}")))?;
            if (head.seq, head.hash) != parent {
                return Err(StoreError::Conflict(
                    "the group's head moved: this parent has a child already".into(),
                ));
            }
            insert_entry(tx, tenant, group_id, entry)?;
            // The head moves only from the expected parent (a second guard besides the lock).
            let n = tx
                .execute(
                    "UPDATE dir_groups SET head_seq = ?3, head_hash = ?4
                     WHERE tenant = ?1 AND group_id = ?2 AND head_seq = ?5 AND head_hash = ?6",
                    params![
                        tenant,
                        group_id,
                        i64_of(entry.seq)?,
                        &entry.hash[..],
                        i64_of(parent.0)?,
                        &parent.1[..]
                    ],
                )
                .map_err(db)?;
            if n != 1 {
                return Err(StoreError::Conflict("the group's head moved".into()));
            }
            if let Some(m) = members {
                set_members(tx, tenant, group_id, m)?;
            }
            Ok(())
        })
    }

    fn entries(
        &self,
        tenant: &str,
        group_id: &str,
        from: u64,
        limit: usize,
    ) -> StoreResult<Vec<LogEntryRecord>> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT seq, hash, entry FROM dir_group_entries
                 WHERE tenant = ?1 AND group_id = ?2 AND seq >= ?3 ORDER BY seq LIMIT ?4",
            )
            .map_err(db)?;
        let rows = st
            .query_map(
                params![
                    tenant,
                    group_id,
                    i64::try_from(from).unwrap_or(i64::MAX),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok(LogEntryRecord {
                        seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        hash: arr32(r.get(1)?)?,
                        entry: r.get(2)?,
                    })
                },
            )
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn is_member(&self, tenant: &str, group_id: &str, user_id: &str) -> StoreResult<bool> {
        self.lock()
            .query_row(
                "SELECT 1 FROM dir_group_members WHERE tenant = ?1 AND group_id = ?2 AND user_id = ?3",
                params![tenant, group_id, user_id],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(db)
    }

    fn groups_of(&self, tenant: &str, user_id: &str) -> StoreResult<Vec<GroupHead>> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT g.group_id, g.head_seq, g.head_hash FROM dir_group_members m
                 JOIN dir_groups g ON g.tenant = m.tenant AND g.group_id = m.group_id
                 WHERE m.tenant = ?1 AND m.user_id = ?2 ORDER BY g.group_id",
            )
            .map_err(db)?;
        let rows = st
            .query_map(params![tenant, user_id], |r| {
                Ok(GroupHead {
                    group_id: r.get(0)?,
                    seq: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    hash: arr32(r.get(2)?)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn access_block(&self, tenant: &str, doc_id: &str) -> StoreResult<Option<AccessBlock>> {
        self.lock()
            .query_row(
                "SELECT version, block FROM dir_access_blocks WHERE tenant = ?1 AND doc_id = ?2",
                params![tenant, doc_id],
                |r| {
                    Ok(AccessBlock {
                        version: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        block: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(db)
    }

    fn put_access_block(
        &self,
        tenant: &str,
        doc_id: &str,
        expected_version: u64,
        block: &[u8],
    ) -> StoreResult<u64> {
        self.dir_tx(|tx| {
            let current: i64 = tx
                .query_row(
                    "SELECT version FROM dir_access_blocks WHERE tenant = ?1 AND doc_id = ?2",
                    params![tenant, doc_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
                .unwrap_or(0);
            if current != i64_of(expected_version)? {
                return Err(StoreError::Conflict(format!(
                    "access block is at version {current}"
                )));
            }
            let next = current + 1;
            tx.execute(
                "INSERT INTO dir_access_blocks (tenant, doc_id, version, block) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, doc_id) DO UPDATE SET version = excluded.version, block = excluded.block",
                params![tenant, doc_id, next, block],
            )
            .map_err(db)?;
            u64::try_from(next).map_err(|_| StoreError::Db("version out of range".into()))
        })
    }

    fn blob(&self, tenant: &str, blob_id: &str) -> StoreResult<Option<BlobMeta>> {
        self.lock()
            .query_row(
                "SELECT size, sha256, owner FROM dir_blobs WHERE tenant = ?1 AND blob_id = ?2",
                params![tenant, blob_id],
                |r| {
                    Ok(BlobMeta {
                        size: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        sha256: arr32(r.get(1)?)?,
                        owner: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db)
    }

    fn put_blob(&self, tenant: &str, blob_id: &str, m: &BlobMeta, now: i64) -> StoreResult<()> {
        self.dir_tx(|tx| {
            tx.execute(
                "INSERT INTO dir_blobs (tenant, blob_id, size, sha256, owner, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, blob_id) DO UPDATE SET size = excluded.size,
                    sha256 = excluded.sha256, owner = excluded.owner, updated_at = excluded.updated_at",
                params![tenant, blob_id, i64_of(m.size)?, &m.sha256[..], m.owner, now],
            )
            .map_err(db)?;
            Ok(())
        })
    }
}

fn attempts_tx(
    tx: &Transaction<'_>,
    tenant: &str,
    user_id: &str,
    since: i64,
) -> StoreResult<Vec<(i64, bool)>> {
    let mut st = tx
        .prepare(
            "SELECT at, ok FROM dir_escrow_attempts WHERE tenant = ?1 AND user_id = ?2 AND at >= ?3
             ORDER BY at, rowid",
        )
        .map_err(db)?;
    let rows = st
        .query_map(params![tenant, user_id, since], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, tag: u8) -> LogEntryRecord {
        LogEntryRecord {
            seq,
            hash: [tag; 32],
            entry: vec![tag; 4],
        }
    }

    #[test]
    fn group_head_is_compare_and_swap() {
        let s = SqliteStore::in_memory().unwrap();
        s.create_group("t", "g", &entry(0, 1), &["ada".into()])
            .unwrap();
        assert!(matches!(
            s.create_group("t", "g", &entry(0, 9), &[]),
            Err(StoreError::Conflict(_))
        ));
        s.append_entry("t", "g", (0, [1; 32]), &entry(1, 2), None)
            .unwrap();
        // A second child of the same parent loses.
        assert!(matches!(
            s.append_entry("t", "g", (0, [1; 32]), &entry(1, 3), None),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.group_head("t", "g").unwrap().unwrap().seq, 1);
        assert_eq!(s.entries("t", "g", 1, 10).unwrap(), vec![entry(1, 2)]);
        assert!(s.is_member("t", "g", "ada").unwrap());
        assert_eq!(s.groups_of("t", "ada").unwrap().len(), 1);
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let s = SqliteStore::in_memory().unwrap();
        let t = TokenRecord {
            hash: [5; 32],
            tenant: "t".into(),
            user_id: "u".into(),
            kind: TokenKind::Enrollment,
            expires_at: 100,
        };
        s.put_token(&t).unwrap();
        let take = |now| s.take_token(&[5; 32], "t", "u", TokenKind::Enrollment, now);
        assert!(
            s.take_token(&[5; 32], "t", "u", TokenKind::Reauthentication, 10)
                .unwrap()
                .is_none()
        );
        assert_eq!(take(10).unwrap(), Some(t.clone()));
        assert_eq!(take(10).unwrap(), None);
        s.put_token(&t).unwrap();
        assert_eq!(take(100).unwrap(), None, "expired");
    }

    #[test]
    fn user_versions_and_access_blocks_are_cas() {
        let s = SqliteStore::in_memory().unwrap();
        s.create_user("t", "u", 1).unwrap();
        let up = UserUpdate {
            record: vec![1],
            identity_key: Some([7; 32]),
            add_devices: vec![DeviceRecord {
                user_id: "u".into(),
                device_id: "d1".into(),
                signing_key: [8; 32],
                certificate: vec![2],
            }],
            remove_devices: vec![],
        };
        assert_eq!(s.update_user("t", "u", 0, &up).unwrap(), 1);
        assert!(matches!(
            s.update_user("t", "u", 0, &up),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.device("t", "d1").unwrap().unwrap().user_id, "u");
        assert_eq!(s.put_access_block("t", "doc", 0, b"a").unwrap(), 1);
        assert!(matches!(
            s.put_access_block("t", "doc", 0, b"b"),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.put_access_block("t", "doc", 1, b"b").unwrap(), 2);
    }
}
