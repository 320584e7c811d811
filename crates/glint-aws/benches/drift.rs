//! Detect → revert time of a hand-made security-group change, against
//! moto: `RUNS` times, an ingress rule for an unknown address is authorised
//! by hand on a Glint-owned group, and the time until the provider's
//! incident (sent once the rule is revoked) is measured. Prints
//! `aws-drift runs=… resync_ms=… median_ms=… p99_ms=… max_ms=…`.
//!
//! `cargo bench -p glint-aws --bench drift -- [RUNS] [RESYNC_MS]`
//! (defaults 20 and 1000); `bench/aws-drift.sh` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/moto/server.rs"]
mod server;

use glint_aws::ec2::Ec2;
use glint_aws::rules::{Permission, Source};
use glint_aws::{AwsOptions, AwsProvider, Client, ClientConfig, Credentials, RetryPolicy};
use glint_model::{Environment, Image, Name, ProviderKind, Service};
use glint_provider::{Provider, ProviderEvent};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn config(endpoint: &str) -> ClientConfig {
    ClientConfig {
        endpoint: endpoint.to_owned(),
        region: "us-east-1".into(),
        credentials: Credentials {
            access_key: "bench".into(),
            secret_key: "bench".into(),
            session_token: None,
        },
        timeout: Duration::from_secs(10),
        retry: RetryPolicy::default(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let resync_ms: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let Some(moto) = server::moto() else {
        eprintln!("aws-drift: moto_server is not installed (pip install 'moto[server]')");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let name = |s: &str| Name::new(s).unwrap();
        let mut env = Environment::empty(name("bench"));
        env.images
            .insert(name("app"), Image::scratch(vec!["/app".into()]));
        let mut svc = Service::new(name("app"));
        svc.provider = ProviderKind::Aws;
        env.services.insert(name("web"), svc);
        let store = format!("bench{}", std::process::id());
        let mut options = AwsOptions::new(config(&moto));
        options.resync = Duration::from_millis(resync_ms);
        let target = Arc::new(Mutex::new(Some(env.clone())));
        let p = AwsProvider::connect(&store, &env.name, options, target)
            .await
            .unwrap();
        p.reconcile_security_groups().await.unwrap();
        let ec2 = Ec2::new(Client::new(config(&moto)).unwrap());
        let group = ec2
            .describe_security_groups(&[("tag:dev.glint.store", vec![store.clone()])])
            .await
            .unwrap()
            .remove(0)
            .id;
        let mut events = p.subscribe();
        let mut took = Vec::new();
        for run in 0..runs {
            // Land at a random point of the re-read cycle.
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..resync_ms))).await;
            let rule = Permission {
                protocol: "tcp".into(),
                from_port: 22,
                to_port: 22,
                source: Source::Cidr(format!("203.0.113.{}/32", run % 250 + 1)),
            };
            ec2.authorize_ingress(&group, std::slice::from_ref(&rule))
                .await
                .unwrap();
            let start = Instant::now();
            loop {
                match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
                    Ok(Ok(ProviderEvent::Incident { what, .. }))
                        if what.contains(&rule.to_string()) =>
                    {
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => panic!("no incident within 60 s"),
                }
            }
            took.push(start.elapsed());
        }
        took.sort();
        let ms = |d: Duration| d.as_millis();
        let p99 = took[((took.len() * 99).div_ceil(100)).saturating_sub(1)];
        println!(
            "aws-drift runs={runs} resync_ms={resync_ms} median_ms={} p99_ms={} max_ms={}",
            ms(took[took.len() / 2]),
            ms(p99),
            ms(took[took.len() - 1])
        );
    });
}
