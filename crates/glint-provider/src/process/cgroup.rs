//! Resource limits and accounting of process instances through cgroups, v2
//! or v1.
//!
//! Every namespaced instance gets its own cgroup — one directory in the
//! unified hierarchy (v2), or one per controller hierarchy (v1: `memory`,
//! `cpu`, `cpuacct`, `pids`) — named `glint/<store>/<instance>`, created
//! before it starts and entered by the sandbox before anything of it runs
//! (`CLONE_INTO_CGROUP` on v2; on v1 the child writes itself into each
//! `cgroup.procs` first). The instance's declared limits are written into
//! it:
//!
//! | limit | v2 | v1 |
//! | --- | --- | --- |
//! | `memory` | `memory.max`, `memory.swap.max = 0` | `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`) |
//! | `cpu_millis` | `cpu.max = "<millis×100> 100000"` | `cpu.cfs_period_us = 100000`, `cpu.cfs_quota_us = millis×100` |
//! | `pids` | `pids.max` | `pids.max` |
//!
//! Swap is not allowed beyond the memory limit, so an instance at its limit
//! is killed by the kernel rather than slowed to a crawl. The kernel counts
//! those kills (`oom_kill` in `memory.events` on v2, `memory.oom_control` on
//! v1): an instance whose program died of SIGKILL while that counter moved
//! was killed for memory, and its exit says so. CPU time (`cpu.stat`
//! `usage_usec`, v1 `cpuacct.usage`) feeds the autoscaler.
//!
//! The directories outlive the conductor with their instances (a restarted
//! provider finds them by name) and are removed with the instance. Which
//! hierarchy is used is found once ([`Cgroups::detect`]): v2 when its root
//! offers `memory`, `cpu` and `pids`, else v1 when those three controllers
//! are mounted, else none (limits are then not enforced, which the
//! language's capability warning says).

use glint_model::{InstanceId, Resources};
use std::io;
use std::path::{Path, PathBuf};

/// The CPU period every quota is expressed in, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup hierarchy instances go in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// The unified hierarchy, mounted at `root`.
    V2 {
        /// The mount point.
        root: PathBuf,
    },
    /// Separate hierarchies per controller.
    V1 {
        /// The `memory` hierarchy.
        memory: PathBuf,
        /// The `cpu` hierarchy (may be the same as `cpuacct`).
        cpu: PathBuf,
        /// The `cpuacct` hierarchy.
        cpuacct: PathBuf,
        /// The `pids` hierarchy.
        pids: PathBuf,
    },
}

/// The cgroup directories of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCgroup {
    /// v2: the one directory; v1: memory, cpu, cpuacct, pids (cpu and
    /// cpuacct may be one directory).
    pub dirs: Vec<PathBuf>,
    version: u8,
}

fn read_trimmed(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned())
}

/// The value of `key` in a flat-keyed file (`oom_kill 3`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot write {value:?} to {}: {e}",
                dir.join(file).display()
            ),
        )
    })
}

