//! Envelope encryption of secrets: the master key, data keys, sealing and
//! opening.
//!
//! Every secret value is sealed with its own random 256-bit *data key*
//! (XChaCha20-Poly1305, a random 192-bit nonce); the data key is itself
//! sealed (*wrapped*) under the *master key*. The store keeps only the
//! sealed value, the wrapped data key and the two nonces, so a copy of the
//! database without the master key reveals nothing but names, versions and
//! lengths. Both seals are bound to the secret's name and version (the
//! associated data), so a sealed value moved to another row does not open.
//! Rotating the master key re-wraps data keys and never touches values.
//!
//! The master key comes from `GLINT_MASTER_KEY` (64 hex digits, or 32 bytes
//! in standard base64) when it is set, otherwise from the key file
//! `secrets.key` in the data directory: created owner-only (0600) on first
//! use, refused if its group or others may read or write it. Its *key id*
//! (a hash of the key under a fixed label, never the key) is recorded with
//! every wrapped data key, so a wrong key is recognised before anything is
//! written, and a rotation interrupted between the store and the key file is
//! finished on the next load (see [`MasterKey::load`]).

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "GLINT_MASTER_KEY";
/// The environment variable holding the new master key for `glint secret
/// rotate-key` when the current one comes from [`MASTER_KEY_ENV`].
pub const NEW_MASTER_KEY_ENV: &str = "GLINT_NEW_MASTER_KEY";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secrets.key";
/// A rotation's new key, before the rotation has committed.
pub const NEW_KEY_FILE: &str = "secrets.key.new";
/// The largest secret value, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Where a master key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The environment variable [`MASTER_KEY_ENV`] (or [`NEW_MASTER_KEY_ENV`]).
    Env(&'static str),
    /// A key file.
    File(PathBuf),
}

impl std::fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOrigin::Env(var) => f.write_str(var),
            KeyOrigin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A 256-bit master key (zeroed when dropped).
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    origin: KeyOrigin,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// A sealed secret value as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The value sealed under the data key (ciphertext and tag).
    pub value: Vec<u8>,
    /// The value's nonce.
    pub nonce: Vec<u8>,
    /// The data key sealed under the master key (ciphertext and tag).
    pub wrapped_key: Vec<u8>,
    /// The wrapping's nonce.
    pub key_nonce: Vec<u8>,
    /// The id of the master key that wraps the data key.
    pub key_id: String,
}

/// Why a key could not be had or a secret not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The master key does not open a secret.
    #[error("the master key does not open secret {name}; check {origin}")]
    WrongKey {
        /// The secret.
        name: String,
        /// Where the key came from.
        origin: KeyOrigin,
    },
    /// The key from the environment or a file is malformed.
    #[error("the master key in {origin} is not valid: {problem}")]
    BadKey {
        /// Where it came from.
        origin: KeyOrigin,
        /// What is wrong.
        problem: String,
    },
    /// The key file may be read or changed by others.
    #[error(
        "refusing the master key file {path}: its mode is {mode:o}, so others may read or change it; run `chmod 600 {path}` (and consider the key compromised)"
    )]
    KeyFileUnsafe {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// No key exists yet (nothing was ever sealed).
    #[error("no master key: neither {MASTER_KEY_ENV} nor {path} exists")]
    NoKey {
        /// The key file looked for.
        path: PathBuf,
    },
    /// Reading or writing the key file failed.
    #[error("cannot use the master key file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A value is empty.
    #[error("the value of secret {0} is empty")]
    Empty(String),
    /// A value is too large.
    #[error("the value of secret {name} is {len} bytes, more than the limit of {MAX_VALUE}")]
    TooLarge {
        /// The secret.
        name: String,
        /// Its length.
        len: usize,
    },
    /// A stored seal is malformed.
    #[error("secret {0} is stored damaged (a nonce or key has the wrong length)")]
    Damaged(String),
}

