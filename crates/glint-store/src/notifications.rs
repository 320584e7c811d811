//! The notification outbox: messages for `notify` sinks, kept until they
//! are delivered or have failed for good, so that a conductor restart loses
//! none.
//!
//! The conductor reads the event log after each sink's *cursor* (the last
//! event it looked at for that sink) and, in one transaction, inserts the
//! messages those events call for and moves the cursor — compare-and-set on
//! the cursor's old value, and one row per `(sink, event, part)` — so an
//! event is never enqueued twice, whoever crashes when. A message is then
//! `pending` until one attempt delivers it (`delivered`) or a permanent
//! refusal or too many attempts end it (`failed`); each attempt counts, and
//! the time of the next one (`next_at`) is stored, so a restarted conductor
//! continues the backoff where it was.
//!
//! Messages of one sink are delivered in order: only the oldest pending
//! message of a sink is ever attempted ([`Notifications::pending_heads`]),
//! which keeps a PagerDuty `trigger` before its `resolve`.
//!
//! A payload holds no secret: a signing key or routing key is added at
//! delivery, never stored here.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Not delivered yet; attempted again at `next_at`.
    Pending,
    /// One attempt was accepted by the receiver.
    Delivered,
    /// Refused for good (a 4xx other than 408 and 429), or out of attempts.
    Failed,
}

impl NotificationState {
    /// `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Delivered => "delivered",
            NotificationState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<NotificationState> {
        match s {
            "pending" => Some(NotificationState::Pending),
            "delivered" => Some(NotificationState::Delivered),
            "failed" => Some(NotificationState::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for NotificationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// The event it reports.
    pub event_id: i64,
    /// Which of that event's messages for this sink (0, or 1 for a
    /// PagerDuty `resolve` after its `trigger`).
    pub part: u32,
    /// What it reports: `incident`, `rollout_failed` or `rollback`.
    pub topic: String,
    /// The incident's dedup key (`kind:subject`), for incidents.
    pub dedup_key: Option<String>,
    /// The body, without any secret.
    pub payload: String,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Its number; the `webhook-id` is derived from it, so it is the same
    /// on every attempt.
    pub id: i64,
    /// The `notify` sink it is for.
    pub sink: String,
    /// The event it reports.
    pub event_id: i64,
    /// Which of the event's messages (see [`NewNotification::part`]).
    pub part: u32,
    /// `incident`, `rollout_failed` or `rollback`.
    pub topic: String,
    /// The incident's dedup key, for incidents.
    pub dedup_key: Option<String>,
    /// The body, without any secret.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch).
    pub next_at: i64,
    /// Pending, delivered or failed.
    pub state: NotificationState,
    /// Why the last attempt did not deliver it.
    pub last_error: Option<String>,
    /// When it was enqueued (ms since the epoch).
    pub created_at: i64,
    /// When it was delivered (ms since the epoch).
    pub delivered_at: Option<i64>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver accepted it.
    Delivered,
    /// Not delivered; try again at `next_at`.
    Retry {
        /// When (ms since the epoch).
        next_at: i64,
        /// What went wrong.
        error: String,
    },
    /// Not delivered, and never will be.
    Failed {
        /// Why.
        error: String,
    },
}

/// How many messages of one sink are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationCounts {
    /// The sink.
    pub sink: String,
    /// Waiting to be delivered.
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed for good.
    pub failed: u64,
}

/// Which messages to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Only this sink's.
    pub sink: Option<String>,
    /// Only those in this state.
    pub state: Option<NotificationState>,
    /// At most this many, newest first (0: all).
    pub limit: usize,
}

/// The outbox. See the module documentation.
pub trait Notifications {
    /// The last event `sink` has looked at; `None` before its first look.
    fn notify_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError>;

    /// Enqueues `messages` for `sink` and moves its cursor from `from` to
    /// `to`, in one transaction; `false` (and nothing written) when the
    /// cursor is not at `from` any more.
    fn enqueue_notifications(
        &self,
        sink: &str,
        from: Option<i64>,
        to: i64,
        messages: &[NewNotification],
    ) -> Result<bool, StoreError>;

    /// The oldest pending message of every sink.
    fn pending_heads(&self) -> Result<Vec<NotificationRecord>, StoreError>;

    /// Records an attempt at a pending message; `None` when it is not
    /// pending (any more). The attempt count goes up by one.
    fn record_attempt(
        &self,
        id: i64,
        outcome: &Attempt,
    ) -> Result<Option<NotificationRecord>, StoreError>;

