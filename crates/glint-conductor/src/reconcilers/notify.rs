//! The notify reconciler: enqueues what the target version's `notify`
//! sinks are sent, from the event log, and delivers the outbox (see
//! [`crate::notify`] for the flow).
//!
//! On every pass:
//! 1. results of finished attempts (from the inbox) are recorded —
//!    delivered, retried at a later `next_at`, or failed for good (one
//!    `notification.failed` event each);
//! 2. for each declared sink, the events after its cursor are turned into
//!    messages and enqueued with the cursor moved, in one transaction. A
//!    sink seen for the first time starts at the newest event: it is sent
//!    what happens from then on, not the history;
//! 3. the oldest pending message of each declared sink, when due and no
//!    attempt of that sink is under way, is attempted in a spawned task.
//!
//! Messages of a sink the target no longer declares stay pending (shown in
//! the notes) and go out if a later version declares the sink again.

use crate::events::ConductorEvent;
use crate::notify::{payload, send, sign};
use crate::reconciler::{Action, Ctx, Inbox, Post, ReconcileError, Reconciler, Waker};
use crate::world::World;
use async_trait::async_trait;
use glint_model::{Notify as Sink, NotifyFormat};
use glint_store::{Attempt, EventFilter, NotificationRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// An attempt that ended.
#[derive(Debug)]
struct Done {
    id: i64,
    sink: String,
    event: i64,
    attempts: u32,
    answer: Result<send::Reply, String>,
}

/// See the module documentation.
pub struct Notify {
    inbox: Inbox<Done>,
    in_flight: BTreeSet<String>,
    tls: Option<Result<Arc<tokio_rustls::TlsConnector>, String>>,
    notes: Vec<String>,
}

impl Notify {
    /// A reconciler whose attempts wake `waker` when they end.
    pub fn new(waker: &Waker) -> Notify {
        Notify {
            inbox: Inbox::new(waker),
            in_flight: BTreeSet::new(),
            tls: None,
            notes: Vec::new(),
        }
    }

    fn record(&mut self, ctx: &Ctx, done: Done) -> Result<(), ReconcileError> {
        self.in_flight.remove(&done.sink);
        let outcome = send::outcome(&done.answer, done.attempts, ctx.now(), done.id);
        let recorded = ctx.store.record_attempt(done.id, &outcome)?;
        if let (Some(_), Attempt::Failed { error }) = (recorded, &outcome) {
            ctx.events.emit(ConductorEvent::NotificationFailed {
                sink: done.sink,
                id: done.id,
                event: done.event,
                error: error.clone(),
            });
        }
        Ok(())
    }

    /// Step 2 for one sink.
    fn enqueue(
        &self,
        ctx: &Ctx,
        environment: &str,
        name: &str,
        sink: &Sink,
    ) -> Result<(), ReconcileError> {
        let Some(cursor) = ctx.store.notify_cursor(name)? else {
            let newest = ctx
                .store
                .events(&EventFilter {
                    limit: Some(1),
                    ..EventFilter::default()
                })?
                .last()
                .map_or(0, |e| e.seq);
            ctx.store.enqueue_notifications(name, None, newest, &[])?;
            return Ok(());
        };
        let events = ctx.store.events(&EventFilter {
            after: Some(cursor),
            ..EventFilter::default()
        })?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(());
        };
        let messages: Vec<_> = events
            .iter()
            .flat_map(|e| payload::messages(sink, environment, e))
            .collect();
        // A lost compare-and-set means another pass moved the cursor: the
        // next pass starts from there.
        ctx.store
            .enqueue_notifications(name, Some(cursor), last, &messages)?;
        Ok(())
    }

    fn tls(&mut self) -> Result<Arc<tokio_rustls::TlsConnector>, String> {
        self.tls
            .get_or_insert_with(|| send::tls_connector().map(Arc::new))
            .clone()
    }

    /// The request for `msg` to `sink`, signed or keyed with the sink's
    /// secret (opened here, at delivery, and nowhere stored).
    fn request(ctx: &Ctx, msg: &NotificationRecord, sink: &Sink) -> Result<send::Request, String> {
        let secret = match &sink.secret {
            None => None,
            Some(name) => Some(open_secret(ctx, name)?),
        };
        let mut headers = Vec::new();
        let body = match (sink.format, &secret) {
            (NotifyFormat::Webhook, secret) => {
                let id = format!("msg_{}_{}", ctx.store_id, msg.id);
                let timestamp = ctx.now().div_euclid(1000);
                if let Some(secret) = secret {
                    let key = sign::signing_key(secret);
                    headers.push((
                        "webhook-signature",
                        sign::sign(&key, &id, timestamp, msg.payload.as_bytes()),
                    ));
                }
                headers.push(("webhook-id", id));
                headers.push(("webhook-timestamp", timestamp.to_string()));
                msg.payload.clone()
            }
            (NotifyFormat::Slack, _) => msg.payload.clone(),
            (NotifyFormat::Pagerduty, Some(secret)) => {
                let key = std::str::from_utf8(secret)
                    .map_err(|_| "the routing key secret is not text".to_owned())?;
                payload::with_routing_key(&msg.payload, key.trim())?
            }
            (NotifyFormat::Pagerduty, None) => {
                return Err("a pagerduty sink needs `secret` (the routing key)".into());
            }
        };
        Ok(send::Request {
            url: sink.url.clone(),
            headers,
            body: body.into_bytes(),
        })
    }
}

