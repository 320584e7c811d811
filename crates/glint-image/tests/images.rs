//! Integration tests of glint-image: real files, real tars, real namespaces.
//! Tests that run programs inside images need root and a static busybox
//! (`apt-get install -y busybox-static`); they print SKIPPED without them.

mod common;

use common::*;
use glint_image::{ImageError, ImageStore};
use glint_model::{ImageBase, ImageStep};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn run_step_builds_on_the_previous_layer() {
    let (Some(bb), true) = (busybox(), is_root()) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    busybox_tree(src.path(), &bb);
    let mut img = busybox_image();
    img.steps.push(run(
        "echo hi > /greeting && mkdir -p /data/sub && chmod 700 /data && hostname > /host && echo $SOURCE_DATE_EPOCH > /epoch",
    ));
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(&one("bb", img), src.path(), &store).unwrap();
    let digest = &built[&name("bb")].digest;
    let root = store.rootfs(digest).unwrap();
    assert_eq!(fs::read_to_string(root.join("greeting")).unwrap(), "hi\n");
    assert_eq!(
        fs::read_to_string(root.join("host")).unwrap(),
        "glint-sandbox\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("epoch")).unwrap(),
        "1700000000\n"
    );
    assert_eq!(
        fs::read_link(root.join("bin/ls"))
            .unwrap()
            .to_str()
            .unwrap(),
        "/bin/busybox"
    );
    let m = fs::metadata(root.join("data")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o700);
    assert!(root.join("data/sub").is_dir());
    assert_eq!(store.tags().unwrap()["test/bb"], *digest);
}

/// A copy-only image and a busybox image with a run step, the way examples look.
fn example_images(
    src: &std::path::Path,
) -> std::collections::BTreeMap<glint_model::Name, glint_model::Image> {
    write(src, "site/index.html", "<h1>hello</h1>\n", 0o600);
    write(src, "site/bin/serve", "#!/bin/sh\n", 0o700);
    let mut images = one(
        "site",
        image(ImageBase::Scratch, vec![copy("site", "/srv")]),
    );
    if let Some(bb) = busybox() {
        busybox_tree(src, &bb);
        let mut app = busybox_image();
        app.steps.push(run(
            "mkdir -p /www && echo ok > /www/health && echo $SOURCE_DATE_EPOCH > /www/built",
        ));
        app.entrypoint = vec![
            "/bin/httpd".into(),
            "-f".into(),
            "-p".into(),
            "8080".into(),
            "-h".into(),
            "/www".into(),
        ];
        app.port = Some(8080);
        app.tests = vec![sh("test -f /www/health")];
        images.insert(name("app"), app);
        let mut child = image(
            ImageBase::Image { name: name("app") },
            vec![copy("site/index.html", "/www/")],
        );
        child.env.insert("GREETING".into(), "hi".into());
        images.insert(name("child"), child);
    }
    images
}

#[test]
fn two_clean_builds_give_identical_digests_and_bytes() {
    if !is_root() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let images = example_images(src.path());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (
        ImageStore::open(d1.path()).unwrap(),
        ImageStore::open(d2.path()).unwrap(),
    );
    let b1 = build_all(&images, src.path(), &s1).unwrap();
    // The second build runs later, from a copy of the sources with fresh
    // inodes and times: only content may matter.
    let src2 = tempfile::tempdir().unwrap();
    let images2 = example_images(src2.path());
    let b2 = build_all(&images2, src2.path(), &s2).unwrap();
    assert_eq!(b1.len(), images.len());
    for (n, b) in &b1 {
        assert_eq!(b.digest, b2[n].digest, "image {n} is not reproducible");
        assert!(!b.cached);
    }
    // Byte-identical blobs, except the unverified provenance side records (outside blobs).
    assert_eq!(blobs(&s1), blobs(&s2));
}