impl MasterKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32], origin: KeyOrigin) -> MasterKey {
        MasterKey {
            key: Zeroizing::new(bytes),
            origin,
        }
    }

    /// A fresh random key (from `/dev/urandom`).
    pub fn generate(origin: KeyOrigin) -> Result<MasterKey, std::io::Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random(&mut bytes[..])?;
        Ok(MasterKey::from_bytes(*bytes, origin))
    }

    /// Parses a key written as 64 hex digits or as standard base64 of 32
    /// bytes (surrounding whitespace ignored).
    pub fn parse(text: &str, origin: KeyOrigin) -> Result<MasterKey, SealError> {
        let text = text.trim();
        let bad = |problem: &str| SealError::BadKey {
            origin: origin.clone(),
            problem: problem.to_owned(),
        };
        let bytes: Zeroizing<Vec<u8>> =
            if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                Zeroizing::new(
                    (0..32)
                        .map(|i| {
                            u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or_default()
                        })
                        .collect(),
                )
            } else {
                Zeroizing::new(base64_decode(text).ok_or_else(|| {
                    bad("expected 64 hex digits or the standard base64 of 32 bytes")
                })?)
            };
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            bad(&format!(
                "it holds {} bytes; a master key is 32 bytes",
                bytes.len()
            ))
        })?;
        Ok(MasterKey::from_bytes(arr, origin))
    }

    /// The key as 64 hex digits (for the key file).
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(64));
        for b in self.key.iter() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Where it came from.
    pub fn origin(&self) -> &KeyOrigin {
        &self.origin
    }

    /// Its id: a hash of the key under a fixed label (16 hex digits). Reveals
    /// nothing of the key; tells keys apart.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"glint master key id\0");
        h.update(&self.key[..]);
        let d = h.finalize();
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key of data directory `dir`: from [`MASTER_KEY_ENV`] if set,
    /// else from its key file. `stored_id` is the key id the store's
    /// secrets are wrapped under, if any: when a rotation was interrupted
    /// after its new key file was written, the file whose id matches wins
    /// and the other is removed. With `create`, a missing key file is
    /// created (0600) with a fresh key.
    pub fn load(dir: &Path, stored_id: Option<&str>, create: bool) -> Result<MasterKey, SealError> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            let text = Zeroizing::new(text);
            return MasterKey::parse(&text, KeyOrigin::Env(MASTER_KEY_ENV));
        }
        let path = dir.join(KEY_FILE);
        let new_path = dir.join(NEW_KEY_FILE);
        let current = read_key_file(&path)?;
        let pending = read_key_file(&new_path)?;
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| SealError::Io { path: p, source }
        };
        if let Some(new) = pending {
            if stored_id == Some(new.id().as_str()) || current.is_none() {
                // The rotation committed: the new key is the key.
                std::fs::rename(&new_path, &path).map_err(io(&path))?;
                sync_dir(dir).map_err(io(dir))?;
                return Ok(MasterKey::from_bytes(*new.key, KeyOrigin::File(path)));
            }
            // The rotation did not commit: the old key stays.
            std::fs::remove_file(&new_path).map_err(io(&new_path))?;
        }
        match current {
            Some(k) => Ok(k),
            None if create => {
                let key = MasterKey::generate(KeyOrigin::File(path.clone())).map_err(io(&path))?;
                write_key_file(&path, &key)?;
                Ok(key)
            }
            None => Err(SealError::NoKey { path }),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.key))
    }

    /// Seals `value` as version `version` of secret `name`.
    pub fn seal(&self, name: &str, version: u64, value: &[u8]) -> Result<Sealed, SealError> {
        if value.is_empty() {
            return Err(SealError::Empty(name.to_owned()));
        }
        if value.len() > MAX_VALUE {
            return Err(SealError::TooLarge {
                name: name.to_owned(),
                len: value.len(),
            });
        }
        let io = |source| SealError::Io {
            path: PathBuf::from("/dev/urandom"),
            source,
        };
        let mut data_key = Zeroizing::new([0u8; 32]);
        random(&mut data_key[..]).map_err(io)?;
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce).map_err(io)?;
        let mut key_nonce = [0u8; NONCE_LEN];
        random(&mut key_nonce).map_err(io)?;
        let sealed_value = seal_with(
            &XChaCha20Poly1305::new(&Key::from(*data_key)),
            &nonce,
            &aad(b"value", name, version),
            value,
        )
        .ok_or_else(|| SealError::TooLarge {
            name: name.to_owned(),
            len: value.len(),
        })?;
        let wrapped = self.wrap(name, version, &data_key, &key_nonce)?;
        Ok(Sealed {
            value: sealed_value,
            nonce: nonce.to_vec(),
            wrapped_key: wrapped,
            key_nonce: key_nonce.to_vec(),
            key_id: self.id(),
        })
    }

    fn wrap(
        &self,
        name: &str,
        version: u64,
        data_key: &[u8; 32],
        key_nonce: &[u8; NONCE_LEN],
    ) -> Result<Vec<u8>, SealError> {
        seal_with(
            &self.cipher(),
            key_nonce,
            &aad(b"data key", name, version),
            data_key,
        )
        .ok_or_else(|| SealError::Damaged(name.to_owned()))
    }

    fn unwrap_key(
        &self,
        name: &str,
        version: u64,
        s: &Sealed,
    ) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let nonce: [u8; NONCE_LEN] = s
            .key_nonce
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Damaged(name.to_owned()))?;
        let key = open_with(
            &self.cipher(),
            &nonce,
            &aad(b"data key", name, version),
            &s.wrapped_key,
        )
        .ok_or_else(|| SealError::WrongKey {
            name: name.to_owned(),
            origin: self.origin.clone(),
        })?;
        let arr: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Damaged(name.to_owned()))?;
        Ok(Zeroizing::new(arr))
    }

    /// Opens version `version` of secret `name`.
    pub fn open(
        &self,
        name: &str,
        version: u64,
        s: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let data_key = self.unwrap_key(name, version, s)?;
        let nonce: [u8; NONCE_LEN] = s
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Damaged(name.to_owned()))?;
        open_with(
            &XChaCha20Poly1305::new(&Key::from(*data_key)),
            &nonce,
            &aad(b"value", name, version),
            &s.value,
        )
        .ok_or_else(|| SealError::Damaged(name.to_owned()))
    }

    /// `s`'s data key wrapped under `new` instead of this key (the value is
    /// untouched).
    pub fn rewrap(
        &self,
        new: &MasterKey,
        name: &str,
        version: u64,
        s: &Sealed,
    ) -> Result<Sealed, SealError> {
        let data_key = self.unwrap_key(name, version, s)?;
        let mut key_nonce = [0u8; NONCE_LEN];
        random(&mut key_nonce).map_err(|source| SealError::Io {
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
        let wrapped = new.wrap(name, version, &data_key, &key_nonce)?;
        Ok(Sealed {
            value: s.value.clone(),
            nonce: s.nonce.clone(),
            wrapped_key: wrapped,
            key_nonce: key_nonce.to_vec(),
            key_id: new.id(),
        })
    }
}

/// Writes `key` to `path` (0600, created new, synced).
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), SealError> {
    let io = |source| SealError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mut text = key.to_hex();
    text.push('\n');
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(io)?;
    }
    Ok(())
}

