//! The dashboard: server-rendered pages (maud), live by SSE, with no
//! script or style from anywhere else — it works with no network.
//!
//! - `/`: current state first — per service desired vs healthy, the
//!   rollout in progress and what it waits for, open incidents, problems —
//!   then the recent versions (with a rollback button for deployers);
//! - `/services/{service}`: its instances (id, age, health, version,
//!   address) and its events;
//! - `/versions`: every version, and the difference between any two;
//! - `/events`: the event log with filters (service, kind, severity).
//!
//! The live parts of `/` and of a service page are re-rendered on the
//! server and pushed over `/ui/live` (one small inline script swaps them
//! in), so the page follows a kill or a rollout without a reload.
//!
//! Sign-in: a token pasted into the login form becomes an `HttpOnly`,
//! `SameSite=Strict` cookie. A viewer's pages have no buttons; a deployer's
//! rollback button asks for confirmation and its form carries the
//! anti-forgery value the guard checks (a forged POST is refused).

use super::auth::Caller;
use super::routes::EventsQuery;
use super::{ApiState, AuditNote};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use glint_store::{Event, Role, Severity};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The cookie's name.
pub const COOKIE: &str = "glint_token";
/// `glint_token=`, to find it in a `Cookie` header.
pub const COOKIE_EQ: &str = "glint_token=";

type St = State<Arc<ApiState>>;

/// Registers the pages.
pub fn register(r: OpenApiRouter<Arc<ApiState>>) -> OpenApiRouter<Arc<ApiState>> {
    r.routes(routes!(overview))
        .routes(routes!(service_page))
        .routes(routes!(versions_page))
        .routes(routes!(events_page))
        .routes(routes!(live))
        .routes(routes!(rollback))
        .routes(routes!(login))
        .routes(routes!(logout))
}

