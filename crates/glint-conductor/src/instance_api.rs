//! The instance API: what an instance may ask Glint for, over a unix socket
//! apart from the operator API (`<data>/instance-api/instance.sock`, bound
//! into instances at `/run/glint-api` and reached as
//! `/run/glint/glint.sock`; `GLINT_API_SOCKET` names it).
//!
//! Every request carries the caller's identity token
//! (`Authorization: Bearer TOKEN` or `X-Glint-Identity: TOKEN`, the
//! contents of `/run/glint/identity`). A request is answered only when, in
//! this order: the token was issued by this conductor and has not expired
//! ([`crate::identity`]); the instance it names is live in the store
//! (launching or running — not retiring, not gone); and the peer process
//! (`SO_PEERCRED`) carries that instance's label (`GLINT_INSTANCE_ID` in
//! its environment: a process Glint started for it, or one of its
//! children). Then the variable's declaration, in the current version,
//! decides:
//!
//! - `GET /v1/variables/NAME` — its readers (and writers) only: the value
//!   and its version index (`{"name","value","index","source"}`; also the
//!   `X-Glint-Index` header). A literal's index is 0; a runtime variable's
//!   is 0 until first written (its declared initial value, or `null`).
//!   `?index=N&wait=30s` blocks until the index passes `N` or the wait
//!   (at most 5 minutes) ends, then answers the same way.
//! - `PUT /v1/variables/NAME?cas=INDEX` — runtime variables, their writers
//!   only; the body (UTF-8, at most 64 KiB: 413) becomes the value if the
//!   index is still `INDEX` (409 otherwise, with the current index).
//!   Without `cas` the write is unconditional.
//!
//! 403 (with who may) for a caller the declaration does not name, 401 for
//! no valid identity, 404 for a variable no version declares. Every write
//! is a `variable.written` event and every refusal a `variable.refused`
//! incident. Secret variables are files (`/run/secrets/NAME`), never
//! answered here.

use crate::events::ConductorEvent;
use crate::identity::{Claims, Issuer};
use crate::sink::EventSink;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use glint_model::{Environment, Name, VariableValue, VersionNumber};
use glint_store::prelude::*;
use glint_store::{Clock, InstanceState};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tower::ServiceExt;

/// The socket's directory under the data directory (bound into instances).
pub const SOCKET_DIR: &str = "instance-api";
/// The socket's name in [`SOCKET_DIR`].
pub const SOCKET: &str = "instance.sock";
/// The longest a blocking query waits.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The instance API socket of data directory `dir`.
pub fn socket_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(SOCKET_DIR).join(SOCKET)
}

/// Binds the instance API socket of data directory `dir`: its directory
/// 0711 (instances reach the socket through a bind, never by listing), the
/// socket 0666 (the token, not the file mode, is the credential). A
/// leftover socket is replaced: the caller holds the conductor lock.
pub fn bind(dir: &std::path::Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let sock_dir = dir.join(SOCKET_DIR);
    match std::fs::DirBuilder::new().mode(0o711).create(&sock_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o711))?;
    let path = sock_dir.join(SOCKET);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// What the routes share.
#[derive(Clone)]
struct Api {
    store: Arc<dyn Store>,
    issuer: Arc<Issuer>,
    events: EventSink,
    clock: Arc<dyn Clock>,
    /// Moved by every write, to wake blocking queries.
    written: watch::Sender<u64>,
    /// The current version's environment, kept while it is current.
    target: Arc<Mutex<Cached>>,
}

/// The current version's number and environment, once read.
type Cached = Option<(VersionNumber, Arc<Environment>)>;

/// A response that ends a request early (boxed: responses are large).
type Early = Box<Response>;

/// The peer process of a connection (`SO_PEERCRED`), when known.
#[derive(Debug, Clone, Copy)]
struct PeerPid(Option<i32>);

