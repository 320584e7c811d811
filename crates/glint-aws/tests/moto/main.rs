//! The aws provider against moto's EC2 API on loopback: real HTTP, real
//! SigV4, real XML and error documents. Each test uses its own store id, so
//! they share one moto server. Skipped without moto unless
//! `GLINT_REQUIRE_MOTO=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy;
mod server;
mod support;

use glint_aws::ec2::Ec2;
use glint_aws::rules::{Permission, Source};
use glint_aws::{Client, naming};
use glint_provider::{Provider, ProviderError, ProviderEvent, RunState};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::*;

fn ec2(endpoint: &str) -> Ec2 {
    Ec2::new(Client::new(config(endpoint)).unwrap())
}

/// EC2 instances (not terminated) tagged with `store`.
async fn instances_of(endpoint: &str, store: &str) -> Vec<glint_aws::ec2::Instance> {
    ec2(endpoint)
        .describe_instances(&[("tag:dev.glint.store", vec![store.to_owned()])])
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.state != "terminated")
        .collect()
}

/// The ingress of `store`'s group of `service`.
async fn ingress(endpoint: &str, store: &str, service: &str) -> (String, BTreeSet<Permission>) {
    let groups = ec2(endpoint)
        .describe_security_groups(&[
            ("tag:dev.glint.store", vec![store.to_owned()]),
            ("tag:dev.glint.service", vec![service.to_owned()]),
        ])
        .await
        .unwrap();
    assert_eq!(
        groups.len(),
        1,
        "one Glint-owned group for {service}: {groups:?}"
    );
    let g = groups.into_iter().next().unwrap();
    (g.id, g.ingress.into_iter().collect())
}

fn tcp(port: i32, source: Source) -> Permission {
    Permission {
        protocol: "tcp".into(),
        from_port: port,
        to_port: port,
        source,
    }
}

#[tokio::test]
async fn a_launch_is_a_tagged_instance_in_its_service_group_and_observed() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let p = provider(&store, options(&moto, Duration::from_secs(60)), shop()).await;
    let spec = spec(&store, "web", 1);
    let o = p.launch(spec.clone()).await.unwrap();
    assert_eq!(o.state, RunState::Running);
    assert_eq!(o.labels, spec.labels);
    assert_eq!(o.addr.map(|a| a.port()), Some(8080));

    let list = instances_of(&moto, &store).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let i = &list[0];
    assert_eq!(i.id, o.handle);
    assert_eq!(i.image_id, AMI);
    assert_eq!(i.instance_type, "t3.micro");
    assert_eq!(
        i.tags["dev.glint.instance"],
        spec.labels.instance.to_string()
    );
    assert_eq!(i.tags["dev.glint.service"], "web");
    assert_eq!(i.tags["dev.glint.environment"], "shop");
    assert_eq!(i.tags["dev.glint.image"], spec.labels.image.to_string());
    let (group, _) = ingress(&moto, &store, "web").await;
    assert_eq!(i.groups, vec![group], "launched in its service's group");

    // A restarted conductor's provider finds it by its tags.
    let again = provider(&store, options(&moto, Duration::from_secs(60)), shop()).await;
    let seen = again.observe().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].labels, spec.labels);
    assert_eq!(seen[0].addr, o.addr);
    // Another store's provider sees nothing of it.
    let other = provider(&store_id(), options(&moto, Duration::from_secs(60)), shop()).await;
    assert!(other.observe().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_repeated_launch_of_one_instance_makes_one_ec2_instance() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let spec = spec(&store, "api", 2);
    let first = provider(&store, options(&moto, Duration::from_secs(60)), shop()).await;
    let a = first.launch(spec.clone()).await.unwrap();
    // The conductor died before recording the launch; its successor
    // launches the same instance again, with the same ClientToken.
    drop(first);
    let second = provider(&store, options(&moto, Duration::from_secs(60)), shop()).await;
    let b = second.launch(spec.clone()).await.unwrap();
    assert_eq!(a.handle, b.handle, "the same EC2 instance");
    assert_eq!(instances_of(&moto, &store).await.len(), 1);
    // Another instance id is another token, another instance.
    second
        .launch(support::spec(&store, "api", 3))
        .await
        .unwrap();
    assert_eq!(instances_of(&moto, &store).await.len(), 2);
    assert_ne!(
        naming::client_token(&store, &spec.labels.instance),
        naming::client_token(&store, &support::spec(&store, "api", 3).labels.instance)
    );
}

