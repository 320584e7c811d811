//! Typed identifiers: declaration names, instance ids, version numbers,
//! image digests and content hashes.
//!
//! Each is a validated newtype so that a service name cannot be passed where an
//! instance id is expected, and so that a malformed digest is refused where it
//! enters the system rather than deep inside a provider.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid identifier of some kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A declaration name is empty, too long, or uses characters outside
    /// `[a-z0-9_-]` / does not start with a letter.
    #[error(
        "invalid name `{0}`: use 1 to 63 lowercase letters, digits, `_` or `-`, starting with a letter"
    )]
    Name(String),
    /// An instance id is not `<service>-<suffix>`.
    #[error("invalid instance id `{0}`")]
    Instance(String),
    /// A digest is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest `{0}`: expected `sha256:` followed by 64 lowercase hex digits")]
    Digest(String),
}

/// The name of a declaration (`web` in `service web { … }`).
///
/// Names are 1–63 characters of `[a-z0-9_-]`, starting with a letter, so that
/// they are valid as labels, file names, DNS labels and Docker object names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Validates `s` as a declaration name.
    pub fn new(s: impl Into<String>) -> Result<Name, IdError> {
        let s = s.into();
        if Self::is_valid(&s) {
            Ok(Name(s))
        } else {
            Err(IdError::Name(s))
        }
    }

    /// Whether `s` would be accepted by [`Name::new`].
    pub fn is_valid(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
            && s.len() <= 63
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Name::new(s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl FromStr for Name {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The id of one instance: `<service>-<suffix>` where the suffix is 8
/// characters of `[0-9a-z]`, e.g. `web-3k9x0q2m`.
///
/// An id is never reused: a replacement always gets a new one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

impl InstanceId {
    /// Length of the random suffix.
    pub const SUFFIX_LEN: usize = 8;

    /// Builds the id of an instance of `service` from a suffix.
    pub fn new(service: &Name, suffix: &str) -> Result<InstanceId, IdError> {
        Self::parse(format!("{service}-{suffix}"))
    }

    /// Validates a whole id such as `web-3k9x0q2m`.
    pub fn parse(s: impl Into<String>) -> Result<InstanceId, IdError> {
        let s = s.into();
        let ok = match s.rsplit_once('-') {
            Some((service, suffix)) => {
                Name::is_valid(service)
                    && suffix.len() == Self::SUFFIX_LEN
                    && suffix
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            }
            None => false,
        };
        if ok {
            Ok(InstanceId(s))
        } else {
            Err(IdError::Instance(s))
        }
    }

    /// Builds a fresh id for an instance of `service` from 40 bits of entropy.
    ///
    /// The caller supplies the randomness so that this crate does no IO; the
    /// conductor passes bytes from the OS generator.
    pub fn from_entropy(service: &Name, entropy: u64) -> InstanceId {
        const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut n = entropy;
        let mut suffix = String::with_capacity(Self::SUFFIX_LEN);
        for _ in 0..Self::SUFFIX_LEN {
            suffix.push(char::from(ALPHABET[(n % 36) as usize]));
            n /= 36;
        }
        InstanceId(format!("{service}-{suffix}"))
    }

    /// The service part of the id.
    pub fn service(&self) -> &str {
        self.0.rsplit_once('-').map(|(s, _)| s).unwrap_or(&self.0)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        InstanceId::parse(s)
    }
}

impl From<InstanceId> for String {
    fn from(n: InstanceId) -> String {
        n.0
    }
}

impl FromStr for InstanceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceId::parse(s)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The number of a version of an environment: 1 for the first apply, then
/// one more for every apply or rollback.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct VersionNumber(pub u64);

impl VersionNumber {
    /// The version after this one.
    pub fn next(self) -> VersionNumber {
        VersionNumber(self.0 + 1)
    }
}

impl fmt::Display for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for VersionNumber {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim_start_matches('v').parse().map(VersionNumber)
    }
}

/// An OCI content digest, `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Validates a digest string.
    pub fn parse(s: impl Into<String>) -> Result<Digest, IdError> {
        let s = s.into();
        let ok = s.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Digest(s))
        } else {
            Err(IdError::Digest(s))
        }
    }

    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex(&Sha256::digest(bytes))))
    }

    /// Wraps the raw 32-byte output of a sha256 hasher.
    pub fn from_sha256(raw: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex(raw)))
    }

    /// The 64 hex digits without the algorithm prefix (the blob's file name in
    /// an OCI layout).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// A 12-digit abbreviation for tables, like Docker's short ids.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    /// The full digest string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Digest {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Digest::parse(s)
    }
}

impl From<Digest> for String {
    fn from(n: Digest) -> String {
        n.0
    }
}

impl FromStr for Digest {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sha256 of a value's canonical JSON: identifies a compiled environment
/// (or any part of one) by content. Printed as 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    /// Hashes the canonical JSON form of `value`.
    ///
    /// Canonical means: struct fields in declaration order, every map a
    /// `BTreeMap` (sorted keys), no floats, compact output. All IR types obey
    /// this, so equal values always hash equally.
    pub fn of<T: Serialize>(value: &T) -> ContentHash {
        /// Feeds the canonical JSON to the hasher as it is written, so that
        /// hashing a large environment does not hold its JSON in memory.
        struct Hashing(Sha256);
        impl std::io::Write for Hashing {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = std::io::BufWriter::with_capacity(64 << 10, Hashing(Sha256::new()));
        // Serialising IR types cannot fail: they contain only strings,
        // integers, booleans, sequences and string-keyed maps.
        let _ = serde_json::to_writer(&mut w, value);
        let _ = std::io::Write::flush(&mut w);
        let (hashing, _) = w.into_parts();
        ContentHash(hex(&hashing.0.finalize()))
    }

    /// Wraps a hash read back from the store.
    pub fn from_hex(s: impl Into<String>) -> ContentHash {
        ContentHash(s.into())
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> &str {
        let end = self.0.len().min(12);
        &self.0[..end]
    }

    /// All 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_label_rules() {
        assert!(Name::new("web").is_ok());
        assert!(Name::new("api-v2_x").is_ok());
        assert!(Name::new("").is_err());
        assert!(Name::new("Web").is_err());
        assert!(Name::new("1web").is_err());
        assert!(Name::new("a".repeat(64)).is_err());
    }

    #[test]
    fn instance_ids_round_trip_and_name_their_service() {
        let web = Name::new("api-v2").unwrap();
        let id = InstanceId::from_entropy(&web, 0xdead_beef_cafe);
        assert_eq!(id.service(), "api-v2");
        assert_eq!(InstanceId::parse(id.to_string()).unwrap(), id);
        assert!(InstanceId::parse("web").is_err());
        assert!(InstanceId::parse("web-ABCDEFGH").is_err());
        assert_ne!(
            InstanceId::from_entropy(&web, 1),
            InstanceId::from_entropy(&web, 2)
        );
    }

    #[test]
    fn digests_are_validated() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(d.short(), "2cf24dba5fb0");
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(d.as_str().to_uppercase()).is_err());
    }

    #[test]
    fn content_hash_depends_only_on_content() {
        let a: std::collections::BTreeMap<&str, u32> = [("b", 2), ("a", 1)].into();
        let b: std::collections::BTreeMap<&str, u32> = [("a", 1), ("b", 2)].into();
        assert_eq!(ContentHash::of(&a), ContentHash::of(&b));
        let c: std::collections::BTreeMap<&str, u32> = [("a", 1), ("b", 3)].into();
        assert_ne!(ContentHash::of(&a), ContentHash::of(&c));
    }
}
