//! `AwsProvider`: Glint's instances as EC2 instances.
//!
//! - launch: the service's Glint-owned security group (made if missing),
//!   RunInstances with the AMI mapped to the image digest, the instance type
//!   from the declared resources, the labels as tags, the identity and
//!   configuration as user data, and a `ClientToken` derived from the
//!   instance id (a retried or repeated launch makes no second instance);
//!   then waits until EC2 says `running`;
//! - observe: DescribeInstances filtered by the store's and environment's
//!   tags (adoption after a restart is by tags);
//! - terminate: TerminateInstances, then waits for `terminated`;
//! - a background task re-reads, every `resync` (5 s by default), the
//!   security groups (reverting hand-made changes, reported as incidents:
//!   `security.rs`) and the instances (an instance ended by someone else is
//!   reported as `Exited` at once, so the conductor replaces it).

use crate::client::{Client, ClientConfig};
use crate::ec2::{Ec2, Instance, RunRequest};
use crate::elbv2::Elbv2;
use crate::error::AwsError;
use crate::naming;
use crate::security::Groups;
use async_trait::async_trait;
use glint_model::{Digest, Environment, InstanceId, Labels, Name, ProviderKind};
use glint_provider::{LaunchSpec, Observed, Provider, ProviderError, ProviderEvent, RunState};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// Where the provider learns the environment it enforces (its rules, which
/// services are on AWS): the conductor's current target version.
pub trait Target: Send + Sync + 'static {
    /// The environment whose rules the security groups must match, `None`
    /// while there is none (nothing is changed then).
    fn environment(&self) -> Option<Environment>;
}

/// A fixed environment (tests, `glint plan`).
impl Target for Mutex<Option<Environment>> {
    fn environment(&self) -> Option<Environment> {
        self.lock().ok().and_then(|e| e.clone())
    }
}

/// How the provider is configured.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// The API client's settings.
    pub client: ClientConfig,
    /// The AMI of each image digest.
    pub amis: BTreeMap<Digest, String>,
    /// The AMI for digests not in `amis` (emulators, trials); `None`: such
    /// a launch fails, naming the digest.
    pub default_ami: Option<String>,
    /// The subnet instances are launched in (default: the default VPC's).
    pub subnet: Option<String>,
    /// The VPC security groups are made in (default: the default VPC).
    pub vpc: Option<String>,
    /// How often security groups and instances are re-read. Default 5 s.
    pub resync: Duration,
    /// Where Glint's endpoints connect from, for `endpoint → service` rules.
    pub endpoint_cidr: Option<String>,
    /// How long a launch may wait for `running`, a termination for
    /// `terminated`. Default 5 min.
    pub wait: Duration,
}

impl AwsOptions {
    /// Options with every default, calling AWS as `client` says.
    pub fn new(client: ClientConfig) -> AwsOptions {
        AwsOptions {
            client,
            amis: BTreeMap::new(),
            default_ami: None,
            subnet: None,
            vpc: None,
            resync: DEFAULT_RESYNC,
            endpoint_cidr: None,
            wait: Duration::from_secs(300),
        }
    }
}

/// The default re-read interval of security groups and instances.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(5);

/// What the provider and its background task share.
pub(crate) struct Inner {
    pub(crate) ec2: Ec2,
    pub(crate) elb: Elbv2,
    /// Each endpoint's target group ARN.
    pub(crate) target_groups: tokio::sync::Mutex<BTreeMap<Name, String>>,
    /// EC2 instances being terminated: never registered again.
    pub(crate) retiring: Mutex<BTreeSet<String>>,
    /// Held while target groups are made exact or an instance is taken out
    /// of them, so that a re-read never registers an instance again
    /// between its deregistration and its termination.
    pub(crate) target_ops: tokio::sync::Mutex<()>,
    pub(crate) store_id: String,
    pub(crate) environment: Name,
    pub(crate) options: AwsOptions,
    pub(crate) target: Arc<dyn Target>,
    pub(crate) events: broadcast::Sender<ProviderEvent>,
    pub(crate) groups: tokio::sync::Mutex<Groups>,
    /// Instances `remove`d (ended ones EC2 still lists for a while).
    removed: Mutex<BTreeSet<InstanceId>>,
    /// The last state seen of each instance (`true`: running).
    seen: Mutex<BTreeMap<InstanceId, bool>>,
}

