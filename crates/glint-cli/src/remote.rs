//! Talking to a conductor through its HTTP API (`--addr`/`GLINT_ADDR`,
//! with `--token`/`GLINT_TOKEN`): the commands that report or change
//! something call the same routes the dashboard uses and print the same
//! output as they do locally.
//!
//! A refusal prints what the server said and exits as the same failure
//! would locally: an operation's error kind goes through
//! [`crate::common::exit_code`] (the one place); a missing or refused
//! token, or a peer that is rate limited, is a usage error (2).

use crate::cli::Global;
use crate::common::{Failed, fail, fail_io};
use crate::output::EXIT_USAGE;
use glint_conductor::api::ApiError;
use glint_conductor::http::client::Client;
use glint_conductor::ops::ErrorKind;

/// The remote conductor, when `--addr` is given.
pub fn client(global: &Global) -> Option<Result<Client, Failed>> {
    let addr = global.addr.as_deref()?;
    Some(
        Client::remote(addr, global.token.clone(), global.ca.as_deref())
            .map_err(|e| fail(EXIT_USAGE, e)),
    )
}

/// Prints an API failure and returns its exit code.
pub fn fail_api(e: &ApiError) -> Failed {
    match e {
        ApiError::Refused {
            status,
            kind,
            message,
        } => {
            let code = match kind.as_str() {
                "invalid" => crate::common::exit_code(ErrorKind::Invalid),
                "not_found" => crate::common::exit_code(ErrorKind::NotFound),
                "conflict" => crate::common::exit_code(ErrorKind::Conflict),
                "failed" => crate::common::exit_code(ErrorKind::Failed),
                "unavailable" => crate::common::exit_code(ErrorKind::Unavailable),
                _ => EXIT_USAGE,
            };
            let hint = match *status {
                401 => " (set GLINT_TOKEN to a token from `glint token create`)",
                _ => "",
            };
            fail(code, format_args!("{message}{hint}"))
        }
        other => fail_io("cannot talk to the conductor", other),
    }
}

/// Runs one call on a fresh runtime.
pub fn run<T>(fut: impl std::future::Future<Output = Result<T, ApiError>>) -> Result<T, Failed> {
    let rt = crate::common::runtime()?;
    rt.block_on(fut).map_err(|e| fail_api(&e))
}

/// `GET path` as JSON.
pub fn get<T: serde::de::DeserializeOwned>(client: &Client, path: &str) -> Result<T, Failed> {
    run(client.get(path))
}

/// `POST path` with a JSON body, answered JSON.
pub fn post<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
    body: &(impl serde::Serialize + ?Sized),
) -> Result<T, Failed> {
    run(client.call(hyper::Method::POST, path, Some(body)))
}
