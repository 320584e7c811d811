//! Ownership labels.
//!
//! Everything Glint creates (a process, a container, a network, a firewall
//! table) carries these labels. They are how a restarted conductor finds its own
//! things again: labelled things the store knows are adopted, labelled things it
//! does not know are orphans and are removed, unlabelled things are never
//! touched (architecture invariant 3).

use crate::{Digest, InstanceId, Name, VersionNumber};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Label keys, in the reverse-DNS style Docker and Kubernetes users know.
pub mod keys {
    /// Random id of the store (data directory) that owns the thing.
    pub const STORE: &str = "dev.glint.store";
    /// Environment name.
    pub const ENVIRONMENT: &str = "dev.glint.environment";
    /// Service name.
    pub const SERVICE: &str = "dev.glint.service";
    /// Version number the instance was launched for.
    pub const VERSION: &str = "dev.glint.version";
    /// Instance id.
    pub const INSTANCE: &str = "dev.glint.instance";
    /// Digest of the image the instance runs.
    pub const IMAGE: &str = "dev.glint.image";
}

/// The labels of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Labels {
    /// Id of the store that owns the instance (see [`keys::STORE`]). Two data
    /// directories on one machine never adopt or remove each other's instances.
    pub store: String,
    /// Environment name.
    pub environment: Name,
    /// Service the instance belongs to.
    pub service: Name,
    /// Version the instance was launched for.
    pub version: VersionNumber,
    /// The instance's id.
    pub instance: InstanceId,
    /// Digest of the image it runs.
    pub image: Digest,
}

/// Why a label map is not a complete, valid set of Glint labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A required key is absent.
    #[error("label `{0}` is missing")]
    Missing(&'static str),
    /// A key is present with an invalid value.
    #[error("label `{key}` has invalid value `{value}`")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The value found.
        value: String,
    },
}

impl Labels {
    /// The labels as a flat key/value map (Docker labels, label files).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (keys::STORE.to_owned(), self.store.clone()),
            (keys::ENVIRONMENT.to_owned(), self.environment.to_string()),
            (keys::SERVICE.to_owned(), self.service.to_string()),
            (keys::VERSION.to_owned(), self.version.to_string()),
            (keys::INSTANCE.to_owned(), self.instance.to_string()),
            (keys::IMAGE.to_owned(), self.image.to_string()),
        ])
    }

    /// Reads labels back from a flat map; extra keys are ignored.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Labels, LabelError> {
        fn get<'a>(
            map: &'a BTreeMap<String, String>,
            key: &'static str,
        ) -> Result<&'a str, LabelError> {
            map.get(key)
                .map(String::as_str)
                .ok_or(LabelError::Missing(key))
        }
        fn invalid(key: &'static str, value: &str) -> LabelError {
            LabelError::Invalid {
                key,
                value: value.to_owned(),
            }
        }
        let v = get(map, keys::ENVIRONMENT)?;
        let environment = Name::new(v).map_err(|_| invalid(keys::ENVIRONMENT, v))?;
        let v = get(map, keys::SERVICE)?;
        let service = Name::new(v).map_err(|_| invalid(keys::SERVICE, v))?;
        let v = get(map, keys::VERSION)?;
        let version = v.parse().map_err(|_| invalid(keys::VERSION, v))?;
        let v = get(map, keys::INSTANCE)?;
        let instance = InstanceId::parse(v).map_err(|_| invalid(keys::INSTANCE, v))?;
        let v = get(map, keys::IMAGE)?;
        let image = Digest::parse(v).map_err(|_| invalid(keys::IMAGE, v))?;
        Ok(Labels {
            store: get(map, keys::STORE)?.to_owned(),
            environment,
            service,
            version,
            instance,
            image,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_a_map() {
        let service = Name::new("web").unwrap();
        let labels = Labels {
            store: "s1".into(),
            environment: Name::new("hello").unwrap(),
            instance: InstanceId::from_entropy(&service, 7),
            service,
            version: VersionNumber(3),
            image: Digest::of(b"x"),
        };
        let mut map = labels.to_map();
        assert_eq!(Labels::from_map(&map).unwrap(), labels);
        map.insert("other".into(), "ignored".into());
        assert_eq!(Labels::from_map(&map).unwrap(), labels);
        map.remove(keys::INSTANCE);
        assert_eq!(
            Labels::from_map(&map),
            Err(LabelError::Missing(keys::INSTANCE))
        );
    }
}
