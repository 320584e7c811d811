//! The demo file compiles, through the public API, to exactly the
//! environment the other parts of Glint expect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_lang::{CompileOptions, MemoryLoader, compile};
use glint_model::*;
use std::collections::BTreeMap;

fn hello_source() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/hello/hello.glint"
    );
    std::fs::read_to_string(path).unwrap()
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

#[test]
fn hello_compiles_to_the_documented_environment() {
    let mut loader = MemoryLoader::new();
    loader.add("hello.glint", hello_source());
    let c = compile("hello.glint", &loader, &CompileOptions::default());
    assert!(
        c.diagnostics.list.is_empty(),
        "{}",
        c.diagnostics.render_human(false)
    );
    let env = c.environment.unwrap();

    let mut expected = Environment::empty(name("hello"));
    expected.images.insert(
        name("hello"),
        Image {
            from: ImageBase::Scratch,
            steps: vec![ImageStep::Copy {
                src: "../../target/x86_64-unknown-linux-gnu/release/glint-hello".into(),
                dst: "/bin/hello".into(),
            }],
            tests: vec![],
            entrypoint: vec!["/bin/hello".into()],
            env: BTreeMap::new(),
            workdir: "/".into(),
            port: Some(8080),
            digest: None,
        },
    );
    expected.services.insert(
        name("web"),
        Service {
            image: name("hello"),
            provider: ProviderKind::Process,
            instances: 3,
            args: vec![],
            env: BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]),
            port: 8080,
            health: Some(HealthCheck {
                probe: Probe::Http {
                    path: "/healthz".into(),
                },
                interval: Millis(1000),
                timeout: Millis(500),
                healthy_threshold: 1,
                unhealthy_threshold: 3,
                start_timeout: Millis(30_000),
            }),
            rollout: Rollout {
                strategy: Strategy::Rolling {
                    surge: 1,
                    unavailable: 0,
                },
                min_healthy: Millis(0),
                deadline: Millis(300_000),
                auto_rollback: true,
                fail_after: 1,
            },
            max_age: None,
            drain: Millis(30_000),
            stop_grace: Millis(5000),
            resources: Resources::default(),
            on_exec: OnExec::Replace,
            autoscale: None,
            mounts: vec![],
        },
    );
    expected.endpoints.insert(
        name("public"),
        Endpoint {
            listen: "127.0.0.1:8080".parse().unwrap(),
            service: name("web"),
            protocol: EndpointProtocol::Http,
        },
    );
    assert_eq!(env, expected);
}

#[test]
fn errors_carry_file_line_and_column() {
    let src = hello_source().replace("instances = 3", "instances = \"3\"");
    let mut loader = MemoryLoader::new();
    loader.add("hello.glint", src);
    let c = compile("hello.glint", &loader, &CompileOptions::default());
    assert!(c.environment.is_none());
    let text = c.diagnostics.render_human(false);
    assert!(
        text.contains("error[E0103]: expected int, found string"),
        "{text}"
    );
    assert!(text.contains("--> hello.glint:12:15"), "{text}");
    assert!(text.contains("^^^"), "{text}");
    assert!(text.contains("help: remove the quotes: `3`"), "{text}");
}
