//! `glint dataplane` (hidden): the data plane process — the endpoints, kept
//! serving whether or not a conductor runs. A conductor starts it (detached,
//! labelled with the store id) and programs it through `dataplane.sock` in
//! the data directory; it is not meant to be run by hand, though doing so
//! is harmless: a new data plane always takes over from the running one
//! without a failed request. Its log is `dataplane.log`.

use crate::cli::{DataplaneArgs, Global};
use crate::common::{CmdResult, fail, fail_io};
use crate::output::{EXIT_FAILED, EXIT_OK};

/// Runs `glint dataplane`.
pub fn run(global: &Global, args: DataplaneArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: DataplaneArgs) -> CmdResult {
    let dir = crate::common::data_dir(global);
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail_io(format!("cannot create {}", dir.display()), &e))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = crate::common::runtime()?;
    let mut config = glint_dataplane::ProcessConfig::new(dir, args.store);
    if let Some(linger) = args.linger {
        config.linger = linger.into();
    }
    rt.block_on(glint_dataplane::run(config)).map_err(|e| {
        fail(
            EXIT_FAILED,
            format_args!("{}", glint_dataplane::error_chain(&e)),
        )
    })?;
    Ok(EXIT_OK)
}
