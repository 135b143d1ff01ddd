//! Trace context from incoming requests, for log correlation.
//!
//! W3C `traceparent` is preferred; Google's `X-Cloud-Trace-Context` (still sent by
//! some Google front ends) is the fallback.

use http::HeaderMap;

/// A trace and span id taken from request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    /// 32 lowercase hex characters.
    pub trace_id: String,
    /// 16 lowercase hex characters.
    pub span_id: String,
    /// Whether the caller sampled the trace.
    pub sampled: bool,
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
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: span_id.to_ascii_lowercase(),
            sampled: flags & 1 == 1,
        })
    }

    /// `TRACE_ID/SPAN_ID;o=OPTIONS`, where SPAN_ID is decimal.
    pub(crate) fn parse_cloud_trace(v: &str) -> Option<Self> {
        let (trace_id, rest) = v.trim().split_once('/')?;
        let (span, opts) = match rest.split_once(';') {
            Some((s, o)) => (s, Some(o)),
            None => (rest, None),
        };
        if trace_id.len() != 32 || !is_hex(trace_id) {
            return None;
        }
        let span: u64 = span.parse().ok()?;
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: format!("{span:016x}"),
            sampled: opts.is_some_and(|o| o.trim() == "o=1"),
        })
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert_eq!(TraceContext::parse_traceparent(bad), None, "{bad}");
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
