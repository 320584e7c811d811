//! What each sink is sent for an event of the log (pure).
//!
//! An event is reported to a sink when its topic is among the sink's `on`:
//! - `incident`: an event carrying an incident occurrence (its details'
//!   `incident`, written by the event sink for every recorded incident);
//! - `rollout_failed`: `rollout.failed`;
//! - `rollback`: `version.rolled_back` with `automatic` in its details (a
//!   rollback someone asked for is not reported).
//!
//! The bodies, by format:
//! - `webhook`: `{"type", "timestamp", "data": {environment, event,
//!   incident?, dedup_key?}}` (the Standard Webhooks payload shape);
//! - `slack`: `{"text": "..."}`;
//! - `pagerduty`: an Events API v2 event (`event_action`, `dedup_key`,
//!   `payload: {summary, source, severity}`); an incident occurrence the
//!   conductor put right is a `trigger` followed by a `resolve` (part 1), so
//!   the page closes itself. The `routing_key` is added at delivery
//!   ([`with_routing_key`]): no payload in the store holds a secret.

use glint_model::{Notify, NotifyFormat, NotifyTopic};
use glint_store::{Event, NewNotification};
use serde_json::{Value, json};

/// What the event reports, if anything a sink can be sent.
pub fn topic(event: &Event) -> Option<NotifyTopic> {
    let details = event.details.as_ref();
    if details.and_then(|d| d.get("incident")).is_some() {
        return Some(NotifyTopic::Incident);
    }
    match event.kind.as_str() {
        "rollout.failed" => Some(NotifyTopic::RolloutFailed),
        "version.rolled_back"
            if details
                .and_then(|d| d.get("automatic"))
                .and_then(Value::as_bool)
                == Some(true) =>
        {
            Some(NotifyTopic::Rollback)
        }
        _ => None,
    }
}

/// The incident of an incident event: (dedup key, resolved).
fn incident(event: &Event) -> Option<(String, bool, &Value)> {
    let i = event.details.as_ref()?.get("incident")?;
    let kind = i.get("kind")?.as_str()?;
    let subject = i.get("subject")?.as_str()?;
    let resolved = i.get("resolved").and_then(Value::as_bool).unwrap_or(false);
    Some((format!("{kind}:{subject}"), resolved, i))
}

/// The messages `sink` is sent for `event` (none when its topic is not
/// among the sink's `on`).
pub fn messages(sink: &Notify, environment: &str, event: &Event) -> Vec<NewNotification> {
    let Some(topic) = topic(event) else {
        return Vec::new();
    };
    if !sink.on.contains(&topic) {
        return Vec::new();
    }
    let inc = incident(event);
    let dedup_key = match (&inc, topic) {
        (Some((key, _, _)), _) => key.clone(),
        (None, NotifyTopic::RolloutFailed) => {
            format!("rollout-failed:{}", event.version.unwrap_or(0))
        }
        (None, _) => format!("rollback:{}", event.version.unwrap_or(0)),
    };
    let new = |part: u32, payload: Value| NewNotification {
        event_id: event.seq,
        part,
        topic: topic.as_str().to_owned(),
        dedup_key: Some(dedup_key.clone()),
        payload: payload.to_string(),
    };
    let summary = format!("[{environment}] {}", event.message);
    match sink.format {
        NotifyFormat::Webhook => {
            let mut data = json!({
                "environment": environment,
                "event": {
                    "id": event.seq,
                    "at": event.at,
                    "kind": event.kind,
                    "severity": event.severity,
                    "version": event.version,
                    "service": event.service,
                    "instance": event.instance,
                    "message": event.message,
                },
                "dedup_key": dedup_key,
            });
            if let Some((_, _, i)) = &inc {
                data["incident"] = (*i).clone();
            }
            let body = json!({
                "type": format!("glint.{}", topic.as_str()),
                "timestamp": rfc3339(event.at),
                "data": data,
            });
            vec![new(0, body)]
        }
        NotifyFormat::Slack => vec![new(0, json!({ "text": summary }))],
        NotifyFormat::Pagerduty => {
            let severity = match (topic, &inc) {
                (NotifyTopic::Incident, Some((_, false, _))) => "critical",
                (NotifyTopic::RolloutFailed, _) => "error",
                _ => "warning",
            };
            let event_body = |action: &str| {
                json!({
                    "event_action": action,
                    "dedup_key": dedup_key,
                    "payload": {
                        "summary": summary,
                        "source": format!("glint/{environment}"),
                        "severity": severity,
                        "custom_details": { "event": event.seq, "kind": event.kind },
                    },
                })
            };
            let mut out = vec![new(0, event_body("trigger"))];
            if matches!(inc, Some((_, true, _))) {
                out.push(new(1, event_body("resolve")));
            }
            out
        }
    }
}

