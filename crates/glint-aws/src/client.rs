//! The lean AWS Query-API client: form-encoded POSTs signed with SigV4
//! over hyper 1, one connection per attempt, each attempt under a timeout,
//! retried per [`RetryPolicy`] on throttling, 429/5xx, timeouts and broken
//! connections. Answers are returned as XML text; errors as [`AwsError`].
//!
//! Only `http://` endpoints are spoken to (moto, a local proxy, a VPC
//! endpoint reached through a TLS-terminating proxy): see `docs/aws.md`.

use crate::error::{AwsError, parse_error};
use crate::retry::RetryPolicy;
use crate::sigv4::{self, Credentials};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Characters SigV4 leaves unencoded: `A-Z a-z 0-9 - _ . ~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// URI-encodes `s` the way SigV4 canonicalises it.
pub fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// A Query API Glint calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// EC2, API version 2016-11-15.
    Ec2,
    /// Elastic Load Balancing v2, API version 2015-12-01.
    Elbv2,
}

impl Api {
    /// The SigV4 service name.
    pub fn service(self) -> &'static str {
        match self {
            Api::Ec2 => "ec2",
            Api::Elbv2 => "elasticloadbalancing",
        }
    }

    /// The `Version` parameter.
    pub fn version(self) -> &'static str {
        match self {
            Api::Ec2 => "2016-11-15",
            Api::Elbv2 => "2015-12-01",
        }
    }
}

/// Where and as whom a client calls AWS.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` (`AWS_ENDPOINT_URL`); every API is called there.
    pub endpoint: String,
    /// The region (`AWS_REGION`), part of every signature.
    pub region: String,
    /// The credentials.
    pub credentials: Credentials,
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// The configuration from the standard environment variables:
    /// `AWS_ENDPOINT_URL`, `AWS_REGION` (else `AWS_DEFAULT_REGION`),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<ClientConfig, AwsError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let missing = |k: &str| {
            AwsError::Config(format!(
                "the aws provider needs {k}: expected it in the environment, found nothing; set it (see docs/aws.md)"
            ))
        };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .ok_or_else(|| missing("AWS_REGION"))?;
        let endpoint = var("AWS_ENDPOINT_URL").ok_or_else(|| missing("AWS_ENDPOINT_URL"))?;
        Ok(ClientConfig {
            endpoint,
            region,
            credentials: Credentials {
                access_key: var("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?,
                secret_key: var("AWS_SECRET_ACCESS_KEY")
                    .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?,
                session_token: var("AWS_SESSION_TOKEN"),
            },
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        })
    }
}

/// Counts of what a client did, for tests and status.
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP attempts sent.
    pub attempts: AtomicU64,
    /// Attempts that were retried.
    pub retries: AtomicU64,
}

/// A signed Query-API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    host: String,
    authority: String,
    counters: Arc<Counters>,
}

impl Client {
    /// A client for `config`; refuses an endpoint it cannot speak to.
    pub fn new(config: ClientConfig) -> Result<Client, AwsError> {
        let rest = config.endpoint.strip_prefix("http://").ok_or_else(|| {
            AwsError::Config(format!(
                "AWS endpoint `{}`: expected an http:// URL (such as moto's http://127.0.0.1:5000); https is not supported yet, see docs/aws.md",
                config.endpoint
            ))
        })?;
        let authority = rest.trim_end_matches('/').to_owned();
        if authority.is_empty() || authority.contains('/') {
            return Err(AwsError::Config(format!(
                "AWS endpoint `{}`: expected http://HOST:PORT with no path",
                config.endpoint
            )));
        }
        let host = authority.clone();
        Ok(Client {
            config: Arc::new(config),
            host,
            authority,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// What this client (and its clones) did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Calls `action` with `params` (not yet encoded), retrying as the
    /// policy says, and returns the answer's XML.
    pub async fn call(
        &self,
        api: Api,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let policy = self.config.retry;
        let mut retry = 0;
        loop {
            match self.call_once(api, action, params).await {
                Ok(xml) => return Ok(xml),
                Err(e) if e.is_retryable() && retry + 1 < policy.attempts.max(1) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(action, error = %e, retry, "retrying AWS call");
                    tokio::time::sleep(policy.delay(retry)).await;
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Calls `action` once, under the timeout, without retrying (for calls
    /// whose caller must check something before a retry: RunInstances).
    pub async fn call_once(
        &self,
        api: Api,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let mut body = format!(
            "Action={}&Version={}",
            uri_encode(action),
            uri_encode(api.version())
        );
        for (k, v) in params {
            body.push('&');
            body.push_str(&uri_encode(k));
            body.push('=');
            body.push_str(&uri_encode(v));
        }
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(self.config.timeout, self.attempt(api, action, body))
            .await
            .unwrap_or_else(|_| {
                Err(AwsError::Timeout {
                    action: action.to_owned(),
                    endpoint: self.config.endpoint.clone(),
                    after: self.config.timeout,
                })
            })
    }

    async fn attempt(&self, api: Api, action: &str, body: String) -> Result<String, AwsError> {
        let transport = |reason: String| AwsError::Transport {
            action: action.to_owned(),
            endpoint: self.config.endpoint.clone(),
            reason,
        };
        let amz_date = sigv4::amz_date(SystemTime::now());
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut signed: Vec<(&str, &str)> = vec![
            ("content-type", content_type),
            ("host", &self.host),
            ("x-amz-date", &amz_date),
        ];
        if let Some(token) = &self.config.credentials.session_token {
            signed.push(("x-amz-security-token", token));
        }
        let authorization = sigv4::authorization(
            &self.config.credentials,
            &self.config.region,
            api.service(),
            &amz_date,
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &signed,
                payload: body.as_bytes(),
            },
        );
        let mut req = http::Request::builder()
            .method("POST")
            .uri("/")
            .header("authorization", authorization);
        for (k, v) in &signed {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(format!("cannot build the request: {e}")))?;
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| transport(e.to_string()));
        let result = match response {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| transport(format!("the answer broke off: {e}")))?
                    .to_bytes();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if (200..300).contains(&status) {
                    Ok(text)
                } else {
                    Err(
                        parse_error(action, status, &text).unwrap_or_else(|| AwsError::Api {
                            action: action.to_owned(),
                            status,
                            code: format!("HTTP{status}"),
                            message: text.chars().take(200).collect(),
                            request_id: None,
                        }),
                    )
                }
            }
            Err(e) => Err(e),
        };
        conn.abort();
        result
    }
}
