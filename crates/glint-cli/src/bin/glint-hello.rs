//! `glint-hello`: the demo application that Glint's examples run.
//!
//! A tiny HTTP/1.1 server with no dependencies beyond `std` (so that it can be
//! linked statically and run from a `scratch` image). Every response names the
//! instance that answered, which makes load balancing and replacement visible:
//!
//! - `GET /` answers `<GREETING> from <GLINT_INSTANCE_ID> (service <GLINT_SERVICE>, version <GLINT_VERSION>)`;
//! - `GET /healthz` answers `ok`, or `503` when `HEALTHY=false` (a version
//!   whose health check never passes, for rollback tests);
//! - `GET /sleep/<ms>` answers after `<ms>` milliseconds (in-flight requests
//!   for draining tests);
//! - `GET /burn/<ms>` keeps one CPU busy for `<ms>` milliseconds, then
//!   answers (CPU load for autoscaling and limits);
//! - `GET /bytes/<n>` answers a body of `<n>` bytes, at most 1 MiB (proxy
//!   benchmarks);
//! - `GET /secret/<name>` answers the file `/run/secrets/<name>` (or
//!   `$GLINT_SECRETS_DIR/<name>` for a plain instance), `404` when it has
//!   none — what a reader of a secret sees (for the secrets tests; the demo
//!   prints a secret because that is what it is for);
//! - `GET /var/<name>[?index=N&wait=D]` asks the instance API (the socket
//!   `$GLINT_API_SOCKET`, with the token in `$GLINT_IDENTITY_FILE`) for
//!   variable `<name>` and answers `200` with the API's status code on the
//!   first line and its body after it; `GET /setvar/<name>?value=V[&cas=N]`
//!   (or `size=N` for a value of N bytes) writes it the same way; `GET
//!   /varfile/<name>` answers the file `$GLINT_VARS_DIR/<name>` (for the
//!   variables tests);
//! - anything else is `404`.
//!
//! It listens on `HOST:PORT` (defaults `0.0.0.0` and `8080`), after an optional
//! `START_DELAY_MS`. Keep-alive connections are served until the client closes
//! them. With `EXIT_AFTER_MS` it exits with code 1 that long after it started
//! (a crash loop, for backoff tests). With `ALLOCATE_MB=N` it first takes
//! and touches N MiB of memory and holds it (a memory hog, for memory
//! limits).

use std::env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

struct Config {
    greeting: String,
    instance: String,
    service: String,
    version: String,
    healthy: bool,
}

fn main() -> ExitCode {
    let host = env::var("HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let port = env::var("PORT").unwrap_or_else(|_| "8080".into());
    let config = Config {
        greeting: env::var("GREETING").unwrap_or_else(|_| "hello".into()),
        instance: env::var("GLINT_INSTANCE_ID").unwrap_or_else(|_| "unknown".into()),
        service: env::var("GLINT_SERVICE").unwrap_or_else(|_| "unknown".into()),
        version: env::var("GLINT_VERSION").unwrap_or_else(|_| "0".into()),
        healthy: env::var("HEALTHY").map(|v| v != "false").unwrap_or(true),
    };
    if let Some(ms) = env::var("EXIT_AFTER_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(ms));
            std::process::exit(1);
        });
    }
    if let Some(mb) = env::var("ALLOCATE_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut held: Vec<Vec<u8>> = Vec::new();
        for i in 0..mb {
            held.push(vec![1u8; 1 << 20]);
            if i % 16 == 15 {
                println!("glint-hello: holding {} MiB", i + 1);
            }
        }
        Box::leak(Box::new(held));
    }
    if let Some(ms) = env::var("START_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
        thread::sleep(Duration::from_millis(ms));
    }
    let listener = match TcpListener::bind(format!("{host}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("glint-hello: cannot listen on {host}:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "glint-hello: {} listening on {host}:{port}",
        config.instance
    );
    let config: &'static Config = Box::leak(Box::new(config));
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                thread::spawn(move || {
                    // A broken connection only ends that connection.
                    let _ = serve(stream, config);
                });
            }
            Err(e) => eprintln!("glint-hello: accept failed: {e}"),
        }
    }
    ExitCode::SUCCESS
}