/// Serves the instance API on `listener` until the task is aborted.
pub fn serve(
    listener: std::os::unix::net::UnixListener,
    store: Arc<dyn Store>,
    issuer: Arc<Issuer>,
    events: EventSink,
    clock: Arc<dyn Clock>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let api = Api {
        store,
        issuer,
        events,
        clock,
        written: watch::channel(0).0,
        target: Arc::new(Mutex::new(None)),
    };
    let app: Router = Router::new()
        .route("/v1/variables/{name}", get(read).put(write))
        .fallback(|| async {
            refusal(
                StatusCode::NOT_FOUND,
                "no such route: the instance API has `GET` and `PUT /v1/variables/NAME`".into(),
                None,
            )
        })
        .with_state(api);
    Ok(tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: not a tight loop.
                    tracing::warn!("instance API: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let pid = stream.peer_cred().ok().and_then(|c| c.pid());
            let app = app.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut req = req.map(Body::new);
                        req.extensions_mut().insert(PeerPid(pid));
                        app.clone().oneshot(req)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    }))
}

fn refusal(status: StatusCode, error: String, allowed: Option<(&str, Vec<String>)>) -> Response {
    let mut body = serde_json::json!({ "error": error });
    if let Some((key, names)) = allowed {
        body[key] = serde_json::json!(names);
    }
    (status, axum::Json(body)).into_response()
}

/// A refused request: the response, and the incident recorded.
struct Refused(Early);

impl Refused {
    fn into_inner(self) -> Response {
        *self.0
    }
}

impl Api {
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn refuse(
        &self,
        status: StatusCode,
        name: Option<&str>,
        access: &'static str,
        by: Option<&Claims>,
        reason: String,
        allowed: Option<(&str, Vec<String>)>,
    ) -> Refused {
        self.events.emit(ConductorEvent::VariableRefused {
            name: name.map(str::to_owned),
            access,
            by: by.map(|c| c.instance.clone()),
            reason: reason.clone(),
        });
        Refused(Box::new(refusal(status, reason, allowed)))
    }

    /// The caller, if its identity holds (see the module documentation).
    fn caller(
        &self,
        headers: &HeaderMap,
        peer: PeerPid,
        name: &str,
        access: &'static str,
    ) -> Result<Claims, Refused> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| {
                headers
                    .get("x-glint-identity")
                    .and_then(|v| v.to_str().ok())
            });
        let Some(token) = token else {
            return Err(self.refuse(
                StatusCode::UNAUTHORIZED,
                Some(name),
                access,
                None,
                "no identity: send the contents of the file GLINT_IDENTITY_FILE names (/run/glint/identity) as `Authorization: Bearer TOKEN`".into(),
                None,
            ));
        };
        let claims = self.issuer.verify(token, self.now()).map_err(|e| {
            self.refuse(
                StatusCode::UNAUTHORIZED,
                Some(name),
                access,
                None,
                e.to_string(),
                None,
            )
        })?;
        let live = match self.store.instance(&claims.instance) {
            Ok(r) => r,
            Err(e) => {
                return Err(Refused(Box::new(refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the store cannot be read: {}", crate::error_chain(&e)),
                    None,
                ))));
            }
        };
        match live.map(|r| r.state) {
            Some(InstanceState::Launching | InstanceState::Running) => {}
            state => {
                let what = match state {
                    Some(InstanceState::Retiring) => "is retiring",
                    Some(_) => "is gone",
                    None => "is not known to this conductor",
                };
                let reason = format!(
                    "instance {} {what}: the identity of an instance that is no longer live opens nothing",
                    claims.instance
                );
                return Err(self.refuse(
                    StatusCode::FORBIDDEN,
                    Some(name),
                    access,
                    Some(&claims),
                    reason,
                    None,
                ));
            }
        }
        if let Err(reason) = peer_check(peer, &claims) {
            return Err(self.refuse(
                StatusCode::FORBIDDEN,
                Some(name),
                access,
                Some(&claims),
                reason,
                None,
            ));
        }
        Ok(claims)
    }

    /// The current version's environment.
    fn target(&self) -> Result<Option<Arc<Environment>>, Early> {
        let unavailable = |e: glint_store::StoreError| {
            Box::new(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store cannot be read: {}", crate::error_chain(&e)),
                None,
            ))
        };
        let Some(number) = self.store.latest_version_number().map_err(unavailable)? else {
            return Ok(None);
        };
        let mut cached = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, env)) = cached.as_ref()
            && *n == number
        {
            return Ok(Some(env.clone()));
        }
        let env = Arc::new(self.store.version(number).map_err(unavailable)?.env);
        *cached = Some((number, env.clone()));
        Ok(Some(env))
    }
}