#[tokio::test]
async fn terminate_ends_the_instance_and_remove_forgets_it() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let p = provider(&store, options(&moto, Duration::from_secs(60)), shop()).await;
    let spec = spec(&store, "web", 4);
    p.launch(spec.clone()).await.unwrap();
    p.terminate(&spec.labels.instance, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(instances_of(&moto, &store).await.is_empty());
    let seen = p.observe().await.unwrap();
    assert_eq!(seen.len(), 1, "ended but not yet removed");
    assert!(matches!(seen[0].state, RunState::Exited { .. }));
    p.remove(&spec.labels.instance).await.unwrap();
    assert!(p.observe().await.unwrap().is_empty());
    // Idempotent: terminating an ended or unknown instance succeeds.
    p.terminate(&spec.labels.instance, Duration::from_secs(1))
        .await
        .unwrap();
    p.terminate(
        &support::spec(&store, "web", 99).labels.instance,
        Duration::ZERO,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_instance_terminated_by_hand_is_reported_as_exited() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let p = provider(&store, options(&moto, Duration::from_millis(300)), shop()).await;
    let mut events = p.subscribe();
    let spec = spec(&store, "web", 5);
    let o = p.launch(spec.clone()).await.unwrap();
    ec2(&moto)
        .terminate_instances(std::slice::from_ref(&o.handle))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(ProviderEvent::Exited { instance, .. }) = events.recv().await {
                return instance;
            }
        }
    })
    .await
    .expect("no Exited event within 30 s");
    assert_eq!(got, spec.labels.instance);
}

#[tokio::test]
async fn security_groups_get_exactly_the_declared_ingress() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let p = provider(&store, options(&moto, Duration::from_secs(60)), shop()).await;
    let report = p.reconcile_security_groups().await.unwrap();
    assert!(report.incidents.is_empty(), "{report:?}");
    let (web, web_in) = ingress(&moto, &store, "web").await;
    let (_, api_in) = ingress(&moto, &store, "api").await;
    assert_eq!(
        api_in,
        BTreeSet::from([tcp(9000, Source::Group(web.clone()))]),
        "web → api by group reference on api's port"
    );
    assert_eq!(
        web_in,
        BTreeSet::from([tcp(80, Source::Cidr("192.0.2.0/24".into()))])
    );
    // A second pass changes nothing.
    let again = p.reconcile_security_groups().await.unwrap();
    assert!(
        again.revoked.is_empty() && again.authorized.is_empty(),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_hand_authorised_ingress_rule_is_revoked_and_reported_once() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let resync = Duration::from_secs(1);
    let p = provider(&store, options(&moto, resync), shop()).await;
    p.reconcile_security_groups().await.unwrap();
    let mut events = p.subscribe();
    let (api, declared) = ingress(&moto, &store, "api").await;

    // The bastion case.
    let bastion = tcp(22, Source::Cidr("203.0.113.7/32".into()));
    ec2(&moto)
        .authorize_ingress(&api, std::slice::from_ref(&bastion))
        .await
        .unwrap();
    let changed = Instant::now();
    let (what, action) = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(ProviderEvent::Incident { what, action, .. }) = events.recv().await {
                return (what, action);
            }
        }
    })
    .await
    .expect("no incident within 30 s");
    eprintln!(
        "hand-made ingress revoked {:?} after it was authorised (re-read every {resync:?})",
        changed.elapsed()
    );
    assert!(what.contains("tcp 22 from 203.0.113.7/32"), "{what}");
    assert!(what.contains(&api), "{what}");
    assert_eq!(action, "revoked it");
    assert_eq!(ingress(&moto, &store, "api").await.1, declared);
    // One incident, not one per pass.
    tokio::time::sleep(resync * 3).await;
    assert!(
        !matches!(events.try_recv(), Ok(ProviderEvent::Incident { .. })),
        "a second incident for one change"
    );

    // A declared permission revoked by hand comes back, also reported.
    ec2(&moto)
        .revoke_ingress(&api, &declared.iter().cloned().collect::<Vec<_>>())
        .await
        .unwrap();
    let report = p.reconcile_security_groups().await.unwrap();
    assert_eq!(report.incidents.len(), 1, "{report:?}");
    assert!(report.incidents[0].contains("removed outside Glint"));
    assert_eq!(ingress(&moto, &store, "api").await.1, declared);
}

