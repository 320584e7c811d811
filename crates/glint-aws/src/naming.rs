//! Names, tags and derived values of what Glint creates on AWS: tag keys
//! (Glint's labels, plus a few of its own), security group names, the
//! instance-type table, the idempotency token and the user data.

use glint_model::{Bytes, InstanceId, Labels, Name, Resources};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Tag keys besides [`glint_model::keys`].
pub mod keys {
    /// What a tagged resource is to Glint (`security-group`).
    pub const ROLE: &str = "dev.glint.role";
    /// The port the program listens on inside the instance.
    pub const PORT: &str = "dev.glint.port";
    /// AWS's own display name.
    pub const NAME: &str = "Name";
    /// On target groups: the endpoint it is.
    pub const ENDPOINT: &str = "dev.glint.endpoint";
}

/// The first 8 characters of a store id that security-group names allow.
fn store_prefix(store_id: &str) -> String {
    store_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(8)
        .collect()
}

/// The name of `service`'s security group: unique per store and environment.
pub fn group_name(store_id: &str, environment: &Name, service: &Name) -> String {
    format!("glint-{environment}-{}-{service}", store_prefix(store_id))
}

/// The tags on `service`'s security group.
pub fn group_tags(store_id: &str, environment: &Name, service: &Name) -> BTreeMap<String, String> {
    BTreeMap::from([
        (glint_model::keys::STORE.to_owned(), store_id.to_owned()),
        (
            glint_model::keys::ENVIRONMENT.to_owned(),
            environment.to_string(),
        ),
        (glint_model::keys::SERVICE.to_owned(), service.to_string()),
        (keys::ROLE.to_owned(), "security-group".to_owned()),
        (
            keys::NAME.to_owned(),
            group_name(store_id, environment, service),
        ),
    ])
}

/// The name of `endpoint`'s target group: ELB allows 32 characters, so a
/// hash of store, environment and endpoint, then as much of the endpoint's
/// name as fits.
pub fn target_group_name(store_id: &str, environment: &Name, endpoint: &Name) -> String {
    let hash = Sha256::digest(format!("{store_id}/{environment}/{endpoint}").as_bytes());
    let mut name = format!("gl-{}-", &crate::sigv4::hex(&hash)[..10]);
    name.extend(
        endpoint
            .as_str()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(32 - name.len()),
    );
    name.trim_end_matches('-').to_owned()
}

/// The tags on `endpoint`'s target group.
pub fn target_group_tags(
    store_id: &str,
    environment: &Name,
    endpoint: &Name,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (glint_model::keys::STORE.to_owned(), store_id.to_owned()),
        (
            glint_model::keys::ENVIRONMENT.to_owned(),
            environment.to_string(),
        ),
        (keys::ENDPOINT.to_owned(), endpoint.to_string()),
        (keys::ROLE.to_owned(), "target-group".to_owned()),
    ])
}

/// The tags on an instance: its labels, its port and a `Name`.
pub fn instance_tags(labels: &Labels, port: u16) -> BTreeMap<String, String> {
    let mut tags = labels.to_map();
    tags.insert(keys::PORT.to_owned(), port.to_string());
    tags.insert(
        keys::NAME.to_owned(),
        format!("glint-{}-{}", labels.environment, labels.instance),
    );
    tags
}

/// RunInstances' `ClientToken` for an instance: a function of the store and
/// the instance id only, so that a launch retried after any failure (a lost
/// answer, a conductor killed mid-call) names the same instance, and EC2
/// makes at most one.
pub fn client_token(store_id: &str, instance: &InstanceId) -> String {
    let hash = Sha256::digest(format!("{store_id}/{instance}").as_bytes());
    format!("glint-{}", crate::sigv4::hex(&hash[..24]))
}

/// The instance types Glint picks from, smallest first: (name, vCPUs,
/// memory in GiB). See `docs/aws.md`.
pub const INSTANCE_TYPES: &[(&str, u32, u64)] = &[
    ("t3.nano", 2, 0), // 0.5 GiB, handled below
    ("t3.micro", 2, 1),
    ("t3.small", 2, 2),
    ("t3.medium", 2, 4),
    ("t3.large", 2, 8),
    ("t3.xlarge", 4, 16),
    ("t3.2xlarge", 8, 32),
    ("m5.4xlarge", 16, 64),
    ("m5.8xlarge", 32, 128),
    ("m5.12xlarge", 48, 192),
    ("m5.24xlarge", 96, 384),
];

