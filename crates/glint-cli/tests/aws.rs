//! The aws provider through the `glint` binary, against moto's EC2 API:
//! `glint plan` lists the AWS resources, `glint up` launches tagged EC2
//! instances in security groups with exactly the declared ingress, an
//! instance terminated by hand is replaced, a hand-authorised ingress rule
//! is revoked and recorded as an incident, a new version replaces the
//! instances, and Ctrl-C terminates them. Skipped without moto unless
//! `GLINT_REQUIRE_MOTO=1` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../glint-aws/tests/moto/proxy.rs"]
mod proxy;
#[path = "../../glint-aws/tests/moto/server.rs"]
mod server;

use common::{Ctx, healthy};
use glint_aws::ec2::{Ec2, Instance};
use glint_aws::rules::{Permission, Source};
use glint_aws::{Client, ClientConfig, Credentials, RetryPolicy, naming};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AMI: &str = "ami-12c6146b";

fn ec2(moto: &str) -> Ec2 {
    Ec2::new(
        Client::new(ClientConfig {
            endpoint: moto.to_owned(),
            region: "us-east-1".into(),
            credentials: Credentials {
                access_key: "test".into(),
                secret_key: "test".into(),
                session_token: None,
            },
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        })
        .unwrap(),
    )
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The store's EC2 instances that are not terminated.
fn live(moto: &str, store: &str) -> Vec<Instance> {
    block(ec2(moto).describe_instances(&[("tag:dev.glint.store", vec![store.to_owned()])]))
        .unwrap()
        .into_iter()
        .filter(|i| i.state != "terminated")
        .collect()
}

/// The id and ingress of the store's group of `service`.
fn group(moto: &str, store: &str, service: &str) -> (String, BTreeSet<Permission>) {
    let g = block(ec2(moto).describe_security_groups(&[
        ("tag:dev.glint.store", vec![store.to_owned()]),
        ("tag:dev.glint.service", vec![service.to_owned()]),
    ]))
    .unwrap();
    assert_eq!(g.len(), 1, "one group for {service}: {g:?}");
    (g[0].id.clone(), g[0].ingress.iter().cloned().collect())
}

/// The Glint instance ids registered in endpoint `public`'s target group.
fn targets(moto: &str, store: &str) -> BTreeSet<String> {
    let client = Client::new(ClientConfig {
        endpoint: moto.to_owned(),
        region: "us-east-1".into(),
        credentials: Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
            session_token: None,
        },
        timeout: Duration::from_secs(10),
        retry: RetryPolicy::default(),
    })
    .unwrap();
    let elb = glint_aws::elbv2::Elbv2::new(client);
    let name = naming::target_group_name(
        store,
        &glint_model::Name::new("shop").unwrap(),
        &glint_model::Name::new("public").unwrap(),
    );
    let Some(g) = block(elb.target_group(&name)).unwrap() else {
        return BTreeSet::new();
    };
    let ec2_ids: BTreeSet<String> = block(elb.health(&g.arn))
        .unwrap()
        .into_iter()
        .filter(|t| t.state != "draining" && t.state != "unused")
        .map(|t| t.id)
        .collect();
    live(moto, store)
        .into_iter()
        .filter(|i| ec2_ids.contains(&i.id))
        .map(|i| i.tags["dev.glint.instance"].clone())
        .collect()
}

fn tcp(port: i32, source: Source) -> Permission {
    Permission {
        protocol: "tcp".into(),
        from_port: port,
        to_port: port,
        source,
    }
}

/// `glint` with the AWS configuration for moto.
fn glint(ctx: &Ctx, moto: &str, args: &[&str]) -> Command {
    let mut c = ctx.cmd(args);
    c.env("AWS_ENDPOINT_URL", moto)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("GLINT_AWS_DEFAULT_AMI", AMI)
        .env("GLINT_AWS_RESYNC", "1s");
    c
}

/// Starts `glint up FILE` with the AWS configuration for `endpoint`, its
/// output in `NAME.log`.
fn up(ctx: &Ctx, endpoint: &str, name: &str, file: &str) -> Up {
    let log = std::fs::File::create(ctx.dir.path().join(format!("{name}.log"))).unwrap();
    Up(glint(ctx, endpoint, &["up", file])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap())
}

/// Kills `glint up` if the test fails before it stops it.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shop(greeting: &str) -> String {
    format!(
        r#"image hello {{
  from = scratch
  copy "app/hello" to "/bin/hello"
  entrypoint = ["/bin/hello"]
  port = 8080
}}

service web {{
  image     = image.hello
  provider  = aws
  instances = 2
  env = {{
    GREETING = "{greeting}"
  }}
  stop_grace = 1s
  drain      = 1s
}}

service api {{
  image     = image.hello
  provider  = aws
  port      = 9000
  stop_grace = 1s
  drain      = 1s
}}