#[test]
fn copy_normalises_modes_owners_and_times_and_keeps_nesting() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "tree/a.txt", "a", 0o600);
    write(src.path(), "tree/run.sh", "#!/bin/sh", 0o700);
    write(src.path(), "tree/deep/er/x", "x", 0o640);
    fs::set_permissions(
        src.path().join("tree/deep"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::symlink("a.txt", src.path().join("tree/link")).unwrap();
    write(src.path(), "single", "one file", 0o604);
    let img = image(
        ImageBase::Scratch,
        vec![
            copy("tree", "/app"),
            copy("single", "/etc/conf/"),
            copy("single", "/renamed"),
        ],
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(&one("files", img), src.path(), &store).unwrap();
    let digest = &built[&name("files")].digest;
    let manifest = store.manifest(digest).unwrap();
    let entries = layer_entries(&store, &manifest.layers[0].digest);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "app/",
            "app/a.txt",
            "app/deep/",
            "app/deep/er/",
            "app/deep/er/x",
            "app/link",
            "app/run.sh"
        ]
    );
    for (n, h) in &entries {
        assert_eq!(h.mtime().unwrap(), 1_700_000_000, "{n}");
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{n}");
        assert_eq!(h.username().unwrap(), Some(""), "{n}");
    }
    let root = store.rootfs(digest).unwrap();
    let mode = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("app/a.txt"), 0o644);
    assert_eq!(mode("app/run.sh"), 0o755);
    assert_eq!(mode("app/deep"), 0o755);
    assert_eq!(mode("app/deep/er/x"), 0o644);
    assert_eq!(
        fs::read_link(root.join("app/link")).unwrap().to_str(),
        Some("a.txt")
    );
    assert_eq!(fs::read_to_string(root.join("app/deep/er/x")).unwrap(), "x");
    assert_eq!(
        fs::read_to_string(root.join("etc/conf/single")).unwrap(),
        "one file"
    );
    assert_eq!(
        fs::read_to_string(root.join("renamed")).unwrap(),
        "one file"
    );
    assert_eq!(
        fs::metadata(root.join("app/a.txt")).unwrap().mtime(),
        1_700_000_000
    );
}

#[test]
fn deletions_in_a_run_step_become_whiteouts() {
    let (Some(bb), true) = (busybox(), is_root()) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    busybox_tree(src.path(), &bb);
    write(src.path(), "files/etc/old", "old", 0o644);
    write(src.path(), "files/etc/keep", "keep", 0o644);
    write(src.path(), "files/dir/a", "a", 0o644);
    write(src.path(), "files/dir/b", "b", 0o644);
    let mut img = busybox_image();
    img.steps.push(copy("files", "/"));
    img.steps.push(run(
        "rm /etc/old && rm -r /dir && mkdir /dir && echo c > /dir/c",
    ));
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(&one("wh", img), src.path(), &store).unwrap();
    let digest = &built[&name("wh")].digest;
    let manifest = store.manifest(digest).unwrap();
    let last = manifest.layers.last().unwrap();
    let names: Vec<String> = layer_entries(&store, &last.digest)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"etc/.wh.old".to_owned()), "{names:?}");
    assert!(names.contains(&"dir/.wh..wh..opq".to_owned()), "{names:?}");
    let root = store.rootfs(digest).unwrap();
    assert!(!root.join("etc/old").exists());
    assert!(root.join("etc/keep").exists());
    let mut dir: Vec<String> = fs::read_dir(root.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dir.sort();
    assert_eq!(dir, ["c"]);
}

#[test]
fn a_step_that_reaches_for_the_network_fails_the_build_saying_so() {
    let (Some(bb), true) = (busybox(), is_root()) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    busybox_tree(src.path(), &bb);
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    // A step that ignores the failure still fails the build; and a DNS
    // lookup counts as much as a TCP connection.
    for script in [
        "nc 10.1.2.3 80 </dev/null || true",
        "nslookup example.com || true",
        "nc 2001:db8::1 443 </dev/null",
    ] {
        let mut img = busybox_image();
        img.steps.push(run(script));
        let err = build_all(&one("net", img), src.path(), &store)
            .err()
            .unwrap_or_else(|| panic!("{script}: the build did not fail"));
        let msg = err.to_string();
        assert!(
            matches!(err, ImageError::NetworkAttempt { .. }),
            "{script}: {msg}"
        );
        assert!(msg.contains("tried to reach the network"), "{msg}");
        assert!(msg.contains("step 3"), "{msg}");
    }
    // Talking to itself on IPv6 loopback is not reaching the network.
    let mut img = busybox_image();
    img.steps.push(run("nc ::1 9 </dev/null; true"));
    build_all(&one("local", img), src.path(), &store).unwrap();
    assert!(!store.tags().unwrap().contains_key("test/net"));
}