const STYLE: &str = r#"
:root{--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--mute:#57606a;--line:#d0d7de;font-family:system-ui,sans-serif}
body{margin:0;color:#1f2328;background:#f6f8fa}
header{display:flex;flex-wrap:wrap;gap:.8rem;align-items:center;padding:.6rem 1rem;background:#24292f;color:#fff}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;font-size:.85rem;opacity:.85}
main{padding:1rem;max-width:72rem;margin:auto}
h1{font-size:1.3rem;margin:.2rem 0 .8rem}h2{font-size:1.05rem;margin:1.2rem 0 .5rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.7rem .9rem;min-width:12rem;flex:1 1 14rem}
.card .count{font-size:1.6rem;font-weight:600}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}.mute{color:var(--mute)}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}
th,td{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;white-space:nowrap}
td.msg{white-space:normal}
button{font:inherit;padding:.3rem .7rem;border-radius:6px;border:1px solid var(--line);background:#fff;cursor:pointer}
button.danger{border-color:var(--bad);color:var(--bad)}
form.inline{display:inline}input,select{font:inherit;padding:.3rem}
pre{background:#fff;border:1px solid var(--line);padding:.5rem;overflow-x:auto;font-size:.85rem}
.add{color:var(--ok)}.del{color:var(--bad)}
@media (max-width:40rem){main{padding:.6rem}th,td{padding:.3rem}}
"#;

/// Swaps `#live` for each fragment the server pushes.
const SCRIPT: &str = r#"
(function(){var el=document.getElementById('live');if(!el||!window.EventSource)return;
var src=el.getAttribute('data-live');var es=new EventSource(src);
es.addEventListener('live',function(m){el.innerHTML=m.data;el.setAttribute('data-updated',Date.now());});})();
"#;

fn layout(title: &str, caller: Option<&Caller>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · glint" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "glint" }
                    a href="/" { "Overview" }
                    a href="/versions" { "Versions" }
                    a href="/events" { "Events" }
                    @if let Some(c) = caller {
                        span.who {
                            (c.name) " · " (c.role)
                            " "
                            form.inline method="post" action=(with_csrf("/ui/logout", c)) {
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

fn page(markup: Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

fn with_csrf(path: &str, c: &Caller) -> String {
    match &c.csrf {
        Some(v) => format!("{path}?csrf={v}"),
        None => path.to_owned(),
    }
}

/// The login form, answered with `status` (401 when a page needs a token).
pub fn login_page(status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { "Sign in" }
        p.mute { (message) }
        form method="post" action="/ui/login" {
            p { label { "API token " input type="password" name="token" autocomplete="off" size="40"; } }
            p { button type="submit" { "Sign in" } }
        }
        p.mute { "Create one with " code { "glint token create NAME --role viewer" } "." }
    };
    let mut r = page(layout("Sign in", None, body));
    *r.status_mut() = status;
    r
}

/// The page for a request whose token has too small a role.
pub fn refused_page(message: &str) -> Response {
    let mut r = page(layout(
        "Not allowed",
        None,
        html! { h1 { "Not allowed" } p.bad { (message) } p { a href="/" { "Back to the overview" } } },
    ));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

fn ago(now: i64, ms: i64) -> String {
    let s = (now - ms).max(0) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn severity_class(s: Severity) -> &'static str {
    match s {
        Severity::Info => "mute",
        Severity::Warning => "warn",
        Severity::Incident => "bad",
    }
}

fn events_table(now: i64, events: &[Event]) -> Markup {
    html! {
        div.scroll { table {
            tr { th { "when" } th { "kind" } th { "message" } }
            @for e in events.iter().rev() {
                tr {
                    td { (ago(now, e.at)) " ago" }
                    td class=(severity_class(e.severity)) { (e.kind) }
                    td.msg { (e.message) }
                }
            }
        } }
    }
}

fn rollback_button(c: &Caller, to: u64) -> Markup {
    html! {
        form.inline method="post" action=(with_csrf("/ui/rollback", c))
            onsubmit=(format!("return confirm('Roll the whole environment back to the content of version {to}? Instances are replaced with the same health gating as any apply.')")) {
            input type="hidden" name="to" value=(to);
            button.danger type="submit" data-rollback=(to) { "Roll back to " (to) }
        }
    }
}

/// The live part of the overview.
fn overview_live(st: &ApiState, caller: &Caller) -> Markup {
    let s = st.client.status();
    let now = st.now();
    let incidents = super::routes::incident_events(
        st,
        &EventsQuery {
            limit: Some(10),
            ..Default::default()
        },
    )
    .unwrap_or_default();
    let versions = st.store.list_versions().unwrap_or_default();
    let current = versions.last().map(|v| v.number.0);
    html! {
        p {
            "Version " strong #version { (s.version.map(|v| v.to_string()).unwrap_or_else(|| "none".into())) }
            " · "
            @if s.converged { span.ok { "converged" } } @else { span.warn { "converging" } }
            @if let Some(why) = &s.stuck { " · " span.bad { "stuck: " (why) } }
        }
        @for p in &s.problems { p.bad { (p) } }
        div.cards {
            @for svc in &s.services {
                div.card data-service=(svc.name) {
                    div { a href=(format!("/services/{}", svc.name)) { strong { (svc.name) } } }
                    @let cls = if svc.ready >= svc.desired && svc.desired > 0 { "ok" } else if svc.ready == 0 && svc.desired > 0 { "bad" } else { "warn" };
                    div.count class=(cls) data-health=(format!("{}/{}", svc.ready, svc.desired)) { (svc.ready) "/" (svc.desired) " healthy" }
                    @if let Some(r) = &svc.rollout {
                        div.warn {
                            "rolling out: " (r.stale) " to replace, " (r.available) " available"
                            @if let Some((step, of)) = r.step { ", canary step " (step) "/" (of) }
                        }
                        @if let Some(w) = &r.waiting { div.mute { "gate: " (w) } }
                    }
                    @if let Some(b) = &svc.backoff { div.bad { "launches held back: " (b) } }
                }
            }
            @if s.services.is_empty() { div.card.mute { "No services." } }
        }
        h2 { "Open incidents" }
        @if incidents.is_empty() { p.mute { "None." } } @else { (events_table(now, &incidents)) }
        h2 { "Recent versions" }
        div.scroll { table {
            tr { th { "version" } th { "kind" } th { "age" } th { "rollout" } th {} }
            @for v in versions.iter().rev().take(8) {
                tr data-version=(v.number.0) {
                    td { (v.number.0) @if Some(v.number.0) == current { " (current)" } }
                    td { (v.kind) }
                    td { (ago(now, v.created_at)) }
                    td {
                        @match v.outcome {
                            Some(glint_store::Outcome::Converged) => span.ok { "converged" },
                            Some(o) => span.bad { (o) },
                            None => span.warn { "in progress" },
                        }
                    }
                    td {
                        @if caller.role >= Role::Deployer && Some(v.number.0) != current {
                            (rollback_button(caller, v.number.0))
                        }
                    }
                }
            }
        } }
    }
}

fn service_live(st: &ApiState, service: &str) -> Markup {
    let s = st.client.status();
    let now = st.now();
    let svc = s.services.iter().find(|x| x.name.as_str() == service);
    html! {
        @match svc {
            None => p.mute { "No such service in the current version." },
            Some(svc) => {
                p.count data-health=(format!("{}/{}", svc.ready, svc.desired)) {
                    strong { (svc.ready) "/" (svc.desired) " healthy" }
                    " · " (svc.ready_current) " on the current version"
                }
                @if let Some(r) = &svc.rollout { p.warn { "rolling out: " (r.stale) " to replace" @if let Some(w) = &r.waiting { " — " (w) } } }
                div.scroll { table {
                    tr { th { "instance" } th { "age" } th { "health" } th { "version" } th { "address" } }
                    @for i in &svc.instances {
                        @let (_, health) = crate::metrics::state_and_health(i.phase);
                        tr data-instance=(i.id) {
                            td { code { (i.id) } }
                            td { (ago(now, i.created_at)) }
                            td class=(match i.phase { crate::decide::MemberPhase::Healthy => "ok", crate::decide::MemberPhase::Failed => "bad", _ => "warn" }) data-health-of=(health) { (i.phase) }
                            td { (i.version) @if !i.current { " (outdated)" } }
                            td { (i.addr.map(|a| a.to_string()).unwrap_or_default()) }
                        }
                    }
                } }
            }
        }
    }
}

/// The overview.
#[utoipa::path(get, path = "/", tag = "dashboard",
    security(("token" = ["viewer"])),
    responses((status = 200, description = "HTML"), (status = 401, description = "The login form")))]
async fn overview(State(st): St, Extension(caller): Extension<Caller>) -> Response {
    let body = html! {
        h1 { "Overview" }
        div #live data-live="/ui/live" { (overview_live(&st, &caller)) }
    };
    page(layout("Overview", Some(&caller), body))
}

/// A service: its instances and events.
#[utoipa::path(get, path = "/services/{service}", tag = "dashboard",
    security(("token" = ["viewer"])),
    params(("service" = String, Path, description = "The service")),
    responses((status = 200, description = "HTML")))]
async fn service_page(
    State(st): St,
    Extension(caller): Extension<Caller>,
    Path(service): Path<String>,
) -> Response {
    let now = st.now();
    let events = st
        .store
        .events(&glint_store::EventFilter {
            service: Some(service.clone()),
            limit: Some(30),
            ..Default::default()
        })
        .unwrap_or_default();
    let body = html! {
        h1 { "Service " (service) }
        div #live data-live=(format!("/ui/live?service={service}")) { (service_live(&st, &service)) }
        h2 { "Events" }
        (events_table(now, &events))
    };
    page(layout(&service, Some(&caller), body))
}

/// Which versions to compare.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionsQuery {
    /// The older version.
    pub from: Option<u64>,
    /// The newer version.
    pub to: Option<u64>,
}

/// Every version and the difference between two.
#[utoipa::path(get, path = "/versions", tag = "dashboard",
    security(("token" = ["viewer"])),
    params(VersionsQuery),
    responses((status = 200, description = "HTML")))]
async fn versions_page(
    State(st): St,
    Extension(caller): Extension<Caller>,
    Query(q): Query<VersionsQuery>,
) -> Response {
    let now = st.now();
    let versions = st.store.list_versions().unwrap_or_default();
    let current = versions.last().map(|v| v.number.0);
    let diff = match (q.from, q.to) {
        (Some(a), Some(b)) => {
            match (
                st.store.version(glint_model::VersionNumber(a)),
                st.store.version(glint_model::VersionNumber(b)),
            ) {
                (Ok(a), Ok(b)) => Some(Ok(super::diff::diff(&a, &b))),
                _ => Some(Err(format!("version {a} or {b} does not exist"))),
            }
        }
        _ => None,
    };
    let options = |selected: Option<u64>| {
        html! { @for v in versions.iter().rev() { option value=(v.number.0) selected[selected == Some(v.number.0)] { (v.number.0) } } }
    };
    let body = html! {
        h1 { "Versions" }
        div.scroll { table {
            tr { th { "version" } th { "kind" } th { "hash" } th { "age" } th { "rollout" } th {} }
            @for v in versions.iter().rev() {
                tr data-version=(v.number.0) {
                    td { (v.number.0) @if Some(v.number.0) == current { " (current)" } }
                    td { (v.kind) }
                    td { code { (v.hash.short()) } }
                    td { (ago(now, v.created_at)) }
                    td { (v.outcome.map(|o| o.to_string()).unwrap_or_else(|| "in progress".into())) " " span.mute { (v.outcome_detail.clone().unwrap_or_default()) } }
                    td { @if caller.role >= Role::Deployer && Some(v.number.0) != current { (rollback_button(&caller, v.number.0)) } }
                }
            }
        } }
        h2 { "Compare" }
        form method="get" action="/versions" {
            "from " select name="from" { (options(q.from)) }
            " to " select name="to" { (options(q.to.or(current))) }
            " " button type="submit" { "Show the difference" }
        }
        @match diff {
            None => {},
            Some(Err(e)) => p.bad { (e) },
            Some(Ok(d)) => {
                h2 { "Version " (d.from) " → " (d.to) }
                @if d.same_content { p.mute { "Same content." } }
                ul {
                    @for s in &d.plan.services {
                        li { strong { (s.name) } ": " (format!("{:?}", s.action).to_lowercase())
                            @for r in &s.reasons { " — " (r) } }
                    }
                    @for e in &d.plan.endpoints { li { "endpoint " strong { (e.name) } ": " (e.action.as_ref()) } }
                }
                @for f in &d.sources {
                    h2 { (f.path) " (" (f.status) ")" }
                    pre { @for l in &f.lines {
                        @if l.starts_with('+') { span.add { (l) } } @else if l.starts_with('-') { span.del { (l) } } @else { (l) }
                        "\n"
                    } }
                }
            }
        }
    };
    page(layout("Versions", Some(&caller), body))
}

/// The event log, filtered.
#[utoipa::path(get, path = "/events", tag = "dashboard",
    security(("token" = ["viewer"])),
    params(EventsQuery),
    responses((status = 200, description = "HTML")))]
