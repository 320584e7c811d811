//! The heartbeat reconciler: writes this conductor's heartbeat to the store
//! every [`Config::heartbeat`](crate::reconciler::Config::heartbeat), so
//! `glint status` can tell a live conductor from a dead one.

use crate::reconciler::{Action, Ctx, ReconcileError, Reconciler};
use crate::world::World;
use async_trait::async_trait;
use glint_store::ConductorInfo;

/// See the module documentation.
#[derive(Default)]
pub struct Heartbeat {
    info: Option<ConductorInfo>,
    written_at: Option<i64>,
}

impl Heartbeat {
    fn info(&mut self, ctx: &Ctx) -> &mut ConductorInfo {
        self.info.get_or_insert_with(|| ConductorInfo {
            pid: std::process::id(),
            mode: ctx.config.mode,
            epoch: ctx.epoch,
            api: ctx.config.api.clone(),
            started_at: ctx.now(),
            heartbeat_at: ctx.now(),
            stopped: false,
        })
    }
}

#[async_trait]
impl Reconciler for Heartbeat {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    async fn reconcile(&mut self, _world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        let now = ctx.now();
        let every = i64::try_from(ctx.config.heartbeat.as_millis()).unwrap_or(i64::MAX);
        if self.written_at.is_none_or(|t| now - t >= every) {
            let info = self.info(ctx);
            info.heartbeat_at = now;
            let info = info.clone();
            ctx.store.write_conductor(&info)?;
            self.written_at = Some(now);
        }
        Ok(Action::requeue_at(
            self.written_at.unwrap_or(now) + every,
            now,
        ))
    }

    async fn stop(&mut self, _world: &mut World, ctx: &Ctx, _stop_instances: bool) {
        let now = ctx.now();
        let info = self.info(ctx);
        info.stopped = true;
        info.heartbeat_at = now;
        let info = info.clone();
        if let Err(e) = ctx.store.write_conductor(&info) {
            tracing::warn!("cannot write the final heartbeat: {e}");
        }
    }
}
