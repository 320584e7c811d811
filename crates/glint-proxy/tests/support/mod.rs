//! Real servers and clients for the endpoint tests (and the benchmark): small
//! hyper backends that can be slowed, hung, and killed abruptly, a TCP echo
//! backend, and a keep-alive HTTP client that never retries (so that every
//! failure the proxy lets through is seen).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use glint_model::{InstanceId, Name};
use glint_proxy::Backend;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client_http1;
use hyper::server::conn::http1 as server_http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// A generous bound for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// An instance id for a test backend named `name` (8 lowercase chars).
pub fn instance(name: &str) -> InstanceId {
    let suffix = format!("{name:0>8}");
    InstanceId::new(&Name::new("web").unwrap(), &suffix).unwrap()
}

/// Polls `cond` every 10 ms until it holds; panics after [`PATIENCE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `fut` with [`PATIENCE`] as a bound.
pub async fn patiently<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// What a test backend counts.
#[derive(Default)]
pub struct Counts {
    /// Requests that reached the handler.
    pub requests: AtomicUsize,
    /// Responses the handler returned.
    pub responses: AtomicUsize,
    /// POST requests that reached the handler.
    pub posts: AtomicUsize,
    /// Requests being handled now.
    pub active: AtomicUsize,
    /// Connections open now.
    pub open_connections: AtomicUsize,
    /// Connections accepted.
    pub accepted: AtomicUsize,
}

fn load(a: &AtomicUsize) -> usize {
    a.load(Ordering::SeqCst)
}

struct ActiveGuard<'a>(&'a AtomicUsize);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct BackendInner {
    name: String,
    counts: Counts,
    /// Releases `/hang` requests.
    release: Notify,
    released: AtomicBool,
    /// Releases the second chunk of `/trickle`.
    trickle: Arc<Notify>,
    /// Serve one request per connection, then drop the connection (without a
    /// response) when the next request on it arrives: a keep-alive connection
    /// that dies just as it is reused.
    one_request_per_connection: bool,
    /// Added to every request.
    delay: Duration,
    /// Every request waits for [`TestBackend::release`] (a hung instance).
    hang_all: bool,
    tasks: Mutex<Vec<AbortHandle>>,
}

#[derive(Default)]
struct Options {
    one_request_per_connection: bool,
    delay: Duration,
    hang_all: bool,
    addr: Option<SocketAddr>,
}

/// An HTTP/1.1 backend on 127.0.0.1. Routes:
/// - `/sleep/<ms>`: answers its name after sleeping;
/// - `/hang`: answers its name once [`TestBackend::release`] is called;
/// - `/echo`: answers the request body;
/// - `/headers`: answers the request headers, one `name: value` per line;
/// - `/trickle`: streams `first`, then `second` once [`TestBackend::release_trickle`]
///   is called;
/// - an `Upgrade: echo` request: `101`, then echoes bytes;
/// - anything else: its name.
pub struct TestBackend {
    pub addr: SocketAddr,
    inner: Arc<BackendInner>,
}

impl TestBackend {
    pub async fn start(name: &str) -> TestBackend {
        Self::start_with(name, Options::default()).await
    }

    /// A backend that drops every connection's second request unanswered.
    pub async fn start_one_request_per_connection(name: &str) -> TestBackend {
        let options = Options {
            one_request_per_connection: true,
            ..Options::default()
        };
        Self::start_with(name, options).await
    }

    /// A backend that takes `delay` over every request.
    pub async fn start_slow(name: &str, delay: Duration) -> TestBackend {
        let options = Options {
            delay,
            ..Options::default()
        };
        Self::start_with(name, options).await
    }

    /// A hung backend: it accepts connections and reads requests, and
    /// answers none of them until [`TestBackend::release`] is called.
    pub async fn start_hung(name: &str) -> TestBackend {
        let options = Options {
            hang_all: true,
            ..Options::default()
        };
        Self::start_with(name, options).await
    }

    /// A backend on a given address (e.g. to restart on the same port).
    pub async fn start_at(name: &str, addr: SocketAddr) -> TestBackend {
        let options = Options {
            addr: Some(addr),
            ..Options::default()
        };
        Self::start_with(name, options).await
    }

