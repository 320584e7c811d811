//! The one place a launch spec is built.
//!
//! A [`LaunchSpec`] is made from the service's launch [`Shape`] — the same
//! value whose fingerprint decides whether instances are replaced — so
//! whatever the shape contains reaches the provider, and whatever reaches the
//! provider is in the shape: an instance can never be launched with a
//! setting whose change would not have replaced it.

use crate::plan::{Shape, Target, shape};
use glint_model::{Digest, InstanceId, Labels, Name, VersionNumber};
use glint_provider::{LaunchImage, LaunchSpec, VolumeMount};
use std::path::PathBuf;

/// The spec to launch instance `id` of `service` in `target`, in `slot`
/// (services with per-instance volumes), with the image still to be
/// prepared (see [`with_image`]). `None` if the service or its image digest
/// is not in the target.
pub fn spec(
    target: Target<'_>,
    version: VersionNumber,
    service: &Name,
    id: &InstanceId,
    store_id: &str,
    slot: Option<u32>,
) -> Option<LaunchSpec> {
    let shape = shape(target, service)?;
    let digest = shape.digest?.clone();
    let labels = Labels {
        store: store_id.to_owned(),
        environment: target.env.name.clone(),
        service: service.clone(),
        version,
        instance: id.clone(),
        image: digest.clone(),
    };
    Some(from_shape(&shape, labels, digest, target, slot))
}

/// The volumes an instance in `slot` mounts: a per-instance volume by its
/// slot's name (`NAME-SLOT`), every read-write one exclusively (one writer
/// at a time).
pub fn volume_mounts(shape: &Shape<'_>, slot: Option<u32>) -> Vec<VolumeMount> {
    shape
        .mounts
        .iter()
        .map(|m| {
            let per_instance = shape.per_instance.contains(&&m.volume);
            VolumeMount {
                volume: match (per_instance, slot) {
                    (true, Some(s)) => format!("{}-{s}", m.volume),
                    _ => m.volume.to_string(),
                },
                declared: m.volume.clone(),
                path: m.path.clone(),
                read_only: m.read_only,
                exclusive: !m.read_only,
            }
        })
        .collect()
}

fn from_shape(
    shape: &Shape<'_>,
    labels: Labels,
    digest: Digest,
    target: Target<'_>,
    slot: Option<u32>,
) -> LaunchSpec {
    let mut env: std::collections::BTreeMap<String, String> =
        shape.image_env.cloned().unwrap_or_default();
    env.extend(shape.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert("GLINT_INSTANCE_ID".into(), labels.instance.to_string());
    env.insert("GLINT_SERVICE".into(), labels.service.to_string());
    env.insert("GLINT_VERSION".into(), labels.version.to_string());
    env.insert("GLINT_ENVIRONMENT".into(), target.env.name.to_string());
    let mut argv: Vec<String> = shape.entrypoint.map(<[String]>::to_vec).unwrap_or_default();
    argv.extend(shape.args.iter().cloned());
    LaunchSpec {
        labels,
        image: LaunchImage {
            digest,
            rootfs: PathBuf::new(),
            archive: None,
        },
        argv,
        env,
        workdir: shape.workdir.unwrap_or("/").to_owned(),
        port: shape.port,
        resources: shape.resources.clone(),
        mounts: volume_mounts(shape, slot),
        // Values are added at launch time only ([`with_secrets`]): the
        // shape holds names and versions.
        secrets: Vec::new(),
        own_network: shape.own_network,
        glint: None,
    }
}

/// The values of the secrets `service` reads in `env`, opened from the
/// store with the master key of data directory `dir` — the only place a
/// conductor opens a secret. A secret that is not set, or a key that does
/// not open it, fails the launch with what to do.
pub fn secret_files(
    store: &dyn glint_store::Store,
    dir: Option<&std::path::Path>,
    env: &glint_model::Environment,
    service: &Name,
) -> Result<Vec<glint_provider::SecretFile>, String> {
    let names = env.secrets_of(service);
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let Some(dir) = dir else {
        return Err(format!(
            "it reads secret {} but this conductor has no data directory to find the master key in",
            names.join(", ")
        ));
    };
    let key = glint_store::secrets::master_key(store, dir, false)
        .map_err(|e| format!("cannot load the master key: {}", crate::error_chain(&e)))?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match store.open_secret(&key, name) {
            Ok(Some((rec, value))) => out.push(glint_provider::SecretFile {
                name: rec.name,
                version: rec.version,
                value: glint_provider::SecretValue::new(value),
            }),
            Ok(None) => {
                return Err(format!(
                    "secret {name} is not set: run `glint secret set {name}`"
                ));
            }
            Err(e) => return Err(crate::error_chain(&e)),
        }
    }
    Ok(out)
}

