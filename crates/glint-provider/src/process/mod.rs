//! The local-process provider: every instance is a child process of the
//! conductor (the embedded default).
//!
//! # How an instance is run
//!
//! [`ProcessProvider::launch`] resolves the program inside the image root
//! (never on the host's `PATH`, see `resolve`), gives the instance a free
//! loopback port (or, when its spec asks for `own_network`, its own network
//! namespace and address, listening on the spec's `port`: see [`net`]), and
//! starts the program in a new session (so Ctrl-C in the
//! conductor's terminal does not reach it and its whole process group can be
//! signalled) with:
//!
//! - an environment made only of the spec's variables plus Glint's labels and
//!   `PORT`/`HOST` (see [`env_keys`]); nothing of the conductor's environment;
//! - stdin from `/dev/null`, stdout and stderr appended to per-instance log
//!   files (see [`log_paths`]), which outlive the instance, rotated by size
//!   and pruned once the instance is gone ([`LogLimits`], the `logs` module);
//! - its own working directory `run/<instance>/work/` under the state directory.
//!
//! # Ownership lives on the process
//!
//! The labels are in the process's environment, where `/proc/<pid>/environ`
//! shows them for as long as it runs. A restarted provider finds its instances
//! by scanning `/proc` for `GLINT_STORE=<its store id>`, so a crash at any
//! moment (even between spawning a process and writing its record) leaks
//! nothing. The instance's *leader* is the session leader among the labelled
//! processes (its descendants inherit the labels and are terminated with it).
//! Each leader is identified by pid **and** start time (`/proc/<pid>/stat`),
//! and is held through a pidfd once found, so a recycled pid is never taken
//! for an instance and never signalled.
//!
//! # Exits are noticed at once
//!
//! An instance launched by this provider is awaited with `tokio::process`
//! (which waits on a pidfd on Linux): its exit code or signal is known. An
//! adopted instance (found after a restart; no longer our child) is watched
//! through a pidfd registered with the reactor: it becomes readable the moment
//! the process ends. Its exit status is unknowable (`code: None, signal:
//! None`). Either way a [`ProviderEvent::Exited`] is sent immediately and the
//! exit is written to the record, so it survives a restart until
//! [`Provider::remove`].
//!
//! # Stopping
//!
//! `terminate` sends SIGTERM to the instance's process group, waits up to the
//! grace period, then sends SIGKILL. Labelled processes that outlive their
//! leader (a daemonising child, say) are found by their labels and stopped the
//! same way, so nothing Glint started is left running.
//!
//! # Isolation
//!
//! Chosen at [`ProcessProvider::open_with`] ([`Isolation::detect`] by
//! default): with [`Isolation::Namespaces`] (root only) each instance gets
//! its own mount, PID, UTS and IPC namespaces with the image as its read-only
//! root, behind a tiny init that forwards signals (see the `ns` module); the
//! recorded pid is then that init's. [`ProcessProvider::launch_with`] adds
//! [`Attachments`]: bind mounts (volumes), a network namespace to join,
//! cgroups. With [`Isolation::None`] it is a plain process that sees the host
//! (the program still comes from the image) and nothing can be attached.
//!
//! Either way no process of an instance holds anything of the conductor's
//! environment: a plain program is executed with exactly the instance's
//! environment, and a namespaced instance's init is executed (not forked)
//! with an empty one. A plain program runs as the conductor's user, though,
//! and may read the conductor's `/proc/<pid>/environ` like any process of
//! that user (isolation is what prevents that).
//!
//! # Volumes and limits
//!
//! A spec's volumes are directories under `volumes/` bound into the
//! instance, a read-write one locked for the instance's whole life (see
//! the `volumes` module); they need [`Isolation::Namespaces`], and a launch
//! that cannot mount them fails. Every namespaced instance gets its own
//! cgroup carrying the declared limits (memory, CPU quota, pids; v2 or v1,
//! see [`cgroup`]); where this machine offers no usable cgroups, limits are
//! not enforced (the language warns). An instance killed by the kernel at
//! its memory limit ends with [`RunState::Exited`]`{ oom: true, .. }`.
//!
//! A spec's secrets are written to a per-instance directory on the tmpfs
//! `/dev/shm` and bound read-only at `/run/secrets` (a plain instance gets
//! the directory's path in `GLINT_SECRETS_DIR`); see [`secrets`]. Its
//! identity, variables and the instance API socket go the same way to
//! `/run/glint` (see [`glint_dir`]).

pub mod cgroup;
pub mod glint_dir;
mod logs;
pub mod net;
mod ns;
mod procfs;
mod record;
mod resolve;
pub mod secrets;
mod spawn;
mod volumes;

pub use glint_sandbox::{Bind, Cgroups, NetNs};
pub use logs::{LogLimits, LogReport, rotated_path};
pub use ns::Attachments;
pub use record::{LogPaths, log_paths};
pub use volumes::{data_dir as volume_data_dir, volume_dir};

/// Deletes process volume `name` under a process provider's `state_dir`
/// (`glint volume rm`): refused while an instance holds it read-write.
/// Needs no running provider. Blocking.
pub fn remove_volume(state_dir: &Path, name: &str) -> Result<(), ProviderError> {
    volumes::remove(state_dir, name)
}

use crate::{
    LaunchSpec, Observed, Provider, ProviderError, ProviderEvent, RunState, Usage, VolumeInfo,
    process::record::{Mode, Record},
};
use async_trait::async_trait;
use glint_model::{InstanceId, Labels, ProviderKind, keys};
use rustix::process::{Pid, PidfdFlags, Signal};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;

/// The environment variables that carry an instance's labels and address.
///
/// Every process of an instance has them (children inherit them), which is how
/// a restarted provider recognises its own processes.
pub mod env_keys {
    /// The owning store's id ([`glint_model::Labels::store`]).
    pub const STORE: &str = "GLINT_STORE";
    /// The environment's name.
    pub const ENVIRONMENT: &str = "GLINT_ENVIRONMENT";
    /// The service's name.
    pub const SERVICE: &str = "GLINT_SERVICE";
    /// The version the instance was launched for.
    pub const VERSION: &str = "GLINT_VERSION";
    /// The instance id.
    pub const INSTANCE: &str = "GLINT_INSTANCE_ID";
    /// The image digest.
    pub const IMAGE: &str = "GLINT_IMAGE";
    /// The port the program must listen on.
    pub const PORT: &str = "PORT";
    /// The address the program must listen on (`127.0.0.1`, or its own
    /// address when it has its own network).
    pub const HOST: &str = "HOST";
}

/// How instances are separated from the host and from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Plain processes: they see the host's filesystem and processes, run in
    /// `run/<instance>/work/`, and only their program comes from the image.
    None,
    /// Each instance in its own mount, PID, UTS and IPC namespaces, with the
    /// image as its read-only root, fresh `/proc`, tmpfs `/tmp`, a minimal
    /// `/dev`, and the host's network unless one is attached (see the `ns`
    /// module and [`Attachments`]). Needs root.
    Namespaces,
}

impl Isolation {
    /// The best isolation this process can have: [`Isolation::Namespaces`]
    /// when running as root on a kernel that allows it (probed once, by
    /// starting a throwaway child in new namespaces), else [`Isolation::None`].
    pub fn detect() -> Isolation {
        if ns::available() {
            Isolation::Namespaces
        } else {
            Isolation::None
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::None => "none",
            Isolation::Namespaces => "namespaces",
        })
    }
}

