//! The JSON routes (`/v1/…`, `/metrics`). Each handler's `#[utoipa::path]`
//! is its documentation *and* its role (see the [module above](super)).
//!
//! Variables and secrets routes are not here yet: they arrive with the
//! registry (variables with readers and writers, write-only secrets).

use super::{ApiState, AuditNote, error};
use crate::ops::{Applied, ApplyOptions, OpError};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use glint_model::{Digest, Environment, InstanceId, Name, VersionNumber};
use glint_store::{EventFilter, NewVersion, Role, Severity, SourceFile, VersionKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type St = State<Arc<ApiState>>;

/// Registers every JSON route.
pub fn register(r: OpenApiRouter<Arc<ApiState>>) -> OpenApiRouter<Arc<ApiState>> {
    r.routes(routes!(status))
        .routes(routes!(ping))
        .routes(routes!(history))
        .routes(routes!(version))
        .routes(routes!(diff))
        .routes(routes!(events))
        .routes(routes!(events_stream))
        .routes(routes!(incidents))
        .routes(routes!(logs))
        .routes(routes!(logs_stream))
        .routes(routes!(images))
        .routes(routes!(openapi))
        .routes(routes!(metrics))
        .routes(routes!(plan))
        .routes(routes!(apply))
        .routes(routes!(rollback))
        .routes(routes!(rollback_plan))
        .routes(routes!(down))
        .routes(routes!(reconcile))
        .routes(routes!(tokens, create_token))
        .routes(routes!(revoke_token))
}

/// JSON bytes with the right content type.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (status, [(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("cannot encode the answer: {e}"),
        ),
    }
}

/// An operation's failure as a response (its status from
/// [`crate::api::http_status`]).
pub fn op_error(e: &OpError) -> Response {
    let status = crate::api::http_status(e.kind);
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut r = error(status, &kind, &crate::error_chain(e));
    r.extensions_mut()
        .insert(AuditNote(format!("failed: {}", e.message)));
    r
}

fn store_error(e: &glint_store::StoreError) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &crate::error_chain(e),
    )
}

/// The live status of the conductor: per service desired and healthy
/// counts, instances, rollouts, endpoints, reconcilers and problems.
#[utoipa::path(get, path = "/v1/status", tag = "status",
    security(("token" = ["viewer"])),
    responses((status = 200, description = "The live status (the same as `glint status -o json` reports under `conductor`)")))]
async fn status(State(st): St) -> Response {
    match st.status_json() {
        Ok(b) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            b,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("cannot encode the status: {e}"),
        ),
    }
}

/// Liveness.
#[utoipa::path(get, path = "/v1/ping", tag = "status",
    security(("token" = ["viewer"])),
    responses((status = 200, description = "`ok`")))]
async fn ping() -> &'static str {
    "ok"
}

/// The versions, oldest first.
#[utoipa::path(get, path = "/v1/history", tag = "versions",
    security(("token" = ["viewer"])),
    responses((status = 200, description = "`{\"versions\": [...]}`")))]
async fn history(State(st): St) -> Response {
    match crate::ops::history(st.store.as_ref()) {
        Ok(v) => json(StatusCode::OK, &serde_json::json!({ "versions": v })),
        Err(e) => op_error(&e),
    }
}

/// One version: its environment, images, kind and outcome (sources are in
/// the diff).
#[utoipa::path(get, path = "/v1/versions/{number}", tag = "versions",
    security(("token" = ["viewer"])),
    params(("number" = u64, Path, description = "The version number")),
    responses((status = 200, description = "The version"), (status = 404, description = "No such version")))]
async fn version(State(st): St, Path(number): Path<u64>) -> Response {
    match st.store.version(VersionNumber(number)) {
        Ok(v) => json(
            StatusCode::OK,
            &serde_json::json!({
                "number": v.number,
                "hash": v.hash,
                "kind": v.kind,
                "environment": v.env,
                "images": v.images,
                "outcome": v.outcome,
                "outcome_detail": v.outcome_detail,
                "sources": v.sources.iter().map(|s| &s.path).collect::<Vec<_>>(),
            }),
        ),
        Err(glint_store::StoreError::NoSuchVersion(n)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("version {n} does not exist (see /v1/history)"),
        ),
        Err(e) => store_error(&e),
    }
}

