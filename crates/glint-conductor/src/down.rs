//! Bringing an environment down (`glint down`, `POST /v1/down`): a new
//! version with the current one's content minus its services and
//! endpoints, recorded through [`ops::record`](crate::ops::record) like
//! every version.
//!
//! The conductor then drains and retires every instance and closes every
//! endpoint as it would for any version, with the same events; volumes,
//! variables, rules and policies stay declared, and the history stays. The
//! environment comes back with `glint apply`/`glint up` or `glint rollback`
//! (to the version before the down). Because it is a version, a conductor
//! started later keeps the environment down instead of relaunching it.

use crate::ops::{Applied, ErrorKind, OpError, record};
use glint_store::prelude::*;
use glint_store::{NewVersion, VersionKind};

/// Records the down version. Fails when nothing was ever applied; an
/// environment that is already down is left as it is (`new` is false).
pub fn down(store: &dyn Store) -> Result<Applied, OpError> {
    let current = store.latest_version().map_err(|e| OpError {
        kind: ErrorKind::Unavailable,
        message: "cannot read versions".into(),
        source: Some(Box::new(e)),
    })?;
    let Some(current) = current else {
        return Err(OpError {
            kind: ErrorKind::Failed,
            message: "nothing has been applied in this data directory yet: there is nothing to bring down".into(),
            source: None,
        });
    };
    let mut env = current.env;
    env.services.clear();
    env.endpoints.clear();
    record(
        store,
        NewVersion {
            env,
            images: Default::default(),
            root: current.root,
            sources: current.sources,
            kind: VersionKind::Down,
        },
    )
}
