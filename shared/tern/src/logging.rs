//! Logs: Cloud Logging structured JSON in the cluster, readable text in a terminal.
//!
//! [`CloudLogging`] is a small `tracing` layer of ours (see
//! `docs/decisions/0002-cloud-logging-layer.md` for why not `tracing-stackdriver`). Each event
//! becomes one JSON object on stdout with the fields Cloud Logging's agent lifts into the
//! `LogEntry`: `severity`, `message`, `time`, `httpRequest`, `logging.googleapis.com/sourceLocation`,
//! `logging.googleapis.com/labels`, and — when a project id is configured and the request carried
//! `traceparent` or `X-Cloud-Trace-Context` — `logging.googleapis.com/trace`, `spanId` and
//! `trace_sampled`. Other fields of the event and of the spans around it go into the payload.
//!
//! Lines are written in batches by a thread of its own ([`crate::log_sink`]), so a request never
//! waits for a write; the [`LogGuard`] writes what is left at exit.

use crate::config::{KnativeIdentity, LogFormat};
use serde_json::{Map, Value};
use std::fmt::Debug;
use std::io::{IsTerminal, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, span};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Span fields the layer reads for trace correlation.
pub(crate) const TRACE_ID: &str = "trace_id";
/// See [`TRACE_ID`].
pub(crate) const SPAN_ID: &str = "span_id";
/// See [`TRACE_ID`].
pub(crate) const TRACE_SAMPLED: &str = "trace_sampled";
/// Event fields with this prefix form the `httpRequest` object.
pub(crate) const HTTP_PREFIX: &str = "http.";

/// Flushes buffered log lines when dropped.
#[must_use = "logs are flushed when the guard is dropped"]
pub(crate) struct LogGuard {
    _sink: crate::log_sink::SinkGuard,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

/// Installs the global subscriber. Returns `Err` with a one-line message when the filter is bad.
pub(crate) fn init(
    format: LogFormat,
    filter: &str,
    identity: &KnativeIdentity,
    project_id: Option<&str>,
) -> Result<LogGuard, crate::config::ConfigError> {
    let filter = EnvFilter::try_new(filter).map_err(|e| {
        crate::config::ConfigError::new("TERN_LOG", format!("not a valid log filter: {e}"))
    })?;
    let (writer, guard) = crate::log_sink::Sink::start(std::io::stdout());
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests that call `run` twice in one process) keeps the first subscriber.
    let _ = if json {
        let layer = CloudLogging::new(writer, identity, project_id);
        let direct = layer.clone();
        let installed = registry.with(layer).try_init();
        if installed.is_ok() {
            let _ = DIRECT.set(direct);
        }
        installed
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_writer(writer),
            )
            .try_init()
    };
    Ok(LogGuard { _sink: guard })
}

/// The Cloud Logging JSON layer.
#[derive(Clone)]
pub(crate) struct CloudLogging<W> {
    writer: W,
    /// `"logging.googleapis.com/labels":{...}`, serialized once.
    labels: String,
    project_id: Option<String>,
}

impl<W> CloudLogging<W> {
    /// A layer writing to `writer`, labelling every line with the Knative identity.
    pub(crate) fn new(writer: W, identity: &KnativeIdentity, project_id: Option<&str>) -> Self {
        let mut labels = Map::new();
        labels.insert("service".into(), identity.service.clone().into());
        if let Some(r) = &identity.revision {
            labels.insert("revision".into(), r.clone().into());
        }
        if let Some(c) = &identity.configuration {
            labels.insert("configuration".into(), c.clone().into());
        }
        let labels = format!(
            "\"logging.googleapis.com/labels\":{}",
            serde_json::to_string(&Value::Object(labels)).unwrap_or_else(|_| "{}".into())
        );
        Self {
            writer,
            labels,
            project_id: project_id.map(str::to_owned),
        }
    }
}

/// The installed JSON layer, for lines written without a `tracing` event ([`direct`]).
static DIRECT: std::sync::OnceLock<CloudLogging<crate::log_sink::Sink>> =
    std::sync::OnceLock::new();

/// The JSON layer [`init`] installed, when logs are Cloud Logging JSON: the access log writes
/// its line through it directly ([`CloudLogging::access`]). `None` with text logs, or when
/// another subscriber was installed first (tests): then the access line is a `tracing` event.
pub(crate) fn direct() -> Option<&'static CloudLogging<crate::log_sink::Sink>> {
    DIRECT.get()
}