fn read_key_file(path: &Path) -> Result<Option<MasterKey>, SealError> {
    let io = |source| SealError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mode = f.metadata().map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SealError::KeyFileUnsafe {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let mut text = Zeroizing::new(String::new());
    f.read_to_string(&mut text).map_err(io)?;
    MasterKey::parse(&text, KeyOrigin::File(path.to_owned())).map(Some)
}

fn sync_dir(dir: &Path) -> Result<(), std::io::Error> {
    std::fs::File::open(dir)?.sync_all()
}

/// Fills `buf` from `/dev/urandom`.
fn random(buf: &mut [u8]) -> Result<(), std::io::Error> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

fn aad(what: &[u8], name: &str, version: u64) -> Vec<u8> {
    let mut a = b"glint secret ".to_vec();
    a.extend_from_slice(what);
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a.push(0);
    a.extend_from_slice(&version.to_be_bytes());
    a
}

fn seal_with(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plain: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = Zeroizing::new(plain.to_vec());
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(*nonce), aad, buf.as_mut_slice().into())
        .ok()?;
    let mut out = std::mem::take(&mut *buf);
    out.extend_from_slice(&tag);
    Some(out)
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let split = sealed.len().checked_sub(TAG_LEN)?;
    let (ct, tag) = sealed.split_at(split);
    let tag = Tag::try_from(tag).ok()?;
    let mut buf = Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_inout_detached(&XNonce::from(*nonce), aad, buf.as_mut_slice().into(), &tag)
        .ok()?;
    Some(buf)
}