#[test]
fn steps_get_proc_and_dev_even_when_the_image_has_none_and_the_layer_does_not_keep_them() {
    let (Some(bb), true) = (busybox(), is_root()) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "tiny/bin/placeholder", "", 0o644);
    fs::copy(&bb, src.path().join("tiny/bin/busybox")).unwrap();
    let img = image(
        ImageBase::Scratch,
        vec![
            copy("tiny", "/"),
            ImageStep::Run {
                argv: vec![
                    "/bin/busybox".into(),
                    "sh".into(),
                    "-c".into(),
                    "echo discarded > /dev/null && /bin/busybox cat /proc/1/cmdline > /cmdline"
                        .into(),
                ],
            },
        ],
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(&one("tiny", img), src.path(), &store).unwrap();
    let digest = &built[&name("tiny")].digest;
    let last = store
        .manifest(digest)
        .unwrap()
        .layers
        .last()
        .unwrap()
        .digest
        .clone();
    let names: Vec<String> = layer_entries(&store, &last)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["cmdline"]);
    let root = store.rootfs(digest).unwrap();
    // The step ran as PID 1 of its own PID namespace.
    assert!(
        fs::read_to_string(root.join("cmdline"))
            .unwrap()
            .starts_with("/bin/busybox")
    );
}

#[test]
fn a_failing_run_step_names_the_step_and_shows_its_output() {
    let (Some(bb), true) = (busybox(), is_root()) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    busybox_tree(src.path(), &bb);
    let mut img = busybox_image();
    img.steps.push(run("echo going wrong >&2; exit 3"));
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let err = build_all(&one("bad", img), src.path(), &store).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ImageError::StepFailed { step: 3, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("exit code 3") && msg.contains("going wrong"),
        "{msg}"
    );
}

#[test]
fn a_failing_test_fails_the_build_and_nothing_is_tagged() {
    let (Some(bb), true) = (busybox(), is_root()) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    busybox_tree(src.path(), &bb);
    let mut img = busybox_image();
    img.tests = vec![
        sh("test -d /bin"),
        sh("echo no such file >&2; test -f /missing"),
    ];
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let err = build_all(&one("tested", img.clone()), src.path(), &store).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ImageError::TestFailed { test: 2, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("no such file") && msg.contains("not tagged"),
        "{msg}"
    );
    assert!(store.tags().unwrap().is_empty());
    assert!(store.images().unwrap().is_empty());
    // Tests see the finished image but cannot change it.
    img.tests = vec![sh("test -x /bin/busybox && rm -rf /bin")];
    let built = build_all(&one("tested", img), src.path(), &store).unwrap();
    let root = store.rootfs(&built[&name("tested")].digest).unwrap();
    assert!(root.join("bin/busybox").exists());
    assert_eq!(
        store.tags().unwrap()["test/tested"],
        built[&name("tested")].digest
    );
}

