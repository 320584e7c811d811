//! Tokens and who is calling.
//!
//! A token reads `glint_<accessor>_<secret>`: the accessor (16 hex digits)
//! is public — listings and audit events name it —, the secret (64 hex
//! digits, 256 random bits) is shown once when the token is created and
//! only its SHA-256 is stored. A presented token is checked by looking its
//! accessor up and comparing the hash of its secret in constant time; then
//! that it is not revoked, not expired (by the conductor's clock) and, when
//! it is bound to an environment, that this data directory runs that
//! environment.
//!
//! Failed attempts — a token presented that is not valid — are counted per
//! peer address ([`Limiter`]): after [`MAX_FAILURES`] within
//! [`FAILURE_WINDOW_MS`] the peer is refused (429) until the window ends,
//! whatever it presents. Each refusal is an `auth.failed` event (the event
//! sink's rate limit keeps a flood to a few lines). A request that presents
//! nothing is not an attempt: it gets 401 and is not recorded. Nothing here
//! ever logs or records a secret.
//!
//! The unix socket in the data directory is owner-only: whoever can open it
//! can read the store anyway, so a request on it is the local admin
//! ([`Caller::socket`]).

use glint_store::prelude::*;
use glint_store::{NewToken, Role, StoreError, TokenConflict, TokenRecord};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "glint_";
/// Failed attempts a peer may make per window.
pub const MAX_FAILURES: u32 = 10;
/// The window for failed attempts.
pub const FAILURE_WINDOW_MS: i64 = 60_000;
/// Peers remembered at most (the oldest windows are dropped first).
const MAX_PEERS: usize = 4096;
/// The accessor shown for requests on the local socket.
pub const SOCKET_ACCESSOR: &str = "unix-socket";

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's accessor (or [`SOCKET_ACCESSOR`]).
    pub accessor: String,
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The value forms must carry when the token came in a cookie (see
    /// `http::dashboard`); `None` for bearer tokens and the socket.
    pub csrf: Option<String>,
}

impl Caller {
    /// The local admin on the owner-only socket.
    pub fn socket() -> Caller {
        Caller {
            accessor: SOCKET_ACCESSOR.to_owned(),
            name: "local".to_owned(),
            role: Role::Admin,
            csrf: None,
        }
    }
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It is not of the form `glint_<accessor>_<secret>`.
    #[error("the token is malformed")]
    Malformed,
    /// No token has this accessor, or the secret does not match.
    #[error("no valid token with accessor {0}")]
    Unknown(String),
    /// It was revoked.
    #[error("token {0} was revoked")]
    Revoked(String),
    /// It expired.
    #[error("token {0} has expired")]
    Expired(String),
    /// It is bound to another environment.
    #[error("token {accessor} is for environment {wanted}, and this conductor runs {runs}")]
    WrongEnvironment {
        /// The token.
        accessor: String,
        /// Its environment.
        wanted: String,
        /// This conductor's.
        runs: String,
    },
    /// The store could not be read.
    #[error("cannot check tokens: {0}")]
    Store(String),
}

/// A token as created: the record and the whole token, shown once.
#[derive(Debug, Clone)]
pub struct Issued {
    /// What is stored.
    pub record: TokenRecord,
    /// `glint_<accessor>_<secret>`: give it to the user, then forget it.
    pub token: String,
}

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The name is not usable.
    #[error("token name `{0}` is not valid: use 1 to 64 letters, digits, `.`, `_` or `-`")]
    BadName(String),
    /// A live token has this name.
    #[error(
        "a token named `{0}` exists: revoke it first (`glint token revoke {0}`) or pick another name"
    )]
    NameTaken(String),
    /// No randomness.
    #[error("cannot read random bytes from /dev/urandom")]
    Random(#[source] std::io::Error),
    /// The store refused.
    #[error("cannot record the token")]
    Store(#[source] StoreError),
}

/// `n` random bytes as hex.
fn random_hex(n: usize) -> Result<String, std::io::Error> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(glint_model::hex(&bytes))
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    glint_model::hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `a` and `b` are equal, in time that depends only on their length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `name` can name a token.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Creates a token: a fresh accessor and secret, only the hash stored.
pub fn issue(
    store: &dyn Store,
    name: &str,
    role: Role,
    environment: Option<String>,
    expires_at: Option<i64>,
) -> Result<Issued, IssueError> {
    if !valid_name(name) {
        return Err(IssueError::BadName(name.to_owned()));
    }
    let accessor = random_hex(8).map_err(IssueError::Random)?;
    let secret = random_hex(32).map_err(IssueError::Random)?;
    let new = NewToken {
        accessor: accessor.clone(),
        name: name.to_owned(),
        role,
        environment,
        secret_hash: hash_secret(&secret),
        expires_at,
    };
    match store.create_token(&new).map_err(IssueError::Store)? {
        Ok(record) => Ok(Issued {
            record,
            token: format!("{TOKEN_PREFIX}{accessor}_{secret}"),
        }),
        Err(TokenConflict::NameTaken(n)) => Err(IssueError::NameTaken(n)),
    }
}

/// Splits a presented token into accessor and secret.
fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (accessor, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(accessor, 16) && hex(secret, 64)).then_some((accessor, secret))
}

