//! `glint conductor`: runs the conductor until SIGINT/SIGTERM/SIGHUP,
//! printing the event log as it grows. Stopping it leaves instances running
//! and the endpoints serving (the data plane process is left as it is); the
//! next conductor adopts both (like `dockerd --live-restore`).

use crate::cli::{ConductorArgs, Global};
use crate::common::{CmdResult, Paint, open_store};
use crate::output::EXIT_OK;
use glint_store::EventFilter;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Runs `glint conductor`.
pub fn run(global: &Global, args: ConductorArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: ConductorArgs) -> CmdResult {
    let store: Arc<dyn glint_store::Store> = Arc::new(open_store(global)?);
    let rt = crate::common::runtime()?;
    let paint = Paint::stdout(global);
    rt.block_on(async {
        let last = store
            .events(&EventFilter {
                limit: Some(1),
                ..Default::default()
            })
            .ok()
            .and_then(|e| e.last().map(|e| e.seq))
            .unwrap_or(0);
        let running = crate::daemon::start(
            global,
            store.clone(),
            glint_store::ConductorMode::Daemon,
            &args.listen,
        )
        .await?;
        println!(
            "glint conductor running (pid {}) for {}; API on {}; data plane pid {}",
            std::process::id(),
            crate::common::data_dir(global).display(),
            glint_conductor::api::socket_path(&crate::common::data_dir(global)).display(),
            running.data_plane.pid
        );
        let data_plane = running.data_plane.pid;
        if let Some((addr, tls)) = running.listening {
            let scheme = if tls { "https" } else { "http" };
            println!("API and dashboard on {scheme}://{addr}/ (tokens: `glint token create`)");
        }
        let cursor = Arc::new(AtomicI64::new(last));
        let tail = tokio::spawn(tail_events(store.clone(), cursor.clone(), paint));
        crate::daemon::stop_requested().await;
        println!(
            "stopping the conductor; instances keep running and endpoints keep serving (data plane pid {data_plane}), and both will be adopted"
        );
        running.stop(false).await;
        tail.abort();
        print_new_events(store.as_ref(), &cursor, paint);
        Ok(EXIT_OK)
    })
}

/// Prints events after `cursor` as they are appended, advancing it.
pub async fn tail_events(store: Arc<dyn glint_store::Store>, cursor: Arc<AtomicI64>, paint: Paint) {
    loop {
        print_new_events(store.as_ref(), &cursor, paint);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the events after `cursor`, advancing it.
pub fn print_new_events(store: &dyn glint_store::Store, cursor: &AtomicI64, paint: Paint) {
    if let Ok(events) = store.events(&EventFilter {
        after: Some(cursor.load(Ordering::SeqCst)),
        ..Default::default()
    }) {
        for e in events {
            println!("{}", crate::commands::events::line(&e, paint));
            cursor.store(e.seq, Ordering::SeqCst);
        }
    }
}