#[test]
fn a_tampered_blob_is_detected_and_named_and_other_images_are_unaffected() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a/file", "aaaa", 0o644);
    write(src.path(), "b/file", "bbbb", 0o644);
    let mut images = one("a", image(ImageBase::Scratch, vec![copy("a", "/")]));
    images.insert(name("b"), image(ImageBase::Scratch, vec![copy("b", "/")]));
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(&images, src.path(), &store).unwrap();
    let (a, b) = (&built[&name("a")].digest, &built[&name("b")].digest);
    store.verify(a).unwrap();
    let layer = store.manifest(a).unwrap().layers[0].digest.clone();
    let path = store.blob_path(&layer);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, &bytes).unwrap();
    let err = store.rootfs(a).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, ImageError::Tampered { digest, blob } if digest == a && blob == &layer),
        "{msg}"
    );
    assert!(
        msg.contains(a.as_str()) && msg.contains(layer.as_str()),
        "{msg}"
    );
    store.verify(b).unwrap();
    store.rootfs(b).unwrap();
    // A changed config byte is caught too.
    let config = store.manifest(b).unwrap().config.digest;
    let cpath = store.blob_path(&config);
    let mut cbytes = fs::read(&cpath).unwrap();
    cbytes[0] = b' ';
    fs::set_permissions(&cpath, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&cpath, &cbytes).unwrap();
    assert!(matches!(store.verify(b), Err(ImageError::Tampered { blob, .. }) if blob == config));
}

#[test]
fn a_modified_unpacked_root_is_refused_at_the_next_launch() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "app/bin/prog", "#!/bin/true\n", 0o755);
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(
        &one("app", image(ImageBase::Scratch, vec![copy("app", "/")])),
        src.path(),
        &store,
    )
    .unwrap();
    let digest = &built[&name("app")].digest;
    let root = store.rootfs(digest).unwrap();
    assert_eq!(store.rootfs(digest).unwrap(), root, "unpacked once, shared");
    fs::write(root.join("bin/prog"), "#!/bin/evil\n").unwrap();
    let err = store.rootfs(digest).unwrap_err();
    assert!(
        matches!(&err, ImageError::RootfsTampered { path, .. } if path == "/bin/prog"),
        "{err}"
    );
    assert!(err.to_string().contains(digest.as_str()));
    store.remove_rootfs(digest).unwrap();
    let root = store.rootfs(digest).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("bin/prog")).unwrap(),
        "#!/bin/true\n"
    );
    fs::write(root.join("added"), "x").unwrap();
    assert!(
        matches!(store.rootfs(digest), Err(ImageError::RootfsTampered { path, change: "was added", .. }) if path == "/added")
    );
}

#[test]
fn unchanged_inputs_are_a_cache_hit_and_a_change_rebuilds_from_that_step() {
    let (Some(bb), true) = (busybox(), is_root()) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    busybox_tree(src.path(), &bb);
    write(src.path(), "conf/app.conf", "v1", 0o644);
    let mut img = busybox_image();
    img.steps.push(copy("conf", "/etc/app"));
    let images = one("c", img);
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let plan = glint_image::cached_digests(&images, src.path(), &store, &opts()).unwrap();
    assert_eq!(plan[&name("c")], None, "nothing built yet");
    let first = build_all(&images, src.path(), &store).unwrap();
    let plan = glint_image::cached_digests(&images, src.path(), &store, &opts()).unwrap();
    assert_eq!(plan[&name("c")].as_ref(), Some(&first[&name("c")].digest));
    let second = build_all(&images, src.path(), &store).unwrap();
    assert!(second[&name("c")].cached);
    assert_eq!(first[&name("c")].digest, second[&name("c")].digest);
    // Touching a file without changing it is still a hit (content decides).
    write(src.path(), "conf/app.conf", "v1", 0o644);
    assert!(build_all(&images, src.path(), &store).unwrap()[&name("c")].cached);
    write(src.path(), "conf/app.conf", "v2", 0o644);
    let plan = glint_image::cached_digests(&images, src.path(), &store, &opts()).unwrap();
    assert_eq!(plan[&name("c")], None, "a changed input must be rebuilt");
    let mut steps = Vec::new();
    let third = glint_image::build(&images, src.path(), &store, &opts(), &mut |p| {
        if let glint_image::Progress::Step { step, cached, .. } = p {
            steps.push((*step, *cached));
        }
    })
    .unwrap();
    assert!(!third[&name("c")].cached);
    assert_ne!(third[&name("c")].digest, first[&name("c")].digest);
    assert_eq!(steps, [(1, true), (2, true), (3, false)]);
    assert_eq!(store.tags().unwrap()["test/c"], third[&name("c")].digest);
}

