//! `glint-load`: an HTTP load generator for Glint's benchmarks.
//!
//! ```text
//! glint-load --url http://127.0.0.1:8080/ --concurrency 16 [--duration 30s | --until-file F]
//!            [--rate R] [--keepalive|--no-keepalive] [--phase-file F] [--json]
//! ```
//!
//! It stops when the duration ends, when the until-file appears, or on
//! SIGINT/SIGTERM (whichever comes first; with none of them it runs until a
//! signal), lets the requests in flight finish, prints a summary on stderr
//! and, with `--json`, the whole report as one JSON document on stdout.
//! Exit status: 0 after a run (even with failed requests: the report says
//! so; `--fail-on-error` makes that exit 1), 2 when it cannot start.

use clap::Parser;
use glint_bench::control::{follow_phase_file, wait_for_file};
use glint_bench::load::{Config, Control, Target, run};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// HTTP load generator: counts every request as ok or failed (with the
/// reason), per phase and per answering instance.
#[derive(Debug, Parser)]
#[command(name = "glint-load", version, about)]
struct Args {
    /// The URL to GET (http only).
    #[arg(long)]
    url: String,
    /// Requests in flight at most (one connection each).
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Stop after this long (`30s`, `2m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop when this file appears.
    #[arg(long, value_name = "FILE")]
    until_file: Option<PathBuf>,
    /// Requests per second, all connections together (default: as fast as answers come).
    #[arg(long)]
    rate: Option<f64>,
    /// Keep connections open between requests (the default).
    #[arg(long, overrides_with = "no_keepalive")]
    keepalive: bool,
    /// Open a new connection for every request (`connection: close`).
    #[arg(long, overrides_with = "keepalive")]
    no_keepalive: bool,
    /// Longest a request may take, connect included.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    timeout: Duration,
    /// A file whose content names the current phase (polled every 20 ms).
    #[arg(long, value_name = "FILE")]
    phase_file: Option<PathBuf>,
    /// The phase before the phase file names one.
    #[arg(long, default_value = "main")]
    phase: String,
    /// Print the whole report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// List at most this many failed requests individually.
    #[arg(long, default_value_t = 10_000)]
    failure_log: usize,
    /// Print a progress line on stderr this often (`10s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    progress: Option<Duration>,
    /// Exit 1 if any request failed.
    #[arg(long)]
    fail_on_error: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = match Target::parse(&args.url) {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage(&e),
    };
    let mut config = Config::new(target, args.concurrency);
    config.rate = args.rate;
    config.keepalive = !args.no_keepalive;
    config.timeout = args.timeout;
    config.failure_log_limit = args.failure_log;
    let report = runtime.block_on(async {
        let (phase_tx, phase_rx) = watch::channel::<Arc<str>>(Arc::from(args.phase.as_str()));
        let (stop_tx, stop_rx) = watch::channel(false);
        // Without a phase file the sender is kept here for the whole run.
        let _fixed_phase = match args.phase_file.clone() {
            Some(path) => {
                tokio::spawn(follow_phase_file(path, phase_tx));
                None
            }
            None => Some(phase_tx),
        };
        // Say when a phase begins, so that a log shows the run's timeline.
        {
            let mut phase = phase_rx.clone();
            let start = tokio::time::Instant::now();
            tokio::spawn(async move {
                while phase.changed().await.is_ok() {
                    let name = phase.borrow_and_update().clone();
                    eprintln!(
                        "glint-load: phase {name} at {:.3}s",
                        start.elapsed().as_secs_f64()
                    );
                }
            });
        }
        let until = args.until_file.clone();
        let duration = args.duration;
        tokio::spawn(async move {
            let until = async {
                match until {
                    Some(p) => wait_for_file(&p).await,
                    None => std::future::pending().await,
                }
            };
            let elapsed = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = until => {}
                _ = elapsed => {}
                _ = signal() => {}
            }
            let _ = stop_tx.send(true);
            // Hold the sender until the process exits.
            std::future::pending::<()>().await;
        });
        let control = Control::new(phase_rx, stop_rx);
        if let Some(every) = args.progress.filter(|d| !d.is_zero()) {
            let progress = control.progress.clone();
            let start = tokio::time::Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(start + every, every);
                loop {
                    tick.tick().await;
                    eprintln!(
                        "glint-load: progress {:.0}s ok={} failed={}",
                        start.elapsed().as_secs_f64(),
                        progress.ok.load(Ordering::Relaxed),
                        progress.failed.load(Ordering::Relaxed)
                    );
                }
            });
        }
        run(config, control).await
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => return usage(&e),
    };
    eprint!("{}", report.summary());
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => return usage(&e),
        }
    }
    if args.fail_on_error && report.total.failed > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM (never, if they cannot be watched).
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

fn usage(e: &dyn std::error::Error) -> ExitCode {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    eprintln!("glint-load: {msg}");
    ExitCode::from(2)
}