impl Cgroups {
    /// The hierarchy this machine offers (see the module documentation),
    /// found in `/proc/self/mountinfo`.
    pub fn detect() -> Option<Cgroups> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        Cgroups::from_mountinfo(&info, |p| p.exists())
    }

    /// [`Cgroups::detect`] over a `mountinfo` text; `exists` says whether a
    /// path exists (the v2 controllers file is read from it).
    fn from_mountinfo(info: &str, exists: impl Fn(&Path) -> bool) -> Option<Cgroups> {
        let mut v2: Option<PathBuf> = None;
        let (mut memory, mut cpu, mut cpuacct, mut pids) = (None, None, None, None);
        for line in info.lines() {
            // id parent major:minor root mount-point options ... - type source super-options
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split(' ').collect();
            let Some(mount) = fields.get(4) else { continue };
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or("");
            let _source = r.next();
            let opts = r.next().unwrap_or("");
            let mount = PathBuf::from(mount.replace("\\040", " "));
            match fstype {
                "cgroup2" if v2.is_none() => v2 = Some(mount),
                "cgroup" => {
                    for o in opts.split(',') {
                        match o {
                            "memory" => memory = Some(mount.clone()),
                            "cpu" => cpu = Some(mount.clone()),
                            "cpuacct" => cpuacct = Some(mount.clone()),
                            "pids" => pids = Some(mount.clone()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(root) = v2 {
            let controllers = root.join("cgroup.controllers");
            if exists(&controllers) {
                let text = std::fs::read_to_string(&controllers).unwrap_or_default();
                let have: Vec<&str> = text.split_whitespace().collect();
                if ["memory", "cpu", "pids"].iter().all(|c| have.contains(c)) {
                    return Some(Cgroups::V2 { root });
                }
            }
        }
        match (memory, cpu, pids) {
            (Some(memory), Some(cpu), Some(pids)) => Some(Cgroups::V1 {
                cpuacct: cpuacct.unwrap_or_else(|| cpu.clone()),
                memory,
                cpu,
                pids,
            }),
            _ => None,
        }
    }

    /// `v2` or `v1`, for messages.
    pub fn version(&self) -> &'static str {
        match self {
            Cgroups::V2 { .. } => "v2",
            Cgroups::V1 { .. } => "v1",
        }
    }

    /// The per-store parents (`glint/<store>`) in every hierarchy.
    fn parents(&self, store: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = match self {
            Cgroups::V2 { root } => vec![root.clone()],
            Cgroups::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
            } => vec![memory.clone(), cpu.clone(), cpuacct.clone(), pids.clone()],
        };
        out.dedup();
        out.into_iter()
            .map(|h| h.join("glint").join(store))
            .collect()
    }

    /// The cgroup of `instance` (whether or not it exists).
    pub fn instance(&self, store: &str, instance: &InstanceId) -> InstanceCgroup {
        InstanceCgroup {
            dirs: self
                .parents(store)
                .into_iter()
                .map(|p| p.join(instance.as_str()))
                .collect(),
            version: match self {
                Cgroups::V2 { .. } => 2,
                Cgroups::V1 { .. } => 1,
            },
        }
    }

    /// Creates the cgroup of `instance` with `limits` written into it.
    pub fn create(
        &self,
        store: &str,
        instance: &InstanceId,
        limits: &Resources,
    ) -> io::Result<InstanceCgroup> {
        let cg = self.instance(store, instance);
        if let Cgroups::V2 { root } = self {
            // Controllers must be enabled in every ancestor's subtree.
            let mut dir = root.clone();
            for part in ["glint", store] {
                enable_v2_controllers(&dir)?;
                dir = dir.join(part);
                mkdir(&dir)?;
            }
            enable_v2_controllers(&dir)?;
        }
        for d in &cg.dirs {
            if let Some(parent) = d.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot create cgroup {}: {e}", parent.display()),
                    )
                })?;
            }
            // A concurrent removal of the last sibling may take the parent
            // away in between: once more.
            if mkdir(d).is_err() {
                if let Some(parent) = d.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                mkdir(d)?;
            }
        }
        let made = cg.clone();
        if let Err(e) = cg.apply(limits) {
            made.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// The instance ids that have a cgroup under this store.
    pub fn list(&self, store: &str) -> Vec<InstanceId> {
        let mut out: Vec<InstanceId> = self
            .parents(store)
            .iter()
            .filter_map(|p| std::fs::read_dir(p).ok())
            .flat_map(|d| d.flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|s| InstanceId::parse(s).ok())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io::Error::new(
            e.kind(),
            format!("cannot create cgroup {}: {e}", dir.display()),
        )),
        _ => Ok(()),
    }
}