#[test]
fn gc_keeps_what_is_asked_and_tagged_and_removes_the_rest() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a/f", "v1", 0o644);
    write(src.path(), "b/f", "b", 0o644);
    let mut images = one("a", image(ImageBase::Scratch, vec![copy("a", "/")]));
    images.insert(name("b"), image(ImageBase::Scratch, vec![copy("b", "/")]));
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let v1 = build_all(&images, src.path(), &store).unwrap();
    write(src.path(), "a/f", "v2", 0o644);
    let v2 = build_all(&images, src.path(), &store).unwrap();
    write(src.path(), "a/f", "v3", 0o644);
    let v3 = build_all(&images, src.path(), &store).unwrap();
    let (a1, a2, a3) = (
        &v1[&name("a")].digest,
        &v2[&name("a")].digest,
        &v3[&name("a")].digest,
    );
    let b = &v3[&name("b")].digest;
    store.rootfs(a1).unwrap();
    assert_eq!(store.images().unwrap().len(), 4);
    // Keep a1 (an old version still needed for rollback); a2 is needed by nobody.
    let report = store.gc(&[a1.clone()].into()).unwrap();
    assert_eq!(report.removed_images, vec![a2.clone()]);
    assert!(report.removed_blobs >= 2, "{report:?}");
    assert!(!store.has_blob(a2));
    for d in [a1, a3, b] {
        store.verify(d).unwrap();
    }
    store.rootfs(a1).unwrap();
    let report = store.gc(&Default::default()).unwrap();
    assert_eq!(report.removed_images, vec![a1.clone()]);
    assert!(!store.dir().join("rootfs").join(a1.hex()).exists());
    store.verify(a3).unwrap();
    store.verify(b).unwrap();
    // The cache no longer points at collected layers: rebuilding v1 works.
    write(src.path(), "a/f", "v1", 0o644);
    let again = build_all(&images, src.path(), &store).unwrap();
    assert_eq!(&again[&name("a")].digest, a1);
    store.verify(a1).unwrap();
}

#[test]
fn export_import_round_trips_and_a_corrupt_archive_is_refused() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "app/hello.txt", "hello", 0o644);
    let mut img = image(ImageBase::Scratch, vec![copy("app", "/app")]);
    img.entrypoint = vec!["/app/run".into()];
    img.port = Some(9000);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (
        ImageStore::open(d1.path()).unwrap(),
        ImageStore::open(d2.path()).unwrap(),
    );
    let digest = build_all(&one("rt", img), src.path(), &s1).unwrap()[&name("rt")]
        .digest
        .clone();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("rt.tar");
    s1.export(&digest, &file).unwrap();
    let file2 = out.path().join("rt2.tar");
    s1.export(&digest, &file2).unwrap();
    assert_eq!(
        fs::read(&file).unwrap(),
        fs::read(&file2).unwrap(),
        "export is deterministic"
    );
    let imported = s2.import(&file).unwrap();
    assert_eq!(imported, digest);
    s2.verify(&digest).unwrap();
    assert_eq!(s2.tags().unwrap()["test/rt"], digest);
    assert_eq!(s2.config(&digest).unwrap().config.port(), Some(9000));
    let root = s2.rootfs(&digest).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("app/hello.txt")).unwrap(),
        "hello"
    );
    assert!(
        s2.provenance(&digest)
            .unwrap()
            .unwrap()
            .imported_from
            .is_some()
    );

    // Rewrite the archive with one byte of the layer changed.
    let layer = s1.manifest(&digest).unwrap().layers[0].digest.clone();
    let bad = out.path().join("bad.tar");
    let mut w = tar::Builder::new(fs::File::create(&bad).unwrap());
    let mut ar = tar::Archive::new(fs::File::open(&file).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if path.ends_with(layer.hex()) {
            let n = data.len() / 2;
            data[n] ^= 0x40;
        }
        let mut h = e.header().clone();
        w.append_data(&mut h, &path, data.as_slice()).unwrap();
    }
    w.finish().unwrap();
    let d3 = tempfile::tempdir().unwrap();
    let s3 = ImageStore::open(d3.path()).unwrap();
    let err = s3.import(&bad).unwrap_err();
    assert!(
        matches!(&err, ImageError::Tampered { blob, .. } if blob == &layer),
        "{err}"
    );
    assert!(s3.images().unwrap().is_empty());
}

