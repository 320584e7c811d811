//! `file:` URIs to and from paths (percent-encoding by hand: the two
//! directions are all the server needs).

use lsp_types::Uri;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The local path of a `file:` URI (`None` for other schemes, a remote
/// authority, or a relative path).
pub fn to_path(uri: &Uri) -> Option<PathBuf> {
    let s = uri.as_str();
    let rest = s.strip_prefix("file://")?;
    // `file:///p` or `file://localhost/p`.
    let path = if let Some(p) = rest.strip_prefix("localhost") {
        p
    } else {
        rest
    };
    if !path.starts_with('/') {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let bytes = decode(path)?;
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The `file:` URI of an absolute path.
pub fn from_path(path: &Path) -> Option<Uri> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut s = String::from("file://");
    for &c in bytes {
        if c.is_ascii_alphanumeric() || b"/-._~".contains(&c) {
            s.push(char::from(c));
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    Uri::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_uris() {
        for p in ["/a/b c/ç#1.glint", "/work/main.glint", "/x%y"] {
            let uri = from_path(Path::new(p)).unwrap_or_else(|| panic!("no uri for {p}"));
            assert_eq!(
                to_path(&uri).as_deref(),
                Some(Path::new(p)),
                "{}",
                uri.as_str()
            );
        }
        let uri = Uri::from_str("file:///tmp/a%20b.glint").ok();
        assert_eq!(
            uri.as_ref().and_then(to_path).as_deref(),
            Some(Path::new("/tmp/a b.glint"))
        );
        let other = Uri::from_str("untitled:Untitled-1").ok();
        assert_eq!(other.as_ref().and_then(to_path), None);
        assert_eq!(from_path(Path::new("relative")), None);
    }
}
