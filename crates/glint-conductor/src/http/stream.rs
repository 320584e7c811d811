//! Server-sent event streams: the event log as it grows
//! (`/v1/events/stream`) and the dashboard's live fragments (`/ui/live`).
//!
//! Both wake on the store's change feed (every commit, by any process) and,
//! for the dashboard, on the conductor's status; neither polls in a tight
//! loop. A keep-alive comment every 15 s keeps proxies from closing them.

use super::ApiState;
use super::routes::EventsQuery;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Events read per look at the store.
const BATCH: usize = 200;

struct Tail {
    st: Arc<ApiState>,
    feed: glint_store::ChangeFeed,
    cursor: i64,
    q: EventsQuery,
    buf: VecDeque<glint_store::Event>,
}

/// The event log from `after` (or `last`, or now) on, as SSE.
pub fn events(
    st: Arc<ApiState>,
    q: EventsQuery,
    last: Option<i64>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let cursor = q.after.or(last).unwrap_or_else(|| {
        st.store
            .events(&glint_store::EventFilter {
                limit: Some(1),
                ..Default::default()
            })
            .ok()
            .and_then(|e| e.last().map(|e| e.seq))
            .unwrap_or(0)
    });
    let feed = st.store.changes();
    let tail = Tail {
        st,
        feed,
        cursor,
        q,
        buf: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(e) = t.buf.pop_front() {
                let ev = Event::default()
                    .event("event")
                    .id(e.seq.to_string())
                    .json_data(&e)
                    .unwrap_or_else(|_| Event::default().comment("unencodable event"));
                return Some((Ok(ev), t));
            }
            let mut f = t.q.filter();
            f.after = Some(t.cursor);
            f.limit = Some(BATCH);
            let min = t.q.min_severity();
            match t.st.store.events(&f) {
                Ok(evs) if !evs.is_empty() => {
                    if let Some(last) = evs.last() {
                        t.cursor = last.seq;
                    }
                    t.buf.extend(evs.into_iter().filter(|e| e.severity >= min));
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("event stream: cannot read events: {e}"),
            }
            t.feed.borrow_and_update();
            tokio::select! {
                r = t.feed.changed() => {
                    if r.is_err() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A stream of HTML fragments rendered by `render` whenever the status or
/// the store changes (at most every 200 ms), as SSE `live` messages.
pub fn live<F>(st: Arc<ApiState>, render: F) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Fn(&ApiState) -> String + Send + Sync + 'static,
{
    let status = st.client.watch();
    let feed = st.store.changes();
    let state = (st, status, feed, render, true);
    let stream = futures_util::stream::unfold(
        state,
        |(st, mut status, mut feed, render, first)| async move {
            if !first {
                status.borrow_and_update();
                feed.borrow_and_update();
                tokio::select! {
                    _ = status.changed() => {}
                    _ = feed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let html = render(&st);
            let ev = Event::default().event("live").data(html);
            Some((Ok(ev), (st, status, feed, render, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A service's new log lines, every half second, as SSE `line` messages.
pub fn logs(
    st: Arc<ApiState>,
    service: String,
    instance: Option<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let instance = instance.and_then(|i| glint_model::InstanceId::parse(i).ok());
    let mut follower = crate::logs::Follower::new(&st.data_dir);
    for rec in crate::logs::current(st.store.as_ref(), &service, instance.as_ref()) {
        follower.seen(&rec);
    }
    let state = (
        st,
        service,
        instance,
        follower,
        VecDeque::<crate::logs::LogLine>::new(),
    );
    let stream = futures_util::stream::unfold(
        state,
        |(st, service, instance, mut follower, mut buf)| async move {
            loop {
                if let Some(l) = buf.pop_front() {
                    let ev = Event::default()
                        .event("line")
                        .json_data(&l)
                        .unwrap_or_else(|_| Event::default().comment("unencodable line"));
                    return Some((Ok(ev), (st, service, instance, follower, buf)));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                match follower.poll_service(st.store.as_ref(), &service, instance.as_ref()) {
                    Ok(lines) => buf.extend(lines),
                    Err(e) => tracing::warn!("log stream: {e}"),
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
