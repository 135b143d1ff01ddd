//! Trace context: read from incoming requests, carried through the request, handed on.
//!
//! W3C `traceparent` is preferred; Google's `X-Cloud-Trace-Context` (still sent by
//! some Google front ends) is the fallback. A request without either starts a trace here.
//! Each request is a span of its own in its trace (a new span id, the caller's as its parent);
//! the log lines of the request carry both ids. While the request runs, its context is the
//! task's ([`scope`]): `tern-events` stamps it on every event the request stages
//! ([`current_traceparent`]), and a consumer continues the trace an event arrived with
//! ([`continue_trace`]), so one trace id joins a web order, its events and their consumers.

use crate::logging::{SPAN_ID, TRACE_ID, TRACE_SAMPLED};
use http::HeaderMap;
use std::sync::Mutex;

/// A trace and span id taken from request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    /// 32 lowercase hex characters.
    pub trace_id: String,
    /// 16 lowercase hex characters.
    pub span_id: String,
    /// Whether the trace is sampled: its spans are exported (`crate::spans`).
    pub sampled: bool,
    /// The span this one continues (the caller's, or the producer's of an event); `None` for
    /// the first span of a trace, and for a context read from a header.
    pub parent_span_id: Option<String>,
}

impl TraceContext {
    /// Reads `traceparent`, then `X-Cloud-Trace-Context`. Malformed headers are ignored.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        if let Some(tc) = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse_traceparent)
        {
            return Some(tc);
        }
        headers
            .get("x-cloud-trace-context")
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse_cloud_trace)
    }

    /// `00-<32 hex trace>-<16 hex span>-<2 hex flags>`.
    pub(crate) fn parse_traceparent(v: &str) -> Option<Self> {
        let mut parts = v.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        // W3C: lowercase hex only; an all-zero id is invalid.
        if version.len() != 2 || version == "ff" || !is_hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace_id.len() != 32 || !is_hex(trace_id) || trace_id.bytes().all(|b| b == b'0') {
            return None;
        }
        if span_id.len() != 16 || !is_hex(span_id) || span_id.bytes().all(|b| b == b'0') {
            return None;
        }
        if flags.len() != 2 || !is_hex(flags) {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            sampled: flags & 1 == 1,
            parent_span_id: None,
        })
    }

    /// A trace started here: random ids; `sample` decides from the trace id whether its
    /// spans are exported.
    pub(crate) fn root(sample: impl FnOnce(&str) -> bool) -> Self {
        let trace_id = format!("{:032x}", nonzero(rand::random::<u128>()));
        Self {
            sampled: sample(&trace_id),
            trace_id,
            span_id: format!("{:016x}", nonzero(rand::random::<u64>())),
            parent_span_id: None,
        }
    }

    /// This process's span in the same trace: a new span id, the same trace and sampling.
    pub(crate) fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: format!("{:016x}", nonzero(rand::random::<u64>())),
            sampled: self.sampled,
            parent_span_id: Some(self.span_id.clone()),
        }
    }

    /// The W3C `traceparent` value: `00-<trace>-<span>-<flags>`.
    pub(crate) fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }

    /// Writes the ids on `span` (the request's), where the log lines find them.
    pub(crate) fn record_on(&self, span: &tracing::Span) {
        span.record(TRACE_ID, self.trace_id.as_str());
        span.record(SPAN_ID, self.span_id.as_str());
        span.record(TRACE_SAMPLED, self.sampled);
    }

    /// `TRACE_ID/SPAN_ID;o=OPTIONS`, where SPAN_ID is decimal.
    pub(crate) fn parse_cloud_trace(v: &str) -> Option<Self> {
        let (trace_id, rest) = v.trim().split_once('/')?;
        let (span, opts) = match rest.split_once(';') {
            Some((s, o)) => (s, Some(o)),
            None => (rest, None),
        };
        if trace_id.len() != 32
            || !trace_id.bytes().all(|b| b.is_ascii_hexdigit())
            || trace_id.bytes().all(|b| b == b'0')
        {
            return None;
        }
        let span: u64 = span.parse().ok().filter(|s| *s != 0)?;
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: format!("{span:016x}"),
            sampled: opts.is_some_and(|o| o.trim() == "o=1"),
            parent_span_id: None,
        })
    }
}

