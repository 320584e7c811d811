//! `glint rollback [VERSION]`: records a new version whose content equals an
//! earlier one — the last good version unless a number is given; the
//! conductor replaces instances with the same health gating as any apply.
//! (A blue/green service whose old set is still kept switches back at once.)

use crate::cli::{Global, RollbackArgs};
use crate::common::{CmdResult, Paint, fail, fail_op, open_existing_store};
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use glint_model::VersionNumber;

/// Runs `glint rollback`.
pub fn run(global: &Global, args: RollbackArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: RollbackArgs) -> CmdResult {
    let Some(store) = open_existing_store(global)? else {
        return Err(fail(
            EXIT_FAILED,
            "nothing has been applied yet: there is nothing to roll back",
        ));
    };
    let to = match &args.to {
        Some(v) => Some(v.parse::<VersionNumber>().map_err(|_| {
            fail(
                EXIT_USAGE,
                format_args!("`{v}` is not a version number (see `glint history`)"),
            )
        })?),
        None => None,
    };
    let images = crate::commands::images::open_store(global)?;
    let applied = glint_conductor::ops::rollback(&store, &images, to).map_err(|e| fail_op(&e))?;
    let paint = Paint::stdout(global);
    let restores = match applied.version.kind {
        glint_store::VersionKind::Rollback(n) => n.to_string(),
        other => other.to_string(),
    };
    println!(
        "Recorded version {} with the content of version {restores}.",
        paint.bold(&applied.version.number.to_string())
    );
    crate::commands::apply::after_record(global, &store, &applied.version, true, args.wait, paint)
        .map(|_| EXIT_OK)
}
