//! The HTTP API on the real conductor (harness: simulated provider, paused
//! time), called through the real router — the guard, the handlers, the
//! store — without a socket. Each test names the mutation it catches.

use crate::support::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use glint_conductor::http::{self, ApiSetup, Peer, auth};
use glint_store::prelude::*;
use glint_store::{EventFilter, Outcome, Role};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Api {
    app: axum::Router,
    viewer: String,
    deployer: String,
    admin: String,
    accessors: std::collections::BTreeMap<Role, String>,
}

fn api(h: &Harness) -> Api {
    let (app, _, _) = http::app(ApiSetup {
        client: h.conductor().client(),
        store: h.store.clone(),
        images: h.images.clone(),
        catalog: None,
        data_dir: h.dir.path().to_owned(),
        clock: h.clock.clone(),
    });
    let mut accessors = std::collections::BTreeMap::new();
    let mut token = |name: &str, role: Role| {
        let t = auth::issue(h.store.as_ref(), name, role, None, None).unwrap();
        accessors.insert(role, t.record.accessor.clone());
        t.token
    };
    let viewer = token("viewer", Role::Viewer);
    let deployer = token("deployer", Role::Deployer);
    let admin = token("admin", Role::Admin);
    Api {
        app,
        viewer,
        deployer,
        admin,
        accessors,
    }
}

struct Answer {
    status: StatusCode,
    body: String,
    headers: axum::http::HeaderMap,
}

impl Api {
    fn token(&self, role: Role) -> &str {
        match role {
            Role::Viewer => &self.viewer,
            Role::Deployer => &self.deployer,
            Role::Admin => &self.admin,
        }
    }

    /// One request; streaming bodies (SSE) are not read.
    async fn call(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let streaming = headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let body = if streaming {
            String::new()
        } else {
            let b = resp.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&b).into_owned()
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(request(Method::GET, path, token, None)).await
    }
}

fn request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some((ct, text)) => {
            b = b.header("content-type", ct);
            Body::from(text)
        }
        None => Body::empty(),
    };
    b.body(body).unwrap()
}