/// The type used when a service declares no resources.
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.micro";

/// The smallest listed instance type with at least the declared memory and
/// CPU, or why there is none.
pub fn instance_type(resources: &Resources) -> Result<&'static str, String> {
    if resources.memory.is_none() && resources.cpu_millis.is_none() {
        return Ok(DEFAULT_INSTANCE_TYPE);
    }
    let memory = resources.memory.map_or(0, |Bytes(b)| b);
    let cpu = u64::from(resources.cpu_millis.unwrap_or(0));
    const GIB: u64 = 1 << 30;
    INSTANCE_TYPES
        .iter()
        .find(|(name, vcpus, gib)| {
            let bytes = if *name == "t3.nano" { GIB / 2 } else { gib * GIB };
            bytes >= memory && u64::from(*vcpus) * 1000 >= cpu
        })
        .map(|(name, _, _)| *name)
        .ok_or_else(|| {
            format!(
                "no instance type has {} bytes of memory and {} thousandths of a CPU: the largest Glint picks is m5.24xlarge (96 vCPUs, 384 GiB); declare less",
                memory, cpu
            )
        })
}

/// The user data of an instance: its identity and configuration as one
/// JSON document (never its secrets), base64-encoded as RunInstances wants.
pub fn user_data(
    labels: &Labels,
    argv: &[String],
    env: &BTreeMap<String, String>,
    workdir: &str,
    port: u16,
) -> String {
    use base64::Engine as _;
    let doc = serde_json::json!({
        "glint": 1,
        "labels": labels.to_map(),
        "argv": argv,
        "env": env,
        "workdir": workdir,
        "port": port,
    });
    base64::engine::general_purpose::STANDARD.encode(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::{Digest, VersionNumber};

    #[test]
    fn instance_types_follow_the_table() {
        let r = |memory: Option<u64>, cpu: Option<u32>| Resources {
            memory: memory.map(Bytes),
            cpu_millis: cpu,
            pids: None,
        };
        assert_eq!(instance_type(&r(None, None)), Ok("t3.micro"));
        assert_eq!(instance_type(&r(Some(256 << 20), None)), Ok("t3.nano"));
        assert_eq!(instance_type(&r(Some(1 << 30), None)), Ok("t3.micro"));
        assert_eq!(instance_type(&r(Some(3 << 30), Some(500))), Ok("t3.medium"));
        assert_eq!(instance_type(&r(None, Some(3000))), Ok("t3.xlarge"));
        assert!(instance_type(&r(Some(1 << 40), None)).is_err());
    }

    #[test]
    fn tokens_are_a_function_of_store_and_instance() {
        let web = Name::new("web").unwrap();
        let a = InstanceId::from_entropy(&web, 1);
        let b = InstanceId::from_entropy(&web, 2);
        assert_eq!(client_token("s", &a), client_token("s", &a));
        assert_ne!(client_token("s", &a), client_token("s", &b));
        assert_ne!(client_token("s", &a), client_token("t", &a));
        assert!(
            client_token("s", &a).len() <= 64,
            "EC2 allows 64 characters"
        );
    }

    #[test]
    fn user_data_carries_identity_and_configuration() {
        use base64::Engine as _;
        let web = Name::new("web").unwrap();
        let labels = Labels {
            store: "s1".into(),
            environment: Name::new("shop").unwrap(),
            instance: InstanceId::from_entropy(&web, 3),
            service: web,
            version: VersionNumber(2),
            image: Digest::of(b"x"),
        };
        let data = user_data(&labels, &["/app".into()], &BTreeMap::new(), "/", 8080);
        let json = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v["labels"]["dev.glint.instance"],
            labels.instance.to_string()
        );
        assert_eq!(v["port"], 8080);
        assert_eq!(
            group_name("ab:cdefghij", &labels.environment, &labels.service),
            "glint-shop-abcdefgh-web"
        );
        let long = Name::new("a-very-long-endpoint-name-indeed-longer").unwrap();
        let tg = target_group_name("s1", &labels.environment, &long);
        assert!(
            tg.len() <= 32 && tg.starts_with("gl-") && !tg.ends_with('-'),
            "{tg}"
        );
        assert_ne!(tg, target_group_name("s2", &labels.environment, &long));
    }
}