#[tokio::test]
async fn a_refused_launch_fails_with_the_aws_code_and_leaves_nothing() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    // moto accepts unknown AMIs and has endless capacity: the proxy answers
    // as EC2 does for a bad AMI, missing capacity and a quota.
    let proxy = proxy::start(&moto).await;
    let p = provider(&store, options(&proxy.url, Duration::from_secs(60)), shop()).await;
    for (n, code) in [
        "InvalidAMIID.NotFound",
        "InsufficientInstanceCapacity",
        "InstanceLimitExceeded",
    ]
    .into_iter()
    .enumerate()
    {
        proxy.plan.lock().unwrap().faults.push((
            "RunInstances".into(),
            proxy::Fault::Refuse(code),
            1,
        ));
        let err = p
            .launch(spec(&store, "web", 60 + n as u64))
            .await
            .unwrap_err();
        match &err {
            ProviderError::Launch { reason, .. } => {
                assert!(reason.contains(code), "{reason}");
                assert!(reason.contains("request id fault-proxy"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(proxy.seen("RunInstances"), 3, "a refusal is not retried");
    assert!(instances_of(&moto, &store).await.is_empty());

    // No mapping at all: the digest is named.
    let mut o = options(&moto, Duration::from_secs(60));
    o.default_ami = None;
    let p = provider(&store, o, shop()).await;
    let err = p
        .launch(spec(&store, "web", 7))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("GLINT_AWS_AMIS") && err.contains("sha256:"),
        "{err}"
    );
}

#[tokio::test]
async fn throttling_and_5xx_are_retried_without_duplicates() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let proxy = proxy::start(&moto).await;
    let p = provider(&store, options(&proxy.url, Duration::from_secs(60)), shop()).await;
    {
        let mut plan = proxy.plan.lock().unwrap();
        plan.faults
            .push(("RunInstances".into(), proxy::Fault::Throttle, 2));
        plan.faults
            .push(("RunInstances".into(), proxy::Fault::Unavailable, 1));
        // The worst case: RunInstances took effect but its answer was lost.
        plan.faults
            .push(("RunInstances".into(), proxy::Fault::LoseAnswer, 1));
    }
    let spec = spec(&store, "web", 8);
    let o = p.launch(spec.clone()).await.unwrap();
    assert_eq!(
        proxy.seen("RunInstances"),
        4,
        "3 refused attempts, a 4th that made the instance but lost its answer; then the instance is found by its tag, not launched again"
    );
    let list = instances_of(&moto, &store).await;
    assert_eq!(list.len(), 1, "retries made no second instance: {list:?}");
    assert_eq!(list[0].id, o.handle);

    // Every call is retried, not only launches.
    proxy
        .plan
        .lock()
        .unwrap()
        .faults
        .push(("*".into(), proxy::Fault::Unavailable, 3));
    assert_eq!(p.observe().await.unwrap().len(), 1);
    p.terminate(&spec.labels.instance, Duration::ZERO)
        .await
        .unwrap();
    assert!(instances_of(&moto, &store).await.is_empty());
}

#[tokio::test]
async fn a_call_that_keeps_failing_gives_up_with_the_last_error() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let proxy = proxy::start(&moto).await;
    let p = provider(&store, options(&proxy.url, Duration::from_secs(60)), shop()).await;
    proxy.plan.lock().unwrap().faults.push((
        "DescribeInstances".into(),
        proxy::Fault::Throttle,
        100,
    ));
    let err = p.observe().await.unwrap_err().to_string();
    assert!(err.contains("RequestLimitExceeded"), "{err}");
    assert_eq!(
        proxy.seen("DescribeInstances"),
        6,
        "the policy's 6 attempts"
    );
}

/// The EC2 ids registered in the store's target group of `endpoint`.
async fn targets(endpoint: &str, store: &str, name: &str) -> BTreeSet<String> {
    let elb = glint_aws::elbv2::Elbv2::new(Client::new(config(endpoint)).unwrap());
    let tg = naming::target_group_name(
        store,
        &glint_model::Name::new("shop").unwrap(),
        &glint_model::Name::new(name).unwrap(),
    );
    let g = elb
        .target_group(&tg)
        .await
        .unwrap()
        .expect("a target group");
    elb.health(&g.arn)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.state != "draining" && t.state != "unused")
        .map(|t| t.id)
        .collect()
}