    /// Messages, newest first.
    fn notifications(
        &self,
        filter: &NotificationFilter,
    ) -> Result<Vec<NotificationRecord>, StoreError>;

    /// Per sink, how many messages are in each state (sinks by name).
    fn notification_counts(&self) -> Result<Vec<NotificationCounts>, StoreError>;
}

const COLUMNS: &str = "id, sink, event_id, part, topic, dedup_key, payload, attempts, next_at, state, last_error, created_at, delivered_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(NotificationRecord, String)> {
    Ok((
        NotificationRecord {
            id: r.get(0)?,
            sink: r.get(1)?,
            event_id: r.get(2)?,
            part: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            topic: r.get(4)?,
            dedup_key: r.get(5)?,
            payload: r.get(6)?,
            attempts: u32::try_from(r.get::<_, i64>(7)?).unwrap_or(u32::MAX),
            next_at: r.get(8)?,
            state: NotificationState::Pending,
            last_error: r.get(10)?,
            created_at: r.get(11)?,
            delivered_at: r.get(12)?,
        },
        r.get(9)?,
    ))
}

impl SqliteStore {
    fn finish_notification(
        &self,
        what: &'static str,
        (mut rec, state): (NotificationRecord, String),
    ) -> Result<NotificationRecord, StoreError> {
        rec.state = NotificationState::parse(&state)
            .ok_or_else(|| self.corrupt(what, format!("notification state {state:?}")))?;
        Ok(rec)
    }