/// The peer must carry the token's instance label: a process Glint
/// started for that instance, or one of its children. Unknown peers (no
/// `SO_PEERCRED`, a `/proc` that cannot be read for lack of permission)
/// are let through on the token alone.
fn peer_check(peer: PeerPid, claims: &Claims) -> Result<(), String> {
    let Some(pid) = peer.0 else {
        return Ok(());
    };
    let environ = match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(()),
        Err(e) => {
            return Err(format!(
                "the calling process {pid} cannot be inspected: {e}"
            ));
        }
    };
    let key = format!("{}=", glint_provider::process::env_keys::INSTANCE);
    let label = environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(key.as_bytes()));
    match label {
        Some(id) if id == claims.instance.as_str().as_bytes() => Ok(()),
        Some(other) => Err(format!(
            "the calling process {pid} belongs to instance {}, not to {} whose identity it sent",
            String::from_utf8_lossy(other),
            claims.instance
        )),
        None => Err(format!(
            "the calling process {pid} was not started by Glint for instance {} (it has no {} label); only the instance's own processes may use its identity",
            claims.instance,
            glint_provider::process::env_keys::INSTANCE
        )),
    }
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    index: Option<u64>,
    wait: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WriteQuery {
    cas: Option<u64>,
}

/// `30s`, `500ms`, `2m`, or seconds without a unit.
fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.saturating_mul(60))),
        _ => None,
    }
}

fn names(list: &[Name]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

/// The variable's value and index now.
fn current(
    api: &Api,
    name: &str,
    value: &VariableValue,
) -> Result<(Option<String>, u64, &'static str), Early> {
    match value {
        VariableValue::Literal(v) => Ok((Some(v.clone()), 0, "literal")),
        VariableValue::Runtime(initial) => match api.store.variable(name) {
            Ok(Some(r)) => Ok((Some(r.value), r.index, "runtime")),
            Ok(None) => Ok((initial.clone(), 0, "runtime")),
            Err(e) => Err(Box::new(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store cannot be read: {}", crate::error_chain(&e)),
                None,
            ))),
        },
        VariableValue::Secret(_) => Err(Box::new(refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "variable {name} is a secret: its readers get it as a file under /run/secrets, never through the API"
            ),
            None,
        ))),
    }
}

fn answer(name: &str, value: Option<String>, index: u64, source: &str) -> Response {
    let mut r = axum::Json(serde_json::json!({
        "name": name,
        "value": value,
        "index": index,
        "source": source,
    }))
    .into_response();
    if let Ok(v) = index.to_string().parse() {
        r.headers_mut().insert("x-glint-index", v);
    }
    r
}

async fn read(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
    headers: HeaderMap,
    axum::Extension(peer): axum::Extension<PeerPid>,
) -> Response {
    let claims = match api.caller(&headers, peer, &name, "read") {
        Ok(c) => c,
        Err(Refused(r)) => return *r,
    };
    let env = match api.target() {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let Some(var) = env
        .as_ref()
        .and_then(|e| Name::new(&name).ok().and_then(|n| e.variables.get(&n)))
    else {
        return refusal(
            StatusCode::NOT_FOUND,
            format!("no variable {name} is declared in the current version"),
            None,
        );
    };
    if !var.readers.contains(&claims.service) && !var.writers.contains(&claims.service) {
        return api
            .refuse(
                StatusCode::FORBIDDEN,
                Some(&name),
                "read",
                Some(&claims),
                format!(
                    "service {} is not a reader of variable {name}: add it to the variable's `readers`",
                    claims.service
                ),
                Some(("readers", names(&var.readers))),
            )
            .into_inner();
    }
    let wait = match (q.index, q.wait.as_deref()) {
        (None, _) => None,
        (Some(i), None) => Some((i, Duration::from_secs(30))),
        (Some(i), Some(w)) => match parse_wait(w) {
            Some(d) => Some((i, d.min(MAX_WAIT))),
            None => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    format!("`wait={w}` is not a duration: write it as `30s`, `500ms` or `2m`"),
                    None,
                );
            }
        },
    };
    let mut written = api.written.subscribe();
    let deadline = wait.map(|(_, d)| tokio::time::Instant::now() + d);
    loop {
        let (value, index, source) = match current(&api, &name, &var.value) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let (Some((after, _)), Some(deadline)) = (wait, deadline) else {
            return answer(&name, value, index, source);
        };
        if index > after {
            return answer(&name, value, index, source);
        }
        match tokio::time::timeout_at(deadline, written.changed()).await {
            Ok(Ok(())) => continue,
            _ => return answer(&name, value, index, source),
        }
    }
}