/// Which two versions to compare.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version.
    pub from: u64,
    /// The newer version.
    pub to: u64,
}

/// The difference between two versions: the plan from one to the other
/// (creations, replacements with their reasons, retirements) and a line
/// diff of every source file that changed.
#[utoipa::path(get, path = "/v1/diff", tag = "versions",
    security(("token" = ["viewer"])),
    params(DiffQuery),
    responses((status = 200, description = "The difference"), (status = 404, description = "No such version")))]
async fn diff(State(st): St, Query(q): Query<DiffQuery>) -> Response {
    let load = |n: u64| st.store.version(VersionNumber(n));
    match (load(q.from), load(q.to)) {
        (Ok(a), Ok(b)) => json(StatusCode::OK, &super::diff::diff(&a, &b)),
        (Err(glint_store::StoreError::NoSuchVersion(n)), _)
        | (_, Err(glint_store::StoreError::NoSuchVersion(n))) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("version {n} does not exist (see /v1/history)"),
        ),
        (Err(e), _) | (_, Err(e)) => store_error(&e),
    }
}

/// Which events.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this service's.
    pub service: Option<String>,
    /// Only this instance's.
    pub instance: Option<String>,
    /// Only this kind (`instance.exited`, `audit`, …).
    pub kind: Option<String>,
    /// Only this severity or worse (`info`, `warning`, `incident`).
    pub severity: Option<String>,
    /// Only events after this sequence number.
    pub after: Option<i64>,
    /// At most this many, the newest (default 100, at most 1000).
    pub limit: Option<usize>,
}

impl EventsQuery {
    /// As a store filter.
    pub fn filter(&self) -> EventFilter {
        EventFilter {
            after: self.after,
            service: self.service.clone(),
            instance: self.instance.clone(),
            kind: self.kind.clone(),
            limit: Some(self.limit.unwrap_or(100).clamp(1, 1000)),
        }
    }

    /// The smallest severity asked for.
    pub fn min_severity(&self) -> Severity {
        match self.severity.as_deref() {
            Some("warning") => Severity::Warning,
            Some("incident") => Severity::Incident,
            _ => Severity::Info,
        }
    }
}

/// The event log, oldest first.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    security(("token" = ["viewer"])),
    params(EventsQuery),
    responses((status = 200, description = "`{\"events\": [...]}`")))]
async fn events(State(st): St, Query(q): Query<EventsQuery>) -> Response {
    let min = q.min_severity();
    match st.store.events(&q.filter()) {
        Ok(evs) => {
            let evs: Vec<_> = evs.into_iter().filter(|e| e.severity >= min).collect();
            json(StatusCode::OK, &serde_json::json!({ "events": evs }))
        }
        Err(e) => store_error(&e),
    }
}

/// The event log as it grows: server-sent events, one `event` message per
/// log event (`id` is its sequence number; reconnect with `Last-Event-ID`
/// or `after`).
#[utoipa::path(get, path = "/v1/events/stream", tag = "events",
    security(("token" = ["viewer"])),
    params(EventsQuery),
    responses((status = 200, description = "`text/event-stream`")))]
async fn events_stream(
    State(st): St,
    Query(q): Query<EventsQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    super::stream::events(st, q, last).into_response()
}

/// Open incidents: the events of severity `incident`, newest last. (First-
/// class incidents with a lifecycle arrive with the network work.)
#[utoipa::path(get, path = "/v1/incidents", tag = "events",
    security(("token" = ["viewer"])),
    params(EventsQuery),
    responses((status = 200, description = "`{\"incidents\": [...]}`")))]
async fn incidents(State(st): St, Query(q): Query<EventsQuery>) -> Response {
    match incident_events(&st, &q) {
        Ok(evs) => json(StatusCode::OK, &serde_json::json!({ "incidents": evs })),
        Err(e) => store_error(&e),
    }
}