endpoint public {{
  listen  = 127.0.0.1:{{port}}
  service = service.web
}}

rule web_to_api {{
  from = service.web
  to   = service.api
}}

rule office_to_web {{
  from  = cidr("192.0.2.0/24")
  to    = service.web
  ports = [80]
}}
"#
    )
}

#[test]
fn glint_up_on_aws_launches_enforces_rules_heals_and_stops() {
    let Some(moto) = server::moto() else { return };
    let ctx = Ctx::new();
    let file = ctx.write("shop.glint", &shop("hello"));
    let file = file.to_str().unwrap();

    let plan = glint(&ctx, &moto, &["plan", file]).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.contains("AWS resources"), "{plan}");
    assert!(
        plan.contains("EC2 instances of service web: 2 × t3.micro, AMI ami-12c6146b"),
        "{plan}"
    );
    assert!(
        plan.contains("ingress exactly: tcp 80 from 192.0.2.0/24"),
        "{plan}"
    );
    assert!(plan.contains("target group gl-"), "{plan}");

    let log = std::fs::File::create(ctx.dir.path().join("up.log")).unwrap();
    let mut up = Up(glint(&ctx, &moto, &["up", file])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap());
    let s = ctx.wait_status("3 running instances", |s| healthy(s).len() == 3);
    let first: BTreeSet<String> = healthy(&s).into_iter().collect();
    let store = ctx.store_id();

    // Tagged instances, one per Glint instance, in their service's group.
    let ec2s = live(&moto, &store);
    assert_eq!(ec2s.len(), 3, "{ec2s:?}");
    let tagged: BTreeSet<String> = ec2s
        .iter()
        .map(|i| i.tags["dev.glint.instance"].clone())
        .collect();
    assert_eq!(tagged, first);
    let (web, web_in) = group(&moto, &store, "web");
    let (api, api_in) = group(&moto, &store, "api");
    for i in &ec2s {
        let want = if i.tags["dev.glint.service"] == "web" {
            &web
        } else {
            &api
        };
        assert_eq!(&i.groups, &vec![want.clone()]);
        assert_eq!(i.image_id, AMI);
    }
    assert_eq!(
        api_in,
        BTreeSet::from([tcp(9000, Source::Group(web.clone()))])
    );
    assert_eq!(
        web_in,
        BTreeSet::from([tcp(80, Source::Cidr("192.0.2.0/24".into()))])
    );
    // The endpoint's target group holds exactly web's instances.
    let web_ids: BTreeSet<String> = ec2s
        .iter()
        .filter(|i| i.tags["dev.glint.service"] == "web")
        .map(|i| i.tags["dev.glint.instance"].clone())
        .collect();
    assert_eq!(targets(&moto, &store), web_ids);

    // TerminateInstances by hand: replaced.
    let victim = ec2s
        .iter()
        .find(|i| i.tags["dev.glint.service"] == "web")
        .unwrap();
    let victim_id = victim.tags["dev.glint.instance"].clone();
    block(ec2(&moto).terminate_instances(std::slice::from_ref(&victim.id))).unwrap();
    let s = ctx.wait_status("the terminated instance replaced", |s| {
        let h: BTreeSet<String> = healthy(s).into_iter().collect();
        h.len() == 3 && !h.contains(&victim_id)
    });
    assert_eq!(live(&moto, &store).len(), 3, "{:?}", healthy(&s));

    // The bastion rule, authorised by hand: revoked, one incident.
    let bastion = tcp(22, Source::Cidr("203.0.113.7/32".into()));
    block(ec2(&moto).authorize_ingress(&web, std::slice::from_ref(&bastion))).unwrap();
    let changed = Instant::now();
    let deadline = changed + Duration::from_secs(60);
    loop {
        let events = ctx.ok(&["events", "-n", "200"]);
        if events.contains("203.0.113.7/32") {
            assert!(events.contains("revoked it"), "{events}");
            assert_eq!(
                events.matches("tcp 22 from 203.0.113.7/32").count(),
                1,
                "one incident:\n{events}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no incident:\n{events}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "hand-made ingress revoked and recorded {:?} after it was authorised (GLINT_AWS_RESYNC=1s)",
        changed.elapsed()
    );
    assert_eq!(group(&moto, &store, "web").1, web_in);
    // One incident record, on the group.
    let incidents: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["incidents", "-o", "json"])).unwrap();
    let on_group: Vec<&serde_json::Value> = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.to_string().contains(&web))
        .collect();
    assert_eq!(on_group.len(), 1, "{incidents:#}");
    assert!(
        on_group[0].to_string().contains("203.0.113.7/32"),
        "{incidents:#}"
    );

    // A new version replaces web's instances (new EC2 instances).
    let before: BTreeSet<String> = healthy(&ctx.status()).into_iter().collect();
    ctx.write("shop.glint", &shop("bonjour"));
    glint(&ctx, &moto, &["apply", file]).output().unwrap();
    let s = ctx.wait_status("web replaced", |s| {
        let h: BTreeSet<String> = healthy(s).into_iter().collect();
        // ... and the old ones retired (deregistered, drained, terminated).
        h.len() == 3 && h.intersection(&before).count() == 1 && common::instances(s).len() == 3
    });
    let now: BTreeSet<String> = live(&moto, &store)
        .iter()
        .map(|i| i.tags["dev.glint.instance"].clone())
        .collect();
    let h: BTreeSet<String> = healthy(&s).into_iter().collect();
    assert_eq!(now, h, "exactly the current instances run on EC2");
    let web_now: BTreeSet<String> = live(&moto, &store)
        .iter()
        .filter(|i| i.tags["dev.glint.service"] == "web")
        .map(|i| i.tags["dev.glint.instance"].clone())
        .collect();
    assert_eq!(
        targets(&moto, &store),
        web_now,
        "the target group follows the rollout"
    );

    // Ctrl-C: every instance terminated.
    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(up.0.id() as i32, libc::SIGINT);
    }
    let _ = up.0.wait();
    assert!(live(&moto, &store).is_empty(), "{:?}", live(&moto, &store));
}