async fn write(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
    axum::Extension(peer): axum::Extension<PeerPid>,
    body: Bytes,
) -> Response {
    let claims = match api.caller(&headers, peer, &name, "write") {
        Ok(c) => c,
        Err(Refused(r)) => return *r,
    };
    let env = match api.target() {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let Some(var) = env
        .as_ref()
        .and_then(|e| Name::new(&name).ok().and_then(|n| e.variables.get(&n)))
    else {
        return refusal(
            StatusCode::NOT_FOUND,
            format!("no variable {name} is declared in the current version"),
            None,
        );
    };
    if !matches!(var.value, VariableValue::Runtime(_)) {
        return api
            .refuse(
                StatusCode::FORBIDDEN,
                Some(&name),
                "write",
                Some(&claims),
                format!("variable {name} is not written at run time (no `runtime = true`): its value changes only with a new version"),
                Some(("writers", Vec::new())),
            )
            .into_inner();
    }
    if !var.writers.contains(&claims.service) {
        return api
            .refuse(
                StatusCode::FORBIDDEN,
                Some(&name),
                "write",
                Some(&claims),
                format!(
                    "service {} is not a writer of variable {name}: add it to the variable's `writers`",
                    claims.service
                ),
                Some(("writers", names(&var.writers))),
            )
            .into_inner();
    }
    if body.len() > glint_store::variables::MAX_VALUE {
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the value is {} bytes, more than the {} a variable may hold: keep large data elsewhere and store a reference",
                body.len(),
                glint_store::variables::MAX_VALUE
            ),
            None,
        );
    }
    let Ok(value) = std::str::from_utf8(&body) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "the value is not UTF-8 text: encode binary data (base64, hex) before writing it"
                .into(),
            None,
        );
    };
    let by = claims.instance.to_string();
    let mut attempts = 0;
    let result = loop {
        let cas = match q.cas {
            Some(c) => c,
            None => match api.store.variable(&name) {
                Ok(r) => r.map(|r| r.index).unwrap_or(0),
                Err(e) => break Err(e),
            },
        };
        match api.store.set_variable(&name, value, cas, &by) {
            Ok(Err(_)) if q.cas.is_none() && attempts < 3 => attempts += 1,
            other => break other,
        }
    };
    match result {
        Ok(Ok(rec)) => {
            api.written.send_modify(|n| *n += 1);
            api.events.emit(ConductorEvent::VariableWritten {
                name: name.clone(),
                index: rec.index,
                by: claims.instance.clone(),
            });
            answer(&name, Some(rec.value), rec.index, "runtime")
        }
        Ok(Err(conflict)) => {
            let mut r = refusal(
                StatusCode::CONFLICT,
                format!("variable {name} changed since it was read: {conflict}"),
                None,
            );
            if let Ok(v) = conflict.current.to_string().parse() {
                r.headers_mut().insert("x-glint-index", v);
            }
            r
        }
        Err(e) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store refused the write: {}", crate::error_chain(&e)),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_read_in_the_usual_units() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_wait("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_wait("soon"), None);
        assert_eq!(parse_wait("3h"), None);
    }
}