/// The newest events of severity `incident` (looking back over the last
/// 5,000 events).
pub fn incident_events(
    st: &ApiState,
    q: &EventsQuery,
) -> Result<Vec<glint_store::Event>, glint_store::StoreError> {
    let mut f = q.filter();
    let want = f.limit.unwrap_or(100);
    f.limit = Some(5_000);
    let mut evs: Vec<_> = st
        .store
        .events(&f)?
        .into_iter()
        .filter(|e| e.severity == Severity::Incident)
        .collect();
    let skip = evs.len().saturating_sub(want);
    Ok(evs.split_off(skip))
}

/// Which output.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only this instance (default: the live ones, else the newest).
    pub instance: Option<String>,
    /// Only the last N lines of each file.
    pub tail: Option<usize>,
}

/// One instance's output.
#[derive(Debug, Serialize)]
pub struct InstanceLogs {
    /// The instance.
    pub id: String,
    /// Whether it is a running container whose output is still with the
    /// engine (nothing to read here yet).
    pub in_engine: bool,
    /// Its standard output.
    pub stdout: Vec<String>,
    /// Its standard error.
    pub stderr: Vec<String>,
}

/// A service's output (its live instances', or its newest instance's).
#[utoipa::path(get, path = "/v1/services/{service}/logs", tag = "logs",
    security(("token" = ["viewer"])),
    params(("service" = String, Path, description = "The service"), LogsQuery),
    responses((status = 200, description = "`{\"instances\": [{id, stdout, stderr}]}`"), (status = 404, description = "No such service or instance")))]
async fn logs(State(st): St, Path(service): Path<String>, Query(q): Query<LogsQuery>) -> Response {
    let store = st.store.as_ref();
    let ids: Vec<glint_store::InstanceRecord> = match &q.instance {
        Some(i) => {
            let rec = InstanceId::parse(i.as_str())
                .ok()
                .filter(|id| id.service() == service)
                .and_then(|id| store.instance(&id).ok().flatten());
            match rec {
                Some(r) => vec![r],
                None => {
                    return error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        &format!("service {service} has no instance {i}"),
                    );
                }
            }
        }
        None => {
            let live = match store.live_instances() {
                Ok(l) => l,
                Err(e) => return store_error(&e),
            };
            let mine: Vec<_> = live
                .into_iter()
                .filter(|r| r.service.as_str() == service)
                .collect();
            if mine.is_empty() {
                match store.instances_of(&service, 1) {
                    Ok(v) => v,
                    Err(e) => return store_error(&e),
                }
            } else {
                mine
            }
        }
    };
    if ids.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("service {service} has no instances"),
        );
    }
    let mut out = Vec::new();
    for rec in &ids {
        let files = crate::logs::log_files(&st.data_dir, rec);
        let read = |p: &std::path::Path| {
            crate::logs::read_lines(p, q.tail)
                .ok()
                .flatten()
                .map(|(l, _)| l)
                .unwrap_or_default()
        };
        out.push(InstanceLogs {
            id: rec.id.to_string(),
            in_engine: files.in_engine,
            stdout: read(&files.stdout),
            stderr: read(&files.stderr),
        });
    }
    json(StatusCode::OK, &serde_json::json!({ "instances": out }))
}

/// A service's output as it is written, as server-sent events (`line`
/// messages: `{instance, stream, line}`), including instances launched
/// later; it starts after what exists now (read that with the logs route).
#[utoipa::path(get, path = "/v1/services/{service}/logs/stream", tag = "logs",
    security(("token" = ["viewer"])),
    params(("service" = String, Path, description = "The service"), LogsQuery),
    responses((status = 200, description = "`text/event-stream`")))]
async fn logs_stream(
    State(st): St,
    Path(service): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Response {
    super::stream::logs(st, service, q.instance).into_response()
}

/// The images in the conductor's image store.
#[utoipa::path(get, path = "/v1/images", tag = "images",
    security(("token" = ["viewer"])),
    responses((status = 200, description = "The same JSON as `glint images -o json`")))]
