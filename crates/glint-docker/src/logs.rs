//! Instance logs that outlive their containers.
//!
//! Docker keeps a container's output only as long as the container exists.
//! Before [`remove`](glint_provider::Provider::remove) deletes a container, the
//! provider copies its stdout and stderr to files under the state directory,
//! at the same paths the process provider uses, so that `glint logs` keeps
//! working after a replacement:
//!
//! ```text
//! <state_dir>/logs/<instance>/stdout.log
//! <state_dir>/logs/<instance>/stderr.log
//! ```

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use glint_model::InstanceId;
use glint_provider::ProviderError;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Where an instance's output is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPaths {
    /// The program's standard output.
    pub stdout: PathBuf,
    /// The program's standard error.
    pub stderr: PathBuf,
}

/// The log files of `instance` under `state_dir`.
///
/// Needs no engine and no conductor (`glint logs` reads them directly). The
/// files exist once the instance's container has been removed; while it runs,
/// `docker logs <container>` shows the same output.
pub fn log_paths(state_dir: &Path, instance: &InstanceId) -> LogPaths {
    let dir = state_dir.join("logs").join(instance.as_str());
    LogPaths {
        stdout: dir.join("stdout.log"),
        stderr: dir.join("stderr.log"),
    }
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ProviderError {
    let what = what.to_owned();
    let path = path.to_owned();
    move |source| ProviderError::Io { what, path, source }
}

/// Copies everything the container wrote to the instance's log files
/// (replacing earlier copies: Docker's copy is always the complete log).
pub(crate) async fn copy_logs(
    docker: &Docker,
    container: &str,
    paths: &LogPaths,
) -> Result<(), ProviderError> {
    if let Some(dir) = paths.stdout.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io_err("cannot create log directory", dir))?;
    }
    let mut out = tokio::fs::File::create(&paths.stdout)
        .await
        .map_err(io_err("cannot create log file", &paths.stdout))?;
    let mut err = tokio::fs::File::create(&paths.stderr)
        .await
        .map_err(io_err("cannot create log file", &paths.stderr))?;
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: "all".into(),
        ..Default::default()
    };
    let mut stream = docker.logs(container, Some(options));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ProviderError::Backend(format!(
                "cannot read the logs of container {container}: {e}"
            ))
        })?;
        match chunk {
            LogOutput::StdErr { message } => err
                .write_all(&message)
                .await
                .map_err(io_err("cannot write log file", &paths.stderr))?,
            LogOutput::StdOut { message } | LogOutput::Console { message } => out
                .write_all(&message)
                .await
                .map_err(io_err("cannot write log file", &paths.stdout))?,
            LogOutput::StdIn { .. } => {}
        }
    }
    out.flush()
        .await
        .map_err(io_err("cannot write log file", &paths.stdout))?;
    err.flush()
        .await
        .map_err(io_err("cannot write log file", &paths.stderr))?;
    Ok(())
}
