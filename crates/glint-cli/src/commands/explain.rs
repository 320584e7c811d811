//! `glint explain CODE`: the long explanation of a diagnostic code.

use crate::cli::{ExplainArgs, Global};
use crate::output::{EXIT_OK, EXIT_USAGE};

/// Runs `glint explain`.
pub fn run(_global: &Global, args: ExplainArgs) -> i32 {
    match glint_lang::explain(&args.code) {
        Some(text) => {
            print!("{text}");
            EXIT_OK
        }
        None => {
            eprintln!(
                "glint explain: unknown code `{}`; codes look like E0103 (see docs/language.md for the list)",
                args.code
            );
            EXIT_USAGE
        }
    }
}