/// What instance `labels.instance` gets under `/run/glint`: an identity
/// issued at `now`, the variables its service reads (literal values, and
/// runtime ones as they are now: written, or their initial value) and the
/// instance API socket. Secret variables are not here (`/run/secrets`).
pub fn glint_files(
    issuer: &crate::identity::Issuer,
    store: &dyn glint_store::Store,
    env: &glint_model::Environment,
    labels: &Labels,
    now: i64,
) -> Result<glint_provider::GlintFiles, String> {
    use glint_model::VariableValue;
    let claims = issuer.claims(
        &labels.service,
        &labels.instance,
        labels.version,
        &labels.environment,
        now,
    );
    let token = issuer.issue(&claims);
    let mut variables = Vec::new();
    for (name, v) in &env.variables {
        if !v.readers.contains(&labels.service) && !v.writers.contains(&labels.service) {
            continue;
        }
        let value = match &v.value {
            VariableValue::Literal(value) => Some(value.clone()),
            VariableValue::Runtime(initial) => match store.variable(name.as_str()) {
                Ok(Some(r)) => Some(r.value),
                Ok(None) => initial.clone(),
                Err(e) => {
                    return Err(format!(
                        "cannot read variable {name}: {}",
                        crate::error_chain(&e)
                    ));
                }
            },
            VariableValue::Secret(_) => None,
        };
        if let Some(value) = value {
            variables.push((name.to_string(), value));
        }
    }
    Ok(glint_provider::GlintFiles {
        identity: glint_provider::SecretValue::from_vec(token.into_bytes()),
        variables,
        api_socket: issuer.api_socket.clone(),
    })
}

/// The spec with its prepared (verified) image.
pub fn with_image(mut spec: LaunchSpec, image: LaunchImage) -> LaunchSpec {
    spec.image = image;
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fingerprint;
    use glint_model::*;
    use std::collections::BTreeMap;

    #[test]
    fn everything_in_the_shape_reaches_the_spec() {
        let name = |s: &str| Name::new(s).unwrap();
        let mut e = Environment::empty(name("t"));
        let mut image = Image::scratch(vec!["/app".into(), "serve".into()]);
        image.env.insert("FROM_IMAGE".into(), "1".into());
        image.workdir = "/srv".into();
        e.images.insert(name("app"), image);
        let mut svc = Service::new(name("app"));
        svc.args = vec!["--fast".into()];
        svc.env.insert("GREETING".into(), "hi".into());
        svc.port = 9000;
        svc.resources.memory = Some(Bytes(64 << 20));
        svc.mounts = vec![Mount {
            volume: name("data"),
            path: "/data".into(),
            read_only: false,
        }];
        e.services.insert(name("web"), svc);
        let images: BTreeMap<Name, Digest> = [(name("app"), Digest::of(b"img"))].into();
        let target = Target {
            env: &e,
            images: &images,
        };
        let id = InstanceId::from_entropy(&name("web"), 1);
        let s = spec(target, VersionNumber(7), &name("web"), &id, "store1", None).unwrap();
        assert_eq!(s.argv, ["/app", "serve", "--fast"]);
        assert_eq!(s.env["FROM_IMAGE"], "1");
        assert_eq!(s.env["GREETING"], "hi");
        assert_eq!(s.env["GLINT_VERSION"], "7");
        assert_eq!(s.workdir, "/srv");
        assert_eq!(s.port, 9000);
        assert_eq!(s.resources.memory, Some(Bytes(64 << 20)));
        assert_eq!(s.mounts.len(), 1, "mounts reach the provider");
        assert_eq!(s.mounts[0].volume, "data");
        assert!(s.mounts[0].exclusive, "read-write: one writer at a time");
        assert_eq!(s.labels.image, Digest::of(b"img"));
        assert_eq!(s.labels.version, VersionNumber(7));
        // And a change of any of them changes the fingerprint.
        let before = fingerprint(target, &name("web"));
        e.services.get_mut(&name("web")).unwrap().mounts.clear();
        let target = Target {
            env: &e,
            images: &images,
        };
        assert_ne!(before, fingerprint(target, &name("web")));
    }
}
