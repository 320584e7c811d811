//! AWS errors as data: the API's code, message and request id, parsed from
//! the Query APIs' two error documents (EC2's `<Response><Errors><Error>`,
//! ELBv2's `<ErrorResponse><Error>`), plus the client's own failures.

use std::time::Duration;

/// What went wrong in one AWS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// AWS answered with an error document.
    #[error("AWS refused {action}: {code}: {message} (HTTP {status}{})", request_id.as_ref().map(|r| format!(", request id {r}")).unwrap_or_default())]
    Api {
        /// The action called (`RunInstances`).
        action: String,
        /// The HTTP status.
        status: u16,
        /// The error code (`InvalidAMIID.NotFound`, `Throttling`).
        code: String,
        /// AWS's message.
        message: String,
        /// The request id, for AWS support.
        request_id: Option<String>,
    },
    /// No answer within the call's timeout.
    #[error("{action} got no answer from {endpoint} within {after:?}")]
    Timeout {
        /// The action.
        action: String,
        /// The endpoint.
        endpoint: String,
        /// The timeout.
        after: Duration,
    },
    /// The connection failed or broke.
    #[error("cannot reach {endpoint} for {action}: {reason}")]
    Transport {
        /// The action.
        action: String,
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// An answer that is not the XML expected.
    #[error("unexpected answer to {action}: {reason}")]
    Response {
        /// The action.
        action: String,
        /// What was wrong.
        reason: String,
    },
    /// The client's configuration cannot work.
    #[error("{0}")]
    Config(String),
}

/// Error codes AWS uses for throttling (retried).
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
];

impl AwsError {
    /// The AWS error code, if AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the same call may succeed if retried: throttling, HTTP 429
    /// and 5xx, timeouts and broken connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            AwsError::Api { status, code, .. } => {
                *status == 429 || *status >= 500 || THROTTLING_CODES.contains(&code.as_str())
            }
            AwsError::Timeout { .. } | AwsError::Transport { .. } => true,
            AwsError::Response { .. } | AwsError::Config(_) => false,
        }
    }
}

/// The error in an AWS error document, or `None` if `body` is not one.
pub fn parse_error(action: &str, status: u16, body: &str) -> Option<AwsError> {
    let doc = roxmltree::Document::parse(body).ok()?;
    let error = doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "Error")?;
    let text = |parent: roxmltree::Node<'_, '_>, name: &str| {
        parent
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(|t| t.trim().to_owned())
    };
    let code = text(error, "Code")?;
    let message = text(error, "Message").unwrap_or_default();
    let request_id = doc
        .descendants()
        .find(|n| n.is_element() && matches!(n.tag_name().name(), "RequestID" | "RequestId"))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_owned());
    Some(AwsError::Api {
        action: action.to_owned(),
        status,
        code,
        message,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_error_documents_are_parsed() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id '[ami-00000000]' does not exist</Message></Error></Errors><RequestID>59dbff89-35bd-4eac-99ed-be587EXAMPLE</RequestID></Response>"#;
        let e = parse_error("RunInstances", 400, body).unwrap();
        assert_eq!(
            e,
            AwsError::Api {
                action: "RunInstances".into(),
                status: 400,
                code: "InvalidAMIID.NotFound".into(),
                message: "The image id '[ami-00000000]' does not exist".into(),
                request_id: Some("59dbff89-35bd-4eac-99ed-be587EXAMPLE".into()),
            }
        );
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "AWS refused RunInstances: InvalidAMIID.NotFound: The image id '[ami-00000000]' does not exist (HTTP 400, request id 59dbff89-35bd-4eac-99ed-be587EXAMPLE)"
        );
    }

    #[test]
    fn elbv2_error_documents_are_parsed() {
        let body = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
  <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>
  <RequestId>a1b2</RequestId>
</ErrorResponse>"#;
        let e = parse_error("DescribeTargetGroups", 400, body).unwrap();
        assert_eq!(e.code(), Some("Throttling"));
        assert!(e.is_retryable(), "throttling is retried");
        match e {
            AwsError::Api {
                request_id,
                message,
                ..
            } => {
                assert_eq!(request_id.as_deref(), Some("a1b2"));
                assert_eq!(message, "Rate exceeded");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retryable_statuses_and_non_errors() {
        let e = |status: u16, code: &str| AwsError::Api {
            action: "X".into(),
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
        };
        assert!(e(503, "ServiceUnavailable").is_retryable());
        assert!(e(500, "InternalError").is_retryable());
        assert!(e(429, "Whatever").is_retryable());
        assert!(e(400, "RequestLimitExceeded").is_retryable());
        assert!(!e(400, "InvalidParameterValue").is_retryable());
        assert!(!e(400, "InsufficientInstanceCapacity").is_retryable());
        assert_eq!(parse_error("X", 500, "<html>oops</html>"), None);
        assert_eq!(parse_error("X", 500, "not xml"), None);
    }
}