async fn events_page(
    State(st): St,
    Extension(caller): Extension<Caller>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let now = st.now();
    let min = q.min_severity();
    let events: Vec<Event> = st
        .store
        .events(&q.filter())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.severity >= min)
        .collect();
    let body = html! {
        h1 { "Events" }
        form method="get" action="/events" {
            "service " input name="service" value=(q.service.clone().unwrap_or_default()) size="10";
            " kind " input name="kind" value=(q.kind.clone().unwrap_or_default()) size="16" placeholder="instance.exited";
            " severity " select name="severity" {
                @for s in ["info", "warning", "incident"] { option value=(s) selected[q.severity.as_deref() == Some(s)] { (s) } }
            }
            " " button type="submit" { "Filter" }
        }
        (events_table(now, &events))
    };
    page(layout("Events", Some(&caller), body))
}

/// Which live fragment.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// A service page's fragment; the overview's without.
    pub service: Option<String>,
}

/// The live fragments of a page, as server-sent events.
#[utoipa::path(get, path = "/ui/live", tag = "dashboard",
    security(("token" = ["viewer"])),
    params(LiveQuery),
    responses((status = 200, description = "`text/event-stream` of HTML fragments")))]
async fn live(
    State(st): St,
    Extension(caller): Extension<Caller>,
    Query(q): Query<LiveQuery>,
) -> Response {
    super::stream::live(st, move |st| match &q.service {
        Some(s) => service_live(st, s).into_string(),
        None => overview_live(st, &caller).into_string(),
    })
    .into_response()
}

