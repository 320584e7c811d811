//! Request bodies that can be replayed on another backend, and response bodies
//! that end their request's in-flight count and return the backend connection
//! to its pool when they have been relayed.

use crate::backends::InFlight;
use crate::pool::Sender;
use crate::stats::{Counters, bump};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::sync::oneshot;

/// A request body read completely, so that it can be sent more than once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Replayable {
    data: Bytes,
    trailers: Option<HeaderMap>,
}

/// A client request body, as read before the first attempt.
pub(crate) enum Prepared {
    /// Read completely (at most the replay limit).
    Replayable(Replayable),
    /// Too large to buffer: what was read so far and the rest of the stream.
    Streaming(RequestBody),
}

/// Reads a request body up to `limit` bytes. Returns the error of the client's
/// body stream, if it fails.
pub(crate) async fn prepare(mut body: Incoming, limit: usize) -> Result<Prepared, hyper::Error> {
    if body.is_end_stream() {
        return Ok(Prepared::Replayable(Replayable::default()));
    }
    if body.size_hint().lower() > limit as u64 {
        return Ok(Prepared::Streaming(RequestBody::Streaming {
            prefix: VecDeque::new(),
            rest: Some(body),
            ended: None,
        }));
    }
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    let mut len = 0usize;
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => {
                len += data.len();
                chunks.push_back(data);
                if len > limit {
                    return Ok(Prepared::Streaming(RequestBody::Streaming {
                        prefix: chunks,
                        rest: Some(body),
                        ended: None,
                    }));
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    let data = if chunks.len() == 1 {
        chunks.pop_front().unwrap_or_default()
    } else {
        let mut all = BytesMut::with_capacity(len);
        for chunk in chunks {
            all.extend_from_slice(&chunk);
        }
        all.freeze()
    };
    Ok(Prepared::Replayable(Replayable { data, trailers }))
}

/// The body of a request sent to a backend.
pub(crate) enum RequestBody {
    /// A buffered body (one copy per attempt; cloning `Bytes` is cheap).
    Buffered {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    /// A streamed body: the chunks read while deciding, then the rest.
    Streaming {
        prefix: VecDeque<Bytes>,
        rest: Option<Incoming>,
        /// Told when the last frame has been handed to the connection.
        ended: Option<oneshot::Sender<()>>,
    },
}

impl RequestBody {
    /// For a streamed body, a receiver that resolves once the whole body has
    /// been sent (or the body was dropped); `None` for a buffered body,
    /// which is sent at once.
    pub(crate) fn watch_end(&mut self) -> Option<oneshot::Receiver<()>> {
        match self {
            RequestBody::Buffered { .. } => None,
            RequestBody::Streaming { ended, .. } => {
                let (tx, rx) = oneshot::channel();
                *ended = Some(tx);
                Some(rx)
            }
        }
    }
}

impl From<&Replayable> for RequestBody {
    fn from(r: &Replayable) -> Self {
        RequestBody::Buffered {
            data: (!r.data.is_empty()).then(|| r.data.clone()),
            trailers: r.trailers.clone(),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            RequestBody::Streaming {
                prefix,
                rest,
                ended,
            } => {
                let frame = match prefix.pop_front() {
                    Some(chunk) => Some(Ok(Frame::data(chunk))),
                    None => match rest {
                        Some(rest) => ready!(Pin::new(rest).poll_frame(cx)),
                        None => None,
                    },
                };
                // hyper stops polling a body that says it has ended, so the
                // end is told after the last frame too, not only at `None`.
                let done = frame.is_none()
                    || (prefix.is_empty() && rest.as_ref().is_none_or(|r| r.is_end_stream()));
                if done && let Some(ended) = ended.take() {
                    let _ = ended.send(());
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            RequestBody::Streaming { prefix, rest, .. } => {
                prefix.is_empty() && rest.as_ref().is_none_or(|r| r.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Streaming { prefix, rest, .. } => {
                let buffered: u64 = prefix.iter().map(|c| c.len() as u64).sum();
                let rest = rest.as_ref().map(|r| r.size_hint()).unwrap_or_default();
                let mut hint = SizeHint::new();
                hint.set_lower(buffered.saturating_add(rest.lower()));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(buffered.saturating_add(upper));
                }
                hint
            }
        }
    }
}

/// What to do when a relayed response body ends.
pub(crate) struct Finish {
    /// The request's in-flight count.
    pub(crate) in_flight: InFlight,
    /// The backend connection, returned to the pool on a clean end.
    pub(crate) sender: Option<Sender>,
    /// Where to count an aborted body.
    pub(crate) counters: Arc<Counters>,
}

impl Finish {
    fn run(self, clean: bool) {
        if clean {
            if let Some(sender) = self.sender {
                self.in_flight.backend().pool.put(sender);
            }
        } else {
            bump(&self.counters.response_aborted);
        }
        // `self.in_flight` drops here, after the connection was handled, so
        // a drain that sees zero in flight also sees no pooled connection.
    }
}

/// The body of a response sent to a client.
pub(crate) enum ResponseBody {
    /// A backend's body, streamed through.
    Relayed {
        inner: Incoming,
        finish: Option<Finish>,
    },
    /// A body the endpoint wrote itself (503, 502, ...).
    Local(Option<Bytes>),
}

impl ResponseBody {
    pub(crate) fn relayed(inner: Incoming, finish: Finish) -> ResponseBody {
        ResponseBody::Relayed {
            inner,
            finish: Some(finish),
        }
    }

    pub(crate) fn local(text: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Local(Some(text.into()))
    }

    pub(crate) fn empty() -> ResponseBody {
        ResponseBody::Local(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResponseBody::Relayed { inner, finish } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &frame {
                    None => {
                        if let Some(f) = finish.take() {
                            f.run(true);
                        }
                    }
                    Some(Err(_)) => {
                        if let Some(f) = finish.take() {
                            f.run(false);
                        }
                    }
                    Some(Ok(_)) => {
                        // hyper stops polling a body that says it has ended.
                        if inner.is_end_stream()
                            && let Some(f) = finish.take()
                        {
                            f.run(true);
                        }
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(data) => data.is_none(),
            ResponseBody::Relayed { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ResponseBody::Relayed { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let ResponseBody::Relayed { inner, finish } = self
            && let Some(f) = finish.take()
        {
            // Dropped without reaching the end: either it had ended anyway
            // (an empty body that hyper never polled: HEAD, 204, 304) or the
            // client went away, and the backend connection is mid-response.
            if inner.is_end_stream() {
                f.run(true);
            } else {
                let Finish { in_flight, .. } = f;
                drop(in_flight);
            }
        }
    }
}
