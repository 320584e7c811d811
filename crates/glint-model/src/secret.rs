//! Secret names: what a `secret = "..."` reference and `glint secret set
//! NAME` may name, and the simple rules that tell a pasted credential from
//! a name.
//!
//! A secret name is 1 to 128 bytes of segments separated by `/`
//! (`db/password`, `shop/stripe/api-key`): each segment starts with an
//! ASCII letter or digit and continues with letters, digits, `.`, `_` or
//! `-`. So a name is also a safe relative path (`/run/secrets/db/password`:
//! no `..`, no empty or hidden segment) and an inert word on a terminal.

/// The longest secret name, in bytes.
pub const MAX_SECRET_NAME: usize = 128;
/// The most `/`-separated segments in a secret name.
pub const MAX_SECRET_SEGMENTS: usize = 8;
/// A segment at least this long that mixes lower case, upper case and
/// digits looks like a credential (an API key, a token), not a name.
pub const CREDENTIAL_LIKE_SEGMENT: usize = 20;

/// Why a string is not a secret name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretNameError {
    /// Nothing.
    #[error("a secret name cannot be empty")]
    Empty,
    /// Longer than [`MAX_SECRET_NAME`].
    #[error("it is {0} bytes long; a secret name has at most {MAX_SECRET_NAME}")]
    TooLong(usize),
    /// More than [`MAX_SECRET_SEGMENTS`] segments.
    #[error("it has more than {MAX_SECRET_SEGMENTS} `/`-separated parts")]
    TooDeep,
    /// An empty segment (`a//b`, a leading or trailing `/`).
    #[error("it has an empty part (a leading, trailing or doubled `/`)")]
    EmptySegment,
    /// A segment starting with something else than a letter or digit.
    #[error("the part `{0}` does not start with a letter or digit")]
    BadStart(String),
    /// A character outside the allowed set.
    #[error("it contains {0:?}; a secret name uses letters, digits, `.`, `_`, `-` and `/`")]
    BadChar(char),
}

/// Checks that `s` is a secret name.
pub fn check_secret_name(s: &str) -> Result<(), SecretNameError> {
    if s.is_empty() {
        return Err(SecretNameError::Empty);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(SecretNameError::BadChar(c));
    }
    if s.len() > MAX_SECRET_NAME {
        return Err(SecretNameError::TooLong(s.len()));
    }
    let segments: Vec<&str> = s.split('/').collect();
    if segments.len() > MAX_SECRET_SEGMENTS {
        return Err(SecretNameError::TooDeep);
    }
    for seg in segments {
        match seg.chars().next() {
            None => return Err(SecretNameError::EmptySegment),
            Some(c) if !c.is_ascii_alphanumeric() => {
                return Err(SecretNameError::BadStart(seg.to_owned()));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The segment of `s` that looks like a credential rather than a name: at
/// least [`CREDENTIAL_LIKE_SEGMENT`] characters mixing lower case, upper
/// case and digits (`sk_live_4eC39HqLyjWDarjtT1zdp7dc`,
/// `AKIAIOSFODNN7EXAMPLEKEY`). Names such as `shop/db/password` never are.
pub fn credential_like_segment(s: &str) -> Option<&str> {
    s.split(['/', ':']).find(|seg| {
        seg.len() >= CREDENTIAL_LIKE_SEGMENT
            && seg.chars().any(|c| c.is_ascii_lowercase())
            && seg.chars().any(|c| c.is_ascii_uppercase())
            && seg.chars().any(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_paths_of_plain_segments() {
        for ok in ["db/password", "a", "shop/stripe/api-key", "x.y_z-1/2"] {
            assert_eq!(check_secret_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_secret_name(""), Err(SecretNameError::Empty));
        assert_eq!(check_secret_name("/a"), Err(SecretNameError::EmptySegment));
        assert_eq!(check_secret_name("a/"), Err(SecretNameError::EmptySegment));
        assert_eq!(
            check_secret_name("a//b"),
            Err(SecretNameError::EmptySegment)
        );
        assert_eq!(
            check_secret_name("a/../b"),
            Err(SecretNameError::BadStart("..".into()))
        );
        assert_eq!(
            check_secret_name(".hidden"),
            Err(SecretNameError::BadStart(".hidden".into()))
        );
        assert_eq!(
            check_secret_name("vault:x"),
            Err(SecretNameError::BadChar(':'))
        );
        assert_eq!(check_secret_name("a b"), Err(SecretNameError::BadChar(' ')));
        assert!(matches!(
            check_secret_name(&"a".repeat(129)),
            Err(SecretNameError::TooLong(129))
        ));
        assert_eq!(
            check_secret_name("a/b/c/d/e/f/g/h/i"),
            Err(SecretNameError::TooDeep)
        );
    }

    #[test]
    fn credentials_are_told_from_names() {
        assert_eq!(credential_like_segment("shop/db/password"), None);
        assert_eq!(
            credential_like_segment("shop/payments-provider-api-key"),
            None
        );
        assert_eq!(
            credential_like_segment("stripe/sk4eC39HqLyjWDarjtT1zdp7dc"),
            Some("sk4eC39HqLyjWDarjtT1zdp7dc")
        );
    }
}
