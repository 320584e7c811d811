//! `glint secret set NAME | list | rm NAME | rotate-key`: the secrets of
//! this data directory, sealed in its store (`glint_store::seal`).
//!
//! A value comes from standard input or `--from-file`, never from an
//! argument (arguments are visible to every user in `/proc/*/cmdline` and
//! kept in shell history). Nothing here prints, logs or records a value:
//! listings and events name secrets and versions. The master key comes
//! from `GLINT_MASTER_KEY` or the data directory's `secrets.key` (created
//! by the first `set`).
//!
//! `rm` is refused while the newest version declares a reader of the
//! secret (its next launch would fail): apply a version without the
//! reference first, or pass `--force` (the event then names the readers).
//! `rotate-key` re-wraps every data key under a new master key in one
//! transaction; values are not re-sealed.

use crate::cli::{Global, OutputFormat, SecretArgs, SecretCommand};
use crate::common::{
    CmdResult, Failed, Paint, Table, fail, fail_io, open_existing_store, open_store,
    open_store_to_read, print_json,
};
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, inert};
use glint_conductor::events::ConductorEvent;
use glint_store::prelude::*;
use glint_store::seal::{
    KEY_FILE, KeyOrigin, MASTER_KEY_ENV, MAX_VALUE, MasterKey, NEW_KEY_FILE, NEW_MASTER_KEY_ENV,
    SealError,
};
use glint_store::{SecretError, SecretRecord};
use serde::Serialize;
use std::io::{IsTerminal, Read};
use std::path::Path;
use zeroize::Zeroizing;

/// Runs `glint secret`.
pub fn run(global: &Global, args: SecretArgs) -> i32 {
    if crate::remote::client(global).is_some() {
        return fail(
            EXIT_USAGE,
            "`glint secret` works on the local data directory only (the API has no secret routes): run it on the conductor's machine, without --addr or GLINT_ADDR",
        )
        .0;
    }
    let r = match args.command {
        SecretCommand::Set { name, from_file } => set(global, &name, from_file.as_deref()),
        SecretCommand::List { output } => list(global, output.output),
        SecretCommand::Rm { name, force } => rm(global, &name, force),
        SecretCommand::RotateKey => rotate_key(global),
    };
    r.unwrap_or_else(|f| f.0)
}

fn record_event(store: &dyn Store, e: ConductorEvent) {
    if let Err(err) = store.append_event(e.to_event()) {
        eprintln!("glint: warning: the secret changed, but its event was not recorded: {err}");
    }
}

/// A secret error as the user sees it: a refused key or value speaks for
/// itself (exit 1), a store failure gets context (exit 2).
fn secret_failed(what: &str, e: SecretError) -> Failed {
    match e {
        SecretError::Seal(
            e @ (SealError::WrongKey { .. }
            | SealError::BadKey { .. }
            | SealError::KeyFileUnsafe { .. }
            | SealError::Empty(_)
            | SealError::TooLarge { .. }
            | SealError::NoKey { .. }
            | SealError::Damaged(_)),
        ) => fail(EXIT_FAILED, format_args!("{e}; nothing was changed")),
        e => fail_io(what, &e),
    }
}

fn check_name(name: &str) -> Result<(), Failed> {
    glint_model::secret::check_secret_name(name).map_err(|e| {
        fail(
            EXIT_USAGE,
            format_args!("`{name}` is not a secret name: {e} (for example `shop/db/password`)"),
        )
    })
}

