//! The change feed: a revision that moves whenever the store changes.
//!
//! A consumer (the conductor's driver) holds a [`ChangeFeed`] and wakes when
//! its value changes; it then re-reads what it needs (level-triggered: the
//! feed says *that* something changed, never *what*). For [`SqliteStore`],
//! writes through any handle in this process move the revision at once; a
//! commit by another process (a `glint apply`) is noticed by a watcher
//! thread that sleeps on inotify events of the database and its WAL and
//! confirms with SQLite's `data_version`, with a once-a-second re-check as a
//! safety net. No component polls the database on a short timer.

use crate::sqlite::SqliteStore;
use rusqlite::{Connection, OpenFlags};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A subscription to the store's revision.
pub type ChangeFeed = watch::Receiver<u64>;

/// Stores that announce their changes.
pub trait Changes {
    /// Subscribes to the store's revision; it changes after every commit,
    /// whoever made it.
    fn changes(&self) -> ChangeFeed;
}

/// How long the watcher sleeps without an inotify event before it re-checks.
const SAFETY_NET: Duration = Duration::from_secs(1);

impl Changes for SqliteStore {
    fn changes(&self) -> ChangeFeed {
        self.inner.watcher.get_or_init(|| {
            let feed = self.inner.feed.clone();
            let dir = self.inner.dir.clone();
            // Opened and read here, so that a commit made right after this
            // call returns is seen as a change.
            let conn = match Connection::open_with_flags(
                &self.inner.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("cannot start the store's change watcher: {e}");
                    return;
                }
            };
            let last = data_version(&conn);
            let spawned = std::thread::Builder::new()
                .name("glint-store-feed".into())
                .spawn(move || watch_files(&dir, &conn, last, &feed));
            if let Err(e) = spawned {
                tracing::warn!("cannot start the store's change watcher: {e}");
            }
        });
        self.inner.feed.subscribe()
    }
}

fn data_version(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
}

/// The watcher thread: ends when the store is dropped.
fn watch_files(
    dir: &std::path::Path,
    conn: &Connection,
    mut last: Option<i64>,
    feed: &Arc<watch::Sender<u64>>,
) {
    let inotify = rustix::fs::inotify::init(
        rustix::fs::inotify::CreateFlags::CLOEXEC | rustix::fs::inotify::CreateFlags::NONBLOCK,
    )
    .ok()
    .filter(|fd| {
        use rustix::fs::inotify::WatchFlags as W;
        rustix::fs::inotify::add_watch(
            fd,
            dir,
            W::MODIFY | W::CLOSE_WRITE | W::CREATE | W::MOVED_TO,
        )
        .is_ok()
    });
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    // The store holds one reference; this thread the other.
    while Arc::strong_count(feed) > 1 {
        let woken = match &inotify {
            Some(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let timeout = rustix::event::Timespec {
                    tv_sec: SAFETY_NET.as_secs() as i64,
                    tv_nsec: 0,
                };
                let woken = rustix::event::poll(&mut fds, Some(&timeout)).unwrap_or(0) > 0;
                let mut reader = rustix::fs::inotify::Reader::new(fd.as_fd(), &mut buf);
                while reader.next().is_ok() {}
                woken
            }
            None => {
                std::thread::sleep(Duration::from_millis(250));
                false
            }
        };
        // A WAL write is seen before its commit is: after an event, look
        // again briefly until the commit shows.
        let retries: &[u64] = if woken {
            &[0, 1, 2, 5, 10, 20, 50]
        } else {
            &[0]
        };
        for ms in retries {
            std::thread::sleep(Duration::from_millis(*ms));
            let now = data_version(conn);
            if now != last {
                last = now;
                feed.send_modify(|r| *r += 1);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{EventKind, NewEvent};

    #[tokio::test]
    async fn a_commit_by_another_connection_moves_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path()).unwrap();
        let b = SqliteStore::open(dir.path()).unwrap();
        let mut feed = a.changes();
        let before = *feed.borrow_and_update();
        b.append_event(NewEvent::info(EventKind::ConductorStarted, "x"))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), feed.changed())
            .await
            .expect("the feed moves after another connection's commit")
            .unwrap();
        assert_ne!(*feed.borrow(), before);
    }

    #[tokio::test]
    async fn a_write_through_this_handle_moves_the_feed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path()).unwrap();
        let mut feed = a.changes();
        feed.borrow_and_update();
        a.append_event(NewEvent::info(EventKind::ConductorStarted, "x"))
            .unwrap();
        assert!(feed.has_changed().unwrap());
    }
}