/// A PagerDuty body with the routing key added (at delivery only).
pub fn with_routing_key(payload: &str, routing_key: &str) -> Result<String, String> {
    let mut v: Value = serde_json::from_str(payload)
        .map_err(|e| format!("the stored payload is not JSON: {e}"))?;
    let Some(map) = v.as_object_mut() else {
        return Err("the stored payload is not a JSON object".into());
    };
    map.insert("routing_key".into(), Value::String(routing_key.to_owned()));
    Ok(v.to_string())
}

fn rfc3339(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use glint_store::Severity;

    fn sink(format: NotifyFormat, on: Vec<NotifyTopic>) -> Notify {
        Notify {
            url: "http://127.0.0.1:9/hook".into(),
            format,
            secret: Some("ops/hook".into()),
            on,
        }
    }

    fn event(kind: &str, details: Value) -> Event {
        Event {
            seq: 42,
            at: 1_700_000_000_000,
            kind: kind.into(),
            severity: Severity::Incident,
            version: Some(3),
            service: Some("web".into()),
            instance: None,
            message: "something happened".into(),
            details: Some(details),
        }
    }

    fn drift(resolved: bool) -> Event {
        event(
            "drift",
            json!({"incident": {"kind": "instance-drift", "subject": "web-1", "found": "exec", "action": "replacing", "resolved": resolved}}),
        )
    }

    #[test]
    fn topics_come_from_the_event_and_manual_rollbacks_are_not_reported() {
        assert_eq!(topic(&drift(true)), Some(NotifyTopic::Incident));
        assert_eq!(
            topic(&event("rollout.failed", json!({}))),
            Some(NotifyTopic::RolloutFailed)
        );
        assert_eq!(
            topic(&event("version.rolled_back", json!({"automatic": true}))),
            Some(NotifyTopic::Rollback)
        );
        assert_eq!(topic(&event("version.rolled_back", json!({}))), None);
        assert_eq!(topic(&event("instance.launched", json!({}))), None);
        let only = sink(NotifyFormat::Webhook, vec![NotifyTopic::Rollback]);
        assert!(messages(&only, "shop", &drift(true)).is_empty());
    }

    #[test]
    fn a_webhook_carries_the_event_and_the_incident_with_its_dedup_key() {
        let m = messages(
            &sink(NotifyFormat::Webhook, NotifyTopic::all()),
            "shop",
            &drift(false),
        );
        assert_eq!(m.len(), 1);
        let v: Value = serde_json::from_str(&m[0].payload).unwrap();
        assert_eq!(v["type"], "glint.incident");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["data"]["dedup_key"], "instance-drift:web-1");
        assert_eq!(v["data"]["incident"]["found"], "exec");
        assert_eq!(v["data"]["event"]["id"], 42);
        assert_eq!(m[0].dedup_key.as_deref(), Some("instance-drift:web-1"));
        assert!(
            !m[0].payload.contains("ops/hook"),
            "no secret, not even its name"
        );
    }

    #[test]
    fn pagerduty_triggers_and_resolves_what_was_put_right_and_slack_gets_text() {
        let pd = sink(NotifyFormat::Pagerduty, NotifyTopic::all());
        let open = messages(&pd, "shop", &drift(false));
        assert_eq!(open.len(), 1);
        let v: Value = serde_json::from_str(&open[0].payload).unwrap();
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["dedup_key"], "instance-drift:web-1");
        assert_eq!(v["payload"]["severity"], "critical");
        assert_eq!(v["payload"]["source"], "glint/shop");
        assert!(v.get("routing_key").is_none());
        let fixed = messages(&pd, "shop", &drift(true));
        assert_eq!(fixed.iter().map(|m| m.part).collect::<Vec<_>>(), vec![0, 1]);
        let v: Value = serde_json::from_str(&fixed[1].payload).unwrap();
        assert_eq!(v["event_action"], "resolve");
        let with = with_routing_key(&fixed[1].payload, "R0UT1NG").unwrap();
        let v: Value = serde_json::from_str(&with).unwrap();
        assert_eq!(v["routing_key"], "R0UT1NG");
        let slack = messages(
            &sink(NotifyFormat::Slack, NotifyTopic::all()),
            "shop",
            &event("rollout.failed", json!({})),
        );
        let v: Value = serde_json::from_str(&slack[0].payload).unwrap();
        assert_eq!(v, json!({"text": "[shop] something happened"}));
        assert_eq!(slack[0].dedup_key.as_deref(), Some("rollout-failed:3"));
    }
}