    async fn start_with(name: &str, options: Options) -> TestBackend {
        let listener = match options.addr {
            None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
            // A killed backend's listener closes when its aborted task is
            // next polled: retry until the port is free.
            Some(addr) => {
                let deadline = tokio::time::Instant::now() + PATIENCE;
                loop {
                    match TcpListener::bind(addr).await {
                        Ok(listener) => break listener,
                        Err(e) if tokio::time::Instant::now() < deadline => {
                            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => panic!("cannot rebind {addr}: {e}"),
                    }
                }
            }
        };
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(BackendInner {
            name: name.to_owned(),
            counts: Counts::default(),
            release: Notify::new(),
            released: AtomicBool::new(false),
            trickle: Arc::new(Notify::new()),
            one_request_per_connection: options.one_request_per_connection,
            delay: options.delay,
            hang_all: options.hang_all,
            tasks: Mutex::new(Vec::new()),
        });
        let accept_inner = Arc::clone(&inner);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let conn_inner = Arc::clone(&accept_inner);
                let task = tokio::spawn(serve_backend_connection(conn_inner, stream));
                accept_inner.tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        inner.tasks.lock().unwrap().push(accept.abort_handle());
        TestBackend { addr, inner }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The proxy's view of this backend.
    pub fn backend(&self) -> Backend {
        Backend {
            instance: instance(&self.inner.name),
            addr: self.addr,
        }
    }

    pub fn instance(&self) -> InstanceId {
        instance(&self.inner.name)
    }

    pub fn counts(&self) -> &Counts {
        &self.inner.counts
    }

    pub fn requests(&self) -> usize {
        load(&self.inner.counts.requests)
    }

    pub fn responses(&self) -> usize {
        load(&self.inner.counts.responses)
    }

    pub fn posts(&self) -> usize {
        load(&self.inner.counts.posts)
    }

    pub fn active(&self) -> usize {
        load(&self.inner.counts.active)
    }

    pub fn open_connections(&self) -> usize {
        load(&self.inner.counts.open_connections)
    }

    /// Lets every `/hang` request (now and later) answer.
    pub fn release(&self) {
        self.inner.released.store(true, Ordering::SeqCst);
        self.inner.release.notify_waiters();
    }

    /// Lets the pending `/trickle` response send its second chunk.
    pub fn release_trickle(&self) {
        self.inner.trickle.notify_one();
    }

    /// Kills the backend and waits until its port refuses connections (an
    /// aborted task releases its listener when next polled).
    pub async fn kill_and_wait(&self) {
        self.kill();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(self.addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} still accepts",
                self.inner.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Kills the backend abruptly: the listener and every connection are
    /// dropped at once, mid-request or not, as when its process dies.
    pub fn kill(&self) {
        for task in self.inner.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

struct ConnGuard(Arc<BackendInner>);
impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0
            .counts
            .open_connections
            .fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_backend_connection(inner: Arc<BackendInner>, stream: TcpStream) {
    inner.counts.accepted.fetch_add(1, Ordering::SeqCst);
    inner.counts.open_connections.fetch_add(1, Ordering::SeqCst);
    let _guard = ConnGuard(Arc::clone(&inner));
    let served_here = Arc::new(AtomicUsize::new(0));
    let svc_inner = Arc::clone(&inner);
    let service = service_fn(move |req: Request<Incoming>| {
        let inner = Arc::clone(&svc_inner);
        let served_here = Arc::clone(&served_here);
        async move {
            inner.counts.requests.fetch_add(1, Ordering::SeqCst);
            if req.method() == Method::POST {
                inner.counts.posts.fetch_add(1, Ordering::SeqCst);
            }
            if inner.one_request_per_connection && served_here.fetch_add(1, Ordering::SeqCst) >= 1 {
                // Drop the connection without answering.
                return Err("dropping this keep-alive connection");
            }
            inner.counts.active.fetch_add(1, Ordering::SeqCst);
            let _active = ActiveGuard(&inner.counts.active);
            if !inner.delay.is_zero() {
                tokio::time::sleep(inner.delay).await;
            }
            if inner.hang_all {
                wait_released(&inner).await;
            }
            let response = route(&inner, req).await;
            inner.counts.responses.fetch_add(1, Ordering::SeqCst);
            Ok(response)
        }
    });
    let _ = server_http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn route(inner: &BackendInner, mut req: Request<Incoming>) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    let name = inner.name.clone();
    if req.headers().get("upgrade").is_some_and(|v| v == "echo") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "echo")
            .header("connection", "upgrade")
            .body(full(""))
            .unwrap();
    }
    let text = |s: String| {
        Response::builder()
            .header("x-backend", name.as_str())
            .header("keep-alive", "timeout=60")
            .body(full(s))
            .unwrap()
    };
    if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        return text(name.clone());
    }
    if path == "/trickle" {
        // "first", then (once released) "second": shows whether a proxy
        // streams the body or buffers it.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let release = Arc::clone(&inner.trickle);
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"first")).await;
            release.notified().await;
            let _ = tx.send(Bytes::from_static(b"second")).await;
        });
        return Response::builder()
            .header("x-backend", name.as_str())
            .body(channel_body(rx))
            .unwrap();
    }
    match path.as_str() {
        "/hang" => {
            wait_released(inner).await;
            text(name.clone())
        }
        "/echo" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Response::builder()
                .header("x-backend", name.as_str())
                .body(full(body))
                .unwrap()
        }
        "/headers" => {
            let mut out = String::new();
            for (k, v) in req.headers() {
                out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            text(out)
        }
        _ => text(name.clone()),
    }
}