/// The AWS provider. See the module documentation.
pub struct AwsProvider {
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AwsProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn backend(e: AwsError) -> ProviderError {
    ProviderError::Backend(e.to_string())
}

fn launch_error(instance: &InstanceId, reason: impl Into<String>) -> ProviderError {
    ProviderError::Launch {
        instance: instance.clone(),
        reason: reason.into(),
        source: None,
    }
}

fn ended(state: &str) -> bool {
    matches!(
        state,
        "shutting-down" | "terminated" | "stopping" | "stopped"
    )
}

impl AwsProvider {
    /// Connects to AWS for the instances of `store_id`'s `environment`: one
    /// DescribeSecurityGroups call proves the endpoint and credentials
    /// work; then the background task starts.
    pub async fn connect(
        store_id: &str,
        environment: &Name,
        options: AwsOptions,
        target: Arc<dyn Target>,
    ) -> Result<AwsProvider, AwsError> {
        let client = Client::new(options.client.clone())?;
        let elb = Elbv2::new(client.clone());
        let ec2 = Ec2::new(client);
        ec2.describe_security_groups(&[("tag:dev.glint.store", vec![store_id.to_owned()])])
            .await?;
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            ec2,
            elb,
            target_groups: tokio::sync::Mutex::new(BTreeMap::new()),
            retiring: Mutex::new(BTreeSet::new()),
            target_ops: tokio::sync::Mutex::new(()),
            store_id: store_id.to_owned(),
            environment: environment.clone(),
            options,
            target,
            events,
            groups: tokio::sync::Mutex::new(Groups::default()),
            removed: Mutex::new(BTreeSet::new()),
            seen: Mutex::new(BTreeMap::new()),
        });
        let task = tokio::spawn(watch(Arc::downgrade(&inner)));
        Ok(AwsProvider { inner, task })
    }

    /// The EC2 client (tests, `glint down`'s clean-up).
    pub fn ec2(&self) -> &Ec2 {
        &self.inner.ec2
    }

    /// Brings every Glint-owned security group to exactly the declared
    /// ingress now (the background task does this every `resync`).
    pub async fn reconcile_security_groups(&self) -> Result<crate::security::Report, AwsError> {
        crate::security::reconcile(&self.inner).await
    }

    /// Every instance of this store and environment EC2 lists.
    async fn glint_instances(&self) -> Result<Vec<Instance>, AwsError> {
        self.inner.glint_instances(None).await
    }
}

