//! Steering a run from files, the way the `bench/` scripts do: a *phase file*
//! whose content names the current phase, and an *until file* whose
//! appearance stops the run. Both are polled every [`POLL`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_millis(20);

/// Follows `path`: whenever its trimmed content is non-empty and differs from
/// the current phase, it becomes the current phase. A missing or unreadable
/// file leaves the phase as it is. Returns when every receiver is gone.
pub async fn follow_phase_file(path: PathBuf, phase: watch::Sender<Arc<str>>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if phase.is_closed() {
            return;
        }
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            let name = text.trim();
            if !name.is_empty() && **phase.borrow() != *name {
                phase.send_replace(Arc::from(name));
            }
        }
    }
}

/// Resolves once `path` exists.
pub async fn wait_for_file(path: &Path) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tokio::fs::try_exists(path).await.unwrap_or(false) {
            return;
        }
    }
}