/// How long to wait for a process to disappear after SIGKILL before giving up
/// (a process stuck in uninterruptible sleep).
const KILL_WAIT: Duration = Duration::from_secs(30);

/// Capacity of the event channel; a receiver that falls further behind gets
/// `Lagged` and should resync.
const EVENT_CAPACITY: usize = 1024;

/// Runs instances as local processes. See the module documentation.
///
/// Dropping it stops watching (as a conductor crash would) but leaves the
/// instances running; a provider opened on the same state directory adopts
/// them.
pub struct ProcessProvider {
    inner: Arc<Inner>,
    /// The task that rotates and prunes logs.
    keeper: AbortHandle,
}

/// How a [`ProcessProvider`] runs instances and keeps their logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The isolation of new instances.
    pub isolation: Isolation,
    /// What is kept of instances' output.
    pub logs: LogLimits,
    /// Whether namespaced instances get cgroups (limits and accounting)
    /// where this machine offers them. Default true.
    pub cgroups: bool,
}

impl Options {
    /// `isolation`, with default log limits and cgroups where available.
    pub fn new(isolation: Isolation) -> Options {
        Options {
            isolation,
            logs: LogLimits::default(),
            cgroups: true,
        }
    }
}

struct Inner {
    state_dir: PathBuf,
    store: String,
    isolation: Isolation,
    logs: LogLimits,
    /// Where instances' cgroups go, if anywhere.
    cgroups: Option<cgroup::Cgroups>,
    /// Held by a log maintenance pass: one rotation at a time (it renames
    /// files). Pruning needs no lock (it only removes gone instances' logs).
    maintenance: Mutex<()>,
    events: broadcast::Sender<ProviderEvent>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    instances: HashMap<InstanceId, Tracked>,
    /// Instances between "id reserved" and "tracked", with their ports: the
    /// `/proc` scan must not adopt them behind the launch's back.
    launching: HashMap<InstanceId, u16>,
    /// The addresses of instances being launched with their own network.
    launching_addrs: HashMap<InstanceId, Ipv4Addr>,
}

/// One instance this provider knows.
struct Tracked {
    labels: Labels,
    mode: Mode,
    pid: i32,
    start_ticks: u64,
    port: u16,
    /// Its own address, when it has its own network (see [`net`]).
    addr: Option<Ipv4Addr>,
    started_at: SystemTime,
    /// The leader's pidfd, while it runs.
    pidfd: Option<Arc<OwnedFd>>,
    /// Current run state; terminate waits on it.
    state: watch::Sender<RunState>,
    watcher: Option<AbortHandle>,
}

impl Tracked {
    fn run_state(&self) -> RunState {
        *self.state.borrow()
    }

    fn record(&self) -> Record {
        let exit = match self.run_state() {
            RunState::Running => None,
            exited => Some(exited),
        };
        Record {
            labels: self.labels.clone(),
            mode: self.mode,
            pid: self.pid,
            start_ticks: self.start_ticks,
            port: self.port,
            addr: self.addr,
            started_at_ms: record::millis_since_epoch(self.started_at),
            exit,
        }
    }

    fn observed(&self) -> Observed {
        Observed {
            labels: self.labels.clone(),
            state: self.run_state(),
            addr: Some(SocketAddr::from((
                self.addr.unwrap_or(Ipv4Addr::LOCALHOST),
                self.port,
            ))),
            started_at: self.started_at,
            handle: match self.mode {
                Mode::Plain => format!("pid {}", self.pid),
                Mode::Namespaced => format!("pid {} (namespaced)", self.pid),
            },
        }
    }
}

/// How a watcher learns that the leader ended.
pub(crate) enum Waiter {
    /// Our own child, launched through `tokio::process`.
    Child(tokio::process::Child),
    /// Our own child started without `tokio::process` (a namespaced init):
    /// wait on the pidfd, then reap it for its status.
    Own,
    /// An adopted process (not our child): wait on the pidfd; no status.
    Adopted,
}

/// A freshly started leader.
pub(crate) struct Spawned {
    pub pid: i32,
    pub start_ticks: u64,
    pub pidfd: OwnedFd,
    pub waiter: Waiter,
    pub mode: Mode,
}

const UNKNOWN_EXIT: RunState = RunState::Exited {
    code: None,
    signal: None,
    oom: false,
};

impl ProcessProvider {
    /// Opens the provider for store `store_id` with its files under
    /// `state_dir` (created if missing), and adopts that store's instances
    /// that are still running (or ended but not yet removed).
    ///
    /// Instances are isolated as well as this process allows
    /// ([`Isolation::detect`]). Must be called inside a tokio runtime (exit
    /// watchers are tasks).
    pub fn open(state_dir: &Path, store_id: &str) -> Result<ProcessProvider, ProviderError> {
        Self::open_with(state_dir, store_id, Isolation::detect())
    }

    /// Like [`ProcessProvider::open`], with the isolation of new instances
    /// chosen by the caller. Instances found running keep the isolation they
    /// were launched with. Asking for [`Isolation::Namespaces`] where it is
    /// not available is an error.
    pub fn open_with(
        state_dir: &Path,
        store_id: &str,
        isolation: Isolation,
    ) -> Result<ProcessProvider, ProviderError> {
        Self::open_with_options(state_dir, store_id, Options::new(isolation))
    }

    /// Like [`ProcessProvider::open_with`], with every option chosen by the
    /// caller. Rotates and prunes logs once before it returns, then every
    /// [`LogLimits::check_every`].
    pub fn open_with_options(
        state_dir: &Path,
        store_id: &str,
        options: Options,
    ) -> Result<ProcessProvider, ProviderError> {
        let isolation = options.isolation;
        if isolation == Isolation::Namespaces && !ns::available() {
            return Err(ProviderError::Backend(
                "namespace isolation needs root and a kernel that allows new mount and pid namespaces and overlay mounts".into(),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ProviderError::Backend(
                "the process provider must be opened inside a tokio runtime".into(),
            ));
        }
        for dir in [record::run_dir(state_dir), record::logs_dir(state_dir)] {
            std::fs::create_dir_all(&dir).map_err(|source| ProviderError::Io {
                what: "cannot create provider directory".into(),
                path: dir.clone(),
                source,
            })?;
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let cgroups = (isolation == Isolation::Namespaces && options.cgroups)
            .then(cgroup::Cgroups::detect)
            .flatten();
        let inner = Arc::new(Inner {
            state_dir: state_dir.to_owned(),
            store: store_id.to_owned(),
            isolation,
            logs: options.logs,
            cgroups,
            maintenance: Mutex::new(()),
            events,
            state: Mutex::new(State::default()),
        });
        inner.load_records()?;
        inner.adopt_scan()?;
        inner.remove_stale_dirs();
        inner.remove_stale_cgroups();
        inner.maintain_logs();
        let keeper = start_log_keeper(&inner, options.logs.check_every);
        Ok(ProcessProvider { inner, keeper })
    }

    /// Rotates the logs of running instances that outgrew
    /// [`LogLimits::max_file_bytes`] and prunes those of gone instances (see
    /// the `logs` module). The provider does this by itself every
    /// [`LogLimits::check_every`]; blocking (file IO).
    pub fn maintain_logs(&self) -> LogReport {
        self.inner.maintain_logs()
    }

    /// The state directory this provider keeps its files in.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The id of the store whose instances this provider owns.
    pub fn store_id(&self) -> &str {
        &self.inner.store
    }

    /// The isolation new instances get.
    pub fn isolation(&self) -> Isolation {
        self.inner.isolation
    }

    /// The cgroup hierarchy instances get (limits are enforced), if any.
    pub fn cgroups(&self) -> Option<&cgroup::Cgroups> {
        self.inner.cgroups.as_ref()
    }

    /// The cgroup of `instance`, if instances get cgroups.
    pub fn instance_cgroup(&self, instance: &InstanceId) -> Option<cgroup::InstanceCgroup> {
        self.inner.cgroup_of(instance)
    }
}

/// Runs [`Inner::maintain_logs`] every `every`, off the reactor, for as long
/// as the provider lives.
fn start_log_keeper(inner: &Arc<Inner>, every: Duration) -> AbortHandle {
    let weak = Arc::downgrade(inner);
    let every = every.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; `open` has just done a pass.
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { break };
            if let Err(e) = tokio::task::spawn_blocking(move || inner.maintain_logs()).await {
                tracing::warn!(error = %e, "log maintenance failed");
            }
        }
    })
    .abort_handle()
}