/// A body each mutating route accepts.
fn body_for(path: &str) -> Option<(&'static str, String)> {
    let candidate = serde_json::json!({
        "env": web(3, &[("GREETING", "api")]),
        "images": { "app": glint_model::Digest::of(b"app") },
        "root": "/src",
        "sources": [{ "path": "main.glint", "text": "service web {}\n" }],
    });
    match path {
        "/v1/plan" => Some(("application/json", candidate.to_string())),
        "/v1/apply" => Some((
            "application/json",
            serde_json::json!({ "version": candidate }).to_string(),
        )),
        "/v1/rollback" | "/v1/rollback/plan" => {
            Some(("application/json", r#"{"to": 1}"#.to_owned()))
        }
        "/v1/tokens" => Some((
            "application/json",
            r#"{"name": "made-by-test", "role": "viewer"}"#.to_owned(),
        )),
        "/ui/rollback" => Some(("application/x-www-form-urlencoded", "to=1".to_owned())),
        "/ui/login" => Some(("application/x-www-form-urlencoded", "token=nope".to_owned())),
        _ => None,
    }
}

/// The role an operation of the document requires, read from the document
/// independently of the server's own reading: `None` for public.
fn required(op: &serde_json::Value) -> Option<Role> {
    let sec = op["security"]
        .as_array()
        .unwrap_or_else(|| panic!("an operation without `security`: {op}"));
    assert_eq!(sec.len(), 1, "one requirement per operation: {op}");
    let scopes = sec[0].get("token")?;
    Some(Role::parse(scopes[0].as_str().unwrap()).unwrap())
}

async fn converged_harness() -> Harness {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(web(3, &[]));
    assert_eq!(h.outcome(v1, 30).await.0, Outcome::Converged);
    let v2 = h.apply(web(3, &[("GREETING", "two")]));
    assert_eq!(h.outcome(v2, 60).await.0, Outcome::Converged);
    h
}

// Mutations caught: the guard letting a request without a token through
// (401 fails), comparing roles the wrong way or ignoring the table (403
// fails), a handler's annotation stating a smaller role than the one it
// needs to succeed, the audit event left out or naming someone else.
#[tokio::test(start_paused = true)]
async fn every_route_in_the_openapi_document_needs_its_role_and_mutations_are_audited() {
    let h = converged_harness().await;
    let api = api(&h);
    let doc = api.get("/v1/openapi.json", Some(&api.viewer)).await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.body);
    let doc: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    let mut mutating = 0;
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let victim;
            let path = if template.contains("{token}") {
                // Revoking needs a live token to revoke.
                victim = auth::issue(
                    h.store.as_ref(),
                    &format!("victim{checked}"),
                    Role::Viewer,
                    None,
                    None,
                )
                .unwrap()
                .record
                .accessor;
                template.replace("{token}", &victim)
            } else {
                template
                    .replace("{number}", "1")
                    .replace("{service}", "web")
            };
            let what = format!("{method} {template}");
            let Some(need) = required(op) else {
                // Public: only the login form.
                assert_eq!(template, "/ui/login", "{what} is public");
                continue;
            };
            let body = || body_for(&path);
            let a = api.call(request(method.clone(), &path, None, body())).await;
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{what} without a token: {}",
                a.body
            );
            if let Some(below) = need.below() {
                let a = api
                    .call(request(
                        method.clone(),
                        &path,
                        Some(api.token(below)),
                        body(),
                    ))
                    .await;
                assert_eq!(
                    a.status,
                    StatusCode::FORBIDDEN,
                    "{what} as {below}: {}",
                    a.body
                );
            }
            let before = h
                .store
                .events(&EventFilter {
                    limit: Some(1),
                    ..Default::default()
                })
                .unwrap()
                .last()
                .map(|e| e.seq)
                .unwrap_or(0);
            let a = api
                .call(request(
                    method.clone(),
                    &path,
                    Some(api.token(need)),
                    body(),
                ))
                .await;
            assert!(
                a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
                "{what} as {need} (its declared role) was refused: {} {}",
                a.status,
                a.body
            );
            if method != Method::GET {
                mutating += 1;
                let audits: Vec<_> = h
                    .store
                    .events(&EventFilter {
                        after: Some(before),
                        kind: Some("audit".into()),
                        ..Default::default()
                    })
                    .unwrap();
                let accessor = &api.accessors[&need];
                assert!(
                    audits.iter().any(|e| {
                        let d = e.details.as_ref().unwrap();
                        d["accessor"] == accessor.as_str() && d["action"] == what.as_str()
                    }),
                    "{what} left no audit event naming {accessor}: {audits:#?}"
                );
                for e in &audits {
                    assert!(!e.message.contains(api.token(need)), "a secret in an event");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} operations in the document");
    assert!(mutating >= 8, "only {mutating} mutating operations");
}

// Mutation caught: the unix socket not counted as the local admin, or any
// peer without a token treated as if it were on the socket.
#[tokio::test(start_paused = true)]
async fn the_unix_socket_is_the_local_admin_and_nothing_else_is() {
    let mut h = Harness::new();
    h.start().await;
    let api = api(&h);
    let mut req = request(Method::GET, "/v1/tokens", None, None);
    req.extensions_mut().insert(Peer::Unix);
    assert_eq!(api.call(req).await.status, StatusCode::OK);
    let mut req = request(Method::GET, "/v1/tokens", None, None);
    req.extensions_mut()
        .insert(Peer::Tcp("127.0.0.1:5000".parse().unwrap()));
    assert_eq!(api.call(req).await.status, StatusCode::UNAUTHORIZED);
}

// Mutations caught: expiry not checked (or checked with the system clock
// instead of the conductor's), revocation ignored, a wrong secret accepted
// for a known accessor, an environment-bound token accepted elsewhere.
#[tokio::test(start_paused = true)]
async fn expired_revoked_forged_and_foreign_tokens_are_refused() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(web(1, &[]));
    h.outcome(v, 30).await;
    let api = api(&h);
    let soon = auth::issue(
        h.store.as_ref(),
        "short",
        Role::Viewer,
        None,
        Some(h.clock_ms() + 60_000),
    )
    .unwrap();
    assert_eq!(
        api.get("/v1/status", Some(&soon.token)).await.status,
        StatusCode::OK
    );
    h.pass_time(61_000).await;
    let a = api.get("/v1/status", Some(&soon.token)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("expired"), "{}", a.body);

    h.store.revoke_token("viewer").unwrap().unwrap();
    let a = api.get("/v1/status", Some(&api.viewer)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("revoked"), "{}", a.body);

    // The deployer's accessor with another secret.
    let forged = format!(
        "glint_{}_{}",
        api.accessors[&Role::Deployer],
        "0".repeat(64)
    );
    assert_eq!(
        api.get("/v1/status", Some(&forged)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let elsewhere = auth::issue(
        h.store.as_ref(),
        "prod-only",
        Role::Admin,
        Some("prod".into()),
        None,
    )
    .unwrap();
    let a = api.get("/v1/status", Some(&elsewhere.token)).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "the harness runs environment `test`"
    );
    let here = auth::issue(
        h.store.as_ref(),
        "test-only",
        Role::Viewer,
        Some("test".into()),
        None,
    )
    .unwrap();
    assert_eq!(
        api.get("/v1/status", Some(&here.token)).await.status,
        StatusCode::OK
    );

    let failed = h.events_of("auth.failed");
    assert!(failed.len() >= 3, "{failed:#?}");
    for e in &failed {
        assert!(
            !e.message.contains(&forged[30..]),
            "a presented secret in an event"
        );
    }
}

// Mutation caught: failed attempts not counted, or the block not applied
// to a peer's valid token afterwards, or never lifted.
#[tokio::test(start_paused = true)]
async fn a_peer_that_keeps_presenting_bad_tokens_is_rate_limited() {
    let mut h = Harness::new();
    h.start().await;
    let api = api(&h);
    let peer = Peer::Tcp("192.0.2.7:40000".parse().unwrap());
    let with_peer = |token: &str| {
        let mut r = request(Method::GET, "/v1/status", Some(token), None);
        r.extensions_mut().insert(peer);
        r
    };
    let bad = format!("glint_{}_{}", "a".repeat(16), "b".repeat(64));
    for _ in 0..auth::MAX_FAILURES {
        assert_eq!(
            api.call(with_peer(&bad)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let a = api.call(with_peer(&api.viewer)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.headers.contains_key("retry-after"));
    // Another peer is not affected.
    assert_eq!(
        api.get("/v1/status", Some(&api.viewer)).await.status,
        StatusCode::OK
    );
    h.pass_time(61_000).await;
    assert_eq!(
        api.call(with_peer(&api.viewer)).await.status,
        StatusCode::OK
    );
    // The flood is recorded, but rate-limited (a few lines, then a count).
    assert!(h.events_of("auth.failed").len() <= 4);
}

fn cookie(token: &str) -> String {
    format!("glint_token={token}")
}

// Mutations caught: the rollback button shown to viewers, the guard not
// checking the anti-forgery value for cookie requests, a viewer's forged
// POST accepted.
#[tokio::test(start_paused = true)]
async fn the_dashboard_shows_viewers_no_buttons_and_refuses_forged_posts() {
    let h = converged_harness().await;
    let api = api(&h);
    let page = |token: &str| {
        Request::builder()
            .uri("/")
            .header("cookie", cookie(token))
            .body(Body::empty())
            .unwrap()
    };
    let viewer = api.call(page(&api.viewer)).await;
    assert_eq!(viewer.status, StatusCode::OK);
    assert!(viewer.body.contains("3/3 healthy"), "{}", viewer.body);
    assert!(
        !viewer.body.contains("data-rollback"),
        "a viewer sees a rollback button"
    );
    let deployer = api.call(page(&api.deployer)).await;
    assert!(
        deployer.body.contains("data-rollback=\"1\""),
        "{}",
        deployer.body
    );
    let csrf = deployer
        .body
        .split("/ui/rollback?csrf=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let post = |token: &str, path: &str| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("cookie", cookie(token))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("to=1"))
            .unwrap()
    };
    let latest = h.latest();
    // A viewer's forged POST, even with a deployer's anti-forgery value.
    let a = api
        .call(post(&api.viewer, &format!("/ui/rollback?csrf={csrf}")))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // A deployer's cookie without the page's value (a cross-site form).
    let a = api.call(post(&api.deployer, "/ui/rollback")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(h.latest(), latest, "nothing was recorded");
    // From the page.
    let a = api
        .call(post(&api.deployer, &format!("/ui/rollback?csrf={csrf}")))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let v = h.store.version(h.latest()).unwrap();
    assert_eq!(
        v.kind,
        glint_store::VersionKind::Rollback(glint_model::VersionNumber(1))
    );
    let audit = h.events_of("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.message.contains(&api.accessors[&Role::Deployer])
                && e.message.contains("/ui/rollback")),
        "{audit:#?}"
    );
}

// Mutation caught: the login form accepting any token, or setting a cookie
// that scripts can read.
#[tokio::test(start_paused = true)]
async fn signing_in_turns_a_valid_token_into_an_http_only_cookie() {
    let mut h = Harness::new();
    h.start().await;
    let api = api(&h);
    let login = |token: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/ui/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let a = api.call(login("glint_nonsense")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(!a.headers.contains_key("set-cookie"));
    let a = api.call(login(&api.viewer)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let c = a.headers["set-cookie"].to_str().unwrap();
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Strict"),
        "{c}"
    );
    assert!(!c.contains("Secure"), "plain HTTP on loopback: {c}");
    let mut req = login(&api.viewer);
    req.extensions_mut().insert(http::OverTls);
    let a = api.call(req).await;
    let c = a.headers["set-cookie"].to_str().unwrap();
    assert!(c.contains("; Secure"), "over TLS: {c}");
    let a = api.get("/", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("Sign in"), "{}", a.body);
}

// Mutation caught: an environment-bound token applying a version of
// another environment.
#[tokio::test(start_paused = true)]
async fn an_environment_bound_token_applies_only_its_environment() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(web(1, &[]));
    h.outcome(v, 30).await;
    let api = api(&h);
    let bound = auth::issue(
        h.store.as_ref(),
        "test-ci",
        Role::Deployer,
        Some("test".into()),
        None,
    )
    .unwrap();
    let mut other = web(1, &[]);
    other.name = name("other");
    let body = |env: &glint_model::Environment| {
        serde_json::json!({
            "version": {
                "env": env,
                "images": { "app": glint_model::Digest::of(b"app") },
                "root": "/src",
                "sources": [],
            },
            "replace_environment": true,
        })
        .to_string()
    };
    let a = api
        .call(request(
            Method::POST,
            "/v1/apply",
            Some(&bound.token),
            Some(("application/json", body(&other))),
        ))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(h.latest(), v, "nothing recorded");
    let a = api
        .call(request(
            Method::POST,
            "/v1/apply",
            Some(&bound.token),
            Some(("application/json", body(&web(2, &[])))),
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(h.latest() > v);
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|r| r.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no `{name_and_labels}` in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

// Mutations caught: launches not counted from the events (or counted
// after the rate limit), the death-to-replacement histogram not observed,
// gauges not taken from the status `glint status` shows, rollout outcomes
// not counted.
#[tokio::test(start_paused = true)]
async fn metrics_count_what_happened_and_show_what_is() {
    let h = converged_harness().await;
    let api = api(&h);
    let victim = Harness::healthy(&h.status())[0].clone();
    assert!(h.sim.kill(&victim));
    h.wait("a replacement", 10, |s| {
        let now = Harness::healthy(s);
        now.len() == 3 && !now.contains(&victim)
    })
    .await;
    let a = api.get("/metrics", Some(&api.viewer)).await;
    assert_eq!(a.status, StatusCode::OK);
    let m = a.body;
    assert!(m.ends_with("# EOF\n"), "{m}");
    assert_eq!(
        metric(&m, "glint_service_desired_instances{service=\"web\"}"),
        3.0
    );
    assert_eq!(
        metric(&m, "glint_service_healthy_instances{service=\"web\"}"),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            "glint_instances{service=\"web\",state=\"running\",health=\"healthy\"}"
        ),
        3.0
    );
    // 3 for version 1, 3 for version 2's rollout, 1 replacement.
    assert_eq!(
        metric(
            &m,
            "glint_launches_total{service=\"web\",reason=\"missing\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(
            &m,
            "glint_launches_total{service=\"web\",reason=\"rollout\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            "glint_retirements_total{service=\"web\",reason=\"rollout\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(&m, "glint_rollouts_total{outcome=\"converged\"}"),
        2.0
    );
    assert_eq!(
        metric(&m, "glint_replacement_seconds_count{service=\"web\"}"),
        1.0
    );
    assert!(metric(&m, "glint_conductor_pass_seconds_count") > 0.0);
    assert!(metric(&m, "glint_store_write_duration_seconds_count") > 0.0);
    assert!(!m.contains(victim.as_str()), "an instance id in a label");
    assert_eq!(metric(&m, "glint_rollouts_total{outcome=\"failed\"}"), 0.0);

    let drifted = Harness::healthy(&h.status())[0].clone();
    assert!(h.sim.drift(
        &drifted,
        glint_provider::DriftKind::Filesystem,
        "/etc/passwd changed"
    ));
    h.wait("the drifted instance replaced", 10, |s| {
        let now = Harness::healthy(s);
        now.len() == 3 && !now.contains(&drifted)
    })
    .await;
    let m = api.get("/metrics", Some(&api.viewer)).await.body;
    assert_eq!(
        metric(&m, "glint_drift_detections_total{kind=\"filesystem\"}"),
        1.0
    );
    assert_eq!(metric(&m, "glint_incidents_total{kind=\"drift\"}"), 1.0);
    assert_eq!(
        metric(&m, "glint_replacement_seconds_count{service=\"web\"}"),
        2.0
    );
}
