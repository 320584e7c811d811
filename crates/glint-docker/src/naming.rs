//! Names and labels of the Docker objects Glint creates.
//!
//! Every container carries the instance's [`Labels`](glint_model::Labels)
//! plus the few launch facts that Docker does not give back reliably and that
//! drift detection compares against after a restart (the port and the
//! declared limits). Labels cannot be changed on a live container, so they are
//! a trustworthy record of what was launched.

use glint_model::{InstanceId, Name};

/// Extra label keys on containers and networks (besides
/// [`glint_model::keys`]).
pub mod keys {
    /// The port the program listens on inside the container.
    pub const PORT: &str = "dev.glint.port";
    /// The declared memory limit in bytes (`0`: none).
    pub const MEMORY: &str = "dev.glint.memory";
    /// The declared CPU limit in billionths of a CPU (`0`: none).
    pub const NANO_CPUS: &str = "dev.glint.nano-cpus";
    /// The declared pids limit (`0`: none).
    pub const PIDS: &str = "dev.glint.pids";
    /// On networks and volumes: marks what Glint created (`network`,
    /// `volume`).
    pub const ROLE: &str = "dev.glint.role";
    /// On volumes: the Glint volume name (`pgdata`, `pgdata-0`).
    pub const VOLUME: &str = "dev.glint.volume";
}

/// Repository under which loaded images are tagged; the tag is the digest's
/// hex, so `glint/image:<64 hex>` names exactly one Glint image.
pub const IMAGE_REPO: &str = "glint/image";

/// The container name of `instance` in `environment`.
pub fn container_name(environment: &Name, instance: &InstanceId) -> String {
    format!("glint-{environment}-{instance}")
}

/// The name of the per-environment bridge network of a store.
///
/// The store id is shortened to 8 characters (the characters Docker allows in
/// names; anything else becomes `x`) so that two data directories on one
/// engine never share a network.
pub fn network_name(environment: &Name, store_id: &str) -> String {
    format!("glint-{environment}-{}", store_prefix(store_id))
}

/// The named volume holding Glint volume `volume` of a store (volumes
/// belong to the store, whatever environment mounts them).
pub fn volume_name(store_id: &str, volume: &str) -> String {
    format!("glint-{}-{volume}", store_prefix(store_id))
}

/// The first 8 characters of a store id, in what Docker allows in names.
fn store_prefix(store_id: &str) -> String {
    store_id
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(8)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                'x'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_docker_names() {
        let env = Name::new("hello").unwrap();
        let web = Name::new("web").unwrap();
        let id = InstanceId::from_entropy(&web, 42);
        assert_eq!(container_name(&env, &id), format!("glint-hello-{id}"));
        assert_eq!(
            network_name(&env, "ab/cd:ef0123456"),
            "glint-hello-abxcdxef"
        );
        assert_eq!(network_name(&env, "s1"), "glint-hello-s1");
        assert_eq!(
            volume_name("ab/cd:ef0123456", "pgdata-0"),
            "glint-abxcdxef-pgdata-0"
        );
    }
}