/// Reads at most `MAX_VALUE + 1` bytes, so an oversized value is refused
/// without reading all of it.
fn read_bounded(mut r: impl Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    r.by_ref()
        .take(MAX_VALUE as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn set(global: &Global, name: &str, from_file: Option<&Path>) -> CmdResult {
    check_name(name)?;
    let value = match from_file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .map_err(|e| fail_io(format_args!("cannot read {}", path.display()), &e))?;
            read_bounded(f)
                .map_err(|e| fail_io(format_args!("cannot read {}", path.display()), &e))?
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!(
                    "Type the value of secret {} and end with Ctrl-D (it is not echoed to any log):",
                    inert(name)
                );
            }
            let mut v = read_bounded(stdin.lock())
                .map_err(|e| fail_io("cannot read the value from standard input", &e))?;
            // `echo value | glint secret set` adds one newline; drop it.
            if v.ends_with(b"\n") {
                v.pop();
                if v.ends_with(b"\r") {
                    v.pop();
                }
            }
            v
        }
    };
    if value.is_empty() {
        return Err(fail(
            EXIT_FAILED,
            format_args!(
                "the value of secret {name} is empty; nothing was changed (give it on standard input or with --from-file PATH)"
            ),
        ));
    }
    if value.len() > MAX_VALUE {
        return Err(fail(
            EXIT_FAILED,
            format_args!(
                "the value of secret {name} is larger than the limit of {MAX_VALUE} bytes; nothing was changed"
            ),
        ));
    }
    let store = open_store(global)?;
    let dir = crate::common::data_dir(global);
    let key = glint_store::secrets::master_key(&store, &dir, true)
        .map_err(|e| secret_failed("cannot load the master key", e))?;
    let by = crate::common::caller();
    let rec = store
        .set_secret(&key, name, &value, &by)
        .map_err(|e| secret_failed("cannot set the secret", e))?;
    drop(value);
    record_event(
        &store,
        ConductorEvent::SecretSet {
            name: rec.name.clone(),
            version: rec.version,
            by,
        },
    );
    let readers = readers_now(&store, name)?;
    println!(
        "Set secret {} to version {}.",
        inert(&rec.name),
        rec.version
    );
    if readers.is_empty() {
        println!(
            "No service of the newest version reads it; declare `secret = \"{}\"` in a variable's `secret` to deliver it.",
            inert(&rec.name)
        );
    } else {
        println!(
            "Read by {}: `glint apply` replaces them with the new version.",
            inert(&readers.join(", "))
        );
    }
    Ok(EXIT_OK)
}

/// The services of the newest version that read secret `name`.
fn readers_now(store: &dyn Store, name: &str) -> Result<Vec<String>, Failed> {
    let latest = store
        .latest_version()
        .map_err(|e| fail_io("cannot read the newest version", &e))?;
    Ok(latest
        .map(|v| {
            v.env
                .secret_readers()
                .get(name)
                .map(|r| r.iter().map(ToString::to_string).collect())
                .unwrap_or_default()
        })
        .unwrap_or_default())
}

/// One secret as `list -o json` prints it (never a value).
#[derive(Debug, Serialize)]
struct SecretReport {
    name: String,
    /// `None`: declared by the newest version but not set.
    version: Option<u64>,
    set_at: Option<i64>,
    set_by: Option<String>,
    /// Services of the newest version that read it.
    readers: Vec<String>,
}