async fn images(State(st): St) -> Response {
    match &st.catalog {
        Some(c) => match c.list() {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e),
        },
        None => json(StatusCode::OK, &serde_json::json!({ "images": [] })),
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "status",
    security(("token" = ["viewer"])),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API")))]
async fn openapi(State(st): St) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        st.openapi_json().to_owned(),
    )
        .into_response()
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "status",
    security(("token" = ["viewer"])),
    responses((status = 200, description = "Prometheus text exposition format 0.0.4")))]
async fn metrics(State(st): St) -> Response {
    let status = st.client.status();
    let body = st.client.metrics().render(&status, st.store.as_ref());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A compiled environment with its images built: what `glint apply` sends
/// (the CLI compiles and builds; the images must be in the conductor's
/// image store).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Candidate {
    /// The compiled environment (canonical IR).
    #[schema(value_type = Object)]
    pub env: Environment,
    /// The digest of every image, by image name.
    #[schema(value_type = Object)]
    pub images: BTreeMap<Name, Digest>,
    /// Where the sources came from (for the record).
    pub root: String,
    /// The sources.
    #[schema(value_type = Vec<Object>)]
    pub sources: Vec<SourceFile>,
}

impl Candidate {
    /// As a version to record.
    pub fn into_version(self) -> NewVersion {
        NewVersion {
            env: self.env,
            images: self.images,
            root: self.root.into(),
            sources: self.sources,
            kind: VersionKind::Apply,
        }
    }
}

/// `POST /v1/apply`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ApplyRequest {
    /// What to record.
    pub version: Candidate,
    /// Allow a version that retires every running service.
    #[serde(default)]
    pub allow_retire_all: bool,
    /// Allow a version of another environment.
    #[serde(default)]
    pub replace_environment: bool,
}

/// A recorded (or unchanged) version, as answered.
#[derive(Debug, Serialize, Deserialize)]
pub struct AppliedReport {
    /// The version.
    pub version: u64,
    /// Whether it is new.
    pub new: bool,
    /// How it came to be.
    pub kind: VersionKind,
    /// Earlier versions it superseded.
    pub superseded: Vec<u64>,
}

impl AppliedReport {
    fn of(a: &Applied) -> AppliedReport {
        AppliedReport {
            version: a.version.number.0,
            new: a.new,
            kind: a.version.kind,
            superseded: a.superseded.iter().map(|v| v.0).collect(),
        }
    }
}

fn bad_body(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid",
        &format!("the request body is not what this route expects: {e}"),
    )
}

/// A token bound to an environment may only act on that environment.
fn environment_allowed(st: &ApiState, caller: &super::auth::Caller, env: &str) -> Option<Response> {
    if caller.accessor == super::auth::SOCKET_ACCESSOR {
        return None;
    }
    let rec = st.store.token_with_hash(&caller.accessor).ok().flatten()?.0;
    let wanted = rec.environment?;
    (wanted != env).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "token {} is for environment {wanted}, and the version declares environment {env}",
                caller.accessor
            ),
        )
    })
}

fn images_present(st: &ApiState, v: &NewVersion) -> Option<Response> {
    for (name, digest) in &v.images {
        if let Err(e) = st.images.verify(digest) {
            return Some(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "failed",
                &format!(
                    "image {name} ({digest}) is not usable in the conductor's image store ({}): build or import it there first (`glint image import`); nothing was changed",
                    e.message
                ),
            ));
        }
    }
    None
}

/// What applying a version would create, replace and retire, and why.
#[utoipa::path(post, path = "/v1/plan", tag = "versions",
    security(("token" = ["deployer"])),
    request_body = Candidate,
    responses((status = 200, description = "The plan, as `glint plan -o json` prints it")))]