/// The rollback form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RollbackForm {
    /// The version to return to.
    pub to: Option<u64>,
}

/// Rolls back (from the dashboard's button), then shows the overview.
#[utoipa::path(post, path = "/ui/rollback", tag = "dashboard",
    security(("token" = ["deployer"])),
    request_body(content = RollbackForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "To the overview")))]
async fn rollback(State(st): St, Form(f): Form<RollbackForm>) -> Response {
    match crate::ops::rollback(
        st.store.as_ref(),
        st.images.as_ref(),
        f.to.map(glint_model::VersionNumber),
    ) {
        Ok(a) => {
            st.client.poke();
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            r.extensions_mut().insert(AuditNote(format!(
                "recorded version {} ({})",
                a.version.number, a.version.kind
            )));
            r
        }
        Err(e) => {
            let mut r = page(layout(
                "Rollback refused",
                None,
                html! { h1 { "Rollback refused" } p.bad { (crate::error_chain(&e)) } p { a href="/" { "Back" } } },
            ));
            *r.status_mut() = crate::api::http_status(e.kind);
            r.extensions_mut()
                .insert(AuditNote(format!("failed: {}", e.message)));
            r
        }
    }
}

/// The login form's fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    /// The token.
    pub token: String,
}

/// Signs in: a valid token becomes the session cookie.
#[utoipa::path(post, path = "/ui/login", tag = "dashboard",
    security(()),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in"), (status = 401, description = "Not a valid token")))]
