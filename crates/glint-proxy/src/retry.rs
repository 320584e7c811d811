//! The retry rules of the crate documentation, as pure functions.

use http::Method;

/// Whether `method` is idempotent (RFC 9110 §9.2.2: the safe methods GET,
/// HEAD, OPTIONS, TRACE, plus PUT and DELETE). POST, PATCH, CONNECT and
/// extension methods are not.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// How an attempt to send a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptFailure {
    /// No connection could be made: nothing was sent.
    Connect,
    /// hyper handed the request back untouched: nothing was sent.
    HandedBack,
    /// The connection failed after sending started and before a complete
    /// response head arrived (reset, EOF, a stale keep-alive connection).
    BeforeResponse,
    /// The request was sent and no response head arrived within the
    /// endpoint's response timeout (a hung or overloaded instance).
    Timeout,
    /// The backend answered with something that is not HTTP/1.1: it did
    /// answer, so the request is not sent again.
    MalformedResponse,
    /// The request body (from the client) failed while being sent.
    ClientBody,
}

impl AttemptFailure {
    /// Classifies an error from `try_send_request` whose request was not
    /// handed back.
    pub(crate) fn of_sent(error: &hyper::Error) -> AttemptFailure {
        if error.is_parse() || error.is_parse_status() {
            AttemptFailure::MalformedResponse
        } else if error.is_user() {
            AttemptFailure::ClientBody
        } else {
            AttemptFailure::BeforeResponse
        }
    }
}

/// Whether a request may be sent again after `failure`.
///
/// `replayable` says whether its body is buffered (or empty).
pub(crate) fn may_retry(failure: AttemptFailure, idempotent: bool, replayable: bool) -> bool {
    match failure {
        AttemptFailure::Connect | AttemptFailure::HandedBack => true,
        AttemptFailure::BeforeResponse | AttemptFailure::Timeout => idempotent && replayable,
        AttemptFailure::MalformedResponse | AttemptFailure::ClientBody => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_methods_follow_rfc_9110() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(
                is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
        for m in ["POST", "PATCH", "CONNECT", "PROPFIND", "LOCK"] {
            assert!(
                !is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
    }

    #[test]
    fn unsent_requests_are_always_retried() {
        for failure in [AttemptFailure::Connect, AttemptFailure::HandedBack] {
            for idempotent in [false, true] {
                for replayable in [false, true] {
                    assert!(may_retry(failure, idempotent, replayable));
                }
            }
        }
    }

    #[test]
    fn sent_requests_are_retried_only_when_idempotent_and_replayable() {
        for f in [AttemptFailure::BeforeResponse, AttemptFailure::Timeout] {
            assert!(may_retry(f, true, true), "{f:?}");
            assert!(!may_retry(f, false, true), "{f:?}");
            assert!(!may_retry(f, true, false), "{f:?}");
            assert!(!may_retry(f, false, false), "{f:?}");
        }
        assert!(!may_retry(AttemptFailure::MalformedResponse, true, true));
        assert!(!may_retry(AttemptFailure::ClientBody, true, true));
    }
}
