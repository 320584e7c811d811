//! What the moto tests share: clients and providers pointed at the moto
//! server (`server.rs`), and a small environment.

pub use crate::server::moto;
use glint_aws::{AwsOptions, AwsProvider, ClientConfig, Credentials, RetryPolicy};
use glint_model::{
    Digest, Environment, Image, InstanceId, Labels, Name, ProviderKind, Rule, RuleSource, Service,
    Transport, VersionNumber,
};
use glint_provider::{LaunchImage, LaunchSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// [`shop`] with endpoint `front` (HTTP) routing to `web`, whose health
/// check is `GET /healthz` and drain 1 s.
pub fn shop_with_endpoint() -> Environment {
    let mut e = shop();
    let web = Name::new("web").unwrap();
    if let Some(svc) = e.services.get_mut(&web) {
        svc.health = Some(glint_model::HealthCheck::new(glint_model::Probe::Http {
            path: "/healthz".into(),
        }));
        svc.drain = glint_model::Millis(1000);
    }
    e.endpoints.insert(
        Name::new("front").unwrap(),
        glint_model::Endpoint {
            listen: "127.0.0.1:8088".parse().unwrap(),
            service: web,
            protocol: glint_model::EndpointProtocol::Http,
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
        own_network: false,
        glint: None,
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