impl Drop for ProcessProvider {
    fn drop(&mut self) {
        self.keeper.abort();
        for t in self.inner.lock().instances.values() {
            if let Some(w) = &t.watcher {
                w.abort();
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        record::instance_dir(&self.state_dir, id)
    }

    fn cgroup_of(&self, id: &InstanceId) -> Option<cgroup::InstanceCgroup> {
        self.cgroups.as_ref().map(|c| c.instance(&self.store, id))
    }

    /// An exit as reported, marked out-of-memory when the program died of
    /// SIGKILL and the kernel's OOM killer acted in its cgroup.
    fn with_oom(&self, id: &InstanceId, state: RunState) -> RunState {
        match state {
            RunState::Exited {
                code,
                signal,
                oom: false,
            } if signal == Some(9) || code == Some(137) => {
                let killed = self
                    .cgroup_of(id)
                    .and_then(|c| c.oom_kills())
                    .is_some_and(|n| n > 0);
                RunState::Exited {
                    code,
                    signal,
                    oom: killed,
                }
            }
            other => other,
        }
    }

    /// Removes this store's cgroups that belong to no known instance and
    /// hold no process (a crash between creating one and starting in it).
    fn remove_stale_cgroups(&self) {
        let Some(c) = &self.cgroups else { return };
        let known: std::collections::HashSet<InstanceId> = {
            let st = self.lock();
            st.instances
                .keys()
                .chain(st.launching.keys())
                .cloned()
                .collect()
        };
        for id in c.list(&self.store) {
            if !known.contains(&id) {
                c.instance(&self.store, &id).remove();
            }
        }
    }

    /// One pass of log rotation and pruning.
    fn maintain_logs(&self) -> LogReport {
        let _pass = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let running: Vec<InstanceId> = self
            .lock()
            .instances
            .iter()
            .filter(|(_, t)| t.run_state() == RunState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        let mut report = LogReport::default();
        for id in running {
            let paths = log_paths(&self.state_dir, &id);
            for path in [paths.stdout, paths.stderr] {
                match logs::rotate(&path, &self.logs) {
                    Ok(true) => report.rotated += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot rotate a log file")
                    }
                }
            }
        }
        report.pruned = self.prune_logs();
        report
    }

    /// Removes the log directories of gone instances beyond the newest few
    /// per service.
    fn prune_logs(&self) -> usize {
        // Listed before the known instances are read: see `logs::list`.
        let entries = logs::list(&record::logs_dir(&self.state_dir));
        let known: std::collections::HashSet<InstanceId> = {
            let st = self.lock();
            st.instances
                .keys()
                .chain(st.launching.keys())
                .cloned()
                .collect()
        };
        logs::prune(&self.store, entries, |id| known.contains(id), &self.logs)
    }

    /// Reads every record: live leaders are adopted, dead ones are kept as
    /// ended instances until removed.
    fn load_records(self: &Arc<Self>) -> Result<(), ProviderError> {
        let run = record::run_dir(&self.state_dir);
        let entries = std::fs::read_dir(&run).map_err(|source| ProviderError::Io {
            what: "cannot list instance records".into(),
            path: run.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| InstanceId::parse(s).ok())
            else {
                continue;
            };
            let path = record::record_path(&entry.path());
            if !path.exists() {
                // Crashed before the record was written; the scan decides.
                continue;
            }
            let rec = match record::read_record(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable instance record");
                    continue;
                }
            };
            if rec.labels.store != self.store || rec.labels.instance != id {
                tracing::warn!(path = %path.display(), "ignoring instance record of another store or instance");
                continue;
            }
            let running = rec.exit.is_none() && procfs::is_alive(rec.pid, rec.start_ticks);
            let pidfd = if running {
                open_verified_pidfd(rec.pid, rec.start_ticks)
            } else {
                None
            };
            let started_at = rec.started_at();
            match pidfd {
                Some(fd) => self.track_running(
                    rec.labels,
                    rec.mode,
                    rec.pid,
                    rec.start_ticks,
                    (rec.port, rec.addr),
                    started_at,
                    fd,
                    Waiter::Adopted,
                ),
                None => {
                    let status = record::exit_status_path(&entry.path());
                    let state = rec
                        .exit
                        .or_else(|| {
                            (rec.mode == Mode::Namespaced)
                                .then(|| ns::read_exit_status(&status))
                                .flatten()
                        })
                        .unwrap_or(UNKNOWN_EXIT);
                    let state = self.with_oom(&id, state);
                    self.track_ended(
                        rec.labels,
                        rec.mode,
                        rec.pid,
                        rec.start_ticks,
                        (rec.port, rec.addr),
                        started_at,
                        state,
                    );
                }
            }
        }
        Ok(())
    }

    /// Finds every live process of this store in `/proc` and adopts the
    /// instances not yet tracked.
    fn adopt_scan(self: &Arc<Self>) -> Result<(), ProviderError> {
        let found =
            procfs::scan_env(env_keys::STORE, &self.store).map_err(|source| ProviderError::Io {
                what: "cannot scan processes".into(),
                path: PathBuf::from("/proc"),
                source,
            })?;
        let mut groups: BTreeMap<InstanceId, Vec<procfs::Labelled>> = BTreeMap::new();
        for p in found {
            match labels_from_env(&p.env) {
                Some(labels) => groups.entry(labels.instance).or_default().push(p),
                None => tracing::warn!(
                    pid = p.stat.pid,
                    "process carries this store's id but incomplete labels; leaving it alone"
                ),
            }
        }
        for (id, members) in groups {
            {
                let st = self.lock();
                if st.instances.contains_key(&id) || st.launching.contains_key(&id) {
                    continue;
                }
            }
            let Some(first) = members.first() else {
                continue;
            };
            let Some(labels) = labels_from_env(&first.env) else {
                continue;
            };
            let port = first
                .env
                .get(env_keys::PORT)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let addr = first
                .env
                .get(env_keys::HOST)
                .and_then(|h| h.parse::<Ipv4Addr>().ok())
                .filter(|a| net::in_subnet(*a));
            match find_leader(&members) {
                Some((mode, pid, start_ticks)) => {
                    let Some(fd) = open_verified_pidfd(pid, start_ticks) else {
                        continue; // ended while scanning; the next scan sees the rest
                    };
                    tracing::info!(instance = %id, pid, "adopting running instance");
                    let started_at = procfs::start_time(start_ticks);
                    self.track_running(
                        labels,
                        mode,
                        pid,
                        start_ticks,
                        (port, addr),
                        started_at,
                        fd,
                        Waiter::Adopted,
                    );
                }
                None => {
                    // Only descendants of an ended leader remain: report the
                    // instance as ended so that it is removed (which stops them).
                    tracing::info!(instance = %id, "found leftovers of an ended instance");
                    self.track_ended(
                        labels,
                        Mode::Plain,
                        0,
                        0,
                        (port, addr),
                        SystemTime::now(),
                        UNKNOWN_EXIT,
                    );
                }
            }
            let rec = self.lock().instances.get(&id).map(Tracked::record);
            if let Some(rec) = rec {
                self.persist(&id, &rec);
            }
        }
        Ok(())
    }

    /// Removes instance directories that belong to no tracked instance: a
    /// crash after creating them and before the process existed.
    fn remove_stale_dirs(&self) {
        {
            let st = self.lock();
            let known: std::collections::BTreeSet<InstanceId> = st
                .instances
                .keys()
                .chain(st.launching.keys())
                .cloned()
                .collect();
            secrets::sweep(&self.store, &known);
            glint_dir::sweep(&self.store, &known);
        }
        let run = record::run_dir(&self.state_dir);
        let Ok(entries) = std::fs::read_dir(&run) else {
            return;
        };
        let st = self.lock();
        for entry in entries.flatten() {
            let known = entry
                .file_name()
                .to_str()
                .and_then(|s| InstanceId::parse(s).ok())
                .is_some_and(|id| st.instances.contains_key(&id) || st.launching.contains_key(&id));
            // A directory with a record that was not loaded belongs to another
            // store or is unreadable: it is kept for a person to look at.
            if !known
                && !record::record_path(&entry.path()).exists()
                && let Err(e) = remove_dir_all_if_exists(&entry.path())
            {
                {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove stale instance directory");
                }
            }
        }
    }

    /// Writes an instance's record (best effort: the labels on the process
    /// remain the source of truth).
    fn persist(&self, id: &InstanceId, rec: &Record) {
        let dir = self.instance_dir(id);
        let path = record::record_path(&dir);
        let result = std::fs::create_dir_all(dir.join("work"))
            .map_err(|source| ProviderError::Io {
                what: "cannot create instance directory".into(),
                path: dir.clone(),
                source,
            })
            .and_then(|()| record::write_record(&path, rec));
        if let Err(e) = result {
            tracing::warn!(instance = %id, error = %e, "cannot write instance record");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track_running(
        self: &Arc<Self>,
        labels: Labels,
        mode: Mode,
        pid: i32,
        start_ticks: u64,
        (port, addr): (u16, Option<Ipv4Addr>),
        started_at: SystemTime,
        pidfd: OwnedFd,
        waiter: Waiter,
    ) {
        let id = labels.instance.clone();
        let pidfd = Arc::new(pidfd);
        let (state, _) = watch::channel(RunState::Running);
        // Tracked first, watched second: an exit noticed at once must find
        // the instance to mark.
        let mut st = self.lock();
        st.instances.insert(
            id.clone(),
            Tracked {
                labels,
                mode,
                pid,
                start_ticks,
                port,
                addr,
                started_at,
                pidfd: Some(pidfd.clone()),
                state,
                watcher: None,
            },
        );
        let status_file =
            (mode == Mode::Namespaced).then(|| record::exit_status_path(&self.instance_dir(&id)));
        let watcher = self.start_watcher(id.clone(), pid, start_ticks, pidfd, waiter, status_file);
        if let Some(t) = st.instances.get_mut(&id) {
            t.watcher = Some(watcher);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track_ended(
        &self,
        labels: Labels,
        mode: Mode,
        pid: i32,
        start_ticks: u64,
        (port, addr): (u16, Option<Ipv4Addr>),
        started_at: SystemTime,
        exit: RunState,
    ) {
        let (state, _) = watch::channel(exit);
        self.lock().instances.insert(
            labels.instance.clone(),
            Tracked {
                labels,
                mode,
                pid,
                start_ticks,
                port,
                addr,
                started_at,
                pidfd: None,
                state,
                watcher: None,
            },
        );
    }

    fn start_watcher(
        self: &Arc<Self>,
        id: InstanceId,
        pid: i32,
        start_ticks: u64,
        pidfd: Arc<OwnedFd>,
        waiter: Waiter,
        status_file: Option<PathBuf>,
    ) -> AbortHandle {
        let weak: Weak<Inner> = Arc::downgrade(self);
        tokio::spawn(async move {
            let state = match waiter {
                Waiter::Child(mut child) => match child.wait().await {
                    Ok(status) => state_of(status),
                    Err(e) => {
                        tracing::warn!(instance = %id, error = %e, "cannot wait for instance");
                        wait_for_exit(&pidfd, pid, start_ticks).await;
                        UNKNOWN_EXIT
                    }
                },
                Waiter::Own => {
                    wait_for_exit(&pidfd, pid, start_ticks).await;
                    reap(&pidfd)
                }
                Waiter::Adopted => {
                    wait_for_exit(&pidfd, pid, start_ticks).await;
                    // A namespaced init adopted within the process that
                    // started it (a provider reopened in place) is still our
                    // child: reap it rather than leave a zombie. Plain
                    // processes are left to `tokio::process`, which may
                    // still hold them.
                    if status_file.is_some() {
                        try_reap(&pidfd);
                    }
                    UNKNOWN_EXIT
                }
            };
            // A namespaced init leaves its program's own status behind.
            let state = status_file
                .and_then(|f| ns::read_exit_status(&f))
                .unwrap_or(state);
            if let Some(inner) = weak.upgrade() {
                let state = inner.with_oom(&id, state);
                inner.exited(&id, state);
            }
        })
        .abort_handle()
    }

    /// Records that an instance's leader ended and tells the subscribers.
    fn exited(&self, id: &InstanceId, state: RunState) {
        {
            let mut st = self.lock();
            let Some(t) = st.instances.get_mut(id) else {
                return;
            };
            if t.run_state() != RunState::Running {
                return;
            }
            t.pidfd = None;
            t.watcher = None;
            t.state.send_replace(state);
            // Written under the lock so that a concurrent `remove` cannot
            // delete the directory halfway through.
            let rec = t.record();
            self.persist_existing(id, &rec);
        }
        tracing::info!(instance = %id, %state, "instance ended");
        let _ = self.events.send(ProviderEvent::Exited {
            instance: id.clone(),
            state,
        });
    }

    /// Like [`Inner::persist`] but only if the instance directory exists.
    fn persist_existing(&self, id: &InstanceId, rec: &Record) {
        let dir = self.instance_dir(id);
        if dir.is_dir()
            && let Err(e) = record::write_record(&record::record_path(&dir), rec)
        {
            {
                tracing::warn!(instance = %id, error = %e, "cannot write instance record");
            }
        }
    }

    /// An address for `id`'s own network, made (see [`net::create`]): the
    /// lowest one of the subnet no tracked instance has and no other store
    /// on this host routes.
    async fn allocate_addr(&self, id: &InstanceId) -> Result<Ipv4Addr, ProviderError> {
        let fail = |reason: String| ProviderError::Launch {
            instance: id.clone(),
            reason,
            source: None,
        };
        let mut skipped = std::collections::HashSet::new();
        for _ in 0..256 {
            let candidate = {
                let mut st = self.lock();
                let used: std::collections::HashSet<Ipv4Addr> = st
                    .instances
                    .values()
                    .filter_map(|t| t.addr)
                    .chain(st.launching_addrs.values().copied())
                    .collect();
                let c = net::candidates().find(|a| !used.contains(a) && !skipped.contains(a));
                if let Some(a) = c {
                    st.launching_addrs.insert(id.clone(), a);
                }
                c
            };
            let Some(addr) = candidate else {
                return Err(fail(format!(
                    "no free address left in {}/{}",
                    net::SUBNET.0,
                    net::SUBNET.1
                )));
            };
            let name = id.to_string();
            match tokio::task::spawn_blocking(move || net::create(&name, addr)).await {
                Ok(Ok(())) => return Ok(addr),
                Ok(Err(net::NetError::Taken)) => {
                    skipped.insert(addr);
                    self.lock().launching_addrs.remove(id);
                }
                Ok(Err(e)) => {
                    return Err(fail(format!("cannot make the instance's network: {e}")));
                }
                Err(e) => {
                    return Err(fail(format!("cannot make the instance's network: {e}")));
                }
            }
        }
        Err(fail(
            "cannot find a free address: 256 in a row are used by other stores on this host".into(),
        ))
    }

    /// A loopback port that is free now and not given to a live instance.
    fn allocate_port(&self, id: &InstanceId) -> Result<u16, ProviderError> {
        let mut last_err = None;
        for _ in 0..64 {
            let port =
                match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
                    Ok(a) => a.port(),
                    Err(e) => {
                        last_err = Some(e);
                        continue;
                    }
                };
            let mut st = self.lock();
            let taken = st.launching.values().any(|&p| p == port)
                || st
                    .instances
                    .values()
                    .any(|t| t.port == port && t.run_state() == RunState::Running);
            if !taken {
                st.launching.insert(id.clone(), port);
                return Ok(port);
            }
        }
        Err(ProviderError::Launch {
            instance: id.clone(),
            reason: "cannot find a free loopback port".into(),
            source: last_err,
        })
    }

    /// Sends `sig` to a running instance: its process group, or its namespace
    /// init (which forwards it to everything inside).
    fn signal(&self, id: &InstanceId, sig: Signal) -> Result<(), ProviderError> {
        let (mode, pid, pidfd) = {
            let st = self.lock();
            match st.instances.get(id) {
                Some(t) if t.run_state() == RunState::Running => (t.mode, t.pid, t.pidfd.clone()),
                _ => return Ok(()),
            }
        };
        let result = match (mode, pidfd) {
            // The leader is alive (we hold its pidfd and it has not been seen
            // to exit), so its pid still names its process group.
            (Mode::Plain, Some(_)) => match Pid::from_raw(pid) {
                Some(p) => rustix::process::kill_process_group(p, sig),
                None => Ok(()),
            },
            (Mode::Namespaced, Some(fd)) => rustix::process::pidfd_send_signal(fd.as_fd(), sig),
            (_, None) => Ok(()),
        };
        match result {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(ProviderError::Terminate {
                instance: id.clone(),
                reason: format!("cannot send {sig:?} to pid {pid}: {e}"),
            }),
        }
    }

    /// Stops every process that still carries `id`'s labels: SIGTERM to those
    /// outside the leader's process group (the group was signalled already),
    /// up to `grace` for all to end, then SIGKILL.
    async fn stop_leftovers(
        &self,
        id: &InstanceId,
        leader_group: i32,
        grace: Duration,
    ) -> Result<(), ProviderError> {
        let found = procfs::scan_env(env_keys::INSTANCE, id.as_str()).unwrap_or_default();
        let mut fds = Vec::new();
        for p in found {
            if p.env.get(env_keys::STORE) != Some(&self.store) {
                continue;
            }
            if let Some(fd) = open_verified_pidfd(p.stat.pid, p.stat.start_ticks) {
                if p.stat.pgid != leader_group || grace.is_zero() {
                    let sig = if grace.is_zero() {
                        Signal::KILL
                    } else {
                        Signal::TERM
                    };
                    let _ = rustix::process::pidfd_send_signal(fd.as_fd(), sig);
                }
                fds.push((p.stat.pid, p.stat.start_ticks, Arc::new(fd)));
            }
        }
        if fds.is_empty() {
            return Ok(());
        }
        tracing::info!(instance = %id, count = fds.len(), "stopping leftover processes");
        let all_exit = |fds: Vec<(i32, u64, Arc<OwnedFd>)>| async move {
            for (pid, ticks, fd) in fds {
                wait_for_exit(&fd, pid, ticks).await;
            }
        };
        if tokio::time::timeout(grace, all_exit(fds.clone()))
            .await
            .is_ok()
        {
            return Ok(());
        }
        for (_, _, fd) in &fds {
            let _ = rustix::process::pidfd_send_signal(fd.as_fd(), Signal::KILL);
        }
        tokio::time::timeout(KILL_WAIT, all_exit(fds))
            .await
            .map_err(|_| ProviderError::Terminate {
                instance: id.clone(),
                reason: format!(
                    "processes still running {}s after SIGKILL",
                    KILL_WAIT.as_secs()
                ),
            })
    }
}

impl ProcessProvider {
    /// Launches an instance as [`Provider::launch`] does, with `attach`
    /// (volumes, a network namespace, cgroups) added to its world. Anything
    /// attached needs [`Isolation::Namespaces`]; asking for it without is a
    /// launch error.
    pub async fn launch_with(
        &self,
        spec: LaunchSpec,
        mut attach: Attachments,
    ) -> Result<Observed, ProviderError> {
        let inner = &self.inner;
        let id = spec.labels.instance.clone();
        let fail = |reason: String, source: Option<std::io::Error>| ProviderError::Launch {
            instance: id.clone(),
            reason,
            source,
        };
        if spec.labels.store != inner.store {
            return Err(fail(
                format!(
                    "its labels name store `{}` but this provider belongs to store `{}`",
                    spec.labels.store, inner.store
                ),
                None,
            ));
        }
        let Some(argv0) = spec.argv.first() else {
            return Err(fail("the command line (argv) is empty".into(), None));
        };
        if inner.isolation == Isolation::None && (!attach.is_empty() || !spec.mounts.is_empty()) {
            return Err(fail(
                "volumes, network namespaces and cgroups need namespace isolation (run as root)"
                    .into(),
                None,
            ));
        }
        let program = resolve::resolve_program(
            &spec.image.rootfs,
            argv0,
            &spec.workdir,
            spec.env.get("PATH").map(String::as_str),
        )
        .map_err(|(reason, source)| fail(reason, source))?;

        let dir = inner.instance_dir(&id);
        {
            let st = inner.lock();
            if st.instances.contains_key(&id) || st.launching.contains_key(&id) || dir.exists() {
                return Err(fail("an instance with this id already exists".into(), None));
            }
        }
        // From here on the id is reserved in `launching`; the guard releases
        // it and removes whatever was created if we do not get to the end.
        // Its own network (see `net`): asked for by environments that
        // declare rules, possible with namespaces and the `ip` command.
        let own_network = spec.own_network
            && attach.network.is_none()
            && inner.isolation == Isolation::Namespaces
            && net::available();
        if spec.own_network && !own_network {
            tracing::warn!(
                instance = %id,
                "the instance should get its own network, which needs root, namespace isolation and the `ip` command: it shares the host's network and no rule applies to it"
            );
        }
        let port = if own_network && spec.port != 0 {
            inner.lock().launching.insert(id.clone(), spec.port);
            spec.port
        } else {
            inner.allocate_port(&id)?
        };
        let mut guard = LaunchGuard {
            inner,
            id: &id,
            dir: Some(dir.clone()),
            logs: None,
            spawned: None,
            cgroup: None,
            secrets: None,
            net: false,
            glint_dir: false,
        };
        let addr = if own_network {
            let addr = inner.allocate_addr(&id).await?;
            guard.net = true;
            let path = net::netns_path(&net::link_name(id.as_str()));
            attach.network = Some(NetNs::open(&path).map_err(|e| {
                fail(
                    format!(
                        "cannot open the instance's network namespace {}",
                        path.display()
                    ),
                    Some(e),
                )
            })?);
            Some(addr)
        } else {
            None
        };

        // Volumes: created if new, bound at their paths; a read-write one
        // held by another instance refuses the launch.
        let now_ms = i64::try_from(record::millis_since_epoch(SystemTime::now())).unwrap_or(0);
        let mut held = Vec::new();
        for m in &spec.mounts {
            let data = volumes::ensure(
                &inner.state_dir,
                &inner.store,
                spec.labels.environment.as_str(),
                &m.volume,
                now_ms,
            )?;
            if m.exclusive && !m.read_only {
                match volumes::lock(&inner.state_dir, &m.volume) {
                    Ok(fd) => held.push(fd),
                    Err(volumes::LockError::Held) => {
                        return Err(fail(
                            format!(
                                "volume `{}` is still held by another instance (one writer at a time: it must end first)",
                                m.volume
                            ),
                            None,
                        ));
                    }
                    Err(volumes::LockError::Io(e)) => return Err(e),
                }
            }
            attach.binds.push(if m.read_only {
                Bind::read_only(data, &m.path)
            } else {
                Bind::read_write(data, &m.path)
            });
        }
        // Secrets: files on a tmpfs, bound read-only at /run/secrets (a
        // plain instance is told where they are); see `secrets.rs`.
        let secrets_dir = if spec.secrets.is_empty() {
            None
        } else {
            let d = secrets::write(&inner.store, &id, &spec.secrets)?;
            guard.secrets = Some(d.clone());
            if inner.isolation == Isolation::Namespaces {
                attach
                    .binds
                    .push(Bind::read_only(d.clone(), secrets::MOUNT_POINT));
            }
            Some(d)
        };
        // Identity, variables, the instance API: /run/glint, on a tmpfs
        // too (a plain instance is told the paths); see `glint_dir.rs`.
        let glint_env = match &spec.glint {
            None => Vec::new(),
            Some(files) => {
                let d = glint_dir::write(&inner.store, &id, files)?;
                guard.glint_dir = true;
                let bound = inner.isolation == Isolation::Namespaces;
                if bound {
                    attach
                        .binds
                        .push(Bind::read_only(d.clone(), glint_dir::MOUNT_POINT));
                    if let Some(api) = glint_dir::api_dir(files) {
                        attach
                            .binds
                            .push(Bind::read_only(api.to_owned(), glint_dir::API_MOUNT_POINT));
                    }
                }
                glint_dir::env(&d, files, bound)
            }
        };
        // Its own cgroup with the declared limits, unless the caller
        // attached cgroups itself.
        if attach.cgroups.clone_into.is_none() && attach.cgroups.join.is_empty() {
            match &inner.cgroups {
                Some(c) => match c.create(&inner.store, &id, &spec.resources) {
                    Ok(cg) => {
                        guard.cgroup = Some(cg.clone());
                        attach.cgroups = cg.attachment().map_err(|e| {
                            fail("cannot open the instance's cgroup".into(), Some(e))
                        })?;
                    }
                    // Limits are the instance's contract; accounting alone
                    // is not worth refusing a launch for.
                    Err(e) if spec.resources.is_limited() => {
                        return Err(fail(
                            "cannot create the instance's cgroup for its limits".into(),
                            Some(e),
                        ));
                    }
                    Err(e) => tracing::warn!(
                        instance = %id,
                        error = %e,
                        "cannot create the instance's cgroup: it runs without one"
                    ),
                },
                None if spec.resources.is_limited() => tracing::warn!(
                    instance = %id,
                    "no usable cgroups on this machine: the instance's resource limits are not enforced"
                ),
                None => {}
            }
        }
        attach.held = held;

        let work = dir.join("work");
        std::fs::create_dir_all(&work).map_err(|e| {
            fail(
                format!("cannot create working directory {}", work.display()),
                Some(e),
            )
        })?;
        let logs = log_paths(&inner.state_dir, &id);
        let logs_dir = logs.stdout.parent().map(Path::to_owned).unwrap_or_default();
        if !logs_dir.exists() {
            guard.logs = Some(logs_dir.clone());
        }
        std::fs::create_dir_all(&logs_dir)
            .and_then(|()| {
                logs::write_record(
                    &logs_dir,
                    &logs::LogRecord {
                        store: inner.store.clone(),
                        service: spec.labels.service.to_string(),
                        launched_at_ns: logs::nanos_since_epoch(SystemTime::now()),
                    },
                )
            })
            .map_err(|e| {
                fail(
                    format!("cannot create log directory {}", logs_dir.display()),
                    Some(e),
                )
            })?;
        let open_log = |path: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| fail(format!("cannot open log file {}", path.display()), Some(e)))
        };
        let stdout = open_log(&logs.stdout)?;
        let stderr = open_log(&logs.stderr)?;

        let mut env = instance_env(&spec, port, addr.unwrap_or(Ipv4Addr::LOCALHOST));
        if let (Some(d), Isolation::None) = (&secrets_dir, inner.isolation) {
            env.insert(secrets::DIR_ENV.into(), d.display().to_string());
        }
        env.extend(glint_env);
        let started_at = SystemTime::now();
        let start_err = |e| {
            fail(
                format!("cannot start `{}`", program.inside.display()),
                Some(e),
            )
        };
        let Spawned {
            pid,
            start_ticks,
            pidfd,
            waiter,
            mode,
        } = match inner.isolation {
            Isolation::None => {
                spawn::spawn_plain(&program, &spec.argv, &env, &work, stdout, stderr)
                    .map_err(start_err)?
            }
            Isolation::Namespaces => {
                let root_mount = dir.join("root");
                let mount_points = ns::mount_points_dir(&dir);
                let status_path = record::exit_status_path(&dir);
                let status = std::fs::create_dir_all(&root_mount)
                    .and_then(|()| std::fs::create_dir_all(&mount_points))
                    .and_then(|()| {
                        File::options()
                            .create(true)
                            .truncate(true)
                            .write(true)
                            .open(&status_path)
                    })
                    .map_err(|e| {
                        fail(
                            format!("cannot prepare instance directory {}", dir.display()),
                            Some(e),
                        )
                    })?;
                let layout = ns::Layout {
                    rootfs: &spec.image.rootfs,
                    root_mount: &root_mount,
                    mount_points: &mount_points,
                    workdir: &spec.workdir,
                    hostname: id.as_str(),
                };
                let stdio = ns::Stdio {
                    stdout,
                    stderr,
                    status,
                };
                let mut started = ns::spawn(&layout, &program, &spec.argv, &env, stdio, attach)
                    .map_err(start_err)?;
                let pid = started.pid();
                let report = started.take_report();
                guard.spawned = Some(GuardedChild {
                    pid,
                    pidfd: started.into_pidfd(),
                    reap: true,
                });
                // Wait (off the reactor) until the program has been executed
                // or a setup step has failed.
                if let Some(report) = report {
                    match tokio::task::spawn_blocking(move || ns::wait_started(report)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(start_err(e)),
                        Err(e) => return Err(start_err(std::io::Error::other(e))),
                    }
                }
                // Unreaped (even if it ended), so its pid is still its own.
                let start_ticks = procfs::stat(pid).map_err(start_err)?.start_ticks;
                let Some(child) = guard.spawned.take() else {
                    return Err(fail("internal error: lost the process handle".into(), None));
                };
                Spawned {
                    pid,
                    start_ticks,
                    pidfd: child.pidfd,
                    waiter: Waiter::Own,
                    mode: Mode::Namespaced,
                }
            }
        };
        guard.spawned = Some(GuardedChild {
            pid,
            pidfd,
            reap: matches!(waiter, Waiter::Own),
        });

        let rec = Record {
            labels: spec.labels.clone(),
            mode,
            pid,
            start_ticks,
            port,
            addr,
            started_at_ms: record::millis_since_epoch(started_at),
            exit: None,
        };
        record::write_record(&record::record_path(&dir), &rec)?;

        // Success: hand the process over to a watcher.
        let Some(GuardedChild { pidfd, .. }) = guard.spawned.take() else {
            return Err(fail("internal error: lost the process handle".into(), None));
        };
        guard.logs = None;
        guard.dir = None;
        guard.cgroup = None;
        guard.secrets = None;
        guard.net = false;
        guard.glint_dir = false;
        inner.track_running(
            spec.labels,
            mode,
            pid,
            start_ticks,
            (port, addr),
            started_at,
            pidfd,
            waiter,
        );
        drop(guard);
        let observed = inner.lock().instances.get(&id).map(Tracked::observed);
        tracing::info!(instance = %id, pid, port, "launched instance");
        observed.ok_or_else(|| {
            fail(
                "internal error: instance vanished after launch".into(),
                None,
            )
        })
    }
}

#[async_trait]
impl Provider for ProcessProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Process
    }