fn enable_v2_controllers(dir: &Path) -> io::Result<()> {
    let enabled = read_trimmed(&dir.join("cgroup.subtree_control")).unwrap_or_default();
    let have: Vec<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = ["memory", "cpu", "pids"]
        .iter()
        .filter(|c| !have.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(dir, "cgroup.subtree_control", &missing.join(" "))
}

impl InstanceCgroup {
    /// Writes `limits` (only those declared; the rest stay unlimited).
    fn apply(&self, limits: &Resources) -> io::Result<()> {
        let quota = limits
            .cpu_millis
            .map(|m| u64::from(m) * CPU_PERIOD_US / 1000);
        if self.version == 2 {
            let Some(d) = self.dirs.first() else {
                return Ok(());
            };
            if let Some(mem) = limits.memory {
                write(d, "memory.max", &mem.0.to_string())?;
                // No swap beyond the limit: at the limit, the kernel kills.
                let _ = write(d, "memory.swap.max", "0");
            }
            if let Some(q) = quota {
                write(d, "cpu.max", &format!("{q} {CPU_PERIOD_US}"))?;
            }
            if let Some(p) = limits.pids {
                write(d, "pids.max", &p.to_string())?;
            }
            return Ok(());
        }
        let [memory, cpu, _cpuacct, pids] = self.v1_dirs();
        if let Some(mem) = limits.memory {
            write(memory, "memory.limit_in_bytes", &mem.0.to_string())?;
            // Present only with swap accounting; then swap is limited too.
            if memory.join("memory.memsw.limit_in_bytes").exists() {
                write(memory, "memory.memsw.limit_in_bytes", &mem.0.to_string())?;
            }
            let _ = write(memory, "memory.swappiness", "0");
        }
        if let Some(q) = quota {
            write(cpu, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            write(cpu, "cpu.cfs_quota_us", &q.to_string())?;
        }
        if let Some(p) = limits.pids {
            write(pids, "pids.max", &p.to_string())?;
        }
        Ok(())
    }

    /// memory, cpu, cpuacct, pids (v1).
    fn v1_dirs(&self) -> [&Path; 4] {
        let get = |i: usize| {
            self.dirs
                .get(i)
                .or_else(|| self.dirs.last())
                .map(PathBuf::as_path)
                .unwrap_or(Path::new("/nonexistent"))
        };
        // `parents` dedups equal hierarchies (cpu,cpuacct mounted together).
        if self.dirs.len() == 3 {
            [get(0), get(1), get(1), get(2)]
        } else {
            [get(0), get(1), get(2), get(3)]
        }
    }

    /// The sandbox attachment that starts the instance in this cgroup.
    pub fn attachment(&self) -> io::Result<glint_sandbox::Cgroups> {
        if self.version == 2 {
            let Some(d) = self.dirs.first() else {
                return Ok(glint_sandbox::Cgroups::default());
            };
            return glint_sandbox::Cgroups::clone_into(d);
        }
        let mut c = glint_sandbox::Cgroups::default();
        for d in &self.dirs {
            c = c.join(d)?;
        }
        Ok(c)
    }

    /// How many processes the kernel killed for memory in this cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        if self.version == 2 {
            let text = std::fs::read_to_string(self.dirs.first()?.join("memory.events")).ok()?;
            return keyed(&text, "oom_kill");
        }
        let [memory, ..] = self.v1_dirs();
        let text = std::fs::read_to_string(memory.join("memory.oom_control")).ok()?;
        keyed(&text, "oom_kill")
    }

    /// CPU time used by the cgroup so far, in microseconds.
    pub fn cpu_usec(&self) -> Option<u64> {
        if self.version == 2 {
            let text = std::fs::read_to_string(self.dirs.first()?.join("cpu.stat")).ok()?;
            return keyed(&text, "usage_usec");
        }
        let [_, _, cpuacct, _] = self.v1_dirs();
        read_trimmed(&cpuacct.join("cpuacct.usage"))
            .ok()?
            .parse::<u64>()
            .ok()
            .map(|ns| ns / 1000)
    }

    /// Times the cgroup was throttled by its CPU quota.
    pub fn throttled(&self) -> Option<u64> {
        let dir = if self.version == 2 {
            self.dirs.first()?.as_path()
        } else {
            self.v1_dirs()[1]
        };
        let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        keyed(&text, "nr_throttled")
    }

    /// Memory in use now, in bytes.
    pub fn memory_bytes(&self) -> Option<u64> {
        let (dir, file) = if self.version == 2 {
            (self.dirs.first()?.as_path(), "memory.current")
        } else {
            (self.v1_dirs()[0], "memory.usage_in_bytes")
        };
        read_trimmed(&dir.join(file)).ok()?.parse().ok()
    }

    /// Whether the cgroup exists.
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.is_dir())
    }

    /// Removes the cgroup's directories (they must hold no process); best
    /// effort, a few tries for processes that are still being reaped.
    pub fn remove(&self) -> bool {
        let mut all = true;
        for d in &self.dirs {
            let mut gone = false;
            for _ in 0..20 {
                match std::fs::remove_dir(d) {
                    Ok(()) => {
                        gone = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        gone = true;
                        break;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
            all &= gone;
            // The store's parent goes with its last instance (refused, and
            // kept, while it has others).
            if let Some(parent) = d.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,pids
";

    #[test]
    fn a_hybrid_machine_without_v2_controllers_uses_v1_and_shares_cpu_with_cpuacct() {
        let c = Cgroups::from_mountinfo(HYBRID, |_| false).unwrap();
        assert_eq!(
            c,
            Cgroups::V1 {
                memory: "/sys/fs/cgroup/memory".into(),
                cpu: "/sys/fs/cgroup/cpu,cpuacct".into(),
                cpuacct: "/sys/fs/cgroup/cpu,cpuacct".into(),
                pids: "/sys/fs/cgroup/pids".into(),
            }
        );
        let id = InstanceId::from_entropy(&glint_model::Name::new("web").unwrap(), 1);
        let cg = c.instance("s1", &id);
        assert_eq!(cg.dirs.len(), 3, "cpu and cpuacct are one directory");
        let [m, cpu, acct, p] = cg.v1_dirs();
        assert!(m.starts_with("/sys/fs/cgroup/memory/glint/s1"));
        assert_eq!(cpu, acct);
        assert!(p.starts_with("/sys/fs/cgroup/pids/glint/s1"));
    }

    #[test]
    fn a_machine_with_only_some_controllers_has_no_limits() {
        let only_memory = "34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(Cgroups::from_mountinfo(only_memory, |_| false), None);
    }

    #[test]
    fn limits_are_written_in_each_versions_files() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Resources {
            memory: Some(glint_model::Bytes(64 << 20)),
            cpu_millis: Some(200),
            pids: Some(64),
        };
        let v2 = InstanceCgroup {
            dirs: vec![dir.path().join("v2")],
            version: 2,
        };
        std::fs::create_dir(&v2.dirs[0]).unwrap();
        v2.apply(&limits).unwrap();
        let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read(&v2.dirs[0], "memory.max"), "67108864");
        assert_eq!(read(&v2.dirs[0], "memory.swap.max"), "0");
        assert_eq!(read(&v2.dirs[0], "cpu.max"), "20000 100000");
        assert_eq!(read(&v2.dirs[0], "pids.max"), "64");
        let v1 = InstanceCgroup {
            dirs: ["mem", "cpu", "pids"]
                .iter()
                .map(|n| dir.path().join(n))
                .collect(),
            version: 1,
        };
        for d in &v1.dirs {
            std::fs::create_dir(d).unwrap();
        }
        v1.apply(&limits).unwrap();
        assert_eq!(read(&v1.dirs[0], "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&v1.dirs[1], "cpu.cfs_quota_us"), "20000");
        assert_eq!(read(&v1.dirs[1], "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&v1.dirs[2], "pids.max"), "64");
        std::fs::write(
            v1.dirs[0].join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(v1.oom_kills(), Some(2));
        std::fs::write(
            v2.dirs[0].join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(v2.oom_kills(), Some(1));
    }
}