/// One request's access line ([`CloudLogging::access`]).
pub(crate) struct Access<'a> {
    pub(crate) level: Level,
    pub(crate) method: &'a str,
    pub(crate) url: &'a str,
    pub(crate) status: u16,
    /// `"0.001234s"`, as `httpRequest.latency` wants it.
    pub(crate) latency: &'a str,
    pub(crate) response_size: Option<u64>,
    pub(crate) user_agent: &'a str,
    pub(crate) remote_ip: &'a str,
    pub(crate) protocol: &'static str,
    pub(crate) request_id: &'a str,
    pub(crate) trace: &'a crate::trace_context::TraceContext,
    /// Where the line is logged from: `file!()`, `line!()`, `module_path!()`.
    pub(crate) location: (&'static str, u32, &'static str),
}

impl<W: for<'w> MakeWriter<'w>> CloudLogging<W> {
    /// Writes the access line: the same line, field for field, as this layer writes for the
    /// access log's `tracing` event inside the request span (`direct_access_line_is_the_events`
    /// below), without the event: no span lookup, no field visitors, no value per field, one
    /// buffer. The access log is one line per request, so its cost is the runtime's on every
    /// request (decision 0033).
    pub(crate) fn access(&self, a: &Access<'_>) {
        use std::fmt::Write as _;
        let mut line = String::with_capacity(768);
        line.push_str("{\"severity\":\"");
        line.push_str(severity(&a.level));
        line.push_str("\",\"message\":");
        let message = format!("{} {} {}", a.method, a.url, a.status);
        push_json_str(&mut line, &message);
        line.push_str(",\"time\":\"");
        line.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        line.push('"');
        if let Some(project) = &self.project_id {
            line.push_str(",\"logging.googleapis.com/trace\":\"projects/");
            line.push_str(project);
            line.push_str("/traces/");
            line.push_str(&a.trace.trace_id);
            line.push_str("\",\"logging.googleapis.com/spanId\":");
            push_json_str(&mut line, &a.trace.span_id);
            line.push_str(",\"logging.googleapis.com/trace_sampled\":");
            line.push_str(if a.trace.sampled { "true" } else { "false" });
        }
        // In the event's field order (by name): latency, method, protocol, remote_ip,
        // response_size, status, url, user_agent.
        line.push_str(",\"httpRequest\":{\"latency\":");
        push_json_str(&mut line, a.latency);
        line.push_str(",\"requestMethod\":");
        push_json_str(&mut line, a.method);
        line.push_str(",\"protocol\":");
        push_json_str(&mut line, a.protocol);
        line.push_str(",\"remoteIp\":");
        push_json_str(&mut line, a.remote_ip);
        if let Some(n) = a.response_size {
            let _ = write!(line, ",\"responseSize\":\"{n}\"");
        }
        let _ = write!(line, ",\"status\":{}", a.status);
        line.push_str(",\"requestUrl\":");
        push_json_str(&mut line, a.url);
        line.push_str(",\"userAgent\":");
        push_json_str(&mut line, a.user_agent);
        line.push('}');
        let (file, line_no, target) = a.location;
        line.push_str(",\"logging.googleapis.com/sourceLocation\":{\"file\":");
        push_json_str(&mut line, file);
        let _ = write!(line, ",\"line\":\"{line_no}\",\"function\":");
        push_json_str(&mut line, target);
        line.push_str("},");
        line.push_str(&self.labels);
        line.push_str(",\"request_id\":");
        push_json_str(&mut line, a.request_id);
        line.push_str("}\n");
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// Fields by name, each once (a later value replaces an earlier one). A line has a dozen, so a
/// vector beats a map, and the names are the `'static` ones of the callsites: nothing is
/// allocated per name.
#[derive(Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn set(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| *k == name)?;
        Some(self.0.swap_remove(at).1)
    }
}

/// The fields recorded on a span, kept in its extensions.
#[derive(Default)]
struct SpanFields(Fields);