/// Serves requests on one connection until the peer closes it.
fn serve(stream: TcpStream, config: &Config) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("/").to_owned();
        let http10 = parts.next() == Some("HTTP/1.0");
        let mut content_length = 0usize;
        let mut close = http10;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        // Discard any request body.
        std::io::copy(
            &mut (&mut reader).take(content_length as u64),
            &mut std::io::sink(),
        )?;

        let (status, body) = respond(&method, &path, config);
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nx-glint-instance: {}\r\n{}\r\n",
            body.len(),
            config.instance,
            if close { "connection: close\r\n" } else { "" },
        );
        // One write for head and body, so that a kill never leaves a client
        // with a head whose body never comes.
        let mut response = head.into_bytes();
        if method != "HEAD" {
            response.extend_from_slice(body.as_bytes());
        }
        writer.write_all(&response)?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn respond(method: &str, path: &str, config: &Config) -> (&'static str, String) {
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "method not allowed\n".into());
    }
    let full = path;
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/" => (
            "200 OK",
            format!(
                "{} from {} (service {}, version {})\n",
                config.greeting, config.instance, config.service, config.version
            ),
        ),
        "/healthz" if config.healthy => ("200 OK", "ok\n".into()),
        "/healthz" => ("503 Service Unavailable", "unhealthy\n".into()),
        _ => {
            let arg = |prefix: &str| {
                path.strip_prefix(prefix)
                    .and_then(|ms| ms.parse::<u64>().ok())
            };
            if let Some(ms) = arg("/sleep/") {
                thread::sleep(Duration::from_millis(ms.min(600_000)));
                ("200 OK", format!("slept {ms}ms in {}\n", config.instance))
            } else if let Some(n) = arg("/bytes/") {
                // A body of N bytes (at most 1 MiB), for proxy benchmarks.
                let n = usize::try_from(n.min(1 << 20)).unwrap_or(1 << 20);
                ("200 OK", "x".repeat(n))
            } else if let Some(ms) = arg("/burn/") {
                let until = std::time::Instant::now() + Duration::from_millis(ms.min(60_000));
                let mut x: u64 = 1;
                while std::time::Instant::now() < until {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                        );
                    }
                }
                ("200 OK", format!("burned {ms}ms in {}\n", config.instance))
            } else if let Some(name) = path.strip_prefix("/secret/") {
                if name
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == "..")
                {
                    return ("400 Bad Request", "bad secret name\n".into());
                }
                let dir = env::var("GLINT_SECRETS_DIR").unwrap_or_else(|_| "/run/secrets".into());
                match std::fs::read(std::path::Path::new(&dir).join(name)) {
                    Ok(v) => ("200 OK", String::from_utf8_lossy(&v).into_owned()),
                    Err(_) => ("404 Not Found", "no such secret\n".into()),
                }
            } else if let Some(name) = path.strip_prefix("/var/") {
                let query = full.split_once('?').map(|(_, q)| q).unwrap_or("");
                let target = if query.is_empty() {
                    format!("/v1/variables/{name}")
                } else {
                    format!("/v1/variables/{name}?{query}")
                };
                ("200 OK", instance_api("GET", &target, b""))
            } else if let Some(name) = path.strip_prefix("/setvar/") {
                let param = |k: &str| {
                    full.split_once('?')
                        .map(|(_, q)| q)
                        .unwrap_or("")
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                };
                let value = match param("size").and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) => "x".repeat(n.min(1 << 20)),
                    None => param("value").unwrap_or("").to_owned(),
                };
                let target = match param("cas") {
                    Some(c) => format!("/v1/variables/{name}?cas={c}"),
                    None => format!("/v1/variables/{name}"),
                };
                ("200 OK", instance_api("PUT", &target, value.as_bytes()))
            } else if let Some(name) = path.strip_prefix("/varfile/") {
                if name.contains('/') || name.starts_with('.') {
                    return ("400 Bad Request", "bad variable name\n".into());
                }
                let dir = env::var("GLINT_VARS_DIR").unwrap_or_else(|_| "/run/glint/vars".into());
                match std::fs::read(std::path::Path::new(&dir).join(name)) {
                    Ok(v) => ("200 OK", String::from_utf8_lossy(&v).into_owned()),
                    Err(_) => ("404 Not Found", "no such variable file\n".into()),
                }
            } else {
                ("404 Not Found", "not found\n".into())
            }
        }
    }
}

/// One request to the instance API over its unix socket, with this
/// instance's identity: `"<status code>\n<body>"`, or `"000\n<error>"`
/// when the API cannot be reached.
fn instance_api(method: &str, target: &str, body: &[u8]) -> String {
    let call = || -> std::io::Result<String> {
        let socket =
            env::var("GLINT_API_SOCKET").unwrap_or_else(|_| "/run/glint/glint.sock".into());
        let identity =
            env::var("GLINT_IDENTITY_FILE").unwrap_or_else(|_| "/run/glint/identity".into());
        let token = std::fs::read_to_string(identity)?;
        let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(330)))?;
        let head = format!(
            "{method} {target} HTTP/1.1\r\nhost: glint\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            token.trim(),
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let code = text.split_whitespace().nth(1).unwrap_or("000").to_owned();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok(format!("{code}\n{body}"))
    };
    call().unwrap_or_else(|e| format!("000\n{e}"))
}
