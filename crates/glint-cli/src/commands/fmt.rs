//! `glint fmt [--check] FILES`: format `.glint` files canonically.
//!
//! Exit codes: 0 all files formatted (or already formatted with `--check`),
//! 1 a file would change (`--check`) or does not parse, 2 a file cannot be
//! read or written.

use crate::cli::{FmtArgs, Global};
use crate::loader::io_reason;
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, stderr_is_terminal, use_color};

/// Runs `glint fmt`.
pub fn run(global: &Global, args: FmtArgs) -> i32 {
    let color = use_color(global.color, stderr_is_terminal());
    let mut code = EXIT_OK;
    for path in &args.files {
        // File names come from the repository: printed escaped.
        let shown = glint_lang::diag::escape_control(&path.display().to_string()).into_owned();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("glint fmt: cannot read `{shown}`: {}", io_reason(&e));
                return EXIT_USAGE;
            }
        };
        match glint_lang::format(&shown, &bytes) {
            Ok(formatted) => {
                if formatted.as_bytes() == bytes.as_slice() {
                    continue;
                }
                if args.check {
                    println!("would reformat {shown}");
                    code = EXIT_FAILED;
                } else if let Err(e) = std::fs::write(path, formatted) {
                    eprintln!("glint fmt: cannot write `{shown}`: {}", io_reason(&e));
                    return EXIT_USAGE;
                } else {
                    println!("formatted {shown}");
                }
            }
            Err(diags) => {
                eprint!("{}", diags.render_human(color));
                code = EXIT_FAILED;
            }
        }
    }
    code
}
