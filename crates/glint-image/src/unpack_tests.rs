//! Hostile layers against [`apply_layer`]: property tests over generated tars
//! (paths with `..` and `/`, symlinks pointing out and then written through,
//! hard links to outside or to special files, setuid/setgid/sticky modes,
//! device and FIFO entries, whiteouts of every shape) showing that nothing
//! outside the unpack root is read or written and that no privilege bit or
//! device node survives; plus the clean-up of trees an older Glint unpacked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;

/// One raw tar entry (the `tar` crate refuses to write hostile paths).
#[derive(Debug, Clone)]
struct Raw {
    path: String,
    kind: u8,
    link: String,
    mode: u32,
    data: Vec<u8>,
    dev: (u32, u32),
}

fn header(
    out: &mut Vec<u8>,
    path: &str,
    kind: u8,
    link: &str,
    mode: u32,
    size: usize,
    dev: (u32, u32),
) {
    let mut h = [0u8; 512];
    let p = path.as_bytes();
    h[..p.len().min(100)].copy_from_slice(&p[..p.len().min(100)]);
    h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    let l = link.as_bytes();
    h[157..157 + l.len().min(100)].copy_from_slice(&l[..l.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[329..336].copy_from_slice(format!("{:07o}", dev.0).as_bytes());
    h[337..344].copy_from_slice(format!("{:07o}", dev.1).as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
}

fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        header(
            &mut out,
            &e.path,
            e.kind,
            &e.link,
            e.mode,
            e.data.len(),
            e.dev,
        );
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A PAX extended header giving the next entry extended attributes.
fn pax_xattr(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    let mut rec = Vec::new();
    let key = format!(" SCHILY.xattr.{name}=");
    // "<len> <key>=<value>\n", where <len> counts itself.
    let body = key.len() + value.len() + 1;
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    rec.extend_from_slice(len.to_string().as_bytes());
    rec.extend_from_slice(key.as_bytes());
    rec.extend_from_slice(value);
    rec.push(b'\n');
    header(out, "PaxHeaders/x", b'x', "", 0o644, rec.len(), (0, 0));
    out.extend_from_slice(&rec);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A test world: `<tmp>/box/{sentinel, outside/secret, root/}`; the layer
/// is unpacked into `root`, everything else in `box` must stay as it was.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let b = tmp.path().join("box");
        fs::create_dir_all(b.join("outside/dir")).unwrap();
        fs::create_dir(b.join("root")).unwrap();
        fs::write(b.join("sentinel"), b"sentinel").unwrap();
        fs::write(b.join("outside/secret"), b"secret").unwrap();
        fs::write(b.join("outside/dir/f"), b"f").unwrap();
        World { tmp }
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("box/root")
    }
    fn outside(&self) -> PathBuf {
        self.tmp.path().join("box/outside")
    }
    fn apply(&self, tar: &[u8]) -> Result<()> {
        let blob = self.tmp.path().join("layer.tar");
        fs::write(&blob, tar).unwrap();
        apply_layer(&blob, &self.root())
    }
    /// Everything in `box` but `root`: path → (inode, mode, size, mtime, content or link).
    fn snapshot_outside(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        snap(&self.tmp.path().join("box"), "", &mut out, true);
        out
    }
}

fn snap(p: &Path, rel: &str, out: &mut BTreeMap<String, String>, top: bool) {
    let m = p.symlink_metadata().unwrap();
    let what = if m.file_type().is_symlink() {
        format!("-> {}", fs::read_link(p).unwrap().display())
    } else if m.is_file() {
        String::from_utf8_lossy(&fs::read(p).unwrap()).into_owned()
    } else {
        String::new()
    };
    out.insert(
        rel.to_owned(),
        format!(
            "{} {:o} {} {} {what}",
            m.ino(),
            m.mode(),
            m.size(),
            m.mtime()
        ),
    );
    if m.is_dir() {
        for name in sorted_entries(p).unwrap() {
            if top && name == "root" {
                continue;
            }
            let child = format!("{rel}/{}", name.to_string_lossy());
            snap(&p.join(&name), &child, out, false);
        }
    }
}

/// Inodes of every file outside the root.
fn inodes(p: &Path, out: &mut Vec<u64>) {
    let m = p.symlink_metadata().unwrap();
    out.push(m.ino());
    if m.is_dir() {
        for name in sorted_entries(p).unwrap() {
            inodes(&p.join(name), out);
        }
    }
}

/// Fails if anything under `root` carries a privilege bit, is a device, or
/// shares an inode with a file outside.
fn assert_inert(root: &Path, outside_inodes: &[u64]) {
    let m = root.symlink_metadata().unwrap();
    let ft = m.file_type();
    let mode = m.mode() & 0o7777;
    assert!(
        !ft.is_char_device() && !ft.is_block_device(),
        "device node {}",
        root.display()
    );
    if !ft.is_symlink() {
        assert_eq!(
            mode & 0o6000,
            0,
            "setuid/setgid on {} ({mode:o})",
            root.display()
        );
        if !ft.is_dir() {
            assert_eq!(mode & 0o1000, 0, "sticky file {}", root.display());
        }
    }
    assert!(
        !outside_inodes.contains(&m.ino()),
        "{} is a hard link to a file outside the root",
        root.display()
    );
    if ft.is_dir() {
        for name in sorted_entries(root).unwrap() {
            assert_inert(&root.join(name), outside_inodes);
        }
    }
}

fn entry(path: &str, kind: u8, link: &str, mode: u32, data: &[u8]) -> Raw {
    Raw {
        path: path.into(),
        kind,
        link: link.into(),
        mode,
        data: data.to_vec(),
        dev: (1, 3),
    }
}

#[test]
fn privilege_bits_are_cleared_and_the_sticky_bit_kept_on_directories() {
    let w = World::new();
    let mut tar = Vec::new();
    let entries = [
        entry("bin/", b'5', "", 0o2775, b""),
        entry("bin/su", b'0', "", 0o4755, b"#!"),
        entry("bin/sg", b'0', "", 0o2755, b"#!"),
        entry("bin/all", b'0', "", 0o7777, b"#!"),
        entry("bin/link-to-su", b'1', "bin/su", 0o4755, b""),
        entry("tmp/", b'5', "", 0o1777, b""),
        entry("tmp/fifo", b'6', "", 0o6666, b""),
    ];
    for e in &entries {
        header(
            &mut tar,
            &e.path,
            e.kind,
            &e.link,
            e.mode,
            e.data.len(),
            e.dev,
        );
        tar.extend_from_slice(&e.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    // A file capability (cap_setuid+ep) offered through a PAX xattr.
    pax_xattr(
        &mut tar,
        "security.capability",
        &[
            1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    header(&mut tar, "bin/capped", b'0', "", 0o755, 2, (0, 0));
    tar.extend_from_slice(b"#!");
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&[0u8; 1024]);
    w.apply(&tar).unwrap();
    let r = w.root();
    let mode = |p: &str| r.join(p).symlink_metadata().unwrap().mode() & 0o7777;
    assert_eq!(mode("bin"), 0o775);
    assert_eq!(mode("bin/su"), 0o755);
    assert_eq!(mode("bin/sg"), 0o755);
    assert_eq!(mode("bin/all"), 0o777);
    assert_eq!(mode("bin/link-to-su"), 0o755);
    assert_eq!(
        r.join("bin/link-to-su").metadata().unwrap().ino(),
        r.join("bin/su").metadata().unwrap().ino()
    );
    assert_eq!(mode("tmp"), 0o1777, "sticky kept on a directory");
    assert_eq!(mode("tmp/fifo"), 0o666);
    assert!(
        r.join("tmp/fifo")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let c = cstr(&r.join("bin/capped")).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid path, attribute name and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(n < 0, "no file capability was applied");
    assert_inert(&r, &[]);
}

#[test]
fn device_nodes_are_refused_by_the_check_and_by_unpacking() {
    for kind in [b'3', b'4'] {
        let w = World::new();
        let tar = tar_of(&[
            entry("dev/", b'5', "", 0o755, b""),
            entry("dev/mem", kind, "", 0o666, b""),
        ]);
        let err = w.apply(&tar).unwrap_err();
        assert!(
            err.to_string()
                .contains("refusing layer entry `dev/mem`: it is a device node"),
            "{err}"
        );
        assert!(!w.root().join("dev/mem").exists());
        let blob = w.tmp.path().join("layer.tar");
        let err = check_layer(&blob).unwrap_err();
        assert!(err.to_string().contains("device node"), "{err}");
    }
}

#[test]
fn a_whiteout_of_dot_or_dotdot_deletes_nothing() {
    for name in [".wh..", ".wh...", ".wh.", "a/.wh...", "a/.wh.."] {
        let w = World::new();
        let before = w.snapshot_outside();
        fs::create_dir(w.root().join("a")).unwrap();
        fs::write(w.root().join("a/keep"), b"k").unwrap();
        let err = w
            .apply(&tar_of(&[entry(name, b'0', "", 0o644, b"")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("whiteout that names no entry"),
            "{name}: {err}"
        );
        assert_eq!(w.snapshot_outside(), before, "{name}");
        assert!(w.root().join("a/keep").exists(), "{name}");
    }
}

/// A path from hostile pieces.
fn path_strategy() -> impl Strategy<Value = String> {
    let comp = prop::sample::select(vec![
        "a",
        "b",
        "secret",
        "..",
        ".",
        "",
        ".wh.a",
        ".wh.b",
        ".wh..wh..opq",
        ".wh.",
        ".wh..",
        ".wh...",
        "dir",
    ]);
    (
        prop::sample::select(vec!["", "/", "./", "../"]),
        prop::collection::vec(comp, 1..4),
        any::<bool>(),
    )
        .prop_map(|(lead, comps, slash)| {
            let mut p = format!("{lead}{}", comps.join("/"));
            if slash {
                p.push('/');
            }
            p
        })
}

fn entry_strategy() -> impl Strategy<Value = Raw> {
    let links = vec![
        "a".to_owned(),
        "a/b".to_owned(),
        "..".to_owned(),
        "../..".to_owned(),
        "../outside".to_owned(),
        "../outside/secret".to_owned(),
        "../../box/outside/secret".to_owned(),
        "/".to_owned(),
        "/a".to_owned(),
        "dev/x".to_owned(),
        "/etc/passwd".to_owned(),
        "bin/su".to_owned(),
    ];
    (
        path_strategy(),
        prop::sample::select(vec![b'0', b'5', b'2', b'1', b'6', b'3', b'4', b'7']),
        prop::sample::select(links),
        0u32..0o10000,
    )
        .prop_map(|(path, kind, link, mode)| Raw {
            path,
            kind,
            link,
            mode,
            data: if kind == b'0' || kind == b'7' {
                b"payload".to_vec()
            } else {
                Vec::new()
            },
            dev: (1, 3),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever a layer holds, unpacking it (whether it succeeds or refuses
    /// part way) leaves everything outside the root unchanged, links nothing
    /// outside in, and leaves no setuid/setgid bit, sticky file or device.
    #[test]
    fn nothing_escapes_the_root_and_no_privilege_survives(
        layers in prop::collection::vec(
            prop::collection::vec(entry_strategy(), 1..10), 1..3),
    ) {
        let w = World::new();
        let before = w.snapshot_outside();
        let mut outside_inodes = Vec::new();
        inodes(&w.tmp.path().join("box/outside"), &mut outside_inodes);
        inodes(&w.tmp.path().join("box/sentinel"), &mut outside_inodes);
        for layer in &layers {
            let _ = w.apply(&tar_of(layer));
        }
        prop_assert_eq!(w.snapshot_outside(), before);
        assert_inert(&w.root(), &outside_inodes);
    }

    /// Links aimed at the outside by absolute path, then written through.
    #[test]
    fn absolute_links_out_are_never_followed(
        entries in prop::collection::vec(
            (path_strategy(), prop::sample::select(vec![b'0', b'2', b'1', b'5']), 0u32..0o10000), 1..12),
        targets in prop::collection::vec(prop::sample::select(vec!["", "/secret", "/dir", "/dir/f", "/.."]), 12),
    ) {
        let w = World::new();
        let outside = w.outside().display().to_string();
        let raws: Vec<Raw> = entries
            .into_iter()
            .zip(targets)
            .map(|((path, kind, mode), t)| Raw {
                path,
                kind,
                link: format!("{outside}{t}"),
                mode,
                data: b"overwritten".to_vec(),
                dev: (0, 0),
            })
            .collect();
        let before = w.snapshot_outside();
        let mut outside_inodes = Vec::new();
        inodes(&w.tmp.path().join("box/outside"), &mut outside_inodes);
        let _ = w.apply(&tar_of(&raws));
        prop_assert_eq!(w.snapshot_outside(), before);
        assert_inert(&w.root(), &outside_inodes);
    }
}

#[test]
fn a_tree_unpacked_by_an_older_glint_is_cleaned_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let file = dir.path().join("rootfs.tar");
    fs::write(
        &file,
        tar_of(&[
            entry("bin/", b'5', "", 0o755, b""),
            entry("bin/tool", b'0', "", 0o755, b"#!"),
        ]),
    )
    .unwrap();
    let digest = store.import(&file).unwrap();
    let root = store.rootfs(&digest).unwrap();
    let tdir = store.rootfs_dir(&digest);
    // What an older Glint left: a setuid binary, a device node, no format.
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let dev = cstr(&root.join("bin/null")).unwrap();
    // SAFETY: valid path; plain integers.
    assert_eq!(
        unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
        0
    );
    fs::write(
        tdir.join("fingerprint"),
        fingerprint(&root).unwrap().join("\n"),
    )
    .unwrap();
    fs::remove_file(tdir.join("format")).unwrap();
    let inode = root.join("bin/tool").metadata().unwrap().ino();

    let again = store.rootfs(&digest).unwrap();
    assert_eq!(again, root);
    let m = root.join("bin/tool").metadata().unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755);
    assert_eq!(
        m.ino(),
        inode,
        "cleaned in place, not replaced under running instances"
    );
    assert!(root.join("bin/null").symlink_metadata().is_err());
    assert_eq!(
        fs::read_to_string(tdir.join("format")).unwrap(),
        ROOTFS_FORMAT
    );
    store.check_rootfs(&digest).unwrap();

    // A tampered old tree is reported, not blessed by the clean-up.
    fs::remove_file(tdir.join("format")).unwrap();
    fs::write(root.join("bin/tool"), b"changed").unwrap();
    let err = store.rootfs(&digest).unwrap_err();
    assert!(matches!(err, ImageError::RootfsTampered { .. }), "{err}");
}