/// Lowercase hex digits, as W3C trace context writes them.
fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// All-zero ids are invalid in W3C trace context.
fn nonzero<T: PartialEq + From<u8>>(v: T) -> T {
    if v == T::from(0) { T::from(1) } else { v }
}

tokio::task_local! {
    static CURRENT: Mutex<TraceContext>;
}

/// Runs `f` (a request) with `tc` as its trace context; returns its output and the context
/// it ended with (an event's trace, when it continued one).
pub(crate) async fn scope<F: Future>(tc: TraceContext, f: F) -> (F::Output, TraceContext) {
    CURRENT
        .scope(Mutex::new(tc), async {
            let out = f.await;
            let tc = CURRENT.with(|m| {
                m.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            });
            (out, tc)
        })
        .await
}

/// The running request's trace context as a `traceparent` value; `None` outside a request.
pub fn current_traceparent() -> Option<String> {
    CURRENT
        .try_with(|m| {
            m.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .traceparent()
        })
        .ok()
}

/// Continues the trace `traceparent` names in the running request (an event that arrived with
/// the producer's context): from here on the request is a span of that trace, its log lines
/// carry its ids, and what it stages carries it on. Returns whether it was taken (a malformed
/// value, or no request running, changes nothing).
pub fn continue_trace(traceparent: &str) -> bool {
    let Some(parent) = TraceContext::parse_traceparent(traceparent) else {
        return false;
    };
    let tc = parent.child();
    let taken = CURRENT
        .try_with(|m| {
            *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = tc.clone();
        })
        .is_ok();
    if taken {
        tc.record_on(&tracing::Span::current());
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_the_trace_and_takes_a_new_span() {
        let root = TraceContext::root(|_| true);
        assert_eq!(root.trace_id.len(), 32);
        assert_eq!(root.span_id.len(), 16);
        assert!(root.sampled);
        assert_eq!(root.parent_span_id, None);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(child.parent_span_id.as_ref(), Some(&root.span_id));
        assert!(child.sampled);
        let handed_on = TraceContext::parse_traceparent(&child.traceparent()).unwrap();
        assert_eq!(
            (handed_on.trace_id, handed_on.span_id, handed_on.sampled),
            (child.trace_id, child.span_id, true)
        );
        assert!(!TraceContext::root(|_| false).sampled);
    }

    #[tokio::test]
    async fn a_request_continues_the_trace_of_the_event_it_handles() {
        assert_eq!(current_traceparent(), None, "no request, no context");
        let started = TraceContext::root(|_| false);
        let (inner, ended) = scope(started.clone(), async {
            let first = current_traceparent().unwrap();
            assert!(!continue_trace("not a traceparent"));
            assert!(continue_trace(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            ));
            (first, current_traceparent().unwrap())
        })
        .await;
        assert_eq!(ended.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ended.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(inner.0, started.traceparent());
        let now = TraceContext::parse_traceparent(&inner.1).unwrap();
        assert_eq!(now.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(now.span_id, "00f067aa0ba902b7", "a span of its own");
        assert!(now.sampled);
    }

    #[test]
    fn traceparent_is_parsed() {
        let tc = TraceContext::parse_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(tc.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tc.span_id, "00f067aa0ba902b7");
        assert!(tc.sampled);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
        ] {
            assert_eq!(TraceContext::parse_traceparent(bad), None, "{bad}");
        }
        for bad in [
            "00000000000000000000000000000000/1;o=1",
            "105445aa7843bc8bf206b12000100000/0;o=1",
            "105445aa7843bc8bf206b12000100000/x;o=1",
        ] {
            assert_eq!(TraceContext::parse_cloud_trace(bad), None, "{bad}");
        }
    }

    #[test]
    fn cloud_trace_context_is_the_fallback() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap(),
        );
        let tc = TraceContext::from_headers(&h).unwrap();
        assert_eq!(tc.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(tc.span_id, "0000000000000001");
        assert!(tc.sampled);
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
                .parse()
                .unwrap(),
        );
        let tc = TraceContext::from_headers(&h).unwrap();
        assert_eq!(tc.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!tc.sampled);
    }
}