async fn login(
    State(st): St,
    peer: Option<Extension<super::Peer>>,
    tls: Option<Extension<super::OverTls>>,
    Form(f): Form<LoginForm>,
) -> Response {
    let secure = if tls.is_some() { "; Secure" } else { "" };
    let now = st.now();
    let peer = match peer.map(|p| p.0) {
        Some(super::Peer::Tcp(a)) => a.ip().to_string(),
        Some(super::Peer::Unix) => "unix-socket".into(),
        None => "unknown".into(),
    };
    if st.limiter.blocked(&peer, now).is_some() {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts from here; wait a minute",
        );
    }
    let token = f.token.trim();
    let env = st.environment();
    match super::auth::verify(st.store.as_ref(), token, now, env.as_deref()) {
        Ok(_) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_owned()),
                (
                    header::SET_COOKIE,
                    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}"),
                ),
            ],
        )
            .into_response(),
        Err(refusal) => {
            st.limiter.failed(&peer, now);
            st.events.emit(crate::events::ConductorEvent::AuthFailed {
                peer,
                action: "POST /ui/login".into(),
                reason: refusal.to_string(),
            });
            login_page(StatusCode::UNAUTHORIZED, &refusal.to_string())
        }
    }
}

/// Signs out (forgets the cookie).
#[utoipa::path(post, path = "/ui/logout", tag = "dashboard",
    security(("token" = ["viewer"])),
    responses((status = 303, description = "Signed out")))]
async fn logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}
