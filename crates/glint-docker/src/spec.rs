//! What a container is created with, and what it must still look like.
//!
//! [`create_body`] turns a [`LaunchSpec`] into Docker's create request: the
//! image's program as the entrypoint, the declared env plus `PORT`, the
//! ownership labels, a read-only root filesystem with a tmpfs `/tmp`, the
//! declared limits, no restart policy (Glint replaces; Docker must never
//! restart in place), Docker's init as PID 1 (so that SIGTERM reaches the
//! program) and exactly one network, Glint's.
//!
//! The check functions compare a live container with that contract. They are
//! pure, so the rules are unit-tested without an engine.

use crate::naming::keys;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, FilesystemChange, HealthConfig, HostConfig, Mount,
    MountType, NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
};
use glint_provider::LaunchSpec;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the tmpfs is mounted, and its options.
pub const TMPFS: (&str, &str) = ("/tmp", "rw,nosuid,nodev,mode=1777");

/// Paths Docker itself bind-mounts into every container; changes there are
/// not drift.
const DOCKER_MOUNTS: &[&str] = &[
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/dev",
    "/proc",
    "/sys",
    "/.dockerenv",
    "/sbin/docker-init",
];

/// The limits a container was launched with, read back from its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Memory limit in bytes; 0 = none.
    pub memory: i64,
    /// CPU limit in billionths of a CPU; 0 = none.
    pub nano_cpus: i64,
    /// Most processes; 0 = none.
    pub pids: i64,
}

impl Limits {
    /// The limits a spec declares.
    pub fn of(spec: &LaunchSpec) -> Limits {
        Limits {
            memory: spec
                .resources
                .memory
                .map_or(0, |b| i64::try_from(b.0).unwrap_or(i64::MAX)),
            nano_cpus: spec
                .resources
                .cpu_millis
                .map_or(0, |m| i64::from(m) * 1_000_000),
            pids: spec.resources.pids.map_or(0, i64::from),
        }
    }

    /// The limits recorded in a container's labels (missing labels: none).
    pub fn from_labels(labels: &HashMap<String, String>) -> Limits {
        let get = |k: &str| labels.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Limits {
            memory: get(keys::MEMORY),
            nano_cpus: get(keys::NANO_CPUS),
            pids: get(keys::PIDS),
        }
    }
}

/// The create request for one instance.
pub fn create_body(spec: &LaunchSpec, image: &str, network: &str) -> ContainerCreateBody {
    let limits = Limits::of(spec);
    let mut labels: HashMap<String, String> = spec.labels.to_map().into_iter().collect();
    labels.insert(keys::PORT.into(), spec.port.to_string());
    labels.insert(keys::MEMORY.into(), limits.memory.to_string());
    labels.insert(keys::NANO_CPUS.into(), limits.nano_cpus.to_string());
    if limits.pids > 0 {
        labels.insert(keys::PIDS.into(), limits.pids.to_string());
    }
    let mounts: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.path.clone()),
            source: Some(crate::naming::volume_name(&spec.labels.store, &m.volume)),
            typ: Some(MountType::VOLUME),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let mut mounts = mounts;
    if !spec.secrets.is_empty() {
        mounts.push(Mount {
            target: Some(glint_provider::process::secrets::MOUNT_POINT.to_owned()),
            source: Some(
                glint_provider::process::secrets::instance_dir(
                    &spec.labels.store,
                    &spec.labels.instance,
                )
                .display()
                .to_string(),
            ),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let mut env: BTreeMap<String, String> = spec.env.clone();
    if let Some(files) = &spec.glint {
        // Identity, variables and the instance API: the same directory
        // as process instances', bound read-only at /run/glint.
        use glint_provider::process::glint_dir;
        let dir = glint_dir::instance_dir(&spec.labels.store, &spec.labels.instance);
        let bind = |source: &std::path::Path, target: &str| Mount {
            target: Some(target.to_owned()),
            source: Some(source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        };
        mounts.push(bind(&dir, glint_dir::MOUNT_POINT));
        if let Some(api) = glint_dir::api_dir(files) {
            mounts.push(bind(api, glint_dir::API_MOUNT_POINT));
        }
        env.extend(glint_dir::env(&dir, files, true));
    }
    env.insert("PORT".into(), spec.port.to_string());
    env.entry("HOST".into()).or_insert_with(|| "0.0.0.0".into());
    let host_config = HostConfig {
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(TMPFS.0.to_owned(), TMPFS.1.to_owned())])),
        memory: (limits.memory > 0).then_some(limits.memory),
        nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
        pids_limit: (limits.pids > 0).then_some(limits.pids),
        mounts: (!mounts.is_empty()).then_some(mounts),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        network_mode: Some(network.to_owned()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        // docker-init (tini) as PID 1: a program that is PID 1 and installs no
        // handler ignores SIGTERM, so a graceful stop would always end in
        // SIGKILL after the grace period.
        init: Some(true),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint: Some(spec.argv.clone()),
        cmd: Some(Vec::new()),
        env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: Some(if spec.workdir.is_empty() {
            "/".into()
        } else {
            spec.workdir.clone()
        }),
        labels: Some(labels),
        // Health is the conductor's business; an image's own HEALTHCHECK
        // would make the engine run commands inside the container.
        healthcheck: Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_owned(),
                EndpointSettings::default(),
            )])),
        }),
        ..Default::default()
    }
}