async fn plan(State(st): St, body: Bytes) -> Response {
    let c: Candidate = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_body(e),
    };
    let v = c.into_version();
    match crate::ops::plan(st.store.as_ref(), &v) {
        Ok(p) => {
            let mut r = json(StatusCode::OK, &p);
            r.extensions_mut()
                .insert(AuditNote("planned (nothing changed)".into()));
            r
        }
        Err(e) => op_error(&e),
    }
}

/// Records a new version (unless it equals the newest); the conductor
/// converges to it.
#[utoipa::path(post, path = "/v1/apply", tag = "versions",
    security(("token" = ["deployer"])),
    request_body = ApplyRequest,
    responses((status = 200, description = "`{version, new, kind, superseded}`"), (status = 409, description = "Refused without a flag")))]
async fn apply(
    State(st): St,
    Extension(caller): Extension<super::auth::Caller>,
    body: Bytes,
) -> Response {
    let req: ApplyRequest = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_body(e),
    };
    let options = ApplyOptions {
        allow_retire_all: req.allow_retire_all,
        allow_other_environment: req.replace_environment,
    };
    let v = req.version.into_version();
    if let Some(r) = environment_allowed(&st, &caller, v.env.name.as_str()) {
        return r;
    }
    if let Some(r) = images_present(&st, &v) {
        return r;
    }
    applied(&st, crate::ops::apply(st.store.as_ref(), v, options))
}

fn applied(st: &ApiState, r: Result<Applied, OpError>) -> Response {
    match r {
        Ok(a) => {
            if a.new {
                st.client.poke();
            }
            let note = if a.new {
                format!("recorded version {} ({})", a.version.number, a.version.kind)
            } else {
                format!("no changes (version {})", a.version.number)
            };
            let mut r = json(StatusCode::OK, &AppliedReport::of(&a));
            r.extensions_mut().insert(AuditNote(note));
            r
        }
        Err(e) => op_error(&e),
    }
}

/// `POST /v1/rollback`.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RollbackRequest {
    /// The version to return to (default: the last good one).
    pub to: Option<u64>,
}

/// Records a new version with an earlier version's content.
#[utoipa::path(post, path = "/v1/rollback", tag = "versions",
    security(("token" = ["deployer"])),
    request_body = RollbackRequest,
    responses((status = 200, description = "`{version, new, kind, superseded}`"), (status = 404, description = "No such version"), (status = 422, description = "Nothing to roll back to")))]
async fn rollback(State(st): St, body: Bytes) -> Response {
    let req: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad_body(e),
        }
    };
    applied(
        &st,
        crate::ops::rollback(
            st.store.as_ref(),
            st.images.as_ref(),
            req.to.map(VersionNumber),
        ),
    )
}

/// What a rollback would do, without doing it: the version it restores
/// and the plan.
#[utoipa::path(post, path = "/v1/rollback/plan", tag = "versions",
    security(("token" = ["deployer"])),
    request_body = RollbackRequest,
    responses((status = 200, description = "`{restores, plan}`"), (status = 404, description = "No such version")))]
async fn rollback_plan(State(st): St, body: Bytes) -> Response {
    let req: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad_body(e),
        }
    };
    let candidate = match crate::ops::rollback_candidate(
        st.store.as_ref(),
        st.images.as_ref(),
        req.to.map(VersionNumber),
    ) {
        Ok(c) => c,
        Err(e) => return op_error(&e),
    };
    let restores = match candidate.kind {
        VersionKind::Rollback(n) => Some(n.0),
        _ => None,
    };
    match crate::ops::plan(st.store.as_ref(), &candidate) {
        Ok(p) => {
            let mut r = json(
                StatusCode::OK,
                &serde_json::json!({ "restores": restores, "plan": p }),
            );
            r.extensions_mut()
                .insert(AuditNote("planned a rollback (nothing changed)".into()));
            r
        }
        Err(e) => op_error(&e),
    }
}

/// Brings the environment down: records a version without services and
/// endpoints; every instance is drained and stopped, volumes and history
/// are kept.
#[utoipa::path(post, path = "/v1/down", tag = "versions",
    security(("token" = ["deployer"])),
    responses((status = 200, description = "`{version, new, kind, superseded}`")))]
