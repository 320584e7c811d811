//! Proxy header hygiene: hop-by-hop headers are removed in both directions
//! (RFC 9110 §7.6.1), the forwarding headers are added to requests, and
//! `Via` to both.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether the request asks for a protocol upgrade (`Connection: upgrade`
/// plus an `Upgrade` header).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including those the `Connection` header
/// names. With `upgrade`, keeps `Upgrade` and sets `Connection: upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        if upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Prepares a client request's headers for the backend.
///
/// `X-Forwarded-For` gets the client address appended (earlier values are
/// kept, as every proxy in a chain does); `X-Forwarded-Proto` and
/// `X-Forwarded-Host` are set to what this endpoint saw (the endpoint is the
/// edge: a client cannot claim another scheme or host); `Via` gets this hop.
/// `Expect` is dropped: the endpoint answers `100-continue` itself.
pub(crate) fn prepare_request(
    headers: &mut HeaderMap,
    client: SocketAddr,
    via: &HeaderValue,
    upgrade: bool,
) {
    strip_hop_by_hop(headers, upgrade);
    headers.remove(header::EXPECT);

    let client_ip = client.ip().to_canonical().to_string();
    let mut forwarded_for = String::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(v) = value.to_str() {
            let v = v.trim();
            if !v.is_empty() {
                forwarded_for.push_str(v);
                forwarded_for.push_str(", ");
            }
        }
    }
    forwarded_for.push_str(&client_ip);
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    match headers.get(header::HOST).cloned() {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    headers.append(header::VIA, via.clone());
}

/// Prepares a backend response's headers for the client.
pub(crate) fn prepare_response(headers: &mut HeaderMap, via: &HeaderValue, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    headers.append(header::VIA, via.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const CLIENT: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)),
        5555,
    );

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "basic x"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn upgrades_keep_their_upgrade_header() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "abc");
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn forwarding_headers_are_added() {
        let via = HeaderValue::from_static("1.1 web (glint)");
        let mut h = map(&[
            ("host", "example.test"),
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-proto", "https"),
            ("via", "1.0 edge"),
            ("expect", "100-continue"),
        ]);
        prepare_request(&mut h, CLIENT, &via, false);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.test");
        let vias: Vec<_> = h.get_all("via").iter().collect();
        assert_eq!(vias, ["1.0 edge", "1.1 web (glint)"]);
        assert!(!h.contains_key("expect"));

        let mut h = HeaderMap::new();
        let v6 = SocketAddr::new("::ffff:10.0.0.8".parse().unwrap(), 1);
        prepare_request(&mut h, v6, &via, false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.8");
        assert!(!h.contains_key("x-forwarded-host"));
    }
}