fn list(global: &Global, format: OutputFormat) -> CmdResult {
    let mut reports: Vec<SecretReport> = Vec::new();
    if let Some(store) = open_store_to_read(global)? {
        let records: Vec<SecretRecord> = store
            .secrets()
            .map_err(|e| fail_io("cannot read secrets", &e))?;
        let latest = store
            .latest_version()
            .map_err(|e| fail_io("cannot read the newest version", &e))?;
        let declared = latest
            .as_ref()
            .map(|v| {
                v.env
                    .secret_readers()
                    .into_iter()
                    .map(|(k, r)| (k.to_owned(), r.iter().map(ToString::to_string).collect()))
                    .collect::<std::collections::BTreeMap<String, Vec<String>>>()
            })
            .unwrap_or_default();
        for r in records {
            reports.push(SecretReport {
                readers: declared.get(&r.name).cloned().unwrap_or_default(),
                name: r.name,
                version: Some(r.version),
                set_at: Some(r.set_at),
                set_by: Some(r.set_by),
            });
        }
        for (name, readers) in declared {
            if !reports.iter().any(|r| r.name == name) {
                reports.push(SecretReport {
                    name,
                    version: None,
                    set_at: None,
                    set_by: None,
                    readers,
                });
            }
        }
        reports.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if format == OutputFormat::Json {
        print_json(&reports);
        return Ok(EXIT_OK);
    }
    if reports.is_empty() {
        println!("No secrets.");
        return Ok(EXIT_OK);
    }
    let paint = Paint::stdout(global);
    let mut t = Table::new(&["SECRET", "VERSION", "SET", "BY", "READ BY"], paint);
    for r in &reports {
        t.row(vec![
            r.name.clone(),
            match r.version {
                Some(v) => format!("v{v}"),
                None => paint.red("not set"),
            },
            r.set_at
                .map(crate::common::time_of)
                .unwrap_or_else(|| "-".into()),
            r.set_by.clone().unwrap_or_else(|| "-".into()),
            if r.readers.is_empty() {
                "-".into()
            } else {
                r.readers.join(", ")
            },
        ]);
    }
    print!("{}", t.render());
    if reports.iter().any(|r| r.version.is_none()) {
        println!("Set a missing one with `glint secret set NAME` (from standard input).");
    }
    Ok(EXIT_OK)
}

fn rm(global: &Global, name: &str, force: bool) -> CmdResult {
    check_name(name)?;
    let Some(store) = open_existing_store(global)? else {
        return Err(fail(
            EXIT_FAILED,
            format_args!("no secret {name}: no secret is set in this data directory"),
        ));
    };
    let readers = readers_now(&store, name)?;
    if !readers.is_empty() && !force {
        return Err(fail(
            EXIT_FAILED,
            format_args!(
                "secret {name} is read by {} in the newest version; nothing was removed. Apply a version that no longer reads it first, or pass --force (their next launch will fail until it is set again)",
                readers.join(", ")
            ),
        ));
    }
    let Some(rec) = store
        .remove_secret(name)
        .map_err(|e| fail_io("cannot remove the secret", &e))?
    else {
        return Err(fail(
            EXIT_FAILED,
            format_args!("no secret {name} is set; nothing was removed"),
        ));
    };
    record_event(
        &store,
        ConductorEvent::SecretRemoved {
            name: rec.name.clone(),
            version: rec.version,
            readers: readers.clone(),
        },
    );
    println!(
        "Removed secret {} (version {}).",
        inert(&rec.name),
        rec.version
    );
    Ok(EXIT_OK)
}

fn rotate_key(global: &Global) -> CmdResult {
    let store = open_store(global)?;
    let dir = crate::common::data_dir(global);
    let old = glint_store::secrets::master_key(&store, &dir, false)
        .map_err(|e| secret_failed("cannot load the master key", e))?;
    let from_env = matches!(old.origin(), KeyOrigin::Env(_));
    let new_path = dir.join(NEW_KEY_FILE);
    let new = if from_env {
        let text = Zeroizing::new(std::env::var(NEW_MASTER_KEY_ENV).map_err(|_| {
            fail(
                EXIT_USAGE,
                format_args!(
                    "the master key comes from {MASTER_KEY_ENV}: give the new key in {NEW_MASTER_KEY_ENV} (64 hex digits or base64 of 32 bytes); nothing was changed"
                ),
            )
        })?);
        MasterKey::parse(&text, KeyOrigin::Env(NEW_MASTER_KEY_ENV))
            .map_err(|e| fail(EXIT_USAGE, format_args!("{e}; nothing was changed")))?
    } else {
        let key = MasterKey::generate(KeyOrigin::File(dir.join(KEY_FILE)))
            .map_err(|e| fail_io("cannot make a new master key", &e))?;
        // Written beside the old one first: if the re-wrap commits and this
        // process dies before the rename, the next load sees the store's key
        // id and takes the new file (`MasterKey::load`).
        glint_store::seal::write_key_file(&new_path, &key)
            .map_err(|e| fail_io("cannot write the new master key", &e))?;
        key
    };
    if new.id() == old.id() {
        return Err(fail(
            EXIT_USAGE,
            format_args!("the new master key is the current one; nothing was changed"),
        ));
    }
    let count = match store.rewrap_secrets(&old, &new) {
        Ok(n) => n,
        Err(e) => {
            if !from_env {
                let _ = std::fs::remove_file(&new_path);
            }
            return Err(secret_failed("cannot re-wrap the secrets", e));
        }
    };
    if !from_env {
        let key_path = dir.join(KEY_FILE);
        std::fs::rename(&new_path, &key_path).map_err(|e| {
            fail_io(
                format_args!(
                    "the secrets are re-wrapped under the new key in {}, but it could not replace {}; the next glint command finishes this",
                    new_path.display(),
                    key_path.display()
                ),
                &e,
            )
        })?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
    }
    record_event(
        &store,
        ConductorEvent::SecretKeyRotated {
            count,
            key_id: new.id(),
        },
    );
    println!(
        "Re-wrapped {count} secret(s) under a new master key (id {}).",
        new.id()
    );
    if from_env {
        println!(
            "Set {MASTER_KEY_ENV} to the value of {NEW_MASTER_KEY_ENV} now, for every glint command and the conductor: the old key no longer opens them."
        );
    } else {
        println!(
            "The key is in {}; the old key no longer opens them.",
            dir.join(KEY_FILE).display()
        );
    }
    Ok(EXIT_OK)
}
