//! The conductor's HTTP API: versioned JSON routes (`/v1/…`) for everything
//! the CLI does, a live event stream (SSE), `/metrics`, the OpenAPI
//! document, and the dashboard — served on the owner-only unix socket in
//! the data directory and, when configured, on TCP.
//!
//! # Who may do what
//!
//! **Every route declares its role in its OpenAPI annotation, and only
//! there**: `security(("token" = ["deployer"]))` (or `security(())` for the
//! one public route, the dashboard's login). At start-up the role table is
//! read back from the generated document ([`roles_of`]) and the one
//! middleware ([`guard`]) enforces it on every request: no credential →
//! 401; a credential that is not valid → 401, counted against the peer
//! (rate limited) and recorded; too small a role → 403, recorded; a route
//! missing from the table is refused (fail closed). So the document a
//! client reads is exactly what the server enforces, and the test in
//! `tests/conductor/api.rs` walks the document to prove it.
//!
//! Credentials: `Authorization: Bearer glint_…`, or for the dashboard the
//! `glint_token` cookie (`HttpOnly`, `SameSite=Strict`), in which case every
//! request that changes something must also carry the page's anti-forgery
//! value (`?csrf=`), which another site cannot know. A request on the unix
//! socket is the local admin.
//!
//! **Audit**: every mutating request that passed authentication (any
//! method but GET/HEAD) leaves an `audit` event naming the accessor, its
//! role, the route and the status it was answered; handlers say what they
//! did through an [`AuditNote`]. Secrets and request bodies are never
//! recorded.
//!
//! Errors of the operations layer become HTTP statuses in one place,
//! [`crate::api::http_status`].
//!
//! Layout: [`auth`] (tokens, callers, the failure limiter), [`routes`] (the
//! JSON routes), [`stream`] (server-sent events), [`dashboard`] (the pages),
//! [`client`] (what the CLI uses to call a conductor), `diff` (the
//! difference between two versions).

pub mod auth;
pub mod client;
pub mod dashboard;
mod diff;
pub mod routes;
pub mod stream;
pub mod tls;

use crate::api::ApiError;
use crate::conductor::ConductorClient;
use crate::events::ConductorEvent;
use crate::images::ImageSource;
use crate::sink::EventSink;
use auth::{Caller, Limiter, Refusal};
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use glint_store::prelude::*;
use glint_store::{Clock, Role};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;
use tower::ServiceExt as _;
use utoipa::OpenApi as _;

/// Lists the images of the image store, for `GET /v1/images` (the CLI's
/// image store implements it; the listing is the same JSON as
/// `glint images -o json`).
pub trait ImageCatalog: Send + Sync + 'static {
    /// Every image, as JSON.
    fn list(&self) -> Result<serde_json::Value, String>;
}

/// What the API is started with.
pub struct ApiSetup {
    /// The running conductor.
    pub client: ConductorClient,
    /// The store (not fenced: the API records versions and tokens like the
    /// CLI does).
    pub store: Arc<dyn Store>,
    /// Runnable images (checked before an apply or a rollback).
    pub images: Arc<dyn ImageSource>,
    /// The image listing, if there is one.
    pub catalog: Option<Arc<dyn ImageCatalog>>,
    /// The data directory (instances' logs are under it).
    pub data_dir: PathBuf,
    /// The time (token expiry, rate limits).
    pub clock: Arc<dyn Clock>,
}

/// What every handler shares.
pub struct ApiState {
    /// The running conductor.
    pub client: ConductorClient,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Runnable images.
    pub images: Arc<dyn ImageSource>,
    /// The image listing.
    pub catalog: Option<Arc<dyn ImageCatalog>>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Where audit and refusal events go (rate-limited like the
    /// conductor's).
    pub events: EventSink,
    /// Failed attempts per peer.
    pub limiter: Limiter,
    /// The role of every route, from the OpenAPI document.
    roles: OnceLock<RoleTable>,
    /// The OpenAPI document, as served.
    openapi: OnceLock<String>,
    /// The environment the newest version declares, by version number.
    environment: Mutex<(Option<u64>, Option<String>)>,
    /// The last status served and its JSON (the status is published as a
    /// new `Arc` when it changes, so pointer equality means "unchanged").
    status_json: Mutex<Option<(Arc<crate::status::Status>, bytes::Bytes)>>,
}

impl ApiState {
    /// The OpenAPI document (JSON).
    pub fn openapi_json(&self) -> &str {
        self.openapi.get().map(String::as_str).unwrap_or("{}")
    }

    /// The environment this data directory runs (the newest version's).
    pub fn environment(&self) -> Option<String> {
        let latest = self.store.latest_version_number().ok().flatten();
        let mut cache = self.environment.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != latest.map(|v| v.0) {
            let name = latest
                .and_then(|n| self.store.version(n).ok())
                .map(|v| v.env.name.to_string());
            *cache = (latest.map(|v| v.0), name);
        }
        cache.1.clone()
    }

