//! Facts about the store itself: its id and the conductor's heartbeat.

use crate::sqlite::SqliteStore;
use crate::{StoreError, from_ms};
use rusqlite::{OptionalExtension, params};
use std::io::Read;
use std::time::SystemTime;

const STORE_ID: &str = "store_id";
const CONDUCTOR: &str = "conductor";

/// How a conductor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConductorMode {
    /// `glint conductor`: a daemon; stopping it leaves instances running.
    Daemon,
    /// `glint up`: in the foreground; Ctrl-C stops everything.
    Up,
}

impl std::fmt::Display for ConductorMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConductorMode::Daemon => "daemon",
            ConductorMode::Up => "up",
        })
    }
}

/// The last heartbeat of a conductor, as written by it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConductorInfo {
    /// Its process id.
    pub pid: u32,
    /// How it runs.
    pub mode: ConductorMode,
    /// The leadership epoch it was elected with.
    #[serde(default)]
    pub epoch: u64,
    /// Where its API listens (a unix socket path), if anywhere.
    pub api: Option<String>,
    /// When it started (ms since the epoch).
    pub started_at: i64,
    /// When it last wrote a heartbeat (ms since the epoch).
    pub heartbeat_at: i64,
    /// Set when it stopped cleanly.
    pub stopped: bool,
}

impl ConductorInfo {
    /// When it last wrote a heartbeat.
    pub fn heartbeat(&self) -> SystemTime {
        from_ms(self.heartbeat_at)
    }
}

/// Facts about the store itself.
pub trait Meta {
    /// The store's random id, generated when the store was created. It goes
    /// into every ownership label so that two data directories never touch
    /// each other's instances.
    fn store_id(&self) -> Result<String, StoreError>;

    /// Records the conductor's heartbeat (called every few seconds).
    fn write_conductor(&self, info: &ConductorInfo) -> Result<(), StoreError>;

    /// The last conductor heartbeat, if a conductor ever ran.
    fn conductor(&self) -> Result<Option<ConductorInfo>, StoreError>;

    /// Where the store lives, for messages (a file, a cluster).
    fn location(&self) -> String;
}

impl Meta for SqliteStore {
    fn store_id(&self) -> Result<String, StoreError> {
        self.meta_get(STORE_ID)?
            .ok_or_else(|| self.corrupt("meta", "store id missing"))
    }

    fn write_conductor(&self, info: &ConductorInfo) -> Result<(), StoreError> {
        let json = serde_json::to_string(info).map_err(|e| self.corrupt("conductor", e))?;
        self.meta_set(CONDUCTOR, &json)
    }

    fn conductor(&self) -> Result<Option<ConductorInfo>, StoreError> {
        match self.meta_get(CONDUCTOR)? {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| self.corrupt("conductor", e)),
        }
    }

    fn location(&self) -> String {
        self.path().display().to_string()
    }
}

impl SqliteStore {
    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err("cannot read meta", e))
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write("cannot write meta", |tx| {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err("cannot write meta", e))
        })
    }
}

/// Creates the store id on first open.
pub(crate) fn ensure_store_id(store: &SqliteStore) -> Result<(), StoreError> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| StoreError::DataDir {
            path: "/dev/urandom".into(),
            source,
        })?;
    let id = glint_model::hex(&bytes);
    // INSERT OR IGNORE: concurrent first opens agree on whichever id won.
    store
        .lock()
        .execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)",
            params![STORE_ID, id],
        )
        .map_err(|e| store.err("cannot write store id", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conductor_heartbeat_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.conductor().unwrap(), None);
        let info = ConductorInfo {
            pid: 42,
            mode: ConductorMode::Daemon,
            epoch: 1,
            api: Some("/x.sock".into()),
            started_at: 1,
            heartbeat_at: 2,
            stopped: false,
        };
        s.write_conductor(&info).unwrap();
        assert_eq!(s.conductor().unwrap(), Some(info));
    }
}