/// A secret's value, for a sink.
fn open_secret(ctx: &Ctx, name: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let Some(dir) = ctx.config.secrets_dir.as_deref() else {
        return Err(format!(
            "the sink's secret {name} cannot be opened: this conductor has no data directory to find the master key in"
        ));
    };
    let key = glint_store::secrets::master_key(ctx.store.as_ref(), dir, false)
        .map_err(|e| format!("cannot load the master key: {}", crate::error_chain(&e)))?;
    match ctx.store.open_secret(&key, name) {
        Ok(Some((_, value))) => Ok(value),
        Ok(None) => Err(format!(
            "secret {name} is not set: run `glint secret set {name}`"
        )),
        Err(e) => Err(crate::error_chain(&e)),
    }
}

#[async_trait]
impl Reconciler for Notify {
    fn name(&self) -> &'static str {
        "notify"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        for done in self.inbox.drain() {
            self.record(ctx, done)?;
        }
        let Some(target) = world.target.clone() else {
            self.notes.clear();
            return Ok(Action::await_change());
        };
        let sinks = &target.env.notify;
        let environment = target.env.name.as_str();
        for (name, sink) in sinks {
            self.enqueue(ctx, environment, name.as_str(), sink)?;
        }
        let now = ctx.now();
        let mut next: Option<i64> = None;
        let mut stranded: BTreeMap<String, u64> = BTreeMap::new();
        for head in ctx.store.pending_heads()? {
            let Some(sink) = sinks
                .iter()
                .find(|(n, _)| n.as_str() == head.sink)
                .map(|(_, s)| s)
            else {
                stranded.insert(head.sink.clone(), 0);
                continue;
            };
            if self.in_flight.contains(&head.sink) {
                continue;
            }
            if head.next_at > now {
                next = Some(next.map_or(head.next_at, |n| n.min(head.next_at)));
                continue;
            }
            let tls = if sink.url.starts_with("https://") {
                match self.tls() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.in_flight.insert(head.sink.clone());
                        self.inbox.post().send(Done {
                            id: head.id,
                            sink: head.sink.clone(),
                            event: head.event_id,
                            attempts: head.attempts,
                            answer: Err(format!("no TLS roots: {e}")),
                        });
                        continue;
                    }
                }
            } else {
                None
            };
            self.in_flight.insert(head.sink.clone());
            let post: Post<Done> = self.inbox.post();
            let request = Self::request(ctx, &head, sink);
            let (id, sink_name, event, attempts) =
                (head.id, head.sink.clone(), head.event_id, head.attempts);
            tokio::spawn(async move {
                let answer = match request {
                    Ok(req) => send::post(req, tls, send::TIMEOUT).await,
                    Err(e) => Err(e),
                };
                post.send(Done {
                    id,
                    sink: sink_name,
                    event,
                    attempts,
                    answer,
                });
            });
        }
        self.notes.clear();
        for c in ctx.store.notification_counts()? {
            let declared = sinks.keys().any(|n| n.as_str() == c.sink);
            if c.failed > 0 {
                self.notes.push(format!(
                    "notify {}: {} notification(s) failed for good (`glint notifications --state failed` shows why)",
                    c.sink, c.failed
                ));
            }
            if !declared && c.pending > 0 && stranded.contains_key(&c.sink) {
                self.notes.push(format!(
                    "notify {}: {} pending notification(s) for a sink the current version does not declare; they go out if a version declares it again",
                    c.sink, c.pending
                ));
            } else if c.pending > 10 {
                self.notes.push(format!(
                    "notify {}: {} notification(s) waiting to be delivered",
                    c.sink, c.pending
                ));
            }
        }
        Ok(match next {
            Some(at) => Action::requeue_at(at, now),
            None => Action::requeue(Duration::from_secs(30)),
        })
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