    /// The live status as JSON, encoded once per published status.
    pub fn status_json(&self) -> Result<bytes::Bytes, serde_json::Error> {
        let status = self.client.status();
        let mut cache = self.status_json.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, b)) = cache.as_ref()
            && Arc::ptr_eq(s, &status)
        {
            return Ok(b.clone());
        }
        let b = bytes::Bytes::from(serde_json::to_vec(&*status)?);
        *cache = Some((status, b.clone()));
        Ok(b)
    }

    /// Now, by the API's clock.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The owner-only unix socket: the local admin.
    Unix,
    /// A TCP connection.
    Tcp(SocketAddr),
}

/// Marks a request that came over TLS (the dashboard's cookie is then
/// `Secure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverTls;

/// What a handler says it did, for the audit event.
#[derive(Debug, Clone)]
pub struct AuditNote(pub String);

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the login form).
    Public,
    /// A token with at least this role.
    Role(Role),
}

/// The role of every route: `(method, path template)` → access.
pub type RoleTable = HashMap<(Method, String), Access>;

/// The role table declared by an OpenAPI document: for each operation,
/// `security: [{}]` is public, `security: [{"token": [role]}]` needs that
/// role; an operation without `security` is left out (and so refused).
pub fn roles_of(doc: &serde_json::Value) -> RoleTable {
    let mut table = RoleTable::new();
    let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) else {
        return table;
    };
    for (path, item) in paths {
        let Some(ops) = item.as_object() else {
            continue;
        };
        for (method, op) in ops {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let Some(reqs) = op.get("security").and_then(|s| s.as_array()) else {
                continue;
            };
            let access = match reqs.as_slice() {
                [only] if only.as_object().is_some_and(|o| o.is_empty()) => Some(Access::Public),
                [only] => only
                    .get("token")
                    .and_then(|scopes| scopes.get(0))
                    .and_then(|r| r.as_str())
                    .and_then(Role::parse)
                    .map(Access::Role),
                _ => None,
            };
            if let Some(a) = access {
                table.insert((method, path.clone()), a);
            }
        }
    }
    table
}

/// The OpenAPI document's frame: title, the bearer scheme.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Glint conductor API",
        version = "1",
        description = "Everything the glint CLI does, over HTTP. Authenticate with `Authorization: Bearer glint_…` (see `glint token create`); each operation's `token` scope is the smallest role that may call it (viewer < deployer < admin)."
    ),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole application (routes, dashboard, the guard) and its OpenAPI
/// document.
pub fn app(setup: ApiSetup) -> (Router, utoipa::openapi::OpenApi, Arc<ApiState>) {
    let events = EventSink::new(setup.store.clone(), setup.clock.clone());
    let state = Arc::new(ApiState {
        client: setup.client,
        store: setup.store,
        images: setup.images,
        catalog: setup.catalog,
        data_dir: setup.data_dir,
        clock: setup.clock,
        events,
        limiter: Limiter::default(),
        roles: OnceLock::new(),
        openapi: OnceLock::new(),
        environment: Mutex::new((None, None)),
        status_json: Mutex::new(None),
    });
    let router = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi());
    let router = routes::register(router);
    let router = dashboard::register(router);
    let (router, doc) = router
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .fallback(not_found)
        .with_state(state.clone())
        .split_for_parts();
    let json = serde_json::to_value(&doc).unwrap_or_default();
    let _ = state.roles.set(roles_of(&json));
    let _ = state
        .openapi
        .set(serde_json::to_string_pretty(&json).unwrap_or_default());
    (router, doc, state)
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route (see /v1/openapi.json)",
    )
}

/// A JSON error body `{"error": kind, "message": …}`.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": kind, "message": message }).to_string(),
    )
        .into_response()
}

/// The credential a request presents: a bearer token, else the
/// dashboard's cookie (`true`).
fn credential(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = v.strip_prefix("Bearer ").unwrap_or(v).trim();
        return Some((token.to_owned(), false));
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for c in cookies.split(';') {
            if let Some(v) = c.trim().strip_prefix(dashboard::COOKIE_EQ) {
                return Some((v.to_owned(), true));
            }
        }
    }
    None
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Whether a route is a dashboard page (answered with HTML).
fn is_page(route: &str) -> bool {
    !(route.starts_with("/v1/") || route == "/metrics")
}