    async fn launch(&self, spec: LaunchSpec) -> Result<Observed, ProviderError> {
        self.launch_with(spec, Attachments::default()).await
    }

    async fn terminate(&self, instance: &InstanceId, grace: Duration) -> Result<(), ProviderError> {
        let inner = &self.inner;
        if !inner.lock().instances.contains_key(instance) {
            inner.adopt_scan()?;
        }
        let (mut rx, leader) = {
            let st = inner.lock();
            match st.instances.get(instance) {
                Some(t) => (Some(t.state.subscribe()), t.pid),
                None => (None, 0),
            }
        };
        let start = tokio::time::Instant::now();
        if let Some(rx) = rx.as_mut() {
            let running = *rx.borrow() == RunState::Running;
            if running {
                // A closed channel means the instance was removed meanwhile:
                // as good as ended.
                inner.signal(instance, Signal::TERM)?;
                let ended = tokio::time::timeout(grace, rx.wait_for(|s| *s != RunState::Running))
                    .await
                    .is_ok();
                if !ended {
                    tracing::info!(instance = %instance, "grace period over; sending SIGKILL");
                    inner.signal(instance, Signal::KILL)?;
                    let ended =
                        tokio::time::timeout(KILL_WAIT, rx.wait_for(|s| *s != RunState::Running))
                            .await
                            .is_ok();
                    if !ended {
                        return Err(ProviderError::Terminate {
                            instance: instance.clone(),
                            reason: format!("still running {}s after SIGKILL", KILL_WAIT.as_secs()),
                        });
                    }
                }
            }
        }
        let left = grace.saturating_sub(start.elapsed());
        inner.stop_leftovers(instance, leader, left).await
    }

