//! Workload identity: the credential that proves to the instance API which
//! instance is calling.
//!
//! A token is `glint-id.v1.<claims>.<mac>`: the claims (service, instance
//! id, version, environment, expiry) as hex-encoded JSON, and an
//! HMAC-SHA256 over `glint-id.v1.<claims>` under the identity key, hex. The
//! key is 32 random bytes in the data directory's `identity.key` (0600,
//! created on first use, refused when others may read it). A token says who
//! an instance *was* when it was issued: the instance API also checks the
//! instance is still live in the store (not retiring, not gone), so a
//! retired instance's unexpired token opens nothing.
//!
//! Tokens are short-lived ([`Issuer::ttl`]) and renewed by the conductor
//! (`reconcilers/identities.rs`) before they expire.

use glint_model::{InstanceId, Name, VersionNumber};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "identity.key";
const PREFIX: &str = "glint-id.v1.";
/// How long a token is valid by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The service.
    pub service: Name,
    /// The instance.
    pub instance: InstanceId,
    /// The version it was launched for.
    pub version: VersionNumber,
    /// The environment.
    pub environment: Name,
    /// When the token expires (ms since the epoch).
    pub expires_at: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a Glint identity token at all.
    #[error(
        "not a Glint identity token: send the contents of the file named by GLINT_IDENTITY_FILE (/run/glint/identity) as `Authorization: Bearer TOKEN`"
    )]
    Malformed,
    /// The signature does not match (forged, or another data directory's).
    #[error("the identity token's signature is not valid: it was not issued by this conductor")]
    BadSignature,
    /// Expired.
    #[error(
        "the identity token expired; read the identity file again (the conductor renews it before expiry)"
    )]
    Expired,
}

/// Issues and checks tokens under one key.
#[derive(Clone)]
pub struct Issuer {
    key: [u8; 32],
    /// How long an issued token is valid.
    pub ttl: Duration,
    /// The instance API socket instances are given, if one is served.
    pub api_socket: Option<PathBuf>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("key", &"<hidden>")
            .field("ttl", &self.ttl)
            .field("api_socket", &self.api_socket)
            .finish()
    }
}

/// The key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[error("identity key {path}: {problem}")]
pub struct KeyError {
    /// The key file.
    pub path: PathBuf,
    /// What is wrong, and what to do.
    pub problem: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

impl Issuer {
    /// An issuer with `key`.
    pub fn new(key: [u8; 32], ttl: Duration, api_socket: Option<PathBuf>) -> Issuer {
        Issuer {
            key,
            ttl,
            api_socket,
        }
    }

    /// Loads the key of data directory `dir` (`identity.key`), creating it
    /// (0600, random) when missing.
    pub fn load(
        dir: &Path,
        ttl: Duration,
        api_socket: Option<PathBuf>,
    ) -> Result<Issuer, KeyError> {
        let path = dir.join(KEY_FILE);
        let err = |problem: String| KeyError {
            path: path.clone(),
            problem,
        };
        let key = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(o_nofollow())
            .open(&path)
        {
            Ok(mut f) => {
                let meta = f
                    .metadata()
                    .map_err(|e| err(format!("cannot inspect: {e}")))?;
                if meta.permissions().mode() & 0o077 != 0
                    || meta.uid() != rustix::process::geteuid().as_raw()
                {
                    return Err(err(format!(
                        "readable by others (mode {:o}) or not owned by this user: anyone who reads it can impersonate any instance; remove it (a new one is made, and running instances get new tokens)",
                        meta.permissions().mode() & 0o7777
                    )));
                }
                let mut text = String::new();
                f.read_to_string(&mut text)
                    .map_err(|e| err(format!("cannot read: {e}")))?;
                let bytes = unhex(text.trim())
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| {
                        err("is not 64 hex digits; remove it and a new one is made".into())
                    })?;
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut r| r.read_exact(&mut key))
                    .map_err(|e| err(format!("cannot read random bytes from /dev/urandom: {e}")))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| err(format!("cannot create: {e}")))?;
                f.write_all(format!("{}\n", hex(&key)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| err(format!("cannot write: {e}")))?;
                key
            }
            Err(e) => return Err(err(format!("cannot open: {e}"))),
        };
        Ok(Issuer::new(key, ttl, api_socket))
    }

    fn mac(&self, text: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts every key length"),
        };
        mac.update(text.as_bytes());
        mac
    }

    /// A token for `claims`.
    pub fn issue(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{PREFIX}{}", hex(&body));
        let tag = self.mac(&signed).finalize().into_bytes();
        format!("{signed}.{}", hex(&tag))
    }

    /// The claims of `token` if it was issued under this key and has not
    /// expired at `now` (ms since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let token = token.trim();
        if !token.starts_with(PREFIX) {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let tag = unhex(tag).ok_or(TokenError::Malformed)?;
        self.mac(signed)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let body = unhex(&signed[PREFIX.len()..]).ok_or(TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
        if claims.expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// The claims of a token for instance `id` of `service`, issued at `now`.
    pub fn claims(
        &self,
        service: &Name,
        id: &InstanceId,
        version: VersionNumber,
        environment: &Name,
        now: i64,
    ) -> Claims {
        Claims {
            service: service.clone(),
            instance: id.clone(),
            version,
            environment: environment.clone(),
            expires_at: now.saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// `O_NOFOLLOW`: the key file is never read through a symlink.
fn o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            service: Name::new("api").unwrap(),
            instance: InstanceId::from_entropy(&Name::new("api").unwrap(), 7),
            version: VersionNumber(3),
            environment: Name::new("shop").unwrap(),
            expires_at: exp,
        }
    }

    // Mutation caught: a token accepted with changed claims, under another
    // key, or after its expiry.
    #[test]
    fn tokens_verify_only_unchanged_under_their_key_and_before_expiry() {
        let a = Issuer::new([1; 32], DEFAULT_TTL, None);
        let b = Issuer::new([2; 32], DEFAULT_TTL, None);
        let t = a.issue(&claims(1000));
        assert_eq!(a.verify(&t, 999).unwrap(), claims(1000));
        assert_eq!(a.verify(&t, 1000), Err(TokenError::Expired));
        assert_eq!(b.verify(&t, 0), Err(TokenError::BadSignature));
        // Claims rewritten (another service) keep the old MAC: refused.
        let forged_body = hex(&serde_json::to_vec(&Claims {
            service: Name::new("db").unwrap(),
            ..claims(1000)
        })
        .unwrap());
        let tag = t.rsplit_once('.').unwrap().1;
        let forged = format!("{PREFIX}{forged_body}.{tag}");
        assert_eq!(a.verify(&forged, 0), Err(TokenError::BadSignature));
        assert_eq!(a.verify("hello", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Issuer::load(dir.path(), DEFAULT_TTL, None).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Issuer::load(dir.path(), DEFAULT_TTL, None).unwrap();
        let t = a.issue(&claims(10));
        assert!(b.verify(&t, 0).is_ok(), "the same key after a restart");
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = Issuer::load(dir.path(), DEFAULT_TTL, None).unwrap_err();
        assert!(err.problem.contains("readable by others"), "{err}");
    }
}
