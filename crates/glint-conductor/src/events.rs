//! The conductor's events: one enum of everything it records, turned into a
//! kind, a severity and a sentence in exactly one place
//! ([`ConductorEvent::to_event`]), with the cause key the rate limit of
//! [`crate::sink`] groups repeats by.

use glint_model::{InstanceId, Name, ProviderKind, VersionNumber};
use glint_provider::{DriftKind, RunState};
use glint_store::{EventKind, NewEvent, Role};

/// Everything the conductor records. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub enum ConductorEvent {
    /// This conductor started.
    Started {
        /// Its pid.
        pid: u32,
        /// `daemon` or `up`.
        mode: String,
        /// Its leadership epoch.
        epoch: u64,
    },
    /// This conductor stopped.
    Stopped {
        /// Whether it stopped its instances first.
        stopped_instances: bool,
    },
    /// A provider was connected.
    ProviderConnected {
        /// Which.
        kind: ProviderKind,
    },
    /// A provider cannot be reached.
    ProviderUnavailable {
        /// Which.
        kind: ProviderKind,
        /// Why.
        error: String,
        /// Seconds until the next attempt.
        retry_in_s: u64,
    },
    /// A launch was decided; its intent is recorded.
    Launching {
        /// The new instance.
        id: InstanceId,
        /// For which version.
        version: VersionNumber,
        /// Why.
        reason: String,
    },
    /// The provider runs it.
    Launched {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// The provider's handle.
        handle: String,
        /// Where it listens.
        addr: Option<std::net::SocketAddr>,
    },
    /// A launch failed.
    LaunchFailed {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// Why.
        error: String,
    },
    /// The image failed verification: an incident.
    ImageRejected {
        /// The instance that was not launched.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// What was wrong.
        error: String,
    },
    /// Launches of a service are held back.
    BackingOff {
        /// The service.
        service: Name,
        /// Failures in a row.
        failures: u32,
        /// How long launches wait.
        delay_ms: u64,
        /// The last failure.
        cause: String,
    },
    /// Launches of a service work again after a backoff.
    Recovered {
        /// The service.
        service: Name,
        /// Failures the streak had.
        failures: u32,
    },
    /// An instance passed its health check.
    Healthy {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// Milliseconds after its launch.
        after_ms: i64,
    },
    /// A healthy instance failed its health checks.
    Unhealthy {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// The last failure.
        reason: String,
    },
    /// A starting instance never passed.
    NeverHealthy {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// The last failure.
        reason: String,
    },
    /// An instance's program ended without being asked to.
    Exited {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// How.
        state: RunState,
    },
    /// An instance ended while no conductor watched.
    EndedWhileAway {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// How.
        state: RunState,
    },
    /// An instance the store believed in is not there.
    Vanished {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// What exactly.
        what: String,
    },
    /// A restarted conductor found a live instance.
    Adopted {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// The provider's handle.
        handle: String,
        /// Running or retiring.
        state: String,
    },
    /// A labelled instance nobody owns was removed.
    OrphanRemoved {
        /// The instance.
        id: InstanceId,
        /// The provider's handle.
        handle: String,
    },
    /// An instance no longer matches what was launched.
    Drifted {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// Which kind.
        kind: DriftKind,
        /// What was found.
        what: String,
        /// Whether it is replaced (or only reported).
        replaced: bool,
    },
    /// Glint's nftables table differed from the declared ruleset (a rule
    /// added, removed or changed by hand, the table deleted); the declared
    /// ruleset was applied again.
    FirewallDrift {
        /// The table (`inet glint_…`).
        table: String,
        /// What was found, as the kernel lists it.
        found: String,
    },
    /// A provider found and corrected something that is not an instance.
    ProviderIncident {
        /// What it concerns (see `ProviderEvent::Incident`).
        subject: String,
        /// What was found.
        what: String,
        /// What was done.
        action: String,
    },
    /// An instance is being drained and terminated.
    Retiring {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: VersionNumber,
        /// Why.
        reason: String,
    },
    /// An instance was terminated.
    Terminated {
        /// The instance.
        id: InstanceId,
        /// Its version.
        version: Option<VersionNumber>,
        /// How (drained, after a retry…).
        how: String,
    },
    /// An instance could not be terminated yet.
    TerminateFailed {
        /// The instance.
        id: InstanceId,
        /// Why.
        error: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// An endpoint listens.
    EndpointListening {
        /// The endpoint.
        name: Name,
        /// Where.
        addr: std::net::SocketAddr,
        /// Found listening (it kept serving while no conductor ran, or was
        /// handed over) rather than bound now.
        kept: bool,
    },
    /// The data plane process was found and adopted, started, or replaced by
    /// one of this build (which took over its listening sockets).
    DataPlaneLaunched {
        /// What happened.
        how: DataPlaneLaunch,
        /// The data plane now serving: pid, protocol, build.
        now: (u32, u32, String),
        /// The one it replaced, if it replaced one.
        old: Option<(u32, u32, String)>,
    },
    /// Another data plane process answers now (the old one died and was
    /// started again): the endpoints are programmed again.
    DataPlaneChanged {
        /// Its pid.
        pid: u32,
        /// Its build, short.
        build: String,
    },
    /// The data plane does not answer (recorded once until it answers).
    DataPlaneUnreachable {
        /// Why.
        error: String,
    },
    /// An endpoint cannot listen.
    EndpointFailed {
        /// The endpoint.
        name: Name,
        /// Why.
        error: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// An endpoint was closed.
    EndpointStopped {
        /// The endpoint.
        name: Name,
        /// Where it listened.
        listen: std::net::SocketAddr,
    },
    /// A version's rollout began.
    RolloutStarted {
        /// The version.
        version: VersionNumber,
        /// Per service, what is replaced.
        what: String,
    },
    /// A rollout made progress.
    RolloutProgress {
        /// The service.
        service: Name,
        /// The version.
        version: VersionNumber,
        /// Available current instances.
        available: u32,
        /// Declared count.
        desired: u32,
        /// What it waits for.
        waiting: Option<String>,
    },
    /// A version converged.
    RolloutCompleted {
        /// The version.
        version: VersionNumber,
        /// How long it took.
        took: String,
    },
    /// A version's rollout failed.
    RolloutFailed {
        /// The version.
        version: VersionNumber,
        /// Why.
        reason: String,
        /// Whether it is rolled back (false: `auto_rollback = false`, or no
        /// earlier version to return to).
        rolling_back: bool,
    },
    /// A failed version was rolled back automatically.
    RolledBack {
        /// The failed version.
        failed: VersionNumber,
        /// The version whose content was restored.
        to: VersionNumber,
        /// The new version.
        new: VersionNumber,
        /// Why.
        reason: String,
    },
    /// A version was recorded by an apply.
    Applied {
        /// The version.
        version: VersionNumber,
        /// How many services it declares.
        services: usize,
        /// Its content hash, short.
        hash: String,
    },
    /// A version was recorded by a requested rollback.
    RollbackRecorded {
        /// The new version.
        version: VersionNumber,
        /// The version whose content it restores.
        to: VersionNumber,
    },
    /// A version was superseded before its rollout ended.
    Superseded {
        /// The version.
        version: VersionNumber,
        /// By which.
        by: VersionNumber,
    },
    /// A version without services or endpoints was recorded (`glint down`).
    DownRecorded {
        /// The new version.
        version: VersionNumber,
    },
    /// A mutating API call (the audit trail): who, what, and how it ended.
    /// Never carries a secret or a request body.
    ApiCall {
        /// The caller: a token's accessor, or `unix-socket` for the
        /// owner-only local socket.
        accessor: String,
        /// The role it acted with.
        role: Role,
        /// `POST /v1/rollback` (the route template, no query).
        action: String,
        /// The HTTP status it was answered.
        status: u16,
        /// What it did, in words (`recorded version 4`), or why it failed.
        outcome: String,
    },
    /// A request without a valid token, or with too small a role.
    AuthFailed {
        /// Where it came from (an address; never a token).
        peer: String,
        /// `GET /v1/status` (the route template).
        action: String,
        /// Why it was refused.
        reason: String,
    },
    /// An API token was created.
    TokenCreated {
        /// Its accessor.
        accessor: String,
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
        /// Who created it (an accessor, `unix-socket` or `cli`).
        by: String,
    },
    /// An API token was revoked.
    TokenRevoked {
        /// Its accessor.
        accessor: String,
        /// Its name.
        name: String,
        /// Who revoked it.
        by: String,
    },
    /// The autoscaler changed a service's count.
    Scaled {
        /// The service.
        service: Name,
        /// The count before.
        from: u32,
        /// The count now.
        to: u32,
        /// Why (the metric, its target, the rule applied).
        reason: String,
    },
    /// A volume was first mounted and created by its provider.
    VolumeCreated {
        /// The volume.
        volume: String,
        /// Its provider.
        provider: ProviderKind,
        /// Where its data is.
        location: String,
    },
    /// A launch was refused: another instance still holds a volume.
    VolumeHeld {
        /// The instance not launched.
        id: InstanceId,
        /// The volume.
        volume: String,
        /// Who holds it, when known.
        holder: Option<InstanceId>,
    },
    /// A secret's new version was set (`glint secret set`). Names the
    /// secret and its version, never its value.
    SecretSet {
        /// The secret.
        name: String,
        /// Its new version.
        version: u64,
        /// Who set it.
        by: String,
    },
    /// A secret was removed (`glint secret rm`).
    SecretRemoved {
        /// The secret.
        name: String,
        /// The version removed.
        version: u64,
        /// Services of the current version that still read it (`--force`).
        readers: Vec<String>,
    },
    /// A notification was refused for good or ran out of attempts.
    NotificationFailed {
        /// The `notify` sink.
        sink: String,
        /// The message's number in the outbox.
        id: i64,
        /// The event it reported.
        event: i64,
        /// Why.
        error: String,
    },
    /// Every secret's data key was re-wrapped under a new master key.
    SecretKeyRotated {
        /// How many secrets.
        count: usize,
        /// The new key's id (never the key).
        key_id: String,
    },
    /// A volume and its data were deleted (`glint volume rm`).
    VolumeRemoved {
        /// The volume.
        volume: String,
        /// Its provider.
        provider: ProviderKind,
    },
    /// A volume uses more than its declared size.
    VolumeOverSize {
        /// The volume.
        volume: String,
        /// Bytes used.
        used: u64,
        /// Bytes declared.
        size: u64,
    },
    /// A runtime variable was written by a writer instance (through the
    /// instance API). Names the variable and its index, never the value.
    VariableWritten {
        /// The variable.
        name: String,
        /// Its new version index.
        index: u64,
        /// The writer instance.
        by: InstanceId,
    },
    /// An access through the instance API was refused: an incident, since
    /// an instance asked for what its declarations do not give it (or a
    /// caller had no valid identity).
    VariableRefused {
        /// The variable asked for (`None`: the route named none).
        name: Option<String>,
        /// `read` or `write`.
        access: &'static str,
        /// The caller, when its identity was valid.
        by: Option<InstanceId>,
        /// Why, in words.
        reason: String,
    },
}

impl ConductorEvent {
    /// The stored event: kind, severity and wording, decided here only.
    pub fn to_event(&self) -> NewEvent {
        use ConductorEvent as E;
        match self {
            E::Started { pid, mode, epoch } => NewEvent::info(
                EventKind::ConductorStarted,
                format!("conductor started (pid {pid}, {mode}, leadership epoch {epoch})"),
            ),
            E::Stopped { stopped_instances } => NewEvent::info(
                EventKind::ConductorStopped,
                if *stopped_instances {
                    "conductor stopped; its instances were stopped".to_owned()
                } else {
                    "conductor stopped; instances keep running and will be adopted".to_owned()
                },
            ),
            E::ProviderConnected { kind } => NewEvent::info(
                EventKind::ProviderConnected,
                format!("connected the {kind} provider"),
            ),
            E::ProviderUnavailable {
                kind,
                error,
                retry_in_s,
            } => NewEvent::warning(
                EventKind::ProviderUnavailable,
                format!(
                    "the {kind} provider is not available: {error}; its launches are held back (next attempt in {retry_in_s}s)"
                ),
            ),
            E::Launching {
                id,
                version,
                reason,
            } => NewEvent::info(
                EventKind::InstanceLaunching,
                format!("launching {id}: {reason}"),
            )
            .instance(id)
            .version(*version),
            E::Launched {
                id,
                version,
                handle,
                addr,
            } => NewEvent::info(
                EventKind::InstanceLaunched,
                format!(
                    "{id} is running ({handle}{})",
                    addr.map(|a| format!(", {a}")).unwrap_or_default()
                ),
            )
            .instance(id)
            .version(*version),
            E::LaunchFailed { id, version, error } => NewEvent::warning(
                EventKind::InstanceLaunchFailed,
                format!("{id} could not be launched: {error}"),
            )
            .instance(id)
            .version(*version),
            E::ImageRejected { id, version, error } => NewEvent::incident(
                EventKind::ImageRejected,
                format!("{id} was not launched: {error}"),
            )
            .instance(id)
            .version(*version),
            E::BackingOff {
                service,
                failures,
                delay_ms,
                cause,
            } => NewEvent::incident(
                EventKind::InstanceBackoff,
                format!(
                    "{service} keeps failing ({failures} failures in a row, last: {cause}); launches are held back, next in {}",
                    human_ms(*delay_ms)
                ),
            )
            .service(service),
            E::Recovered { service, failures } => NewEvent::info(
                EventKind::InstanceBackoff,
                format!("{service} is stable again after {failures} failures in a row"),
            )
            .service(service),
            E::Healthy {
                id,
                version,
                after_ms,
            } => NewEvent::info(
                EventKind::InstanceHealthy,
                format!("{id} is healthy ({after_ms} ms after launch)"),
            )
            .instance(id)
            .version(*version),
            E::Unhealthy {
                id,
                version,
                reason,
            } => NewEvent::warning(
                EventKind::InstanceUnhealthy,
                format!("{id} is unhealthy ({reason}); replacing it"),
            )
            .instance(id)
            .version(*version),
            E::NeverHealthy {
                id,
                version,
                reason,
            } => NewEvent::warning(
                EventKind::InstanceUnhealthy,
                format!("{id} did not become healthy in time ({reason}); replacing it"),
            )
            .instance(id)
            .version(*version),
            E::Exited { id, version, state } => NewEvent::warning(
                EventKind::InstanceExited,
                format!("{id} {state}; replacing it"),
            )
            .instance(id)
            .version(*version)
            .details(serde_json::json!({ "state": state })),
            E::EndedWhileAway { id, version, state } => NewEvent::warning(
                EventKind::InstanceExited,
                format!("{id} {state} while the conductor was away"),
            )
            .instance(id)
            .version(*version)
            .details(serde_json::json!({ "state": state })),
            E::Vanished { id, version, what } => {
                NewEvent::warning(EventKind::InstanceVanished, format!("{id} {what}"))
                    .instance(id)
                    .version(*version)
            }
            E::Adopted {
                id,
                version,
                handle,
                state,
            } => NewEvent::info(
                EventKind::InstanceAdopted,
                format!("adopted {id} ({handle}, {state})"),
            )
            .instance(id)
            .version(*version),
            E::OrphanRemoved { id, handle } => NewEvent::warning(
                EventKind::OrphanRemoved,
                format!("removing {id} ({handle}): labelled as ours but unknown to the store"),
            )
            .instance(id),
            E::Drifted {
                id,
                version,
                kind,
                what,
                replaced,
            } => NewEvent::incident(
                EventKind::Drift,
                format!(
                    "{id} drifted: {what}; {}",
                    if *replaced {
                        "replacing it"
                    } else {
                        "reported only (on_exec = report)"
                    }
                ),
            )
            .instance(id)
            .version(*version)
            .details(serde_json::json!({ "kind": kind.to_string() })),
            E::FirewallDrift { table, found } => NewEvent::incident(
                EventKind::Drift,
                format!(
                    "firewall drift in table inet {table}: {found}; the declared ruleset was applied again"
                ),
            )
            .details(serde_json::json!({ "kind": "firewall", "table": table, "found": found })),
            E::ProviderIncident { what, action, .. } => {
                NewEvent::incident(EventKind::Drift, format!("{what}; {action}"))
            }
            E::Retiring {
                id,
                version,
                reason,
            } => NewEvent::info(
                EventKind::InstanceRetiring,
                format!("retiring {id}: {reason}"),
            )
            .instance(id)
            .version(*version),
            E::Terminated { id, version, how } => {
                let e = NewEvent::info(
                    EventKind::InstanceTerminated,
                    format!("{id} terminated ({how})"),
                )
                .instance(id);
                match version {
                    Some(v) => e.version(*v),
                    None => e,
                }
            }
            E::TerminateFailed {
                id,
                error,
                retry_in_ms,
            } => NewEvent::warning(
                EventKind::InstanceTerminateFailed,
                format!(
                    "{id} could not be terminated yet: {error}; retrying in {}",
                    human_ms(*retry_in_ms)
                ),
            )
            .instance(id),
            E::EndpointListening { name, addr, kept } => NewEvent::info(
                EventKind::EndpointListening,
                if *kept {
                    format!("endpoint {name} is listening on {addr} (kept by the data plane)")
                } else {
                    format!("endpoint {name} is listening on {addr}")
                },
            ),
            E::DataPlaneLaunched { how, now, old } => {
                let d = |(pid, protocol, build): &(u32, u32, String)| {
                    format!("pid {pid}, protocol {protocol}, build {build}")
                };
                NewEvent::info(
                    EventKind::DataPlane,
                    match (how, old) {
                        (DataPlaneLaunch::Adopted, _) => format!(
                            "data plane adopted ({}); its endpoints kept serving",
                            d(now)
                        ),
                        (DataPlaneLaunch::Started, _) => {
                            format!("data plane started ({})", d(now))
                        }
                        (DataPlaneLaunch::Replaced, Some(old)) => format!(
                            "data plane replaced: {} handed its listening sockets to {}",
                            d(old),
                            d(now)
                        ),
                        (DataPlaneLaunch::Replaced, None) => {
                            format!("data plane replaced by {}", d(now))
                        }
                    },
                )
            }
            E::DataPlaneChanged { pid, build } => NewEvent::warning(
                EventKind::DataPlane,
                format!(
                    "the data plane is now pid {pid} (build {build}); endpoints are programmed again"
                ),
            ),
            E::DataPlaneUnreachable { error } => NewEvent::warning(
                EventKind::DataPlane,
                format!("the data plane does not answer ({error}); retrying"),
            ),
            E::EndpointFailed {
                name,
                error,
                retry_in_ms,
            } => NewEvent::warning(
                EventKind::EndpointFailed,
                format!(
                    "endpoint {name} cannot listen: {error}; retrying in {}",
                    human_ms(*retry_in_ms)
                ),
            ),
            E::EndpointStopped { name, listen } => NewEvent::info(
                EventKind::EndpointStopped,
                format!("endpoint {name} on {listen} stopped"),
            ),
            E::RolloutStarted { version, what } => NewEvent::info(
                EventKind::RolloutStarted,
                format!("rolling out version {version}: {what}"),
            )
            .version(*version),
            E::RolloutProgress {
                service,
                version,
                available,
                desired,
                waiting,
            } => {
                let mut msg = format!(
                    "{service}: {available} of {desired} instances available on version {version}"
                );
                if let Some(w) = waiting {
                    msg.push_str(&format!(" ({w})"));
                }
                NewEvent::info(EventKind::RolloutProgress, msg)
                    .service(service)
                    .version(*version)
            }
            E::RolloutCompleted { version, took } => NewEvent::info(
                EventKind::RolloutCompleted,
                format!("version {version} is live (converged in {took})"),
            )
            .version(*version),
            E::RolloutFailed {
                version,
                reason,
                rolling_back,
            } => NewEvent::warning(
                EventKind::RolloutFailed,
                format!(
                    "rollout of version {version} failed: {reason}; {}",
                    if *rolling_back {
                        "rolling back to the last good version"
                    } else {
                        "it stays the target (no automatic rollback)"
                    }
                ),
            )
            .version(*version)
            .details(serde_json::json!({ "reason": reason, "rolling_back": rolling_back })),
            E::RolledBack {
                failed,
                to,
                new,
                reason,
            } => NewEvent::warning(
                EventKind::VersionRolledBack,
                format!(
                    "version {failed} failed ({reason}); rolled back to version {to} as version {new}"
                ),
            )
            .version(*new)
            .details(serde_json::json!({
                "automatic": true,
                "failed": failed.0,
                "to": to.0,
                "new": new.0,
                "reason": reason,
            })),
            E::Applied {
                version,
                services,
                hash,
            } => NewEvent::info(
                EventKind::VersionApplied,
                format!("version {version} applied ({services} services, hash {hash})"),
            )
            .version(*version),
            E::RollbackRecorded { version, to } => NewEvent::info(
                EventKind::VersionRolledBack,
                format!("version {version} rolls back to version {to} (requested)"),
            )
            .version(*version),
            E::Superseded { version, by } => NewEvent::info(
                EventKind::VersionSuperseded,
                format!("version {version} was superseded by version {by} before it converged"),
            )
            .version(*version),
            E::DownRecorded { version } => NewEvent::info(
                EventKind::VersionApplied,
                format!("version {version} brings the environment down: every instance is drained and stopped, volumes and history are kept"),
            )
            .version(*version),
            E::ApiCall {
                accessor,
                role,
                action,
                status,
                outcome,
            } => NewEvent::info(
                EventKind::Audit,
                format!("{accessor} ({role}) {action}: {status} {outcome}"),
            )
            .details(serde_json::json!({
                "accessor": accessor,
                "role": role,
                "action": action,
                "status": status,
            })),
            E::AuthFailed {
                peer,
                action,
                reason,
            } => NewEvent::warning(
                EventKind::AuthFailed,
                format!("refused {action} from {peer}: {reason}"),
            )
            .details(serde_json::json!({ "peer": peer, "action": action })),
            E::TokenCreated {
                accessor,
                name,
                role,
                by,
            } => NewEvent::info(
                EventKind::TokenCreated,
                format!("token {name} ({accessor}, {role}) created by {by}"),
            )
            .details(serde_json::json!({ "accessor": accessor, "by": by })),
            E::TokenRevoked { accessor, name, by } => NewEvent::warning(
                EventKind::TokenRevoked,
                format!("token {name} ({accessor}) revoked by {by}"),
            )
            .details(serde_json::json!({ "accessor": accessor, "by": by })),
            E::Scaled {
                service,
                from,
                to,
                reason,
            } => NewEvent::info(
                EventKind::AutoscaleScaled,
                format!(
                    "{service} scaled {} from {from} to {to}: {reason}",
                    if to > from { "up" } else { "down" }
                ),
            )
            .service(service)
            .details(serde_json::json!({ "from": from, "to": to })),
            E::VolumeCreated {
                volume,
                provider,
                location,
            } => NewEvent::info(
                EventKind::VolumeCreated,
                format!("volume {volume} created by the {provider} provider at {location}"),
            ),
            E::VolumeHeld { id, volume, holder } => NewEvent::warning(
                EventKind::VolumeHeld,
                format!(
                    "{id} was not launched: volume {volume} is still held{} (one writer at a time)",
                    holder
                        .as_ref()
                        .map(|h| format!(" by {h}"))
                        .unwrap_or_default()
                ),
            )
            .instance(id),
            E::VariableWritten { name, index, by } => NewEvent::info(
                EventKind::VariableWritten,
                format!("variable {name} written by {by} (index {index})"),
            )
            .instance(by)
            .details(serde_json::json!({ "variable": name, "index": index })),
            E::VariableRefused {
                name,
                access,
                by,
                reason,
            } => {
                let what = name
                    .as_ref()
                    .map(|n| format!("variable {n}"))
                    .unwrap_or_else(|| "the instance API".to_owned());
                let who = by
                    .as_ref()
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "a caller without a valid identity".to_owned());
                let e = NewEvent::incident(
                    EventKind::VariableRefused,
                    format!("{who} was refused {access} access to {what}: {reason}"),
                )
                .details(serde_json::json!({ "variable": name, "access": access }));
                match by {
                    Some(b) => e.instance(b),
                    None => e,
                }
            }
            E::SecretSet { name, version, by } => NewEvent::info(
                EventKind::SecretSet,
                format!("secret {name} set to version {version} by {by} (glint secret set)"),
            ),
            E::SecretRemoved {
                name,
                version,
                readers,
            } => {
                if readers.is_empty() {
                    NewEvent::info(
                        EventKind::SecretRemoved,
                        format!("secret {name} (version {version}) was removed (glint secret rm)"),
                    )
                } else {
                    NewEvent::warning(
                        EventKind::SecretRemoved,
                        format!(
                            "secret {name} (version {version}) was removed while {} still read it (glint secret rm --force); their next launch fails until it is set again",
                            readers.join(", ")
                        ),
                    )
                }
            }
            E::NotificationFailed {
                sink,
                id,
                event,
                error,
            } => NewEvent::warning(
                EventKind::NotificationFailed,
                format!("notification {id} (event {event}) to sink {sink} failed for good: {error}"),
            )
            .details(serde_json::json!({ "sink": sink, "notification": id, "event": event })),
            E::SecretKeyRotated { count, key_id } => NewEvent::info(
                EventKind::SecretKeyRotated,
                format!("the master key was rotated: {count} secret(s) re-wrapped under key {key_id} (glint secret rotate-key)"),
            ),
            E::VolumeRemoved { volume, provider } => NewEvent::info(
                EventKind::VolumeRemoved,
                format!("volume {volume} and its data were removed from the {provider} provider (glint volume rm)"),
            ),
            E::VolumeOverSize { volume, used, size } => NewEvent::warning(
                EventKind::VolumeOverSize,
                format!(
                    "volume {volume} uses {} of its declared {}",
                    glint_model::Bytes(*used),
                    glint_model::Bytes(*size)
                ),
            ),
        }
    }

    /// The incident this event is an occurrence of, for the incident
    /// records (`glint incidents`): every incident-severity event that
    /// concerns something out of place has one. Recorded for every
    /// occurrence, before the rate limit.
    pub fn incident(&self) -> Option<glint_store::NewIncident> {
        use ConductorEvent as E;
        let (kind, subject, found, action, resolved) = match self {
            E::Drifted {
                id, what, replaced, ..
            } => (
                "instance-drift",
                id.to_string(),
                what.clone(),
                if *replaced {
                    "replacing the instance".to_owned()
                } else {
                    "reported only (on_exec = report)".to_owned()
                },
                *replaced,
            ),
            E::FirewallDrift { table, found } => (
                "firewall-drift",
                format!("table inet {table}"),
                found.clone(),
                "applied the declared ruleset again".to_owned(),
                true,
            ),
            E::ProviderIncident {
                subject,
                what,
                action,
            } => (
                "provider-drift",
                subject.clone(),
                what.clone(),
                action.clone(),
                true,
            ),
            // An instance (or a caller without an identity) asked the
            // instance API for what its declarations do not give it.
            E::VariableRefused {
                name,
                access,
                by,
                reason,
            } => (
                "variable-access-refused",
                by.as_ref()
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "caller-without-identity".to_owned()),
                format!(
                    "{access} access to {}: {reason}",
                    name.as_deref()
                        .map(|n| format!("variable {n}"))
                        .unwrap_or_else(|| "the instance API".to_owned())
                ),
                "refused".to_owned(),
                true,
            ),
            _ => return None,
        };
        Some(glint_store::NewIncident {
            kind: kind.to_owned(),
            subject,
            found,
            action,
            resolved,
            event: None,
        })
    }

    /// The key of a repeating cause, for the rate limit; `None` for events
    /// that are always written. Failures always have a key; the routine
    /// events of an instance's life (launching, launched, healthy,
    /// retiring, terminated) have one only while their service is in a
    /// crash-loop streak (`in_streak`), so a normal rollout is recorded in
    /// full and a crash loop is counted.
    pub fn cause_key(&self, in_streak: impl Fn(&str) -> bool) -> Option<String> {
        use ConductorEvent as E;
        let svc = |id: &InstanceId| id.service().to_owned();
        let routine = |what: &str, id: &InstanceId| {
            in_streak(id.service()).then(|| format!("{what}/{}", svc(id)))
        };
        match self {
            E::ProviderUnavailable { kind, .. } => Some(format!("provider/{kind}")),
            E::LaunchFailed { id, error, .. } => Some(format!("launch_failed/{}/{error}", svc(id))),
            E::Unhealthy { id, .. } => Some(format!("unhealthy/{}", svc(id))),
            E::NeverHealthy { id, .. } => Some(format!("never_healthy/{}", svc(id))),
            E::Exited { id, state, .. } => Some(format!("exited/{}/{state}", svc(id))),
            E::TerminateFailed { id, .. } => Some(format!("terminate_failed/{id}")),
            E::EndpointFailed { name, .. } => Some(format!("endpoint_failed/{name}")),
            E::AuthFailed { peer, .. } => Some(format!("auth_failed/{peer}")),
            E::BackingOff { service, .. } => Some(format!("backoff/{service}")),
            E::VolumeHeld { id, volume, .. } => Some(format!("volume_held/{}/{volume}", svc(id))),
            E::VolumeOverSize { volume, .. } => Some(format!("volume_over_size/{volume}")),
            E::VariableRefused { name, by, .. } => Some(format!(
                "variable_refused/{}/{}",
                by.as_ref().map(|b| b.as_str()).unwrap_or("-"),
                name.as_deref().unwrap_or("-")
            )),
            E::ImageRejected { id, error, .. } => {
                Some(format!("image_rejected/{}/{error}", svc(id)))
            }
            E::Launching { id, .. } => routine("launching", id),
            E::Launched { id, .. } => routine("launched", id),
            E::Healthy { id, .. } => routine("healthy", id),
            E::Retiring { id, .. } => routine("retiring", id),
            E::Terminated { id, .. } => routine("terminated", id),
            _ => None,
        }
    }
}

/// How the data plane process came to serve (see
/// [`ConductorEvent::DataPlaneLaunched`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPlaneLaunch {
    /// A running one of this build was adopted.
    Adopted,
    /// None ran: one was started.
    Started,
    /// One of another build or protocol handed over to one of this build.
    Replaced,
}

/// `1.5s`, `250ms`, `2m`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 120_000 {
        let s = ms as f64 / 1000.0;
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{s:.1}s")
        }
    } else {
        format!("{}m", ms / 60_000)
    }
}