    async fn observe(&self) -> Result<Vec<Observed>, ProviderError> {
        self.inner.adopt_scan()?;
        let st = self.inner.lock();
        let mut all: Vec<Observed> = st.instances.values().map(Tracked::observed).collect();
        all.sort_by(|a, b| a.labels.instance.cmp(&b.labels.instance));
        Ok(all)
    }

    async fn remove(&self, instance: &InstanceId) -> Result<(), ProviderError> {
        // Removing a running instance would leak it: stop it first, at once.
        self.terminate(instance, Duration::ZERO).await?;
        let removed = self.inner.lock().instances.remove(instance);
        let had_net = removed.as_ref().is_some_and(|t| t.addr.is_some())
            || net::netns_path(&net::link_name(instance.as_str())).exists();
        if let Some(w) = removed.and_then(|t| t.watcher) {
            w.abort();
        }
        if had_net {
            let id = instance.to_string();
            let _ = tokio::task::spawn_blocking(move || net::remove(&id)).await;
        }
        secrets::remove(&self.inner.store, instance);
        glint_dir::remove(&self.inner.store, instance);
        let dir = self.inner.instance_dir(instance);
        remove_dir_all_if_exists(&dir).map_err(|source| ProviderError::Io {
            what: "cannot remove instance directory".into(),
            path: dir,
            source,
        })?;
        if let Some(cg) = self.inner.cgroup_of(instance) {
            let id = instance.clone();
            let removed = tokio::task::spawn_blocking(move || cg.remove())
                .await
                .unwrap_or(false);
            if !removed {
                tracing::warn!(instance = %id, "cannot remove the instance's cgroup yet");
            }
        }
        // Its logs are now those of a gone instance.
        self.inner.prune_logs();
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<ProviderEvent> {
        self.inner.events.subscribe()
    }

    async fn usage(&self) -> Result<Vec<(InstanceId, Usage)>, ProviderError> {
        let running: Vec<InstanceId> = self
            .inner
            .lock()
            .instances
            .iter()
            .filter(|(_, t)| t.run_state() == RunState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        Ok(running
            .into_iter()
            .filter_map(|id| {
                let cg = self.inner.cgroup_of(&id)?;
                let cpu_usec = cg.cpu_usec()?;
                Some((
                    id,
                    Usage {
                        cpu_usec,
                        memory_bytes: cg.memory_bytes(),
                    },
                ))
            })
            .collect())
    }

    async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, ProviderError> {
        let dir = self.inner.state_dir.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || volumes::info(&dir, &name))
            .await
            .map_err(|e| ProviderError::Backend(format!("volume lookup failed: {e}")))
    }

    async fn remove_volume(&self, name: &str) -> Result<(), ProviderError> {
        let dir = self.inner.state_dir.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || volumes::remove(&dir, &name))
            .await
            .map_err(|e| ProviderError::Backend(format!("volume removal failed: {e}")))?
    }
}