    fn notifications_where(
        &self,
        what: &'static str,
        conn: &rusqlite::Connection,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let mut stmt = conn.prepare(sql).map_err(|e| self.err(what, e))?;
        let rows = stmt
            .query_map(args, row)
            .map_err(|e| self.err(what, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(what, e))?;
        rows.into_iter()
            .map(|r| self.finish_notification(what, r))
            .collect()
    }
}

impl Notifications for SqliteStore {
    fn notify_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT event_seq FROM notify_cursors WHERE sink = ?1",
            [sink],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.err("cannot read a notification cursor", e))
    }

    fn enqueue_notifications(
        &self,
        sink: &str,
        from: Option<i64>,
        to: i64,
        messages: &[NewNotification],
    ) -> Result<bool, StoreError> {
        let what = "cannot enqueue notifications";
        let now = self.now();
        self.write(what, |tx| {
            let at: Option<i64> = tx
                .query_row(
                    "SELECT event_seq FROM notify_cursors WHERE sink = ?1",
                    [sink],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(what, e))?;
            if at != from {
                return Ok(false);
            }
            for m in messages {
                tx.execute(
                    "INSERT INTO notifications(sink, event_id, part, topic, dedup_key, payload, attempts, next_at, state, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 'pending', ?7)
                     ON CONFLICT (sink, event_id, part) DO NOTHING",
                    params![sink, m.event_id, m.part, m.topic, m.dedup_key, m.payload, now],
                )
                .map_err(|e| self.err(what, e))?;
            }
            tx.execute(
                "INSERT INTO notify_cursors(sink, event_seq) VALUES (?1, ?2)
                 ON CONFLICT (sink) DO UPDATE SET event_seq = excluded.event_seq",
                params![sink, to],
            )
            .map_err(|e| self.err(what, e))?;
            Ok(true)
        })
    }

    fn pending_heads(&self) -> Result<Vec<NotificationRecord>, StoreError> {
        let conn = self.lock();
        self.notifications_where(
            "cannot read pending notifications",
            &conn,
            &format!(
                "SELECT {COLUMNS} FROM notifications WHERE id IN (
                   SELECT MIN(id) FROM notifications WHERE state = 'pending' GROUP BY sink
                 ) ORDER BY id"
            ),
            [],
        )
    }

    fn record_attempt(
        &self,
        id: i64,
        outcome: &Attempt,
    ) -> Result<Option<NotificationRecord>, StoreError> {
        let what = "cannot record a notification attempt";
        let now = self.now();
        let (state, next_at, error, delivered_at) = match outcome {
            Attempt::Delivered => ("delivered", None, None, Some(now)),
            Attempt::Retry { next_at, error } => ("pending", Some(*next_at), Some(error), None),
            Attempt::Failed { error } => ("failed", None, Some(error), None),
        };
        self.write(what, |tx| {
            let changed = tx
                .execute(
                    "UPDATE notifications SET attempts = attempts + 1, state = ?2,
                       next_at = COALESCE(?3, next_at),
                       last_error = COALESCE(?4, last_error),
                       delivered_at = ?5
                     WHERE id = ?1 AND state = 'pending'",
                    params![id, state, next_at, error, delivered_at],
                )
                .map_err(|e| self.err(what, e))?;
            if changed == 0 {
                return Ok(None);
            }
            let mut found = self.notifications_where(
                what,
                tx,
                &format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1"),
                [id],
            )?;
            Ok(found.pop())
        })
    }

    fn notifications(
        &self,
        filter: &NotificationFilter,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let conn = self.lock();
        let limit = if filter.limit == 0 {
            -1
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        self.notifications_where(
            "cannot read notifications",
            &conn,
            &format!(
                "SELECT {COLUMNS} FROM notifications
                 WHERE (?1 IS NULL OR sink = ?1) AND (?2 IS NULL OR state = ?2)
                 ORDER BY id DESC LIMIT ?3"
            ),
            params![filter.sink, filter.state.map(|s| s.as_str()), limit],
        )
    }

    fn notification_counts(&self) -> Result<Vec<NotificationCounts>, StoreError> {
        let what = "cannot count notifications";
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT sink,
                   SUM(state = 'pending'), SUM(state = 'delivered'), SUM(state = 'failed')
                 FROM notifications GROUP BY sink ORDER BY sink",
            )
            .map_err(|e| self.err(what, e))?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        stmt.query_map([], |r| {
            Ok(NotificationCounts {
                sink: r.get(0)?,
                pending: count(r.get(1)?),
                delivered: count(r.get(2)?),
                failed: count(r.get(3)?),
            })
        })
        .map_err(|e| self.err(what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.err(what, e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(event_id: i64, part: u32) -> NewNotification {
        NewNotification {
            event_id,
            part,
            topic: "rollback".into(),
            dedup_key: None,
            payload: format!("{{\"event\":{event_id}}}"),
        }
    }

    #[test]
    fn enqueueing_moves_the_cursor_once_and_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.notify_cursor("ops").unwrap(), None);
        assert!(s.enqueue_notifications("ops", None, 10, &[]).unwrap());
        assert_eq!(s.notify_cursor("ops").unwrap(), Some(10));
        // A second enqueuer that read the cursor before the move loses.
        assert!(
            !s.enqueue_notifications("ops", None, 12, &[message(11, 0)])
                .unwrap()
        );
        assert!(
            s.enqueue_notifications(
                "ops",
                Some(10),
                12,
                &[message(11, 0), message(12, 0), message(12, 1)]
            )
            .unwrap()
        );
        // The same event again (a replay after a crash) adds nothing.
        assert!(
            s.enqueue_notifications("ops", Some(12), 12, &[message(12, 0)])
                .unwrap()
        );
        let all = s.notifications(&NotificationFilter::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|m| m.state == NotificationState::Pending));
    }

    #[test]
    fn only_the_oldest_pending_message_of_a_sink_is_a_head_and_attempts_count() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.enqueue_notifications("a", None, 2, &[message(1, 0), message(2, 0)])
            .unwrap();
        s.enqueue_notifications("b", None, 2, &[message(2, 0)])
            .unwrap();
        let heads = s.pending_heads().unwrap();
        assert_eq!(
            heads
                .iter()
                .map(|m| (m.sink.as_str(), m.event_id))
                .collect::<Vec<_>>(),
            vec![("a", 1), ("b", 2)]
        );
        let a1 = heads[0].id;
        let r = s
            .record_attempt(
                a1,
                &Attempt::Retry {
                    next_at: 5_000,
                    error: "503".into(),
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.attempts, r.next_at, r.state),
            (1, 5_000, NotificationState::Pending)
        );
        assert_eq!(s.pending_heads().unwrap()[0].id, a1, "still the head");
        let r = s.record_attempt(a1, &Attempt::Delivered).unwrap().unwrap();
        assert_eq!(r.state, NotificationState::Delivered);
        assert_eq!(r.attempts, 2);
        assert!(r.delivered_at.is_some());
        assert!(s.record_attempt(a1, &Attempt::Delivered).unwrap().is_none());
        let heads = s.pending_heads().unwrap();
        assert_eq!(heads[0].event_id, 2, "the next one of sink a");
        s.record_attempt(
            heads[0].id,
            &Attempt::Failed {
                error: "400".into(),
            },
        )
        .unwrap();
        let counts = s.notification_counts().unwrap();
        assert_eq!(
            counts,
            vec![
                NotificationCounts {
                    sink: "a".into(),
                    pending: 0,
                    delivered: 1,
                    failed: 1
                },
                NotificationCounts {
                    sink: "b".into(),
                    pending: 1,
                    delivered: 0,
                    failed: 0
                },
            ]
        );
    }
}
