//! Schema migrations.
//!
//! `MIGRATIONS[i]` takes a database from schema version `i` to `i + 1`. Each
//! runs once, inside a transaction together with the `user_version` bump, so a
//! crash mid-migration leaves the database at the previous version. Never edit
//! a migration that has shipped; append a new one.

use crate::StoreError;
use crate::sqlite::SqliteStore;

/// The migrations, in order.
pub const MIGRATIONS: &[&str] = &[
    // 1: versions, instances, events, meta.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE versions (
        number      INTEGER PRIMARY KEY,
        hash        TEXT NOT NULL,
        env_json    TEXT NOT NULL,
        images_json TEXT NOT NULL,
        root        TEXT NOT NULL,
        sources     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        restores    INTEGER,
        created_at  INTEGER NOT NULL
    );

    CREATE TABLE instances (
        id         TEXT PRIMARY KEY,
        service    TEXT NOT NULL,
        version    INTEGER NOT NULL,
        image      TEXT NOT NULL,
        provider   TEXT NOT NULL,
        state      TEXT NOT NULL,
        health     TEXT NOT NULL,
        addr       TEXT,
        handle     TEXT,
        created_at INTEGER NOT NULL,
        healthy_at INTEGER,
        ended_at   INTEGER,
        end_reason TEXT
    );
    CREATE INDEX instances_live ON instances(state) WHERE state != 'gone';
    CREATE INDEX instances_service ON instances(service, created_at);

    CREATE TABLE events (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        at       INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        severity TEXT NOT NULL,
        version  INTEGER,
        service  TEXT,
        instance TEXT,
        message  TEXT NOT NULL,
        details  TEXT
    );
    CREATE INDEX events_service ON events(service, seq);

    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    "#,
    // 2: rollout outcomes, derived state a restarted conductor needs.
    r#"
    ALTER TABLE versions ADD COLUMN outcome TEXT;
    ALTER TABLE versions ADD COLUMN outcome_at INTEGER;
    ALTER TABLE versions ADD COLUMN outcome_detail TEXT;
    ALTER TABLE instances ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX instances_version ON instances(version, failed);
    "#,
    // 3: leadership epochs (fenced writes) and retry state that survives a
    // conductor restart.
    r#"
    CREATE TABLE leadership (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        epoch      INTEGER NOT NULL,
        holder     TEXT,
        claimed_at INTEGER NOT NULL
    );

    CREATE TABLE backoffs (
        key      TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        until_ms INTEGER NOT NULL,
        cause    TEXT NOT NULL,
        first_at INTEGER NOT NULL,
        last_at  INTEGER NOT NULL
    );
    "#,
    // 4: API tokens (only a hash of each secret).
    r#"
    CREATE TABLE tokens (
        accessor    TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        role        TEXT NOT NULL,
        environment TEXT,
        secret_hash TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        revoked_at  INTEGER
    );
    CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE revoked_at IS NULL;
    "#,
    // 5: volumes and who holds them, and the autoscaler's decisions.
    r#"
    CREATE TABLE volumes (
        name       TEXT PRIMARY KEY,
        declared   TEXT NOT NULL,
        slot       INTEGER,
        provider   TEXT NOT NULL,
        location   TEXT,
        host_path  TEXT,
        size       INTEGER,
        created_at INTEGER NOT NULL,
        removing   INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE volume_claims (
        volume     TEXT NOT NULL,
        instance   TEXT NOT NULL,
        service    TEXT NOT NULL,
        slot       INTEGER,
        exclusive  INTEGER NOT NULL,
        claimed_at INTEGER NOT NULL,
        PRIMARY KEY (volume, instance)
    );
    CREATE INDEX volume_claims_instance ON volume_claims(instance);

    CREATE TABLE scale (
        service    TEXT PRIMARY KEY,
        desired    INTEGER NOT NULL,
        reason     TEXT NOT NULL,
        state      TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
    // 6: secrets, sealed (envelope encryption; see `seal.rs`). One row per
    // name: the current version only; a removed secret keeps its row (no
    // value) so that its versions continue.
    r#"
    CREATE TABLE secrets (
        name        TEXT PRIMARY KEY,
        version     INTEGER NOT NULL,
        value       BLOB,
        nonce       BLOB,
        wrapped_key BLOB,
        key_nonce   BLOB,
        key_id      TEXT,
        created_at  INTEGER NOT NULL,
        set_by      TEXT NOT NULL,
        removed_at  INTEGER,
        CHECK ((removed_at IS NULL) = (value IS NOT NULL AND wrapped_key IS NOT NULL AND key_id IS NOT NULL))
    );
    "#,
    // 7: incidents, one row per incident (see `incidents.rs`): repeats of
    // one kind and subject within the dedup window update the row.
    r#"
    CREATE TABLE incidents (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind        TEXT NOT NULL,
        subject     TEXT NOT NULL,
        found       TEXT NOT NULL,
        action      TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        resolved_at INTEGER,
        resolved_by TEXT,
        last_event  INTEGER
    );
    CREATE INDEX incidents_key ON incidents(kind, subject, last_seen);
    CREATE INDEX incidents_last_seen ON incidents(last_seen);
    "#,
    // 8: runtime variables' writes (see `variables.rs`): one row per write,
    // the newest index is the current value; the newest writes are kept.
    r#"
    CREATE TABLE variable_values (
        name       TEXT NOT NULL,
        idx        INTEGER NOT NULL CHECK (idx > 0),
        value      TEXT NOT NULL,
        written_at INTEGER NOT NULL,
        written_by TEXT NOT NULL,
        PRIMARY KEY (name, idx)
    ) WITHOUT ROWID;
    "#,
    // 9: the notification outbox (see `notifications.rs`): one row per
    // message to one sink, delivered at least once with a stable id, and
    // each sink's cursor in the event log (messages are enqueued and the
    // cursor moved in one transaction, so nothing is enqueued twice).
    r#"
    CREATE TABLE notifications (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        sink         TEXT NOT NULL,
        event_id     INTEGER NOT NULL,
        part         INTEGER NOT NULL DEFAULT 0,
        topic        TEXT NOT NULL,
        dedup_key    TEXT,
        payload      TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      INTEGER NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
        last_error   TEXT,
        created_at   INTEGER NOT NULL,
        delivered_at INTEGER,
        UNIQUE (sink, event_id, part)
    );
    CREATE INDEX notifications_pending ON notifications(sink, id) WHERE state = 'pending';
    CREATE TABLE notify_cursors (
        sink      TEXT PRIMARY KEY,
        event_seq INTEGER NOT NULL
    );
    "#,
];

/// Brings the database up to the newest schema.
pub fn migrate(store: &SqliteStore) -> Result<(), StoreError> {
    let mut conn = store.lock();
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| store.err("cannot read schema version", e))?;
    let supported = MIGRATIONS.len() as i64;
    if found > supported {
        return Err(StoreError::TooNew {
            path: store.path().to_owned(),
            found,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| store.err("cannot begin migration", e))?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| store.err("cannot read schema version", e))?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| store.err("migration failed", e))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(|e| store.err("cannot record schema version", e))?;
        tx.commit()
            .map_err(|e| store.err("cannot commit migration", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventLog;

    #[test]
    fn migrations_are_recorded_and_not_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let v: i64 = s
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        drop(s);
        // Reopening would fail on "table already exists" if rerun.
        SqliteStore::open(dir.path()).unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.lock().pragma_update(None, "user_version", 999).unwrap();
        drop(s);
        let err = SqliteStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found: 999, .. }),
            "{err}"
        );
    }

    #[test]
    fn events_cannot_be_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.append_event(crate::NewEvent::info(
            crate::EventKind::ConductorStarted,
            "x",
        ))
        .unwrap();
        let conn = s.lock();
        assert!(conn.execute("UPDATE events SET message = 'y'", []).is_err());
        assert!(conn.execute("DELETE FROM events", []).is_err());
    }
}
