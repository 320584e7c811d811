//! Test support: a real Docker Engine, a real image, a unique store per test
//! and a guard that removes everything the test created, even on failure.

use glint_docker::{DockerOptions, DockerProvider};
use glint_model::{Bytes, Digest, InstanceId, Labels, Name, Resources, VersionNumber};
use glint_provider::{LaunchImage, LaunchSpec, ProviderEvent};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Whether a Docker daemon answers. Without one, tests skip with a clear
/// message, unless `GLINT_REQUIRE_DOCKER=1` (set by `.ci/run`), which turns
/// the skip into a failure.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("GLINT_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("no Docker daemon answers, and GLINT_REQUIRE_DOCKER=1 requires one");
        }
        eprintln!(
            "SKIPPED: no Docker daemon answers (`docker version` failed); \
             set GLINT_REQUIRE_DOCKER=1 to make this a failure"
        );
    }
    ok
}

/// Runs the `docker` CLI, as a person would, and returns its stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Like [`docker`] but returns whether it succeeded.
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut h = Sha256::new();
    h.update(format!("{}-{t}-{n}", std::process::id()));
    glint_model::hex(&h.finalize())[..12].to_owned()
}

/// The static demo app, built if needed.
pub fn hello_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("x86_64-unknown-linux-gnu/debug/glint-hello");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "-q", "-p", "glint-cli", "--bin", "glint-hello"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cannot build glint-hello");
        assert!(bin.is_file(), "{} is missing", bin.display());
        bin
    })
    .clone()
}

/// An image archive in the format `docker load` accepts and Glint's image
/// store exports (OCI layout plus legacy `manifest.json`), holding the demo
/// app at `/bin/hello`. Returns the archive path and the image's digest (the
/// manifest's). Kept behind this one helper so that switching to
/// `glint-image`'s `export` later is a local change.
pub struct TestImage {
    /// The archive file.
    pub archive: PathBuf,
    /// The Glint digest (of the OCI manifest).
    pub digest: Digest,
    /// The engine's image id after loading (`sha256:<config>`).
    pub config: Digest,
    _dir: tempfile::TempDir,
}

/// The shared test image (written once per test process).
pub fn test_image() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| write_image(&hello_binary(), ""))
}

/// Writes an archive holding `binary` at `/bin/hello`; `salt` goes into the
/// config so that different salts give different images.
pub fn write_image(binary: &Path, salt: &str) -> TestImage {
    let dir = tempfile::tempdir().expect("temp dir");
    // The layer: /bin/hello.
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    layer
        .append_data(&mut h, "bin/", std::io::empty())
        .expect("tar");
    let mut bytes = Vec::new();
    std::fs::File::open(binary)
        .expect("binary")
        .read_to_end(&mut bytes)
        .expect("read binary");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(bytes.len() as u64);
    h.set_mtime(0);
    layer
        .append_data(&mut h, "bin/hello", bytes.as_slice())
        .expect("tar");
    let layer = layer.into_inner().expect("tar");
    let layer_digest = Digest::of(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": ["/bin/hello"], "Labels": { "test.salt": salt } },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest.as_str()] },
    });
    let config = serde_json::to_vec(&config).expect("json");
    let config_digest = Digest::of(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.as_str(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest.as_str(),
            "size": layer.len(),
        }],
    });
    let manifest = serde_json::to_vec(&manifest).expect("json");
    let digest = Digest::of(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest.as_str(),
            "size": manifest.len(),
        }],
    });
    let legacy = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", config_digest.hex()),
        "RepoTags": [],
        "Layers": [format!("blobs/sha256/{}", layer_digest.hex())],
    }]);
    let path = dir.path().join("image.tar");
    let mut out = tar::Builder::new(std::fs::File::create(&path).expect("create archive"));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        out.append_data(&mut h, name, data).expect("tar");
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(&format!("blobs/sha256/{}", digest.hex()), &manifest);
    add(&format!("blobs/sha256/{}", config_digest.hex()), &config);
    add(&format!("blobs/sha256/{}", layer_digest.hex()), &layer);
    add("index.json", &serde_json::to_vec(&index).expect("json"));
    add("manifest.json", &serde_json::to_vec(&legacy).expect("json"));
    out.into_inner().expect("tar").flush().expect("flush");
    TestImage {
        archive: path,
        digest,
        config: config_digest,
        _dir: dir,
    }
}

/// One test's world: a unique store id, a provider, and a guard that removes
/// every container and network of that store when dropped.
pub struct Fixture {
    /// The store id (unique per test).
    pub store: String,
    /// The environment.
    pub env: Name,
    /// The provider under test.
    pub provider: DockerProvider,
    /// Its events, subscribed before anything happened.
    pub events: broadcast::Receiver<ProviderEvent>,
    /// The state dir (logs).
    pub state: tempfile::TempDir,
    _guard: Cleanup,
}

/// Removes everything labelled with a store id, and a network by name.
pub struct Cleanup {
    store: String,
    network: String,
    extra: Vec<String>,
    images: Vec<String>,
}

impl Cleanup {
    /// A guard for everything of `store`, and the network named `network`.
    pub fn new(store: &str, network: &str) -> Cleanup {
        Cleanup {
            store: store.to_owned(),
            network: network.to_owned(),
            extra: Vec::new(),
            images: Vec::new(),
        }
    }