/// Writes a raw tar header (the `tar` crate refuses to write `..`, as it should).
fn raw_entry(out: &mut Vec<u8>, path: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn unpacking_refuses_entries_that_escape_the_root() {
    type Entry<'a> = (&'a str, u8, &'a str, &'a [u8]);
    let cases: [(&str, Vec<Entry>); 3] = [
        ("dotdot", vec![("../escaped", b'0', "", b"x")]),
        (
            "symlink",
            vec![
                ("link", b'2', "/tmp", b""),
                ("link/escaped", b'0', "", b"x"),
            ],
        ),
        ("hardlink", vec![("hl", b'1', "../../etc/passwd", b"")]),
    ];
    for (what, entries) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        for (p, k, l, d) in entries {
            raw_entry(&mut tar, p, k, l, d);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        let file = dir.path().join("rootfs.tar");
        fs::write(&file, &tar).unwrap();
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        // What the headers alone show (`..`) is refused at import; what
        // needs the tree (a write through a symlink) when unpacking.
        let err = match store.import(&file) {
            Err(e) => e,
            Ok(digest) => {
                let err = store.rootfs(&digest).unwrap_err();
                assert!(
                    !store.dir().join("rootfs").join(digest.hex()).exists(),
                    "{what}: nothing half-unpacked is left in place"
                );
                err
            }
        };
        assert!(
            matches!(err, ImageError::UnsafeEntry { .. }),
            "{what}: {err}"
        );
        assert!(!dir.path().join("store/rootfs/escaped").exists());
        assert!(!std::path::Path::new("/tmp/escaped").exists());
        assert!(
            store.images().unwrap().is_empty() || what == "symlink",
            "{what}"
        );
    }
}

#[test]
fn a_base_archive_must_match_its_pinned_digest() {
    let src = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "etc/base.conf", b'0', "", b"base");
    tar.extend_from_slice(&[0u8; 1024]);
    fs::write(src.path().join("base.tar"), &tar).unwrap();
    write(src.path(), "app/x", "x", 0o644);
    let good = glint_model::Digest::of(&tar);
    let from = |d| ImageBase::Archive {
        path: "base.tar".into(),
        digest: d,
    };
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(
        &one(
            "on-archive",
            image(from(good.clone()), vec![copy("app", "/app")]),
        ),
        src.path(),
        &store,
    )
    .unwrap();
    let root = store.rootfs(&built[&name("on-archive")].digest).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("etc/base.conf")).unwrap(),
        "base"
    );
    assert!(root.join("app/x").exists());
    let wrong = glint_model::Digest::of(b"something else");
    let err = build_all(
        &one("on-archive", image(from(wrong), vec![])),
        src.path(),
        &store,
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::ArchiveDigest { .. }), "{err}");
}

#[test]
fn images_are_found_by_digest_prefix_or_tag_and_a_moved_tag_leaves_the_old_image_listed() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a/f", "1", 0o644);
    let images = one("a", image(ImageBase::Scratch, vec![copy("a", "/")]));
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let first = build_all(&images, src.path(), &store).unwrap()[&name("a")]
        .digest
        .clone();
    write(src.path(), "a/f", "2", 0o644);
    let second = build_all(&images, src.path(), &store).unwrap()[&name("a")]
        .digest
        .clone();
    assert_eq!(store.resolve("test/a").unwrap(), second);
    assert_eq!(store.resolve(first.as_str()).unwrap(), first);
    assert_eq!(store.resolve(&first.hex()[..10]).unwrap(), first);
    assert!(matches!(
        store.resolve("test/none"),
        Err(ImageError::UnknownImage(_))
    ));
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    let old = list.iter().find(|i| i.digest == first).unwrap();
    assert!(old.tags.is_empty());
    let new = list.iter().find(|i| i.digest == second).unwrap();
    assert_eq!(new.tags, ["test/a"]);
    assert!(new.size > 0 && new.created.is_some());
    // The index is a valid OCI layout index: tags are ref.name annotations.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(store.dir().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert!(store.dir().join("oci-layout").is_file());
    let tagged: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "test/a")
        .collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0]["digest"], second.as_str());
}