/// Standard base64 (padding optional).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key() -> MasterKey {
        MasterKey::generate(KeyOrigin::Env(MASTER_KEY_ENV)).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_only() {
        let k = key();
        let s = k.seal("db/password", 1, b"hunter2").unwrap();
        assert!(!s.value.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(&k.open("db/password", 1, &s).unwrap()[..], b"hunter2");
        let other = key();
        let err = other.open("db/password", 1, &s).unwrap_err();
        assert!(matches!(err, SealError::WrongKey { .. }), "{err}");
        assert!(
            err.to_string().contains(
                "the master key does not open secret db/password; check GLINT_MASTER_KEY"
            )
        );
    }

    // Mutation caught: the associated data not binding the name or version.
    #[test]
    fn a_seal_is_bound_to_its_name_and_version() {
        let k = key();
        let s = k.seal("a", 1, b"v").unwrap();
        assert!(k.open("b", 1, &s).is_err());
        assert!(k.open("a", 2, &s).is_err());
    }

    #[test]
    fn rewrapping_moves_the_data_key_to_the_new_key() {
        let (old, new) = (key(), key());
        let s = old.seal("x", 3, b"value").unwrap();
        let r = old.rewrap(&new, "x", 3, &s).unwrap();
        assert_eq!(r.value, s.value, "the value is not resealed");
        assert_eq!(&new.open("x", 3, &r).unwrap()[..], b"value");
        assert!(old.open("x", 3, &r).is_err());
        assert_eq!(r.key_id, new.id());
    }

    #[test]
    fn values_are_bounded_and_not_empty() {
        let k = key();
        assert!(matches!(k.seal("x", 1, b""), Err(SealError::Empty(_))));
        assert!(k.seal("x", 1, &vec![1u8; MAX_VALUE]).is_ok());
        assert!(matches!(
            k.seal("x", 1, &vec![1u8; MAX_VALUE + 1]),
            Err(SealError::TooLarge { .. })
        ));
    }

    #[test]
    fn keys_parse_from_hex_and_base64() {
        let o = KeyOrigin::Env(MASTER_KEY_ENV);
        let hex = "00".repeat(31) + "ff";
        let k = MasterKey::parse(&hex, o.clone()).unwrap();
        assert_eq!(k.to_hex().as_str(), hex);
        // 32 zero bytes then 0xff... base64 of [0;31]+[255]
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAP8=";
        assert_eq!(MasterKey::parse(b64, o.clone()).unwrap().id(), k.id());
        assert!(MasterKey::parse("short", o.clone()).is_err());
        assert!(MasterKey::parse("AAAA", o).is_err());
    }

    #[test]
    fn the_key_file_is_created_private_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        // Not created unless asked.
        assert!(matches!(read_key_file(&path), Ok(None)));
        let k = read_or_create(dir.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            read_or_create(dir.path()).id(),
            k.id(),
            "the same key again"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(SealError::KeyFileUnsafe { .. })
        ));
    }

    fn read_or_create(dir: &Path) -> MasterKey {
        match read_key_file(&dir.join(KEY_FILE)).unwrap() {
            Some(k) => k,
            None => {
                let k = MasterKey::generate(KeyOrigin::File(dir.join(KEY_FILE))).unwrap();
                write_key_file(&dir.join(KEY_FILE), &k).unwrap();
                k
            }
        }
    }
}