    /// Also remove this image (tag or id) at the end.
    pub fn image(&mut self, reference: &str) {
        self.images.push(reference.to_owned());
    }

    /// Also remove this container (by name) at the end.
    pub fn container(&mut self, name: &str) {
        self.extra.push(name.to_owned());
    }
}

impl Cleanup {
    fn labelled(&self, what: &[&str]) -> Vec<String> {
        let filter = format!("label=dev.glint.store={}", self.store);
        let mut args = what.to_vec();
        args.extend(["--filter", &filter]);
        Command::new("docker")
            .args(&args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // A provider dropped just before may still finish a request (its
        // watchers are aborted, not joined) and recreate the network: sweep
        // until nothing is left.
        for round in 0..5 {
            let mut containers = self.labelled(&["ps", "-aq"]);
            if round == 0 {
                containers.extend(self.extra.iter().cloned());
            }
            if !containers.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v"])
                    .args(&containers)
                    .output();
            }
            let mut networks = self.labelled(&["network", "ls", "-q"]);
            if round == 0 {
                networks.push(self.network.clone());
            }
            for n in &networks {
                let _ = Command::new("docker").args(["network", "rm", n]).output();
            }
            std::thread::sleep(Duration::from_millis(300));
            if self.labelled(&["ps", "-aq"]).is_empty()
                && self.labelled(&["network", "ls", "-q"]).is_empty()
            {
                break;
            }
        }
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

impl Fixture {
    /// A fresh store with a connected provider.
    pub async fn new() -> Fixture {
        Self::with_store(&format!("t{}", unique())).await
    }

    /// A provider over a given store id (adoption tests).
    pub async fn with_store(store: &str) -> Fixture {
        let env = Name::new("t").expect("name");
        let network = glint_docker::naming::network_name(&env, store);
        let guard = Cleanup::new(store, &network);
        let state = tempfile::tempdir().expect("temp dir");
        let provider = DockerProvider::connect_with(
            store,
            &env,
            DockerOptions {
                state_dir: Some(state.path().to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("provider connects");
        let events = glint_provider::Provider::subscribe(&provider);
        Fixture {
            store: store.to_owned(),
            env,
            provider,
            events,
            state,
            _guard: guard,
        }
    }

    /// Drops the provider (its watchers stop; containers stay) and keeps
    /// only the cleanup guard.
    pub fn into_guard(self) -> Cleanup {
        self._guard
    }

    /// The cleanup guard, to register extra containers.
    pub fn cleanup(&mut self) -> &mut Cleanup {
        &mut self._guard
    }

    /// A launch spec for one new instance of service `web`.
    pub fn spec(&self, resources: Resources) -> LaunchSpec {
        let web = Name::new("web").expect("name");
        let n = u64::from_str_radix(&unique()[..10], 16).expect("hex");
        let instance = InstanceId::from_entropy(&web, n);
        let image = test_image();
        LaunchSpec {
            mounts: Vec::new(),
            secrets: Vec::new(),
            own_network: false,
            glint: None,
            labels: Labels {
                store: self.store.clone(),
                environment: self.env.clone(),
                service: web.clone(),
                version: VersionNumber(1),
                instance: instance.clone(),
                image: image.digest.clone(),
            },
            image: LaunchImage {
                digest: image.digest.clone(),
                rootfs: PathBuf::from("/nonexistent"),
                archive: Some(image.archive.clone()),
            },
            argv: vec!["/bin/hello".into()],
            env: BTreeMap::from([
                ("GREETING".into(), "bonjour".into()),
                ("GLINT_INSTANCE_ID".into(), instance.to_string()),
                ("GLINT_SERVICE".into(), "web".into()),
            ]),
            workdir: "/".into(),
            port: 8080,
            resources,
        }
    }

    /// A spec with limits: 64 MiB, half a CPU.
    pub fn limited_spec(&self) -> LaunchSpec {
        self.spec(Resources {
            memory: Some(Bytes(64 << 20)),
            cpu_millis: Some(500),
            pids: None,
        })
    }

    /// Waits (generously) for the first event matching `pred`; returns it and
    /// how long it took.
    pub async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&ProviderEvent) -> bool,
    ) -> (ProviderEvent, Duration) {
        let start = Instant::now();
        let deadline = Duration::from_secs(30);
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Ok(ev)) if pred(&ev) => {
                    eprintln!("{what}: {ev:?} after {:?}", start.elapsed());
                    return (ev, start.elapsed());
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("event stream closed while waiting for {what}: {e}"),
                Err(_) => panic!("no {what} within {deadline:?}"),
            }
        }
    }

    /// Every event received so far (without waiting).
    pub fn drain(&mut self) -> Vec<ProviderEvent> {
        let mut out = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            out.push(ev);
        }
        out
    }
}

/// A plain HTTP/1.1 GET; returns the status line and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| std::io::Error::other("connect timed out"))??;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::other("read timed out"))??;
    Ok(out)
}

/// GETs until the app answers (it may still be starting).
pub async fn get_when_up(addr: std::net::SocketAddr, path: &str) -> String {
    let start = Instant::now();
    loop {
        match http_get(addr, path).await {
            Ok(r) if r.starts_with("HTTP/1.1 200") => return r,
            r if start.elapsed() > Duration::from_secs(30) => {
                panic!("{addr}{path} never answered 200: {r:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