/// The public part of a presented token, when it has the right form (for
/// recording who failed, never the secret).
pub fn accessor_of(token: &str) -> Option<&str> {
    parse(token).map(|(a, _)| a)
}

/// Checks a presented token at `now`, for a conductor running `environment`.
pub fn verify(
    store: &dyn Store,
    token: &str,
    now: i64,
    environment: Option<&str>,
) -> Result<(Caller, String), Refusal> {
    let (accessor, secret) = parse(token).ok_or(Refusal::Malformed)?;
    let found = store
        .token_with_hash(accessor)
        .map_err(|e| Refusal::Store(crate::error_chain(&e)))?;
    let Some((rec, hash)) = found else {
        return Err(Refusal::Unknown(accessor.to_owned()));
    };
    if !constant_time_eq(hash_secret(secret).as_bytes(), hash.as_bytes()) {
        return Err(Refusal::Unknown(accessor.to_owned()));
    }
    if rec.revoked_at.is_some() {
        return Err(Refusal::Revoked(rec.accessor));
    }
    if rec.expires_at.is_some_and(|e| now >= e) {
        return Err(Refusal::Expired(rec.accessor));
    }
    if let (Some(wanted), Some(runs)) = (&rec.environment, environment)
        && wanted != runs
    {
        return Err(Refusal::WrongEnvironment {
            accessor: rec.accessor,
            wanted: wanted.clone(),
            runs: runs.to_owned(),
        });
    }
    let csrf = csrf_for(&hash);
    Ok((
        Caller {
            accessor: rec.accessor,
            name: rec.name,
            role: rec.role,
            csrf: None,
        },
        csrf,
    ))
}

/// The anti-forgery value of a token: derived from its stored hash, so a
/// page can embed it and another site cannot know it.
fn csrf_for(hash: &str) -> String {
    let d = Sha256::digest(format!("glint-csrf:{hash}").as_bytes());
    glint_model::hex(&d[..16])
}

struct Window {
    started: i64,
    failures: u32,
}

/// Failed attempts per peer. See the module documentation.
#[derive(Default)]
pub struct Limiter {
    peers: Mutex<HashMap<String, Window>>,
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds until `peer` may try again, when it is blocked now.
    pub fn blocked(&self, peer: &str, now: i64) -> Option<u64> {
        let peers = self.lock();
        let w = peers.get(peer)?;
        let end = w.started + FAILURE_WINDOW_MS;
        (w.failures >= MAX_FAILURES && now < end)
            .then(|| u64::try_from((end - now + 999) / 1000).unwrap_or(1))
    }

    /// Counts a failed attempt by `peer`.
    pub fn failed(&self, peer: &str, now: i64) {
        let mut peers = self.lock();
        if peers.len() >= MAX_PEERS && !peers.contains_key(peer) {
            peers.retain(|_, w| now - w.started < FAILURE_WINDOW_MS);
            if peers.len() >= MAX_PEERS
                && let Some(oldest) = peers
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| k.clone())
            {
                peers.remove(&oldest);
            }
        }
        let w = peers.entry(peer.to_owned()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now - w.started >= FAILURE_WINDOW_MS {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_in_their_exact_form() {
        let a = "0123456789abcdef";
        let s = "ab".repeat(32);
        assert_eq!(parse(&format!("glint_{a}_{s}")), Some((a, s.as_str())));
        assert_eq!(parse(&format!("glint_{a}_{s}x")), None);
        assert_eq!(parse(&format!("glint_{a}{s}")), None);
        assert_eq!(parse(&format!("other_{a}_{s}")), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn a_peer_is_blocked_after_too_many_failures_until_the_window_ends() {
        let l = Limiter::default();
        for _ in 0..MAX_FAILURES - 1 {
            l.failed("1.2.3.4", 1_000);
        }
        assert_eq!(l.blocked("1.2.3.4", 1_000), None);
        l.failed("1.2.3.4", 2_000);
        assert_eq!(l.blocked("1.2.3.4", 2_000), Some(59));
        assert_eq!(l.blocked("5.6.7.8", 2_000), None, "per peer");
        assert_eq!(l.blocked("1.2.3.4", 1_000 + FAILURE_WINDOW_MS), None);
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