async fn down(State(st): St) -> Response {
    applied(&st, crate::down::down(st.store.as_ref()))
}

/// Asks the conductor for a pass now.
#[utoipa::path(post, path = "/v1/reconcile", tag = "status",
    security(("token" = ["deployer"])),
    responses((status = 202, description = "A pass was asked for")))]
async fn reconcile(State(st): St) -> Response {
    st.client.poke();
    let mut r = json(StatusCode::ACCEPTED, &serde_json::json!({}));
    r.extensions_mut()
        .insert(AuditNote("asked for a pass".into()));
    r
}

/// The API tokens (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    security(("token" = ["admin"])),
    responses((status = 200, description = "`{\"tokens\": [...]}`")))]
async fn tokens(State(st): St) -> Response {
    match st.store.tokens() {
        Ok(t) => json(StatusCode::OK, &serde_json::json!({ "tokens": t })),
        Err(e) => store_error(&e),
    }
}

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CreateToken {
    /// A name for people.
    pub name: String,
    /// `viewer`, `deployer` or `admin`.
    #[schema(value_type = String)]
    pub role: Role,
    /// Only valid for this environment.
    pub environment: Option<String>,
    /// Valid for this many seconds (default: until revoked).
    pub ttl_s: Option<u64>,
}

/// Creates a token. The answer holds its secret, shown this once.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    security(("token" = ["admin"])),
    request_body = CreateToken,
    responses((status = 201, description = "`{token, record}`: keep the token, it is not shown again"), (status = 409, description = "The name is taken")))]
async fn create_token(
    State(st): St,
    Extension(caller): Extension<super::auth::Caller>,
    body: Bytes,
) -> Response {
    let req: CreateToken = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_body(e),
    };
    let expires_at = req.ttl_s.map(|s| {
        st.now()
            .saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
    });
    match super::auth::issue(
        st.store.as_ref(),
        &req.name,
        req.role,
        req.environment,
        expires_at,
    ) {
        Ok(issued) => {
            st.events.emit(crate::events::ConductorEvent::TokenCreated {
                accessor: issued.record.accessor.clone(),
                name: issued.record.name.clone(),
                role: issued.record.role,
                by: caller.accessor.clone(),
            });
            let note = format!(
                "created token {} ({})",
                issued.record.name, issued.record.accessor
            );
            let mut r = json(
                StatusCode::CREATED,
                &serde_json::json!({ "token": issued.token, "record": issued.record }),
            );
            r.extensions_mut().insert(AuditNote(note));
            r
        }
        Err(e @ super::auth::IssueError::NameTaken(_)) => {
            error(StatusCode::CONFLICT, "conflict", &e.to_string())
        }
        Err(e @ super::auth::IssueError::BadName(_)) => {
            error(StatusCode::BAD_REQUEST, "invalid", &e.to_string())
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &crate::error_chain(&e),
        ),
    }
}

/// Revokes a token, by accessor or name.
#[utoipa::path(delete, path = "/v1/tokens/{token}", tag = "tokens",
    security(("token" = ["admin"])),
    params(("token" = String, Path, description = "The token's accessor or name")),
    responses((status = 200, description = "The revoked token's record"), (status = 404, description = "No such live token")))]
async fn revoke_token(
    State(st): St,
    Extension(caller): Extension<super::auth::Caller>,
    Path(token): Path<String>,
) -> Response {
    match st.store.revoke_token(&token) {
        Ok(Some(rec)) => {
            st.events.emit(crate::events::ConductorEvent::TokenRevoked {
                accessor: rec.accessor.clone(),
                name: rec.name.clone(),
                by: caller.accessor.clone(),
            });
            let note = format!("revoked token {} ({})", rec.name, rec.accessor);
            let mut r = json(StatusCode::OK, &rec);
            r.extensions_mut().insert(AuditNote(note));
            r
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no live token has the accessor or name `{token}` (see `glint token list`)"),
        ),
        Err(e) => store_error(&e),
    }
}