/// What differs between a container's resource settings and what it was
/// launched with; `None` when nothing does.
pub fn limits_drift(expected: Limits, host: &HostConfig) -> Option<String> {
    let mut found = Vec::new();
    let num = |v: Option<i64>| v.unwrap_or(0);
    let mut check = |what: &str, want: i64, got: i64| {
        if want != got {
            found.push(format!("{what} is {got} instead of {want}"));
        }
    };
    check("memory", expected.memory, num(host.memory));
    check("nano_cpus", expected.nano_cpus, num(host.nano_cpus));
    check("cpu_quota", 0, num(host.cpu_quota));
    check("cpu_period", 0, num(host.cpu_period));
    check("cpu_shares", 0, num(host.cpu_shares));
    check("memory_reservation", 0, num(host.memory_reservation));
    check("blkio_weight", 0, num(host.blkio_weight.map(i64::from)));
    check("pids_limit", expected.pids, num(host.pids_limit).max(0));
    // Docker sets swap to twice the memory limit when a limit is given.
    let swap = num(host.memory_swap);
    let default_swap = if expected.memory > 0 {
        2 * expected.memory
    } else {
        0
    };
    if swap != default_swap && !(expected.memory == 0 && swap == -1) {
        found.push(format!("memory_swap is {swap} instead of {default_swap}"));
    }
    if !host.cpuset_cpus.as_deref().unwrap_or("").is_empty() {
        found.push(format!(
            "cpuset_cpus is {:?}",
            host.cpuset_cpus.as_deref().unwrap_or("")
        ));
    }
    if !host.cpuset_mems.as_deref().unwrap_or("").is_empty() {
        found.push(format!(
            "cpuset_mems is {:?}",
            host.cpuset_mems.as_deref().unwrap_or("")
        ));
    }
    let restart = host.restart_policy.as_ref().and_then(|r| r.name);
    if !matches!(
        restart,
        None | Some(RestartPolicyNameEnum::NO) | Some(RestartPolicyNameEnum::EMPTY)
    ) {
        found.push(format!(
            "restart policy is {}",
            restart.map(|r| r.to_string()).unwrap_or_default()
        ));
    }
    (!found.is_empty()).then(|| found.join(", "))
}

/// Filesystem changes that are drift: everything `docker diff` reports
/// except Docker's own mounts, the tmpfs and volume mounts (`mounts`), paths
/// under those, and the directories leading to them (which Docker creates as
/// mount points when the image lacks them).
pub fn filesystem_drift(changes: &[FilesystemChange], mounts: &[String]) -> Vec<String> {
    let all: Vec<&str> = DOCKER_MOUNTS
        .iter()
        .copied()
        .chain(std::iter::once(TMPFS.0))
        .chain(mounts.iter().map(String::as_str))
        .collect();
    let under = |path: &str, dir: &str| {
        path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
    };
    changes
        .iter()
        .filter(|c| {
            !all.iter()
                .any(|m| under(&c.path, m) || under(m, &c.path) || c.path == "/")
        })
        .map(|c| {
            let kind = match c.kind as i32 {
                0 => "changed",
                1 => "added",
                _ => "deleted",
            };
            format!("{kind} {}", c.path)
        })
        .collect()
}

/// Parses Docker's RFC 3339 timestamps (`2026-11-22T02:43:50.123456789Z`).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let time = time.strip_suffix('Z')?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()?;
    let mut nanos = 0u32;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        let scale = 10u32.pow(9 - u32::try_from(digits.len()).ok()?);
        nanos = digits.parse::<u32>().ok()? * scale;
    }
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ChangeType;

    fn change(path: &str, kind: ChangeType) -> FilesystemChange {
        FilesystemChange {
            path: path.into(),
            kind,
        }
    }

    #[test]
    fn mount_points_and_their_parents_are_not_drift() {
        let changes = vec![
            change("/tmp", ChangeType::_1),
            change("/tmp/x", ChangeType::_1),
            change("/etc", ChangeType::_0),
            change("/etc/hosts", ChangeType::_0),
            change("/data/file", ChangeType::_1),
            change("/etc/passwd", ChangeType::_0),
            change("/evil", ChangeType::_1),
            change("/bin/hello", ChangeType::_2),
            change("/tmpx", ChangeType::_1),
            change("/sbin", ChangeType::_1),
            change("/sbin/docker-init", ChangeType::_1),
        ];
        assert_eq!(
            filesystem_drift(&changes, &["/data".into()]),
            vec![
                "changed /etc/passwd",
                "added /evil",
                "deleted /bin/hello",
                "added /tmpx"
            ]
        );
    }

    #[test]
    fn limits_drift_names_each_changed_setting() {
        let want = Limits {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            pids: 0,
        };
        let ok = HostConfig {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            nano_cpus: Some(500_000_000),
            ..Default::default()
        };
        assert_eq!(limits_drift(want, &ok), None);
        let changed = HostConfig {
            memory: Some(32 << 20),
            ..ok.clone()
        };
        let msg = limits_drift(want, &changed).unwrap();
        assert!(
            msg.contains("memory is 33554432 instead of 67108864"),
            "{msg}"
        );
        let restart = HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            ..ok
        };
        assert!(
            limits_drift(want, &restart)
                .unwrap()
                .contains("restart policy")
        );
        assert_eq!(
            limits_drift(Limits::default(), &HostConfig::default()),
            None
        );
    }

    #[test]
    fn docker_timestamps_parse() {
        let t = parse_time("2026-11-22T02:43:50.5Z").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_795_315_430);
        assert_eq!(d.subsec_millis(), 500);
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_time("garbage"), None);
    }
}