#[test]
fn a_conductor_killed_mid_launch_leaves_no_duplicate_instance() {
    let Some(moto) = server::moto() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(proxy::start(&moto));
    // Every RunInstances takes effect at once but is answered 30 s later:
    // the conductor is killed while its launches are in flight.
    proxy.plan.lock().unwrap().faults.push((
        "RunInstances".into(),
        proxy::Fault::Hold(30_000),
        100,
    ));
    let ctx = Ctx::new();
    let file = ctx.write("shop.glint", &shop("hello"));
    let file = file.to_str().unwrap();
    let mut first = up(&ctx, &proxy.url, "up1", file);
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.seen("RunInstances") < 3 {
        assert!(Instant::now() < deadline, "{}", ctx.log("up1"));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The proxy counts a request when it arrives; moto makes the instance
    // once the proxy has forwarded it: wait for the three (bounded).
    let store = ctx.store_id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while live(&moto, &store).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        live(&moto, &store).len(),
        3,
        "the three launches reached EC2"
    );
    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(first.0.id() as i32, libc::SIGKILL);
    }
    let _ = first.0.wait();

    // Its successor, on the same data directory.
    proxy.plan.lock().unwrap().faults.clear();
    let _second = up(&ctx, &proxy.url, "up2", file);
    let s = ctx.wait_status("3 running instances after the restart", |s| {
        healthy(s).len() == 3 && common::instances(s).len() == 3
    });
    let h: BTreeSet<String> = healthy(&s).into_iter().collect();
    // Let a re-read pass, then count: one EC2 instance per Glint instance,
    // nothing else.
    std::thread::sleep(Duration::from_secs(2));
    let ec2s = live(&moto, &store);
    let ids: Vec<String> = ec2s
        .iter()
        .map(|i| i.tags["dev.glint.instance"].clone())
        .collect();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        ids.len(),
        distinct.len(),
        "a Glint instance with two EC2 instances: {ids:?}"
    );
    assert_eq!(
        distinct, h,
        "exactly the conductor's instances run: {ec2s:?}"
    );
    eprintln!(
        "after the SIGKILL: {} RunInstances calls in all, {} EC2 instances live for {} Glint instances",
        proxy.seen("RunInstances"),
        ec2s.len(),
        h.len()
    );
}

#[test]
fn a_launch_ec2_refuses_is_an_event_with_the_aws_code_and_is_retried() {
    let Some(moto) = server::moto() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(proxy::start(&moto));
    proxy.plan.lock().unwrap().faults.push((
        "RunInstances".into(),
        proxy::Fault::Refuse("InsufficientInstanceCapacity"),
        1,
    ));
    let ctx = Ctx::new();
    let file = ctx.write("shop.glint", &shop("hello"));
    let _up = up(&ctx, &proxy.url, "up", file.to_str().unwrap());
    let s = ctx.wait_status("3 running instances despite the refusal", |s| {
        healthy(s).len() == 3
    });
    let events = ctx.ok(&["events", "-n", "200"]);
    assert!(
        events.contains("InsufficientInstanceCapacity"),
        "the refusal and its code are in the event log:\n{events}"
    );
    for line in events
        .lines()
        .filter(|l| l.contains("InsufficientInstanceCapacity"))
    {
        eprintln!("{line}");
    }
    let store = ctx.store_id();
    assert_eq!(live(&moto, &store).len(), 3, "{:?}", healthy(&s));
}