impl ProcessProvider {
    /// Whether an instance holds volume `name` read-write now (its lock is
    /// taken).
    pub fn volume_is_locked(&self, name: &str) -> bool {
        volumes::is_locked(&self.inner.state_dir, name)
    }
}

/// Undoes a launch that did not finish: kills the process if it was started,
/// removes the directories made for it, releases the id.
struct LaunchGuard<'a> {
    inner: &'a Inner,
    id: &'a InstanceId,
    dir: Option<PathBuf>,
    logs: Option<PathBuf>,
    spawned: Option<GuardedChild>,
    cgroup: Option<cgroup::InstanceCgroup>,
    /// The instance's secrets directory, removed if the launch fails.
    secrets: Option<PathBuf>,
    /// Whether its own network was made (removed if the launch fails).
    net: bool,
    /// Whether the instance's `/run/glint` directory was written (removed
    /// if the launch fails).
    glint_dir: bool,
}

/// A leader started by a launch that has not finished yet.
struct GuardedChild {
    pid: i32,
    pidfd: OwnedFd,
    /// Whether nobody else will reap it (not a `tokio::process` child).
    reap: bool,
}

impl Drop for LaunchGuard<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.spawned.take() {
            // The leader is our unreaped child, so its pid and process group
            // cannot have been reused.
            let _ = rustix::process::pidfd_send_signal(child.pidfd.as_fd(), Signal::KILL);
            if let Some(p) = Pid::from_raw(child.pid) {
                let _ = rustix::process::kill_process_group(p, Signal::KILL);
            }
            if child.reap {
                // SIGKILL is quick; waiting for it is still kept off the reactor.
                tokio::task::spawn_blocking(move || reap(&child.pidfd));
            }
        }
        if self.secrets.take().is_some() {
            secrets::remove(&self.inner.store, self.id);
        }
        if std::mem::take(&mut self.glint_dir) {
            glint_dir::remove(&self.inner.store, self.id);
        }
        for dir in [self.dir.take(), self.logs.take()].into_iter().flatten() {
            if let Err(e) = remove_dir_all_if_exists(&dir) {
                tracing::warn!(path = %dir.display(), error = %e, "cannot clean up after a failed launch");
            }
        }
        if let Some(cg) = self.cgroup.take() {
            // The killed leader may still be being reaped: off the reactor.
            std::thread::spawn(move || cg.remove());
        }
        if self.net {
            net::remove(self.id.as_str());
        }
        let mut st = self.inner.lock();
        st.launching.remove(self.id);
        st.launching_addrs.remove(self.id);
    }
}

