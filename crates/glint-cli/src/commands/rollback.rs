//! `glint rollback [VERSION]`: records a new version whose content equals an
//! earlier one; the conductor replaces instances with the same health gating
//! as any apply. (A blue/green service whose old set is still kept switches
//! back at once.)

use crate::cli::{Global, RollbackArgs};
use crate::common::{CmdResult, Paint, fail, fail_io, open_existing_store};
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use glint_model::VersionNumber;
use glint_store::{Created, EventKind, NewEvent, NewVersion, Outcome, VersionKind};

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
    let io = |e: glint_store::StoreError| fail_io("cannot read versions", &e);
    let Some(current) = store.latest_version().map_err(io)? else {
        return Err(fail(
            EXIT_FAILED,
            "nothing has been applied yet: there is nothing to roll back",
        ));
    };
    let to = match &args.to {
        Some(v) => {
            let n: VersionNumber = v.parse().map_err(|_| {
                fail(
                    EXIT_USAGE,
                    format_args!("`{v}` is not a version number (see `glint history`)"),
                )
            })?;
            if n >= current.number {
                return Err(fail(
                    EXIT_USAGE,
                    format_args!(
                        "version {n} is not earlier than the current version {}",
                        current.number
                    ),
                ));
            }
            n
        }
        None => {
            // The newest earlier version that converged and differs.
            let versions = store.list_versions().map_err(io)?;
            versions
                .iter()
                .rev()
                .find(|v| {
                    v.number < current.number
                        && v.hash != current.hash
                        && v.outcome == Some(Outcome::Converged)
                })
                .map(|v| v.number)
                .ok_or_else(|| {
                    fail(
                        EXIT_FAILED,
                        "no earlier version with different content ever converged; name one: `glint rollback VERSION`",
                    )
                })?
        }
    };
    let old = store.version(to).map_err(|e| match e {
        glint_store::StoreError::NoSuchVersion(n) => fail(
            EXIT_USAGE,
            format_args!("version {n} does not exist (see `glint history`)"),
        ),
        other => fail_io("cannot read the version", &other),
    })?;
    // The images of an old version may have been garbage-collected.
    let images = crate::commands::images::open_store(global)?;
    for (name, digest) in &old.images {
        if images.verify(digest).is_err() {
            return Err(fail(
                EXIT_FAILED,
                format_args!(
                    "version {to} needs image {name} ({digest}), which is missing or damaged in the image store; nothing was changed"
                ),
            ));
        }
    }
    let paint = Paint::stdout(global);
    let created = store
        .create_version(NewVersion {
            env: old.env,
            images: old.images,
            root: old.root,
            sources: old.sources,
            kind: VersionKind::Rollback(to),
        })
        .map_err(|e| fail_io("cannot record the version", &e))?;
    let Created::New(v) = created else {
        return Err(fail(
            EXIT_FAILED,
            "the rollback version could not be recorded",
        ));
    };
    if let Err(e) = store.append_event(
        NewEvent::info(
            EventKind::VersionRolledBack,
            format!(
                "version {} rolls back to version {to} (requested)",
                v.number
            ),
        )
        .version(v.number),
    ) {
        eprintln!("glint: warning: the version is recorded, but its event is not: {e}");
    }
    println!(
        "Recorded version {} with the content of version {to}.",
        paint.bold(&v.number.to_string())
    );
    crate::commands::apply::after_record(global, &store, &v, true, args.wait, paint)
        .map(|_| EXIT_OK)
}
