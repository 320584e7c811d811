//! Notifications: incidents, failed rollouts and automatic rollbacks sent
//! to the `notify` sinks a version declares.
//!
//! The flow, every piece durable in the store (`glint_store::Notifications`):
//! 1. the `notify` reconciler (`reconcilers/notify.rs`) reads the event log
//!    after each sink's cursor and enqueues what [`payload::messages`] says
//!    the sink is sent, moving the cursor in the same transaction;
//! 2. it attempts the oldest pending message of each sink in a spawned task
//!    ([`send::post`]; the task reports back through the reconciler's inbox,
//!    so no pass waits for a receiver), signed per Standard Webhooks
//!    ([`sign`]) for `webhook` sinks;
//! 3. [`send::outcome`] decides delivered, retried (backoff with jitter,
//!    `Retry-After`) or failed for good, and the attempt is recorded.
//!
//! Delivery is at least once: a conductor killed after a receiver accepted
//! a message but before the attempt was recorded sends it again, with the
//! same `webhook-id` (receivers deduplicate on it).

pub mod payload;
pub mod send;
pub mod sign;