#[test]
fn declaration_errors_are_reported_before_building() {
    let src = tempfile::tempdir().unwrap();
    let mut images = one("a", image(ImageBase::Image { name: name("b") }, vec![]));
    images.insert(
        name("b"),
        image(ImageBase::Image { name: name("a") }, vec![]),
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let err = build_all(&images, src.path(), &store).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
    let err = build_all(
        &one("a", image(ImageBase::Image { name: name("nope") }, vec![])),
        src.path(),
        &store,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not declared"), "{err}");
    let err = build_all(
        &one(
            "a",
            image(ImageBase::Scratch, vec![copy("../outside", "/x")]),
        ),
        src.path(),
        &store,
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Source { .. }), "{err}");
    let mut pinned = image(ImageBase::Scratch, vec![]);
    pinned.digest = Some(glint_model::Digest::of(b"not this"));
    let err = build_all(&one("a", pinned), src.path(), &store).unwrap_err();
    assert!(matches!(err, ImageError::PinnedDigest { .. }), "{err}");
    assert!(store.tags().unwrap().is_empty());
}

#[test]
fn an_image_from_another_inherits_its_layers_and_config() {
    let (true, src) = (is_root(), tempfile::tempdir().unwrap()) else {
        return;
    };
    let images = example_images(src.path());
    if !images.contains_key(&name("child")) {
        return;
    }
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(&images, src.path(), &store).unwrap();
    let (app, child) = (&built[&name("app")].digest, &built[&name("child")].digest);
    let (ma, mc) = (store.manifest(app).unwrap(), store.manifest(child).unwrap());
    assert_eq!(mc.layers[..ma.layers.len()], ma.layers[..]);
    assert_eq!(mc.layers.len(), ma.layers.len() + 1);
    let cfg = store.config(child).unwrap();
    assert_eq!(cfg.config.entrypoint.as_ref().unwrap()[0], "/bin/httpd");
    assert_eq!(cfg.config.port(), Some(8080));
    assert_eq!(cfg.config.env_map()["GREETING"], "hi");
    let root = store.rootfs(child).unwrap();
    assert!(root.join("www/index.html").is_file());
    assert!(root.join("www/health").is_file());
    let details = store.inspect(child).unwrap();
    let prov = details.provenance.unwrap();
    assert_eq!(prov.base.as_ref(), Some(app));
    assert!(prov.inputs.contains_key("site/index.html"));
    assert!(
        details
            .config
            .history
            .last()
            .unwrap()
            .created_by
            .contains("copy site/index.html /www/")
    );
}

#[test]
fn verify_run_passes_a_self_contained_server_and_fails_a_needy_one() {
    let (Some(bb), true) = (busybox(), is_root()) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    busybox_tree(src.path(), &bb);
    let mut server = busybox_image();
    server
        .steps
        .push(run("mkdir -p /www && echo ok > /www/healthz"));
    server.entrypoint = sh("exec httpd -f -p $PORT -h /www");
    server.port = Some(8080);
    let mut needy = busybox_image();
    needy.entrypoint =
        sh("nc 10.9.9.9 80 </dev/null > /tmp/x || echo cannot fetch config >&2; sleep 60");
    needy.port = Some(8080);
    let mut quitter = busybox_image();
    quitter.entrypoint = sh("echo bye; exit 1");
    let mut images = one("server", server);
    images.insert(name("needy"), needy);
    images.insert(name("quitter"), quitter);
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let built = build_all(&images, src.path(), &store).unwrap();
    let run = |n: &str, timeout: u64| {
        store
            .verify_run(
                &built[&name(n)].digest,
                &glint_image::VerifyRun {
                    probe: glint_image::HealthProbe::Http("/healthz".into()),
                    port: None,
                    timeout: std::time::Duration::from_secs(timeout),
                    env: Default::default(),
                    args: Vec::new(),
                },
            )
            .unwrap()
    };
    let ok = run("server", 60);
    assert!(ok.passed, "{ok:?}");
    let needy = run("needy", 3);
    assert!(!needy.passed);
    assert!(needy.output.contains("cannot fetch config"), "{needy:?}");
    let quit = run("quitter", 60);
    assert!(!quit.passed);
    assert!(quit.reason.contains("ended"), "{quit:?}");
    assert!(quit.output.contains("bye"), "{quit:?}");
}

#[test]
fn an_exported_image_loads_and_runs_on_docker() {
    let required = std::env::var("GLINT_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
    let docker = |args: &[&str]| std::process::Command::new("docker").args(args).output();
    let reachable = docker(&["info"]).is_ok_and(|o| o.status.success());
    if !reachable {
        assert!(
            !required,
            "GLINT_REQUIRE_DOCKER=1 but no Docker daemon is reachable"
        );
        eprintln!(
            "SKIPPED: no Docker daemon reachable (set GLINT_REQUIRE_DOCKER=1 to make this a failure)"
        );
        return;
    }
    let Some(bb) = busybox() else {
        assert!(
            !required,
            "GLINT_REQUIRE_DOCKER=1 but /bin/busybox (busybox-static) is missing"
        );
        return;
    };
    let src = tempfile::tempdir().unwrap();
    busybox_tree(src.path(), &bb);
    write(src.path(), "msg/etc/msg", "from the image\n", 0o644);
    let mut img = image(ImageBase::Scratch, vec![copy("bb", "/"), copy("msg", "/")]);
    img.entrypoint = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        "echo hello $WHO; cat /etc/msg; pwd".into(),
    ];
    img.env.insert("WHO".into(), "glint".into());
    img.workdir = "/etc".into();
    let store_dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(store_dir.path()).unwrap();
    let mut o = opts();
    o.tag_prefix = format!("glint-test-{}/", std::process::id());
    let built = glint_image::build(&one("dock", img), src.path(), &store, &o, &mut |_| {}).unwrap();
    let b = &built[&name("dock")];
    let file = store_dir.path().join("dock.tar");
    store.export(&b.digest, &file).unwrap();
    let load = docker(&["load", "-i", file.to_str().unwrap()]).unwrap();
    let out =
        String::from_utf8_lossy(&load.stdout).into_owned() + &String::from_utf8_lossy(&load.stderr);
    assert!(load.status.success(), "docker load failed: {out}");
    let reference = format!("{}:latest", b.tag);
    assert!(out.contains(&reference), "{out}");
    let inspect = docker(&["image", "inspect", "--format", "{{.Id}}", &reference]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        b.config_digest.as_str()
    );
    let run = docker(&["run", "--rm", "--network", "none", &reference]).unwrap();
    // And back: what this engine's `docker save` writes imports, verified, with the same config.
    let saved = store_dir.path().join("saved.tar");
    let save = docker(&["save", "-o", saved.to_str().unwrap(), &reference]).unwrap();
    let _ = docker(&["rmi", "-f", &reference]);
    assert!(
        save.status.success(),
        "{}",
        String::from_utf8_lossy(&save.stderr)
    );
    let other_dir = tempfile::tempdir().unwrap();
    let other = ImageStore::open(other_dir.path()).unwrap();
    let imported = other.import(&saved).unwrap();
    assert_eq!(
        other.manifest(&imported).unwrap().config.digest,
        b.config_digest
    );
    assert_eq!(other.tags().unwrap()[&reference], imported);
    let root = other.rootfs(&imported).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("etc/msg")).unwrap(),
        "from the image\n"
    );
    assert!(
        run.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hello glint\nfrom the image\n/etc\n"
    );
}
