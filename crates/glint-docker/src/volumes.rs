//! Volumes as labelled Docker named volumes (the engine's `local` driver:
//! a directory the engine owns).
//!
//! A Glint volume `NAME` of store `S` is the named volume
//! `glint-<S prefix>-NAME` ([`naming::volume_name`]), labelled with the
//! store, the environment that created it and the Glint volume name
//! ([`naming::keys::VOLUME`]). It is created before the first container
//! that mounts it, never by the engine implicitly (that one would carry no
//! labels), and a named volume by that name that is not this store's is
//! refused rather than reused. Containers mount it as a `volume` mount;
//! removing a container (`v: true` removes anonymous volumes only) never
//! touches it.
//!
//! One writer at a time: before a container that mounts a volume
//! read-write and exclusively is created, the engine is asked for running
//! containers using the volume (its `volume` filter, whoever they belong
//! to); any found refuses the launch. Launches with such mounts are
//! serialised in the provider, so the check and the start cannot interleave
//! with another launch of this conductor (and there is one conductor per
//! store: the leadership lock).

use crate::naming::{self, keys};
use crate::watch::{backend, is_not_found};
use bollard::Docker;
use bollard::models::{Volume, VolumeCreateRequest};
use bollard::query_parameters::{ListContainersOptions, RemoveVolumeOptions};
use glint_model::keys as label_keys;
use glint_provider::{ProviderError, VolumeInfo};
use std::collections::HashMap;

/// The value of [`keys::ROLE`] on Glint's volumes.
pub const ROLE_VOLUME: &str = "volume";

/// Creates volume `name` of `store` if it does not exist; refuses a named
/// volume of that name that is not this store's.
pub async fn ensure(
    docker: &Docker,
    store: &str,
    environment: &str,
    name: &str,
) -> Result<Volume, ProviderError> {
    let vname = naming::volume_name(store, name);
    match docker.inspect_volume(&vname).await {
        Ok(v) => {
            if v.labels.get(label_keys::STORE).map(String::as_str) != Some(store)
                || v.labels.get(keys::VOLUME).map(String::as_str) != Some(name)
            {
                return Err(ProviderError::Backend(format!(
                    "docker volume {vname} exists but is not Glint's volume `{name}` of this store; remove or rename it"
                )));
            }
            Ok(v)
        }
        Err(e) if is_not_found(&e) => {
            let labels = HashMap::from([
                (label_keys::STORE.to_owned(), store.to_owned()),
                (label_keys::ENVIRONMENT.to_owned(), environment.to_owned()),
                (keys::VOLUME.to_owned(), name.to_owned()),
                (keys::ROLE.to_owned(), ROLE_VOLUME.to_owned()),
            ]);
            let v = docker
                .create_volume(VolumeCreateRequest {
                    name: Some(vname.clone()),
                    labels: Some(labels),
                    ..Default::default()
                })
                .await
                .map_err(|e| backend(format!("create volume {vname}"), e))?;
            tracing::info!(volume = name, docker_volume = %vname, "created volume");
            Ok(v)
        }
        Err(e) => Err(backend(format!("inspect volume {vname}"), e)),
    }
}

/// Containers (ids) using the named volume `vname`: running ones only, or
/// all of them.
pub async fn users(docker: &Docker, vname: &str, all: bool) -> Result<Vec<String>, ProviderError> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all,
            filters: Some(HashMap::from([(
                "volume".to_owned(),
                vec![vname.to_owned()],
            )])),
            ..Default::default()
        }))
        .await
        .map_err(|e| backend(format!("list the containers using {vname}"), e))?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// What the engine knows of volume `name` of `store`.
pub async fn info(
    docker: &Docker,
    store: &str,
    name: &str,
) -> Result<Option<VolumeInfo>, ProviderError> {
    let vname = naming::volume_name(store, name);
    match docker.inspect_volume(&vname).await {
        Ok(v) if v.labels.get(label_keys::STORE).map(String::as_str) == Some(store) => {
            let host = std::path::PathBuf::from(&v.mountpoint);
            let used = tokio::task::spawn_blocking({
                let host = host.clone();
                move || glint_provider::disk_usage(&host).ok()
            })
            .await
            .ok()
            .flatten();
            Ok(Some(VolumeInfo {
                name: name.to_owned(),
                location: vname,
                host_path: (!v.mountpoint.is_empty()).then_some(host),
                used_bytes: used,
            }))
        }
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(backend(format!("inspect volume {vname}"), e)),
    }
}

/// Deletes volume `name` of `store`; refused while any container uses it.
pub async fn remove(docker: &Docker, store: &str, name: &str) -> Result<(), ProviderError> {
    let vname = naming::volume_name(store, name);
    if info(docker, store, name).await?.is_none() {
        return Ok(());
    }
    let users = users(docker, &vname, true).await?;
    if !users.is_empty() {
        return Err(ProviderError::Backend(format!(
            "docker volume {vname} is used by {} container(s)",
            users.len()
        )));
    }
    match docker
        .remove_volume(&vname, Some(RemoveVolumeOptions { force: false }))
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(backend(format!("remove volume {vname}"), e)),
    }
}

/// [`remove`] over the engine `DOCKER_HOST` names (for `glint volume rm`,
/// which runs without a provider).
pub async fn remove_with_defaults(store: &str, name: &str) -> Result<(), ProviderError> {
    let docker = Docker::connect_with_defaults()
        .map_err(|e| backend("cannot connect to the engine (DOCKER_HOST)", e))?
        .negotiate_version()
        .await
        .map_err(|e| backend("cannot reach the engine", e))?;
    remove(&docker, store, name).await
}
