//! The canonical formatter (placeholder until the real one lands).

use crate::diag::Diagnostics;

/// Formats a source file canonically.
pub fn format(_key: &str, source: &[u8]) -> Result<String, Diagnostics> {
    Ok(String::from_utf8_lossy(source).into_owned())
}