#[tokio::test]
async fn an_endpoint_is_a_target_group_registered_before_and_deregistered_before_termination() {
    let Some(moto) = moto() else { return };
    let store = store_id();
    let proxy = proxy::start(&moto).await;
    let p = provider(
        &store,
        options(&proxy.url, Duration::from_secs(60)),
        shop_with_endpoint(),
    )
    .await;
    let a = p.launch(spec(&store, "web", 10)).await.unwrap();
    assert_eq!(
        targets(&moto, &store, "front").await,
        BTreeSet::from([a.handle.clone()])
    );
    // A rollout step: the new instance is registered before the old one
    // is deregistered, so the group is never empty.
    let b = p.launch(spec(&store, "web", 11)).await.unwrap();
    assert_eq!(
        targets(&moto, &store, "front").await,
        BTreeSet::from([a.handle.clone(), b.handle.clone()])
    );
    // api has no endpoint: no target group holds it.
    let api = p.launch(spec(&store, "api", 12)).await.unwrap();
    assert!(!targets(&moto, &store, "front").await.contains(&api.handle));

    p.terminate(
        &spec(&store, "web", 10).labels.instance,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(
        targets(&moto, &store, "front").await,
        BTreeSet::from([b.handle.clone()])
    );
    let deregistered = proxy.first("DeregisterTargets").expect("deregistered");
    let terminated = proxy.first("TerminateInstances").expect("terminated");
    assert!(
        deregistered < terminated,
        "DeregisterTargets (request {deregistered}) must come before TerminateInstances (request {terminated})"
    );

    // A restarted provider's re-read makes the group exact: an instance
    // deregistered by hand is registered again.
    let elb = glint_aws::elbv2::Elbv2::new(Client::new(config(&moto)).unwrap());
    let tg = elb
        .target_group(&naming::target_group_name(
            &store,
            &glint_model::Name::new("shop").unwrap(),
            &glint_model::Name::new("front").unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    elb.deregister(&tg.arn, &[(b.handle.clone(), 8080)])
        .await
        .unwrap();
    let again = provider(
        &store,
        options(&moto, Duration::from_millis(300)),
        shop_with_endpoint(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while targets(&moto, &store, "front").await != BTreeSet::from([b.handle.clone()]) {
        assert!(Instant::now() < deadline, "not registered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(again);
}
