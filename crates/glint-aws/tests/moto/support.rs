//! What the moto tests share: one `moto_server` per test binary on a free
//! loopback port (killed with the test process: it is spawned by a thread
//! that lives as long as the process, with `PR_SET_PDEATHSIG`), clients and
//! providers pointed at it, and a small environment.

use glint_aws::{AwsOptions, AwsProvider, ClientConfig, Credentials, RetryPolicy};
use glint_model::{
    Digest, Environment, Image, InstanceId, Labels, Name, ProviderKind, Rule, RuleSource, Service,
    Transport, VersionNumber,
};
use glint_provider::{LaunchImage, LaunchSpec};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The shared moto server's `http://127.0.0.1:PORT`, or `None` (the test
/// then skips) when moto is not installed — a failure instead when
/// `GLINT_REQUIRE_MOTO=1` (CI).
pub fn moto() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    let url = URL.get_or_init(start_moto).clone();
    if url.is_none() {
        assert!(
            std::env::var("GLINT_REQUIRE_MOTO").as_deref() != Ok("1"),
            "GLINT_REQUIRE_MOTO=1 but moto_server could not be started (pip install 'moto[server]')"
        );
        eprintln!(
            "SKIPPED: moto_server is not installed (pip install 'moto[server]'; set GLINT_REQUIRE_MOTO=1 to fail instead)"
        );
    }
    url
}

fn start_moto() -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // kill the server when this (never-ending) thread's process dies.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let Ok(mut child) = cmd.spawn() else {
            let _ = tx.send(None);
            return;
        };
        let Some(stderr) = child.stderr.take() else {
            let _ = tx.send(None);
            return;
        };
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut sent = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("Running on ").nth(1) {
                let _ = tx.send(Some(rest.trim().trim_end_matches('/').to_owned()));
                sent = true;
                break;
            }
        }
        if !sent {
            let _ = tx.send(None);
            return;
        }
        // Keep draining its log, and keep this thread (the parent of the
        // death signal) alive for the whole process.
        for _ in lines {}
        loop {
            std::thread::park();
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).ok().flatten()
}

/// A client configuration for `endpoint`, with a fast retry policy.
pub fn config(endpoint: &str) -> ClientConfig {
    ClientConfig {
        endpoint: endpoint.to_owned(),
        region: "us-east-1".to_owned(),
        credentials: Credentials {
            access_key: "AKIDEXAMPLE".to_owned(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: None,
        },
        timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
    }
}

/// A store id no other test uses.
pub fn store_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `shop`: services `web` (port 8080) and `api` (port 9000) on aws, a rule
/// web → api and a CIDR rule 192.0.2.0/24 → web on 80.
pub fn shop() -> Environment {
    let name = |s: &str| Name::new(s).unwrap();
    let mut e = Environment::empty(name("shop"));
    e.images
        .insert(name("app"), Image::scratch(vec!["/app".into()]));
    for (s, port) in [("web", 8080), ("api", 9000)] {
        let mut svc = Service::new(name("app"));
        svc.provider = ProviderKind::Aws;
        svc.port = port;
        e.services.insert(name(s), svc);
    }
    e.rules.insert(
        name("web-to-api"),
        Rule {
            from: RuleSource::Service(name("web")),
            to: name("api"),
            ports: vec![],
            protocol: Transport::Tcp,
        },
    );
    e.rules.insert(
        name("office-to-web"),
        Rule {
            from: RuleSource::Cidr("192.0.2.0/24".parse().unwrap()),
            to: name("web"),
            ports: vec![80],
            protocol: Transport::Tcp,
        },
    );
    e
}

/// An AMI moto knows (its DescribeImages list).
pub const AMI: &str = "ami-12c6146b";

/// Options for a provider on `endpoint` re-reading every `resync`.
pub fn options(endpoint: &str, resync: Duration) -> AwsOptions {
    let mut o = AwsOptions::new(config(endpoint));
    o.default_ami = Some(AMI.to_owned());
    o.resync = resync;
    o.wait = Duration::from_secs(30);
    o
}

/// A provider for `store` enforcing `env`.
pub async fn provider(store: &str, options: AwsOptions, env: Environment) -> AwsProvider {
    let target = Arc::new(Mutex::new(Some(env.clone())));
    AwsProvider::connect(store, &env.name, options, target)
        .await
        .unwrap()
}

/// A launch spec for a new instance of `service`.
pub fn spec(store: &str, service: &str, entropy: u64) -> LaunchSpec {
    let svc = Name::new(service).unwrap();
    let digest = Digest::of(b"app");
    LaunchSpec {
        labels: Labels {
            store: store.to_owned(),
            environment: Name::new("shop").unwrap(),
            instance: InstanceId::from_entropy(&svc, entropy),
            service: svc,
            version: VersionNumber(1),
            image: digest.clone(),
        },
        image: LaunchImage {
            digest,
            rootfs: PathBuf::new(),
            archive: None,
        },
        argv: vec!["/app".into()],
        env: BTreeMap::from([("GREETING".into(), "hello".into())]),
        workdir: "/".into(),
        port: if service == "api" { 9000 } else { 8080 },
        resources: Default::default(),
        mounts: vec![],
        secrets: vec![],
    }
}