fn remove_dir_all_if_exists(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The instance's whole environment: the spec's, then the labels, `PORT` and
/// `HOST`, which always win.
fn instance_env(spec: &LaunchSpec, port: u16, host: Ipv4Addr) -> BTreeMap<String, String> {
    let mut env = spec.env.clone();
    let l = &spec.labels;
    env.insert(env_keys::STORE.into(), l.store.clone());
    env.insert(env_keys::ENVIRONMENT.into(), l.environment.to_string());
    env.insert(env_keys::SERVICE.into(), l.service.to_string());
    env.insert(env_keys::VERSION.into(), l.version.to_string());
    env.insert(env_keys::INSTANCE.into(), l.instance.to_string());
    env.insert(env_keys::IMAGE.into(), l.image.to_string());
    env.insert(env_keys::PORT.into(), port.to_string());
    env.insert(env_keys::HOST.into(), host.to_string());
    env
}

/// Reads the labels back from a process environment.
fn labels_from_env(env: &BTreeMap<String, String>) -> Option<Labels> {
    let pairs = [
        (env_keys::STORE, keys::STORE),
        (env_keys::ENVIRONMENT, keys::ENVIRONMENT),
        (env_keys::SERVICE, keys::SERVICE),
        (env_keys::VERSION, keys::VERSION),
        (env_keys::INSTANCE, keys::INSTANCE),
        (env_keys::IMAGE, keys::IMAGE),
    ];
    let map: BTreeMap<String, String> = pairs
        .iter()
        .filter_map(|(e, k)| env.get(*e).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    Labels::from_map(&map).ok()
}

/// The leader among the labelled processes of one instance. The earliest
/// started of them is the program (its descendants came later). If it lives
/// in a nested pid namespace, the leader is its parent, the namespace's init
/// (which carries no labels itself); otherwise the program itself, if it still
/// leads its session. `None`: only leftovers of an ended leader remain.
fn find_leader(members: &[procfs::Labelled]) -> Option<(Mode, i32, u64)> {
    let first = members
        .iter()
        .min_by_key(|p| (p.stat.start_ticks, p.stat.pid))?;
    if procfs::is_nested(first.stat.pid) {
        let init = first.stat.ppid;
        let s = procfs::stat(init).ok()?;
        return (procfs::is_nested_init(init) && s.sid == init && !s.is_zombie()).then_some((
            Mode::Namespaced,
            init,
            s.start_ticks,
        ));
    }
    (first.stat.sid == first.stat.pid).then_some((
        Mode::Plain,
        first.stat.pid,
        first.stat.start_ticks,
    ))
}

/// A pidfd for `pid`, if it still is the process that started at
/// `start_ticks`. Opening first and checking after closes the pid-reuse race:
/// the pidfd refers to one process for good.
fn open_verified_pidfd(pid: i32, start_ticks: u64) -> Option<OwnedFd> {
    let fd = rustix::process::pidfd_open(Pid::from_raw(pid)?, PidfdFlags::NONBLOCK).ok()?;
    procfs::is_alive(pid, start_ticks).then_some(fd)
}

/// A pidfd shared with the watcher, in the form the reactor wants.
struct PidfdRef(Arc<OwnedFd>);

impl AsRawFd for PidfdRef {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Returns once the process behind `pidfd` has ended (the pidfd becomes
/// readable). Falls back to polling `/proc` if the reactor refuses the fd.
async fn wait_for_exit(pidfd: &Arc<OwnedFd>, pid: i32, start_ticks: u64) {
    use tokio::io::{Interest, unix::AsyncFd};
    // SAFETY: `PidfdRef` owns a reference to the pidfd, which stays open and
    // unchanged for as long as the `AsyncFd` lives.
    match unsafe { AsyncFd::register_with_interest(PidfdRef(pidfd.clone()), Interest::READABLE) } {
        Ok(fd) => {
            // Readable means ended; an error means the fd is unusable: poll.
            if fd.readable().await.is_ok() {
                return;
            }
        }
        Err(e) => tracing::warn!(pid, error = %e, "cannot watch pidfd; polling /proc instead"),
    }
    while procfs::is_alive(pid, start_ticks) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reaps our own ended child through its pidfd and returns how it ended.
fn reap(pidfd: &OwnedFd) -> RunState {
    use rustix::process::{WaitId, WaitIdOptions};
    match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
        Ok(Some(status)) => match status.exit_status() {
            Some(code) => RunState::Exited {
                code: Some(code),
                signal: None,
                oom: false,
            },
            None => RunState::Exited {
                code: None,
                signal: status.terminating_signal(),
                oom: false,
            },
        },
        _ => UNKNOWN_EXIT,
    }
}

/// Reaps the ended process behind `pidfd` if it is our child; does nothing
/// (and does not wait) otherwise.
fn try_reap(pidfd: &OwnedFd) {
    use rustix::process::{WaitId, WaitIdOptions};
    let _ = rustix::process::waitid(
        WaitId::PidFd(pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    );
}

fn state_of(status: std::process::ExitStatus) -> RunState {
    use std::os::unix::process::ExitStatusExt;
    RunState::Exited {
        code: status.code(),
        signal: status.signal(),
        oom: false,
    }
}
