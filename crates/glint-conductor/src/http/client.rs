//! Calling a conductor's API: over its unix socket (the local admin), or
//! over TCP with a token (`glint --addr http://host:port`, `GLINT_ADDR`,
//! `GLINT_TOKEN`). A refusal comes back as [`ApiError::Refused`] with the
//! server's status, error kind and message, so the CLI prints what the
//! server said and exits as it would locally.

use crate::api::ApiError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

/// Where a conductor listens.
#[derive(Clone)]
pub enum Target {
    /// Its unix socket.
    Unix(PathBuf),
    /// `host:port` over plain HTTP.
    Tcp(String),
    /// `host:port` over TLS, trusting the given certificates.
    Tls {
        /// `host:port`.
        addr: String,
        /// The name the certificate must carry.
        host: String,
        /// Trusts exactly the certificates of `GLINT_CA`.
        connector: tokio_rustls::TlsConnector,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "Unix({})", p.display()),
            Target::Tcp(a) => write!(f, "Tcp({a})"),
            Target::Tls { addr, .. } => write!(f, "Tls({addr})"),
        }
    }
}

/// A connection, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A conductor to call. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    target: Target,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Client")
            .field("target", &self.target)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Client {
    /// The conductor behind a unix socket.
    pub fn unix(path: PathBuf) -> Client {
        Client {
            target: Target::Unix(path),
            token: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// A remote conductor: `http://host:port` (or `host:port`), or
    /// `https://host:port` trusting the certificates in `ca`, with a token.
    pub fn remote(
        addr: &str,
        token: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> Result<Client, ApiError> {
        let (https, rest) = match addr.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, addr.strip_prefix("http://").unwrap_or(addr)),
        };
        let hostport = rest.trim_end_matches('/');
        let host = hostport
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or_default();
        if hostport.is_empty() || hostport.contains('/') || host.is_empty() {
            return Err(ApiError::Protocol(format!(
                "`{addr}` is not an address: give http://HOST:PORT or https://HOST:PORT"
            )));
        }
        let target = if https {
            let Some(ca) = ca else {
                return Err(ApiError::Protocol(format!(
                    "{addr}: set GLINT_CA (or --ca) to the PEM file of the certificate(s) to trust for it"
                )));
            };
            let connector = super::tls::connector(ca)
                .map_err(|e| ApiError::Protocol(crate::error_chain(&e)))?;
            super::tls::server_name(host).map_err(|e| ApiError::Protocol(e.to_string()))?;
            Target::Tls {
                addr: hostport.to_owned(),
                host: host.to_owned(),
                connector,
            }
        } else {
            Target::Tcp(hostport.to_owned())
        };
        Ok(Client {
            target,
            token,
            timeout: Duration::from_secs(30),
        })
    }

    /// Opens a connection; answers it and the `host` header to send.
    async fn connect(&self) -> Result<(Box<dyn Io>, String), ApiError> {
        let connect = Duration::from_secs(5);
        let timed_out = || self.unreachable(std::io::ErrorKind::TimedOut.into());
        match &self.target {
            Target::Unix(p) => {
                let s = tokio::time::timeout(connect, tokio::net::UnixStream::connect(p))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| self.unreachable(e))?;
                Ok((Box::new(s), "conductor".to_owned()))
            }
            Target::Tcp(a) => {
                let s = tokio::time::timeout(connect, tokio::net::TcpStream::connect(a))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| self.unreachable(e))?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), a.clone()))
            }
            Target::Tls {
                addr,
                host,
                connector,
            } => {
                let s = tokio::time::timeout(connect, tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| self.unreachable(e))?;
                let _ = s.set_nodelay(true);
                let name =
                    super::tls::server_name(host).map_err(|e| ApiError::Protocol(e.to_string()))?;
                let s = tokio::time::timeout(connect, connector.connect(name, s))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| ApiError::Protocol(format!("TLS with {addr} failed: {e}")))?;
                Ok((Box::new(s), addr.clone()))
            }
        }
    }

    /// Where it calls.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How it is shown in messages.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Unix(p) => p.display().to_string(),
            Target::Tcp(a) => format!("http://{a}"),
            Target::Tls { addr, .. } => format!("https://{addr}"),
        }
    }

    fn unreachable(&self, source: std::io::Error) -> ApiError {
        ApiError::Unreachable {
            path: PathBuf::from(self.describe()),
            source,
        }
    }

    /// Sends a request; answers the status and body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let (io, host) = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, sender.send_request(req))
            .await
            .map_err(|_| {
                ApiError::Protocol(format!("no answer within {}s", self.timeout.as_secs()))
            })?
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, resp.into_body().collect())
            .await
            .map_err(|_| ApiError::Protocol("the answer did not end".into()))?
            .map_err(|e| ApiError::Protocol(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    /// Calls and decodes a JSON answer; a non-2xx answer is
    /// [`ApiError::Refused`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ApiError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        let (status, bytes) = self.request(method, path, body).await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Protocol(format!("cannot read the answer to {path}: {e}")))
    }

    /// Follows a server-sent event stream at `path`, calling `on_event`
    /// with each message's event name and data until it returns `false` or
    /// the stream ends.
    pub async fn sse(
        &self,
        path: &str,
        mut on_event: impl FnMut(&str, &str) -> bool,
    ) -> Result<(), ApiError> {
        let (io, host) = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", host)
            .header("accept", "text/event-stream");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| ApiError::Protocol(e.to_string()))?
                .to_bytes();
            return Err(refused(status, &bytes));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::Protocol(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let message: Vec<u8> = buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&message);
                let (mut event, mut data) = ("message".to_owned(), String::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if !data.is_empty() && !on_event(&event, &data) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// `GET path` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.call(Method::GET, path, None::<&()>).await
    }
}

/// A non-2xx answer as an error.
pub fn refused(status: StatusCode, body: &[u8]) -> ApiError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    ApiError::Refused {
        status: status.as_u16(),
        kind: v
            .get("error")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_owned(),
        message: v
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