/// Waits until [`TestBackend::release`] was called.
async fn wait_released(inner: &BackendInner) {
    loop {
        let notified = inner.release.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if inner.released.load(Ordering::SeqCst) {
            break;
        }
        notified.await;
    }
}

/// A body fed by a channel (streamed chunk by chunk).
fn channel_body(rx: tokio::sync::mpsc::Receiver<Bytes>) -> TestBody {
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);
    impl hyper::body::Body for ChannelBody {
        type Data = Bytes;
        type Error = hyper::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }
    ChannelBody(rx).boxed()
}

/// A TCP backend that answers every chunk it reads with `<name>:<chunk>`.
pub struct TcpEchoBackend {
    pub addr: SocketAddr,
    pub name: String,
    pub accepted: Arc<AtomicUsize>,
    task: AbortHandle,
}

impl TcpEchoBackend {
    pub async fn start(name: &str) -> TcpEchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let prefix = format!("{name}:");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let prefix = prefix.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut out = prefix.clone().into_bytes();
                                out.extend_from_slice(&buf[..n]);
                                if stream.write_all(&out).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        })
        .abort_handle();
        TcpEchoBackend {
            addr,
            name: name.to_owned(),
            accepted,
            task,
        }
    }

    pub fn backend(&self) -> Backend {
        Backend {
            instance: instance(&self.name),
            addr: self.addr,
        }
    }
}

impl Drop for TcpEchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response as the test client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 client on one keep-alive connection. It never retries: a
/// failed request is returned as an error, and a new connection is made only
/// when the previous one was closed (counted in `connects`).
pub struct Client {
    addr: SocketAddr,
    sender: Option<client_http1::SendRequest<Full<Bytes>>>,
    pub connects: usize,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            sender: None,
            connects: 0,
        }
    }

    async fn sender(&mut self) -> Result<&mut client_http1::SendRequest<Full<Bytes>>, String> {
        let usable = match &mut self.sender {
            Some(s) => !s.is_closed() && s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = client_http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            self.connects += 1;
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().unwrap())
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let sender = self.sender().await?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body failed: {e}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, String> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "app.test")
            .body(Full::new(body))
            .unwrap();
        self.send(req).await
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply, String> {
        self.request(Method::GET, path, Bytes::new()).await
    }
}

/// One GET on a fresh connection.
pub async fn get_once(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    Client::new(addr).get(path).await
}