impl Inner {
    /// The filters selecting this store's and environment's things.
    pub(crate) fn owner_filters(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("tag:dev.glint.store", vec![self.store_id.clone()]),
            (
                "tag:dev.glint.environment",
                vec![self.environment.to_string()],
            ),
        ]
    }

    pub(crate) async fn glint_instances(
        &self,
        instance: Option<&InstanceId>,
    ) -> Result<Vec<Instance>, AwsError> {
        let mut filters = self.owner_filters();
        if let Some(i) = instance {
            filters.push(("tag:dev.glint.instance", vec![i.to_string()]));
        }
        self.ec2.describe_instances(&filters).await
    }

    /// RunInstances for instance `id`, exactly once whatever fails: before
    /// every attempt the instance is looked for by its tag (tags are applied
    /// with the launch, atomically), and every attempt carries the same
    /// `ClientToken`. Retried as the client's policy says.
    async fn run_once(&self, id: &InstanceId, req: &RunRequest) -> Result<Instance, AwsError> {
        let policy = self.ec2.client().config().retry;
        let mut retry = 0;
        loop {
            if let Some(existing) = self
                .glint_instances(Some(id))
                .await?
                .into_iter()
                .find(|i| i.state != "terminated")
            {
                return Ok(existing);
            }
            match self.ec2.run_instance(req).await {
                Ok(i) => return Ok(i),
                Err(e) if e.is_retryable() && retry + 1 < policy.attempts.max(1) => {
                    tracing::debug!(instance = %id, error = %e, retry, "retrying RunInstances");
                    tokio::time::sleep(policy.delay(retry)).await;
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn observed(&self, i: &Instance) -> Option<Observed> {
        let labels = Labels::from_map(&i.tags).ok()?;
        if labels.store != self.store_id || labels.environment != self.environment {
            return None;
        }
        let port: u16 = i.tags.get(naming::keys::PORT)?.parse().ok()?;
        let state = if ended(&i.state) {
            RunState::Exited {
                code: None,
                signal: None,
                oom: false,
            }
        } else {
            RunState::Running
        };
        Some(Observed {
            addr: i
                .private_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .map(|ip| SocketAddr::new(ip, port)),
            labels,
            state,
            started_at: i.launch_time.unwrap_or(SystemTime::UNIX_EPOCH),
            handle: i.id.clone(),
        })
    }

    /// Records what is seen; reports instances that ended since.
    fn note(&self, observed: &[Observed]) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        for o in observed {
            let running = o.state == RunState::Running;
            let was = seen.insert(o.labels.instance.clone(), running);
            if was == Some(true) && !running {
                let _ = self.events.send(ProviderEvent::Exited {
                    instance: o.labels.instance.clone(),
                    state: o.state,
                });
            }
        }
    }

    fn is_removed(&self, id: &InstanceId) -> bool {
        self.removed.lock().map(|r| r.contains(id)).unwrap_or(false)
    }

    /// One pass of the background task.
    async fn resync(&self) {
        if let Err(e) = crate::security::reconcile(self).await {
            tracing::warn!(error = %e, "cannot reconcile the security groups");
        }
        match self.glint_instances(None).await {
            Ok(list) => {
                let obs: Vec<Observed> = list
                    .iter()
                    .filter_map(|i| self.observed(i))
                    .filter(|o| !self.is_removed(&o.labels.instance))
                    .collect();
                self.note(&obs);
                // Only `running` instances can be targets (not `pending`).
                let mut running: BTreeMap<Name, BTreeMap<String, u16>> = BTreeMap::new();
                for i in list.iter().filter(|i| i.state == "running") {
                    if let Some((o, addr)) = obs
                        .iter()
                        .find(|o| o.handle == i.id)
                        .and_then(|o| Some((o, o.addr?)))
                    {
                        running
                            .entry(o.labels.service.clone())
                            .or_default()
                            .insert(o.handle.clone(), addr.port());
                    }
                }
                if let Err(e) = crate::targets::reconcile(self, &running).await {
                    tracing::warn!(error = %e, "cannot reconcile the target groups");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the EC2 instances"),
        }
    }
}

async fn watch(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(every) = inner.upgrade().map(|i| i.options.resync) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(i) = inner.upgrade() else {
            return;
        };
        i.resync().await;
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }

    async fn launch(&self, spec: LaunchSpec) -> Result<Observed, ProviderError> {
        let inner = &self.inner;
        let id = spec.labels.instance.clone();
        if !spec.secrets.is_empty() {
            return Err(launch_error(
                &id,
                "the aws provider cannot deliver secrets yet (they would have to travel in user data, which is not secret); run this service on the process or docker provider",
            ));
        }
        if spec.glint.as_ref().is_some_and(|g| !g.variables.is_empty()) {
            return Err(launch_error(
                &id,
                "the aws provider cannot deliver variables or workload identities yet (the instance API is a unix socket on the conductor's host); run readers of variables on the process or docker provider",
            ));
        }
        if !spec.mounts.is_empty() {
            return Err(launch_error(
                &id,
                "the aws provider cannot mount volumes yet; remove the mounts or run this service on the process or docker provider",
            ));
        }
        let ami = inner
            .options
            .amis
            .get(&spec.image.digest)
            .or(inner.options.default_ami.as_ref())
            .cloned()
            .ok_or_else(|| {
                launch_error(
                    &id,
                    format!(
                        "no AMI is mapped to image {}: expected it in GLINT_AWS_AMIS (DIGEST=ami-...), found none; add it (docs/aws.md)",
                        spec.image.digest
                    ),
                )
            })?;
        let instance_type =
            naming::instance_type(&spec.resources).map_err(|r| launch_error(&id, r))?;
        let group = crate::security::ensure_group(inner, &spec.labels.service)
            .await
            .map_err(|e| launch_error(&id, e.to_string()))?;
        let req = RunRequest {
            image_id: ami,
            instance_type: instance_type.to_owned(),
            client_token: naming::client_token(&inner.store_id, &id),
            user_data: naming::user_data(
                &spec.labels,
                &spec.argv,
                &spec.env,
                &spec.workdir,
                spec.port,
            ),
            security_groups: vec![group],
            subnet: inner.options.subnet.clone(),
            tags: naming::instance_tags(&spec.labels, spec.port),
        };
        if req.user_data.len() > 16 * 1024 {
            return Err(launch_error(
                &id,
                format!(
                    "its user data is {} bytes once encoded; EC2 accepts 16384 at most: shorten the arguments or environment",
                    req.user_data.len()
                ),
            ));
        }
        let mut instance = inner
            .run_once(&id, &req)
            .await
            .map_err(|e| launch_error(&id, e.to_string()))?;
        let deadline = tokio::time::Instant::now() + inner.options.wait;
        while instance.state == "pending" {
            if tokio::time::Instant::now() >= deadline {
                return Err(launch_error(
                    &id,
                    format!(
                        "EC2 instance {} was still pending after {:?}",
                        instance.id, inner.options.wait
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(i) = inner
                .glint_instances(Some(&id))
                .await
                .map_err(|e| launch_error(&id, e.to_string()))?
                .into_iter()
                .find(|i| i.id == instance.id)
            {
                instance = i;
            }
        }
        if instance.state != "running" {
            return Err(launch_error(
                &id,
                format!(
                    "EC2 instance {} is {} instead of running",
                    instance.id, instance.state
                ),
            ));
        }
        let observed = inner.observed(&instance).ok_or_else(|| {
            launch_error(
                &id,
                format!("EC2 instance {} does not carry Glint's tags", instance.id),
            )
        })?;
        if let Err(e) =
            crate::targets::register(inner, &spec.labels.service, &instance.id, spec.port).await
        {
            // Nothing is left behind by a failed launch.
            let _ = self.terminate(&id, Duration::ZERO).await;
            return Err(launch_error(
                &id,
                format!("cannot register it with its endpoints' target groups: {e}"),
            ));
        }
        inner.note(std::slice::from_ref(&observed));
        Ok(observed)
    }

    async fn terminate(&self, instance: &InstanceId, grace: Duration) -> Result<(), ProviderError> {
        let inner = &self.inner;
        let fail = |reason: String| ProviderError::Terminate {
            instance: instance.clone(),
            reason,
        };
        let live: Vec<String> = inner
            .glint_instances(Some(instance))
            .await
            .map_err(|e| fail(e.to_string()))?
            .into_iter()
            .filter(|i| i.state != "terminated")
            .map(|i| i.id)
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        if let Ok(mut r) = inner.retiring.lock() {
            r.extend(live.iter().cloned());
        }
        // Out of every target group (and drained) before it ends.
        let drain = inner
            .target
            .environment()
            .and_then(|env| {
                env.services
                    .get(&Name::new(instance.service()).ok()?)
                    .map(|s| Duration::from_millis(s.drain.0))
            })
            .unwrap_or_default();
        for ec2_id in &live {
            crate::targets::deregister(inner, ec2_id, drain)
                .await
                .map_err(|e| {
                    fail(format!(
                        "cannot deregister {ec2_id} from its target groups: {e}"
                    ))
                })?;
        }
        inner
            .ec2
            .terminate_instances(&live)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + grace + inner.options.wait;
        loop {
            let left: Vec<Instance> = inner
                .glint_instances(Some(instance))
                .await
                .map_err(|e| fail(e.to_string()))?
                .into_iter()
                .filter(|i| i.state != "terminated")
                .collect();
            if left.is_empty() {
                if let Ok(mut r) = inner.retiring.lock() {
                    for id in &live {
                        r.remove(id);
                    }
                }
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(fail(format!(
                    "EC2 instance {} is still {} after {:?}",
                    left[0].id,
                    left[0].state,
                    grace + inner.options.wait
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn observe(&self) -> Result<Vec<Observed>, ProviderError> {
        let list = self.glint_instances().await.map_err(backend)?;
        let obs: Vec<Observed> = list
            .iter()
            .filter_map(|i| self.inner.observed(i))
            .filter(|o| !self.inner.is_removed(&o.labels.instance))
            .collect();
        self.inner.note(&obs);
        Ok(obs)
    }

    async fn remove(&self, instance: &InstanceId) -> Result<(), ProviderError> {
        if let Ok(mut r) = self.inner.removed.lock() {
            r.insert(instance.clone());
        }
        if let Ok(mut s) = self.inner.seen.lock() {
            s.remove(instance);
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<ProviderEvent> {
        self.inner.events.subscribe()
    }
}
