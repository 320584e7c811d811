//! Who a data plane is: its process, the protocol it speaks and the build it
//! runs — what a conductor compares to decide between adopting a running data
//! plane and replacing it.
//!
//! The *build* is the GNU build-id note the linker writes into the `glint`
//! executable (a hash of the linked output: identical for identical builds,
//! different after any change to the code), read from the executable file
//! itself. A copy of a binary is the same build; a rebuilt one is not.
//! Binaries without the note fall back to the package version plus the
//! executable's size and modification time.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The version of the control protocol this build speaks (see the
/// `protocol` module for what may change without bumping it).
pub const PROTOCOL: u32 = 1;

/// The package version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A data plane as it introduces itself (the answer to `hello`).
///
/// Fields are only ever added (with defaults), never changed or removed: a
/// conductor of any version must be able to read the identity of a data
/// plane of any other version, to decide to replace it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Its process id.
    pub pid: u32,
    /// The protocol it speaks.
    pub protocol: u32,
    /// Its build (see the module doc).
    pub build: String,
    /// The package version of its build.
    pub version: String,
    /// The store it serves (the `dev.glint.store` label of everything).
    pub store: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
}

impl Identity {
    /// The identity of this process, serving `store`.
    pub fn of_this_process(store: &str) -> Identity {
        Identity {
            pid: std::process::id(),
            protocol: PROTOCOL,
            build: this_build().to_owned(),
            version: VERSION.to_owned(),
            store: store.to_owned(),
            started_at_ms: now_ms(),
        }
    }

    /// Whether a conductor of this build may adopt this data plane as it
    /// is: same protocol and same build. Anything else is replaced by a
    /// data plane of the conductor's own build.
    pub fn adoptable(&self) -> bool {
        self.protocol == PROTOCOL && self.build == this_build()
    }

    /// A short form of the build for people (`0.1.0+9ce7ea032d6d`).
    pub fn short_build(&self) -> String {
        short(&self.build)
    }
}

/// A short form of a build id.
pub fn short(build: &str) -> String {
    match build.split_once('+') {
        Some((version, id)) => format!("{version}+{}", &id[..id.len().min(12)]),
        None => build.to_owned(),
    }
}

/// This executable's build (computed once).
pub fn this_build() -> &'static str {
    static BUILD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILD.get_or_init(|| {
        let exe = Path::new("/proc/self/exe");
        build_of(exe).unwrap_or_else(|| {
            let stamp = std::fs::metadata(exe)
                .ok()
                .map(|m| {
                    let mtime = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    format!("{}-{mtime}", m.len())
                })
                .unwrap_or_else(|| "unknown".into());
            format!("{VERSION}+file-{stamp}")
        })
    })
}

/// The build of the executable at `path` (`<version>+<build-id hex>`), if
/// it carries a GNU build-id note.
pub fn build_of(path: &Path) -> Option<String> {
    gnu_build_id(path).map(|id| format!("{VERSION}+{}", hex(&id)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the GNU build-id note of a 64-bit little-endian ELF file: the
/// program headers are searched for `PT_NOTE` segments, and those for a
/// note named `GNU` of type `NT_GNU_BUILD_ID`. Only the headers and the
/// notes are read, a few kilobytes.
pub fn gnu_build_id(path: &Path) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    const PT_NOTE: u32 = 4;
    const NT_GNU_BUILD_ID: u32 = 3;
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    // ELF magic, 64-bit, little-endian.
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let phoff = u64_at(&header, 0x20)?;
    let phentsize = usize::from(u16_at(&header, 0x36)?);
    let phnum = usize::from(u16_at(&header, 0x38)?);
    if phentsize < 56 || phnum > 4096 {
        return None;
    }
    let mut table = vec![0u8; phentsize * phnum];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    file.read_exact(&mut table).ok()?;
    for ph in table.chunks_exact(phentsize) {
        if u32_at(ph, 0)? != PT_NOTE {
            continue;
        }
        let offset = u64_at(ph, 0x08)?;
        let size = usize::try_from(u64_at(ph, 0x20)?).ok()?;
        if size > 1 << 20 {
            continue;
        }
        let mut notes = vec![0u8; size];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut notes).ok()?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let namesz = usize::try_from(u32_at(&notes, at)?).ok()?;
            let descsz = usize::try_from(u32_at(&notes, at + 4)?).ok()?;
            let kind = u32_at(&notes, at + 8)?;
            let name_at = at + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let next = desc_at + descsz.next_multiple_of(4);
            if next > notes.len() {
                break;
            }
            if kind == NT_GNU_BUILD_ID && notes.get(name_at..name_at + namesz)? == b"GNU\0" {
                return Some(notes[desc_at..desc_at + descsz].to_vec());
            }
            at = next;
        }
    }
    None
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_a_build_id_and_a_copy_has_the_same() {
        let exe = std::env::current_exe().unwrap();
        let id = gnu_build_id(&exe).expect("the linker writes a GNU build-id note");
        assert!(id.len() >= 8, "{id:?}");
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy");
        std::fs::copy(&exe, &copy).unwrap();
        assert_eq!(gnu_build_id(&copy), Some(id.clone()));
        // A different build id is a different build.
        let mut bytes = std::fs::read(&copy).unwrap();
        let at = bytes.windows(id.len()).position(|w| w == id).unwrap();
        bytes[at] ^= 0xff;
        std::fs::write(&copy, &bytes).unwrap();
        assert_ne!(gnu_build_id(&copy), Some(id));
        assert_ne!(build_of(&copy), build_of(&exe));
    }

    #[test]
    fn files_that_are_not_elf_have_no_build_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script");
        std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(gnu_build_id(&path), None);
        assert_eq!(gnu_build_id(&dir.path().join("missing")), None);
    }

    #[test]
    fn only_the_same_protocol_and_build_is_adoptable() {
        let me = Identity::of_this_process("s");
        assert!(me.adoptable());
        let older = Identity {
            protocol: PROTOCOL - 1,
            ..me.clone()
        };
        assert!(!older.adoptable());
        let rebuilt = Identity {
            build: format!("{VERSION}+0000"),
            ..me
        };
        assert!(!rebuilt.adoptable());
    }
}
