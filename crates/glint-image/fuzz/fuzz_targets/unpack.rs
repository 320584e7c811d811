//! Fuzz target: any layer, imported as a root filesystem tarball and
//! unpacked (`ImageStore::import` + `ImageStore::rootfs`, the path
//! `glint image import` and every launch take), must leave everything outside
//! the store unchanged and leave no setuid/setgid bit, sticky file or device
//! node in the unpacked tree; refusing is fine, panicking is not.
//!
//! The input is decoded into tar entries built from hostile pieces (`..`,
//! `/`, whiteouts, links out, privilege modes, devices), or taken as a raw
//! tar when its first byte is odd.
//!
//! Run (stable toolchain, no sanitizer; as root to create device nodes):
//!   cargo fuzz run --fuzz-dir crates/glint-image/fuzz -s none unpack -- -max_total_time=300

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

const COMPONENTS: [&str; 14] = [
    "a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", ".wh.", ".wh..", ".wh...", "dir", "etc",
    "outside", "secret",
];
const LINKS: [&str; 10] = [
    "a", "a/b", "..", "../..", "../../../outside", "../../../outside/secret", "/", "/etc/passwd",
    "dev/x", "a/secret",
];
const KINDS: [u8; 9] = [b'0', b'5', b'2', b'1', b'6', b'3', b'4', b'7', b'S'];

fn header(out: &mut Vec<u8>, path: &[u8], kind: u8, link: &[u8], mode: u32, size: usize) {
    let mut h = [0u8; 512];
    h[..path.len().min(100)].copy_from_slice(&path[..path.len().min(100)]);
    h[100..107].copy_from_slice(format!("{:07o}", mode & 0o7777).as_bytes());
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[329..336].copy_from_slice(b"0000001");
    h[337..344].copy_from_slice(b"0000003");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
}

/// Decodes fuzz bytes into a tar of hostile entries.
fn decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = data.iter().copied();
    while let (Some(k), Some(p1), Some(p2), Some(m1), Some(m2), Some(l)) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) {
        let mut path = String::new();
        if p1 & 0x80 != 0 {
            path.push('/');
        }
        for (i, b) in [p1, p2].into_iter().enumerate() {
            if i == 1 && b & 0x40 == 0 {
                break;
            }
            if i == 1 {
                path.push('/');
            }
            path.push_str(COMPONENTS[usize::from(b) % COMPONENTS.len()]);
        }
        let kind = KINDS[usize::from(k) % KINDS.len()];
        let link = LINKS[usize::from(l) % LINKS.len()];
        let mode = u32::from(m1) << 8 | u32::from(m2);
        let body: &[u8] = if matches!(kind, b'0' | b'7') { b"payload" } else { b"" };
        header(&mut out, path.as_bytes(), kind, link.as_bytes(), mode, body.len());
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn snapshot(p: &Path, rel: String, out: &mut BTreeMap<String, String>) {
    let Ok(m) = p.symlink_metadata() else { return };
    let content = if m.is_file() { fs::read(p).unwrap_or_default() } else { Vec::new() };
    out.insert(rel.clone(), format!("{} {:o} {} {:?}", m.ino(), m.mode(), m.mtime(), content));
    if m.is_dir() {
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if rel.is_empty() && name == "store" {
                continue;
            }
            snapshot(&e.path(), format!("{rel}/{name}"), out);
        }
    }
}

fn assert_inert(p: &Path) {
    let Ok(m) = p.symlink_metadata() else { return };
    let t = m.file_type();
    assert!(!t.is_block_device() && !t.is_char_device(), "device {}", p.display());
    if !t.is_symlink() {
        assert_eq!(m.mode() & 0o6000, 0, "privilege bit on {}", p.display());
        if !t.is_dir() {
            assert_eq!(m.mode() & 0o1000, 0, "sticky file {}", p.display());
        }
    }
    if t.is_dir() {
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            assert_inert(&e.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let tar = if data.first().is_some_and(|b| b & 1 == 1) {
        data[1..].to_vec()
    } else {
        decode(data)
    };
    let Ok(tmp) = tempfile::tempdir() else { return };
    let world = tmp.path();
    let _ = fs::create_dir_all(world.join("outside/dir"));
    let _ = fs::write(world.join("outside/secret"), b"secret");
    let _ = fs::write(world.join("layer.tar"), &tar);
    let Ok(store) = glint_image::ImageStore::open(world.join("store")) else { return };
    let mut before = BTreeMap::new();
    snapshot(world, String::new(), &mut before);
    if let Ok(digest) = store.import(&world.join("layer.tar")) {
        let _ = store.rootfs(&digest);
    }
    let mut after = BTreeMap::new();
    snapshot(world, String::new(), &mut after);
    assert_eq!(before, after, "something outside the store changed");
    assert_inert(&world.join("store/rootfs"));
});