struct JsonVisitor<'a>(&'a mut Fields);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.set(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.set(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.set(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set(field.name(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.set(field.name(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.set(field.name(), format!("{value:?}").into());
    }
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Maps `http.*` event fields onto Cloud Logging's `HttpRequest` names.
fn http_request_key(field: &str) -> &str {
    match field {
        "method" => "requestMethod",
        "url" => "requestUrl",
        "status" => "status",
        "latency" => "latency",
        "response_size" => "responseSize",
        "request_size" => "requestSize",
        "user_agent" => "userAgent",
        "remote_ip" => "remoteIp",
        "protocol" => "protocol",
        "referer" => "referer",
        other => other,
    }
}

impl<S, W> Layer<S> for CloudLogging<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = SpanFields::default();
            attrs.record(&mut JsonVisitor(&mut fields.0));
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        use std::fmt::Write as _;
        let meta = event.metadata();
        let mut fields = Fields(Vec::with_capacity(16));
        // Span fields first (outermost to innermost), so event fields win.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &span_fields.0.0 {
                        fields.set(k, v.clone());
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut fields));

        // The line is written straight into one buffer, strings escaped in place.
        let mut line = String::with_capacity(512);
        line.push_str("{\"severity\":\"");
        line.push_str(severity(meta.level()));
        line.push_str("\",\"message\":");
        push_json(
            &mut line,
            fields.remove("message").as_ref().unwrap_or(&Value::Null),
        );
        line.push_str(",\"time\":\"");
        line.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        line.push('"');

        let trace_id = fields.remove(TRACE_ID);
        let span_id = fields.remove(SPAN_ID);
        let sampled = fields.remove(TRACE_SAMPLED);
        if let (Some(project), Some(Value::String(trace))) = (&self.project_id, &trace_id) {
            line.push_str(",\"logging.googleapis.com/trace\":\"projects/");
            line.push_str(project);
            line.push_str("/traces/");
            line.push_str(trace);
            line.push('"');
            if let Some(span) = &span_id {
                line.push_str(",\"logging.googleapis.com/spanId\":");
                push_json(&mut line, span);
            }
            if let Some(s) = &sampled {
                line.push_str(",\"logging.googleapis.com/trace_sampled\":");
                push_json(&mut line, s);
            }
        }

        // In name order, as a JSON object's keys print.
        fields.0.sort_unstable_by_key(|(k, _)| *k);
        let mut http_open = false;
        let mut rest = Vec::new();
        for (k, v) in &fields.0 {
            match k.strip_prefix(HTTP_PREFIX) {
                Some(name) => {
                    line.push_str(if http_open { "," } else { ",\"httpRequest\":{" });
                    http_open = true;
                    push_json_str(&mut line, http_request_key(name));
                    line.push(':');
                    match (name, v) {
                        // LogEntry wants sizes as strings (int64 in JSON).
                        ("response_size" | "request_size", Value::Number(n)) => {
                            let _ = write!(line, "\"{n}\"");
                        }
                        _ => push_json(&mut line, v),
                    }
                }
                None => rest.push((k, v)),
            }
        }
        if http_open {
            line.push('}');
        }

        line.push_str(",\"logging.googleapis.com/sourceLocation\":{");
        if let Some(file) = meta.file() {
            line.push_str("\"file\":");
            push_json_str(&mut line, file);
            line.push(',');
        }
        if let Some(n) = meta.line() {
            let _ = write!(line, "\"line\":\"{n}\",");
        }
        line.push_str("\"function\":");
        push_json_str(&mut line, meta.target());
        line.push_str("},");
        line.push_str(&self.labels);

        for (k, v) in rest {
            line.push(',');
            push_json_str(&mut line, k);
            line.push(':');
            push_json(&mut line, v);
        }
        line.push_str("}\n");
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// Appends `v` as JSON: strings, numbers and booleans in place, anything else through
/// serde_json.
fn push_json(out: &mut String, v: &Value) {
    use std::fmt::Write as _;
    match v {
        Value::String(s) => push_json_str(out, s),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
        // Serializing a serde_json::Value into a String cannot fail.
        other => {
            if let Ok(s) = serde_json::to_string(other) {
                out.push_str(&s);
            }
        }
    }
}

/// Appends `s` as a JSON string: as it is when nothing in it needs escaping (the usual case),
/// else escaped by serde_json.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        if let Ok(q) = serde_json::to_string(s) {
            out.push_str(&q);
        }
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(project: Option<&str>, f: impl FnOnce()) -> Vec<Value> {
        let out = Capture::default();
        let identity = KnativeIdentity {
            service: "orders-get".into(),
            revision: Some("orders-get-00001".into()),
            configuration: Some("orders-get".into()),
        };
        let subscriber =
            tracing_subscriber::registry().with(CloudLogging::new(out.clone(), &identity, project));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn an_event_has_the_cloud_logging_fields() {
        let lines = capture(Some("tern-prod"), || {
            let span = tracing::info_span!(
                "request",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = "00f067aa0ba902b7",
                trace_sampled = true,
                request_id = "r-1"
            );
            let _g = span.enter();
            tracing::warn!(
                http.method = "GET",
                http.status = 503u64,
                http.response_size = 120u64,
                http.latency = "0.004s",
                order_id = "ord_1",
                "request served"
            );
        });
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["severity"], "WARNING");
        assert_eq!(l["message"], "request served");
        assert_eq!(l["httpRequest"]["requestMethod"], "GET");
        assert_eq!(l["httpRequest"]["status"], 503);
        assert_eq!(l["httpRequest"]["responseSize"], "120");
        assert_eq!(l["httpRequest"]["latency"], "0.004s");
        assert_eq!(
            l["logging.googleapis.com/trace"],
            "projects/tern-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(l["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
        assert_eq!(l["logging.googleapis.com/trace_sampled"], true);
        assert_eq!(
            l["logging.googleapis.com/labels"]["revision"],
            "orders-get-00001"
        );
        assert_eq!(l["logging.googleapis.com/sourceLocation"]["file"], file!());
        assert_eq!(l["request_id"], "r-1");
        assert_eq!(l["order_id"], "ord_1");
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn direct_access_line_is_the_events() {
        let identity = KnativeIdentity {
            service: "orders-get".into(),
            revision: Some("orders-get-00001".into()),
            configuration: Some("orders-get".into()),
        };
        let tc = crate::trace_context::TraceContext::root(|_| true);
        for (project, level, size) in [
            (Some("tern-prod"), Level::INFO, Some(412)),
            (None, Level::WARN, None),
            (Some("tern-prod"), Level::ERROR, Some(0)),
        ] {
            let access = Access {
                level,
                method: "GET",
                url: "/api/orders/ord_1?x=\"y\"",
                status: 200,
                latency: "0.000815s",
                response_size: size,
                user_agent: "wrk \\ 4",
                remote_ip: "10.0.0.7",
                protocol: "HTTP/1.1",
                request_id: "r-1",
                trace: &tc,
                location: (file!(), 1, crate::stack::TARGET),
            };
            let through_event = capture(project, || {
                let span = tracing::info_span!(
                    "request",
                    request_id = access.request_id,
                    trace_id = tc.trace_id.as_str(),
                    span_id = tc.span_id.as_str(),
                    trace_sampled = tc.sampled,
                );
                let _g = span.enter();
                crate::stack::access_event(&access);
            });
            let out = Capture::default();
            CloudLogging::new(out.clone(), &identity, project).access(&access);
            let direct = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert_eq!(direct.lines().count(), 1);
            let mut direct: Value = serde_json::from_str(&direct).unwrap();
            let mut event = through_event[0].clone();
            for l in [&mut direct, &mut event] {
                let o = l.as_object_mut().unwrap();
                assert!(o.remove("time").unwrap().as_str().unwrap().ends_with('Z'));
                // Both from the access log's module, at lines of their own.
                let at = &mut o["logging.googleapis.com/sourceLocation"];
                assert_eq!(at["function"], crate::stack::TARGET);
                at["line"] = Value::Null;
                at["file"] = Value::Null;
            }
            assert_eq!(direct, event, "{project:?} {level}");
        }
    }

    #[test]
    fn no_trace_without_a_project() {
        let lines = capture(None, || {
            let span =
                tracing::info_span!("request", trace_id = "4bf92f3577b34da6a3ce929d0e0e4736");
            let _g = span.enter();
            tracing::error!("boom");
        });
        assert_eq!(lines[0]["severity"], "ERROR");
        assert!(lines[0].get("logging.googleapis.com/trace").is_none());
        assert!(lines[0].get("trace_id").is_none());
    }

    #[test]
    fn values_are_escaped_and_event_fields_win() {
        let lines = capture(None, || {
            let span = tracing::info_span!("request", user = "span", depth = 1u64);
            let _g = span.enter();
            tracing::info!(
                user = "event",
                quote = "say \"hi\"\\ back\n\ttab \u{1} é",
                ratio = 0.5f64,
                ok = false,
                negative = -3i64,
                http.url = "/a?b=\"c\"",
                "line \"one\"\nline two"
            );
        });
        assert_eq!(lines.len(), 1, "one line, valid JSON");
        let l = &lines[0];
        assert_eq!(l["message"], "line \"one\"\nline two");
        assert_eq!(l["user"], "event", "the event's field wins over the span's");
        assert_eq!(l["depth"], 1);
        assert_eq!(l["quote"], "say \"hi\"\\ back\n\ttab \u{1} é");
        assert_eq!(l["ratio"], 0.5);
        assert_eq!(l["ok"], false);
        assert_eq!(l["negative"], -3);
        assert_eq!(l["httpRequest"]["requestUrl"], "/a?b=\"c\"");
    }
}