/// The middleware every route passes: see the module documentation.
pub async fn guard(State(st): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        return not_found().await;
    };
    let action = format!("{method} {route}");
    let access = st
        .roles
        .get()
        .and_then(|t| t.get(&(method.clone(), route.clone())))
        .copied();
    let need = match access {
        Some(Access::Public) => return next.run(req).await,
        Some(Access::Role(r)) => r,
        None => {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route declares no role, so nobody may call it",
            );
        }
    };
    let peer = req.extensions().get::<Peer>().copied();
    let peer_name = match peer {
        Some(Peer::Tcp(a)) => a.ip().to_string(),
        Some(Peer::Unix) => "unix-socket".to_owned(),
        None => "unknown".to_owned(),
    };
    let now = st.now();
    let caller = if peer == Some(Peer::Unix) {
        Caller::socket()
    } else {
        let unauthorized = |msg: &str| {
            if is_page(&route) {
                dashboard::login_page(StatusCode::UNAUTHORIZED, msg)
            } else {
                let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", msg);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"glint\""),
                );
                r
            }
        };
        let Some((token, via_cookie)) = credential(req.headers()) else {
            return unauthorized(
                "this route needs a token: `Authorization: Bearer glint_…` (see `glint token create`)",
            );
        };
        if let Some(retry) = st.limiter.blocked(&peer_name, now) {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("too many failed attempts from {peer_name}; try again in {retry}s"),
            );
            if let Ok(v) = header::HeaderValue::from_str(&retry.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        let env = st.environment();
        match auth::verify(st.store.as_ref(), &token, now, env.as_deref()) {
            Ok((mut c, csrf)) => {
                if via_cookie {
                    c.csrf = Some(csrf);
                }
                c
            }
            Err(Refusal::Store(msg)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &msg);
            }
            Err(refusal) => {
                st.limiter.failed(&peer_name, now);
                st.events.emit(ConductorEvent::AuthFailed {
                    peer: peer_name.clone(),
                    action: action.clone(),
                    reason: refusal.to_string(),
                });
                return unauthorized(&refusal.to_string());
            }
        }
    };
    if caller.role < need {
        let msg = format!(
            "token {} ({}) may not call {action}: it needs the {need} role",
            caller.accessor, caller.role
        );
        st.events.emit(ConductorEvent::AuthFailed {
            peer: peer_name,
            action,
            reason: msg.clone(),
        });
        return if is_page(&route) {
            dashboard::refused_page(&msg)
        } else {
            error(StatusCode::FORBIDDEN, "forbidden", &msg)
        };
    }
    let mutating = !matches!(method, Method::GET | Method::HEAD);
    if mutating
        && let Some(expected) = &caller.csrf
        && query_param(req.uri().query(), "csrf") != Some(expected.as_str())
    {
        st.events.emit(ConductorEvent::AuthFailed {
            peer: peer_name,
            action,
            reason: "a form without the page's anti-forgery value".into(),
        });
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this request carries the dashboard's cookie but not its anti-forgery value: send it from the dashboard, or use a bearer token",
        );
    }
    req.extensions_mut().insert(caller.clone());
    let resp = next.run(req).await;
    if mutating {
        let outcome = resp
            .extensions()
            .get::<AuditNote>()
            .map(|n| n.0.clone())
            .unwrap_or_else(|| {
                resp.status()
                    .canonical_reason()
                    .unwrap_or("answered")
                    .to_lowercase()
            });
        st.events.emit(ConductorEvent::ApiCall {
            accessor: caller.accessor,
            role: caller.role,
            action,
            status: resp.status().as_u16(),
            outcome,
        });
    }
    resp
}

/// Serves one connection of `app`, every request tagged with `peer`.
async fn connection<I>(io: I, peer: Peer, tls: bool, app: Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(peer);
        if tls {
            req.extensions_mut().insert(OverTls);
        }
        app.clone().oneshot(req)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Serves `app` on the unix socket `path` (owner-only) until `shutdown`
/// turns true. The caller holds the conductor lock, so a leftover socket
/// file is stale and is replaced.
pub async fn serve_unix(
    path: PathBuf,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).map_err(|source| ApiError::Listen {
        path: path.clone(),
        source,
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ApiError::Listen {
            path: path.clone(),
            source,
        }
    })?;
    Ok(tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    conns.spawn(connection(stream, Peer::Unix, false, app.clone()));
                }
                _ = shutdown.changed() => break,
            }
            while conns.try_join_next().is_some() {}
        }
        conns.abort_all();
        let _ = std::fs::remove_file(&path);
    }))
}

/// Serves `app` on a bound TCP listener until `shutdown` turns true, over
/// TLS when given an acceptor ([`tls::acceptor`]).
pub fn serve_tcp(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, addr)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    match tls.clone() {
                        None => {
                            conns.spawn(connection(stream, Peer::Tcp(addr), false, app));
                        }
                        Some(acceptor) => {
                            conns.spawn(async move {
                                let handshake = tokio::time::timeout(
                                    std::time::Duration::from_secs(10),
                                    acceptor.accept(stream),
                                );
                                if let Ok(Ok(stream)) = handshake.await {
                                    connection(stream, Peer::Tcp(addr), true, app).await;
                                }
                            });
                        }
                    }
                }
                _ = shutdown.changed() => break,
            }
            // Forget finished connections.
            while conns.try_join_next().is_some() {}
        }
        conns.abort_all();
    })
}
