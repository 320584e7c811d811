//! The identities reconciler: renews every running instance's identity
//! token (`/run/glint/identity`) before it expires.
//!
//! A token is valid for the issuer's `ttl`; an instance's is rewritten once
//! half of that has passed since it was last issued (at launch, or by this
//! reconciler). A conductor that starts does not know when its predecessor
//! last renewed: it counts from the instance's launch, which at worst
//! renews early. Retiring and gone instances are never renewed, and the
//! instance API refuses them whatever their token says.

use crate::decide::MemberPhase;
use crate::reconciler::{Action, Ctx, ReconcileError, Reconciler};
use crate::world::World;
use async_trait::async_trait;
use glint_model::InstanceId;
use glint_store::InstanceState;
use std::collections::BTreeMap;

/// See the module documentation.
#[derive(Default)]
pub struct Identities {
    /// When each running instance's token was last issued (ms).
    issued: BTreeMap<InstanceId, i64>,
}

#[async_trait]
impl Reconciler for Identities {
    fn name(&self) -> &'static str {
        "identities"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        let Some(issuer) = ctx.config.identity.clone() else {
            return Ok(Action::await_change());
        };
        let now = ctx.now();
        let half = i64::try_from(issuer.ttl.as_millis() / 2).unwrap_or(i64::MAX);
        self.issued.retain(|id, _| world.live.contains_key(id));
        let mut next: Option<i64> = None;
        let mut failed = Vec::new();
        for (id, l) in &world.live {
            if l.rec.state != InstanceState::Running || l.phase == MemberPhase::Retiring {
                continue;
            }
            let issued = *self.issued.entry(id.clone()).or_insert(l.rec.created_at);
            let due = issued.saturating_add(half);
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            let Some(env) = world.target.as_ref().map(|t| t.env.name.clone()) else {
                continue;
            };
            let claims = issuer.claims(&l.rec.service, id, l.rec.version, &env, now);
            let token = issuer.issue(&claims);
            match glint_provider::process::glint_dir::renew(&ctx.store_id, id, token.as_bytes()) {
                Ok(_) => {
                    self.issued.insert(id.clone(), now);
                    let due = now.saturating_add(half);
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
                Err(e) => failed.push(format!("{id}: {e}")),
            }
        }
        if !failed.is_empty() {
            return Err(ReconcileError::Other(format!(
                "cannot renew instance identities: {}",
                failed.join("; ")
            )));
        }
        Ok(match next {
            Some(at) => Action::requeue_at(at, now),
            None => Action::await_change(),
        })
    }
}
