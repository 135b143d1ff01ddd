//! Events in, from any producer, in three shapes a handler can take (`docs/events.md`, "Which
//! producers get which"):
//!
//! - [`DomainEvent`]: a CloudEvent with JSON data: Tern's own events, and any producer that
//!   publishes CloudEvents with JSON data. The convenient path.
//! - [`CloudEvent`]: any CloudEvent 1.0, with its `datacontenttype`, `dataschema`, extensions
//!   and data of any content type (JSON, text or bytes).
//! - [`PubSubMessage`]: a plain Pub/Sub message, whatever its producer (`gcloud pubsub topics
//!   publish`, a client library, Cloud Storage notifications, Cloud Build): data as bytes, the
//!   attributes, ordering key, message id, publish time and delivery attempt.
//!
//! Each is an axum extractor and accepts every way the message can arrive: a Pub/Sub push
//! request (`{"message": {...}, "subscription": "..."}`), Eventarc's
//! `google.cloud.pubsub.topic.v1.messagePublished` CloudEvent carrying that same message, and,
//! for the CloudEvent shapes, a CloudEvent POSTed directly in binary or structured mode (Knative
//! Eventing). A Pub/Sub message carries its CloudEvent in the Pub/Sub protocol binding: `ce-*`
//! attributes and the data (binary mode), or the whole event as `application/cloudevents+json`
//! data (structured mode).
//!
//! Anything malformed is a 400 `invalid-event` problem (415 for a content type that is neither):
//! a permanent failure that Pub/Sub retries up to the subscription's budget and then moves to
//! the dead-letter topic.

use crate::MESSAGE_PUBLISHED;
use axum::extract::{FromRequest, Request};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Data, Event};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use tern::Problem;

/// The CloudEvent a producer published, with JSON data, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainEvent {
    /// `id`: unique per `source`; the idempotency key of the effect.
    pub id: String,
    /// `source`.
    pub source: String,
    /// `type`, such as `com.example.payment.completed`.
    pub ty: String,
    /// `subject`, if any.
    pub subject: Option<String>,
    /// `time`, if any.
    pub time: Option<DateTime<Utc>>,
    /// The JSON data.
    pub data: serde_json::Value,
    /// The Pub/Sub delivery, when it came through Pub/Sub.
    pub delivery: Option<Delivery>,
}

/// Pub/Sub's side of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The Pub/Sub message id.
    pub message_id: String,
    /// The subscription that delivered it.
    pub subscription: String,
    /// When it was published.
    pub publish_time: Option<DateTime<Utc>>,
    /// The message's ordering key, when it was published with one.
    pub ordering_key: Option<String>,
    /// How many times Pub/Sub has tried to deliver it (push subscriptions with a dead-letter
    /// policy say so; 1 on the first try).
    pub delivery_attempt: Option<u32>,
}

impl DomainEvent {
    /// The data as `T`; a mismatch is a 422 `invalid-event` problem (permanent).
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        serde_json::from_value(self.data.clone()).map_err(|e| {
            invalid(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the event data does not fit type {}: {e}", self.ty),
            )
        })
    }
}

/// A CloudEvent's data, as it came.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// JSON (`datacontenttype` `application/json` or `…+json`, or a structured-mode event's
    /// `data` member).
    Json(serde_json::Value),
    /// Text (`data` of a structured-mode event that is a JSON string, not JSON content).
    Text(String),
    /// Bytes, in any other content type (`data_base64`, a binary-mode body, a Pub/Sub message's
    /// data).
    Binary(Bytes),
}

/// Any CloudEvent 1.0, with everything it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// `id`.
    pub id: String,
    /// `source`.
    pub source: String,
    /// `type`.
    pub ty: String,
    /// `subject`.
    pub subject: Option<String>,
    /// `time`.
    pub time: Option<DateTime<Utc>>,
    /// `datacontenttype`, such as `application/json` or `application/avro`.
    pub datacontenttype: Option<String>,
    /// `dataschema`: a URI of the schema the data follows.
    pub dataschema: Option<String>,
    /// Extension attributes (`traceparent`, `partitionkey`, a producer's own), by name, as text.
    pub extensions: BTreeMap<String, String>,
    /// The data, if any.
    pub data: Option<EventData>,
    /// The Pub/Sub delivery, when it came through Pub/Sub.
    pub delivery: Option<Delivery>,
}

impl CloudEvent {
    /// The data as JSON: JSON data as it is, text or bytes parsed as JSON; a 400 `invalid-event`
    /// problem when there is none or it is not JSON.
    pub fn data_json(&self) -> Result<serde_json::Value, Problem> {
        json_of(self.data.as_ref())
    }

    /// The data as bytes, whatever its kind (JSON serialized compactly).
    pub fn data_bytes(&self) -> Bytes {
        match &self.data {
            Some(EventData::Json(v)) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            Some(EventData::Text(s)) => Bytes::from(s.clone()),
            Some(EventData::Binary(b)) => b.clone(),
            None => Bytes::new(),
        }
    }

    /// The convenient shape: a 400 `invalid-event` problem unless the data is JSON.
    pub fn into_domain(self) -> Result<DomainEvent, Problem> {
        let data = self.data_json()?;
        Ok(DomainEvent {
            id: self.id,
            source: self.source,
            ty: self.ty,
            subject: self.subject,
            time: self.time,
            data,
            delivery: self.delivery,
        })
    }
}

/// A Pub/Sub message as a push subscription or Eventarc delivers it, whatever its producer.
#[derive(Debug, Clone, PartialEq)]
pub struct PubSubMessage {
    /// The data, as published.
    pub data: Bytes,
    /// The attributes.
    pub attributes: BTreeMap<String, String>,
    /// The ordering key, when it was published with one.
    pub ordering_key: Option<String>,
    /// The Pub/Sub message id: unique per topic, the idempotency key of the effect.
    pub message_id: String,
    /// When it was published.
    pub publish_time: Option<DateTime<Utc>>,
    /// How many times Pub/Sub has tried to deliver it (with a dead-letter policy).
    pub delivery_attempt: Option<u32>,
    /// `projects/P/subscriptions/S`.
    pub subscription: String,
}

/// Data as JSON: JSON as it is, text or bytes parsed; a 400 problem when absent or not JSON.
fn json_of(data: Option<&EventData>) -> Result<serde_json::Value, Problem> {
    let not_json = |e: serde_json::Error| {
        invalid(
            StatusCode::BAD_REQUEST,
            format!("the event data is not JSON: {e}"),
        )
    };
    match data {
        Some(EventData::Json(v)) => Ok(v.clone()),
        Some(EventData::Text(s)) => serde_json::from_str(s).map_err(not_json),
        Some(EventData::Binary(b)) => serde_json::from_slice(b).map_err(not_json),
        None => Err(invalid(StatusCode::BAD_REQUEST, "the event has no data")),
    }
}

fn invalid(status: StatusCode, detail: impl Into<String>) -> Problem {
    Problem::new(status, "invalid-event", "The event is not valid").with_detail(detail)
}

/// The Pub/Sub push request body (and the data of a `messagePublished` CloudEvent).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushEnvelope {
    /// The message.
    pub message: PushMessage,
    /// `projects/P/subscriptions/S`.
    pub subscription: String,
    /// Delivery attempts so far (push subscriptions with a dead-letter policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_attempt: Option<u32>,
}

impl PushEnvelope {
    /// The body a push subscription sends for `message` (attributes, base64 data, both
    /// spellings of the id and the publish time) on its `attempt`th delivery.
    pub fn for_message(
        message: &google_cloud_pubsub::model::Message,
        subscription: String,
        attempt: Option<u32>,
    ) -> Self {
        let publish_time = message
            .publish_time
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds(), t.nanos() as u32))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        Self {
            message: PushMessage {
                data: B64.encode(&message.data),
                attributes: message
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                message_id: message.message_id.clone(),
                publish_time: publish_time.clone(),
                ordering_key: Some(message.ordering_key.clone()).filter(|k| !k.is_empty()),
                // Google's push requests carry both spellings; so do these.
                message_id_snake: Some(message.message_id.clone()),
                publish_time_snake: publish_time,
                ..PushMessage::default()
            },
            subscription,
            // What a push subscription with a dead-letter policy sends.
            delivery_attempt: attempt,
        }
    }

    /// The body a push subscription sends for `event` published now, on its first delivery: what
    /// a consumer's tests post to it. The message id is the event's id.
    pub fn for_event(event: &crate::OutgoingEvent, subscription: String) -> Self {
        let message = event.to_message().set_message_id(event.id.clone());
        let mut envelope = Self::for_message(&message, subscription, Some(1));
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        envelope.message.publish_time = Some(now.clone());
        envelope.message.publish_time_snake = Some(now);
        envelope
    }
}

/// One Pub/Sub message as push delivers it. Google's push requests carry the id and the publish
/// time twice, as `messageId` and `message_id`, `publishTime` and `publish_time`; either
/// spelling is read (serde aliases would refuse a body with both as a duplicate field).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushMessage {
    /// Base64 of the data.
    #[serde(default)]
    pub data: String,
    /// The attributes.
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    /// The message id.
    #[serde(default)]
    pub message_id: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_time: Option<String>,
    /// The ordering key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// `message_id`, the second spelling push requests carry.
    #[serde(
        default,
        rename = "message_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub message_id_snake: Option<String>,
    /// `publish_time`, the second spelling.
    #[serde(
        default,
        rename = "publish_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub publish_time_snake: Option<String>,
    /// `ordering_key`, the second spelling.
    #[serde(
        default,
        rename = "ordering_key",
        skip_serializing_if = "Option::is_none"
    )]
    pub ordering_key_snake: Option<String>,
}

/// Tells the runtime's metrics that this request is an event delivery, and of which type (empty
/// when it could not be decoded: it counts as a permanent failure).
fn noted<T>(decoded: Result<T, Problem>, ty: impl Fn(&T) -> &str) -> Result<T, Problem> {
    match &decoded {
        Ok(e) => tern::platform::note_event(ty(e)),
        Err(_) => tern::platform::note_event(""),
    }
    decoded
}

/// Continues the trace the event arrived with (its `traceparent`), so the consumer's log lines
/// and the events it stages belong to the producer's trace. A malformed value is ignored.
fn follow(traceparent: Option<&String>) {
    if let Some(t) = traceparent {
        tern::platform::continue_trace(t);
    }
}

/// The type counted for a plain Pub/Sub message, which has none of its own.
const MESSAGE_TYPE: &str = crate::MESSAGE_PUBLISHED;

impl<S: Send + Sync> FromRequest<S> for DomainEvent {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Problem> {
        let headers = req.headers().clone();
        let body = tern::platform::read_body(req).await?;
        let event = noted(decode_cloudevent(&headers, &body), |e| e.ty.as_str())?;
        follow(event.extensions.get("traceparent"));
        event.into_domain()
    }
}

impl<S: Send + Sync> FromRequest<S> for CloudEvent {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Problem> {
        let headers = req.headers().clone();
        let body = tern::platform::read_body(req).await?;
        let event = noted(decode_cloudevent(&headers, &body), |e| e.ty.as_str())?;
        follow(event.extensions.get("traceparent"));
        Ok(event)
    }
}

impl<S: Send + Sync> FromRequest<S> for PubSubMessage {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Problem> {
        let headers = req.headers().clone();
        let body = tern::platform::read_body(req).await?;
        let message = noted(decode_message(&headers, &body), |_| MESSAGE_TYPE)?;
        follow(
            ["ce-traceparent", "traceparent", "googclient_traceparent"]
                .iter()
                .find_map(|k| message.attributes.get(*k)),
        );
        Ok(message)
    }
}

/// How a request carries what it carries.
enum Arrival {
    /// A CloudEvent over HTTP (binary or structured mode) that is not a Pub/Sub delivery.
    Direct(Event),
    /// A Pub/Sub message: a push request, or Eventarc's `messagePublished` event.
    PubSub(PushEnvelope),
}

fn arrival(headers: &HeaderMap, body: &[u8]) -> Result<Arrival, Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_cloudevent = headers.contains_key("ce-specversion")
        || headers.contains_key("ce-id")
        || headers.contains_key("ce-type")
        || content_type.starts_with("application/cloudevents+json");
    if is_cloudevent {
        let event = cloudevents::binding::http::to_event(headers, body.to_vec()).map_err(|e| {
            invalid(
                StatusCode::BAD_REQUEST,
                format!("not a valid CloudEvent: {e}"),
            )
        })?;
        check_version(&event)?;
        if event.ty() == MESSAGE_PUBLISHED {
            let data = json_of(event_data(&event).as_ref())?;
            let envelope: PushEnvelope = serde_json::from_value(data).map_err(|e| {
                invalid(
                    StatusCode::BAD_REQUEST,
                    format!("messagePublished data is not a Pub/Sub message: {e}"),
                )
            })?;
            return Ok(Arrival::PubSub(envelope));
        }
        return Ok(Arrival::Direct(event));
    }
    if content_type.starts_with("application/json") {
        let envelope: PushEnvelope = tern::platform::parse_json(body).map_err(|p| {
            invalid(
                StatusCode::BAD_REQUEST,
                format!(
                    "neither a CloudEvent (no ce-* headers) nor a Pub/Sub push envelope: {}",
                    p.detail().unwrap_or_default()
                ),
            )
        })?;
        return Ok(Arrival::PubSub(envelope));
    }
    Err(invalid(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "send a CloudEvent (binary or structured mode) or a Pub/Sub push request (application/json)",
    ))
}

/// Decodes a delivery into the convenient shape (JSON data). See the module docs.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<DomainEvent, Problem> {
    decode_cloudevent(headers, body)?.into_domain()
}

/// Decodes a delivery into a CloudEvent with everything it carries. See the module docs.
pub fn decode_cloudevent(headers: &HeaderMap, body: &[u8]) -> Result<CloudEvent, Problem> {
    match arrival(headers, body)? {
        Arrival::Direct(event) => from_event(&event, None),
        Arrival::PubSub(envelope) => {
            let message = message_of(envelope)?;
            cloudevent_of_message(message)
        }
    }
}

/// Decodes a Pub/Sub delivery into the plain message. A CloudEvent that did not come through
/// Pub/Sub is a 400 problem naming the shape that takes it.
pub fn decode_message(headers: &HeaderMap, body: &[u8]) -> Result<PubSubMessage, Problem> {
    match arrival(headers, body)? {
        Arrival::PubSub(envelope) => message_of(envelope),
        Arrival::Direct(event) => Err(invalid(
            StatusCode::BAD_REQUEST,
            format!(
                "a CloudEvent of type {:?}, not a Pub/Sub delivery; take it as a CloudEvent",
                event.ty()
            ),
        )),
    }
}

fn check_version(event: &Event) -> Result<(), Problem> {
    if event.specversion() == cloudevents::event::SpecVersion::V10 {
        Ok(())
    } else {
        Err(invalid(
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported CloudEvents specversion {}; only 1.0 is accepted",
                event.specversion()
            ),
        ))
    }
}

fn event_data(event: &Event) -> Option<EventData> {
    match event.data() {
        Some(Data::Json(v)) => Some(EventData::Json(v.clone())),
        Some(Data::String(s)) => Some(EventData::Text(s.clone())),
        Some(Data::Binary(b)) => Some(EventData::Binary(Bytes::from(b.clone()))),
        None => None,
    }
}

/// A CloudEvent from the SDK's, with the delivery it came in.
fn from_event(event: &Event, delivery: Option<Delivery>) -> Result<CloudEvent, Problem> {
    check_version(event)?;
    Ok(CloudEvent {
        id: event.id().to_owned(),
        source: event.source().to_string(),
        ty: event.ty().to_owned(),
        subject: event.subject().map(str::to_owned),
        time: event.time().copied(),
        datacontenttype: event.datacontenttype().map(str::to_owned),
        dataschema: event.dataschema().map(ToString::to_string),
        extensions: event
            .iter_extensions()
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .collect(),
        data: event_data(event),
        delivery,
    })
}

fn rfc3339(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn message_of(env: PushEnvelope) -> Result<PubSubMessage, Problem> {
    let mut m = env.message;
    if m.message_id.is_empty() {
        m.message_id = m.message_id_snake.take().unwrap_or_default();
    }
    if m.message_id.is_empty() {
        return Err(invalid(
            StatusCode::BAD_REQUEST,
            "the Pub/Sub message has no messageId",
        ));
    }
    let publish_time = m.publish_time.take().or(m.publish_time_snake.take());
    let ordering_key = m.ordering_key.take().or(m.ordering_key_snake.take());
    let data = B64.decode(m.data.as_bytes()).map_err(|e| {
        invalid(
            StatusCode::BAD_REQUEST,
            format!("message.data is not valid base64: {e}"),
        )
    })?;
    Ok(PubSubMessage {
        data: Bytes::from(data),
        attributes: m.attributes.into_iter().collect(),
        ordering_key: ordering_key.filter(|k| !k.is_empty()),
        message_id: m.message_id,
        publish_time: publish_time.as_deref().and_then(rfc3339),
        delivery_attempt: env.delivery_attempt,
        subscription: env.subscription,
    })
}

/// The CloudEvent a Pub/Sub message carries (the Pub/Sub protocol binding): `ce-*` attributes
/// and the data in binary mode, or the whole event as data in structured mode.
fn cloudevent_of_message(m: PubSubMessage) -> Result<CloudEvent, Problem> {
    let delivery = Delivery {
        message_id: m.message_id.clone(),
        subscription: m.subscription.clone(),
        publish_time: m.publish_time,
        ordering_key: m.ordering_key.clone(),
        delivery_attempt: m.delivery_attempt,
    };
    let attr = |name: &str| m.attributes.get(name).filter(|v| !v.is_empty()).cloned();
    let content_type = attr("content-type");
    if attr("ce-specversion").is_none()
        && content_type.as_deref().is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/cloudevents+json")
        })
    {
        let event: Event = serde_json::from_slice(&m.data).map_err(|e| {
            invalid(
                StatusCode::BAD_REQUEST,
                format!("the message's data is not a structured-mode CloudEvent: {e}"),
            )
        })?;
        return from_event(&event, Some(delivery));
    }
    let missing = |name: &str| {
        invalid(
            StatusCode::BAD_REQUEST,
            format!(
                "the Pub/Sub message has no {name} attribute (CloudEvents Pub/Sub binding); a plain message is taken as a PubSubMessage"
            ),
        )
    };
    match attr("ce-specversion").as_deref() {
        Some("1.0") => {}
        Some(other) => {
            return Err(invalid(
                StatusCode::BAD_REQUEST,
                format!("unsupported CloudEvents specversion {other:?}; only 1.0 is accepted"),
            ));
        }
        None => return Err(missing("ce-specversion")),
    }
    let id = attr("ce-id").ok_or_else(|| missing("ce-id"))?;
    let source = attr("ce-source").ok_or_else(|| missing("ce-source"))?;
    let ty = attr("ce-type").ok_or_else(|| missing("ce-type"))?;
    let time = match attr("ce-time") {
        Some(t) => Some(rfc3339(&t).ok_or_else(|| {
            invalid(
                StatusCode::BAD_REQUEST,
                format!("ce-time {t:?} is not RFC 3339"),
            )
        })?),
        None => None,
    };
    const KNOWN: [&str; 7] = [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "dataschema",
    ];
    let extensions = m
        .attributes
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("ce-")?, v)))
        .filter(|(k, _)| !KNOWN.contains(k))
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    let is_json = content_type.as_deref().is_none_or(|c| {
        let c = c.to_ascii_lowercase();
        let essence = c.split(';').next().unwrap_or("").trim();
        essence == "application/json" || essence.ends_with("+json") || essence == "text/json"
    });
    let data = if m.data.is_empty() {
        None
    } else if is_json {
        // JSON by its content type (or none given): kept as JSON when it parses, as the bytes
        // otherwise, so that `data_json` reports the error and `data_bytes` still has them.
        Some(
            serde_json::from_slice(&m.data)
                .map(EventData::Json)
                .unwrap_or(EventData::Binary(m.data.clone())),
        )
    } else {
        Some(EventData::Binary(m.data.clone()))
    };
    Ok(CloudEvent {
        id,
        source,
        ty,
        subject: attr("ce-subject"),
        time,
        datacontenttype: content_type,
        dataschema: attr("ce-dataschema"),
        extensions,
        data,
        delivery: Some(delivery),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn push_body(attrs: serde_json::Value, data: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "message": {"data": data, "attributes": attrs, "messageId": "42", "publishTime": "2026-11-23T10:00:00Z"},
            "subscription": "projects/p/subscriptions/payments-events"
        }))
        .unwrap()
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h
    }

    fn ce_attrs() -> serde_json::Value {
        json!({"ce-specversion": "1.0", "ce-id": "pay-1", "ce-source": "//payments", "ce-type": "com.example.payment.completed", "content-type": "application/json"})
    }

    #[test]
    fn push_envelope_yields_the_inner_event() {
        let data = B64.encode(br#"{"order_id":"ord_1"}"#);
        let ev = decode(&json_headers(), &push_body(ce_attrs(), &data)).unwrap();
        assert_eq!(ev.id, "pay-1");
        assert_eq!(ev.ty, "com.example.payment.completed");
        assert_eq!(ev.data["order_id"], "ord_1");
        assert_eq!(ev.delivery.unwrap().message_id, "42");
    }

    #[test]
    fn binary_message_published_equals_push() {
        let data = B64.encode(br#"{"order_id":"ord_1"}"#);
        let body = push_body(ce_attrs(), &data);
        let mut h = json_headers();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "42"),
            (
                "ce-source",
                "//pubsub.googleapis.com/projects/p/topics/payments",
            ),
            ("ce-type", MESSAGE_PUBLISHED),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let a = decode(&h, &body).unwrap();
        let b = decode(&json_headers(), &body).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_direct_cloudevent_is_the_domain_event() {
        let mut h = json_headers();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "e1"),
            ("ce-source", "//x"),
            ("ce-type", "com.example.payment.failed"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let ev = decode(&h, br#"{"order_id":"o"}"#).unwrap();
        assert_eq!(ev.ty, "com.example.payment.failed");
        assert!(ev.delivery.is_none());
    }

    #[test]
    fn bad_events_are_4xx() {
        let data = B64.encode(b"{}");
        // Missing ce-id in binary mode.
        let mut h = json_headers();
        h.insert("ce-specversion", "1.0".parse().unwrap());
        h.insert("ce-source", "//x".parse().unwrap());
        h.insert("ce-type", "t".parse().unwrap());
        assert_eq!(decode(&h, b"{}").unwrap_err().status(), 400);
        // Unsupported specversion.
        let mut h = json_headers();
        for (k, v) in [
            ("ce-specversion", "0.1"),
            ("ce-id", "1"),
            ("ce-source", "//x"),
            ("ce-type", "t"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        assert_eq!(decode(&h, b"{}").unwrap_err().status(), 400);
        // Invalid base64 in a push envelope.
        let p = decode(&json_headers(), &push_body(ce_attrs(), "%%%not base64")).unwrap_err();
        assert_eq!(p.status(), 400);
        assert!(p.detail().unwrap().contains("base64"));
        // Push message without CloudEvents attributes.
        let p = decode(&json_headers(), &push_body(json!({}), &data)).unwrap_err();
        assert!(p.detail().unwrap().contains("ce-specversion"));
        // Neither.
        assert_eq!(decode(&HeaderMap::new(), b"x").unwrap_err().status(), 415);
        assert_eq!(decode(&json_headers(), b"[1]").unwrap_err().status(), 400);
    }

    #[test]
    fn a_plain_message_is_a_pubsub_message_not_a_domain_event() {
        let body = serde_json::to_vec(&json!({
            "message": {"data": B64.encode(b"\x00\xffraw"), "attributes": {"eventType": "OBJECT_FINALIZE"},
                        "messageId": "9", "publishTime": "2026-11-23T10:00:00Z", "orderingKey": "bucket-a"},
            "subscription": "projects/p/subscriptions/uploads",
            "deliveryAttempt": 3
        }))
        .unwrap();
        let m = decode_message(&json_headers(), &body).unwrap();
        assert_eq!(&m.data[..], b"\x00\xffraw");
        assert_eq!(m.attributes["eventType"], "OBJECT_FINALIZE");
        assert_eq!(m.ordering_key.as_deref(), Some("bucket-a"));
        assert_eq!(m.delivery_attempt, Some(3));
        assert_eq!(m.message_id, "9");
        assert!(m.publish_time.is_some());
        let p = decode(&json_headers(), &body).unwrap_err();
        assert_eq!(p.status(), 400);
        assert!(p.detail().unwrap().contains("PubSubMessage"), "{p:?}");
    }

    #[test]
    fn a_structured_cloudevent_in_a_pubsub_message() {
        let event = json!({"specversion": "1.0", "id": "s-1", "source": "//x", "type": "t.structured",
                           "datacontenttype": "text/plain", "data": "hello", "region": "eu"});
        let body = push_body(
            json!({"content-type": "application/cloudevents+json; charset=utf-8"}),
            &B64.encode(serde_json::to_vec(&event).unwrap()),
        );
        let e = decode_cloudevent(&json_headers(), &body).unwrap();
        assert_eq!((e.id.as_str(), e.ty.as_str()), ("s-1", "t.structured"));
        assert_eq!(e.datacontenttype.as_deref(), Some("text/plain"));
        assert_eq!(e.extensions["region"], "eu");
        assert_eq!(&e.data_bytes()[..], b"hello");
        assert_eq!(e.delivery.unwrap().message_id, "42");
    }

    #[test]
    fn a_direct_cloudevent_keeps_everything_it_carries() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "k-1"),
            ("ce-source", "//knative/eventing"),
            ("ce-type", "dev.knative.example"),
            ("ce-dataschema", "https://schemas.example.com/x"),
            ("ce-partitionkey", "p-7"),
            ("content-type", "application/octet-stream"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let e = decode_cloudevent(&h, b"\x01\x02").unwrap();
        assert_eq!(
            e.dataschema.as_deref(),
            Some("https://schemas.example.com/x")
        );
        assert_eq!(e.extensions["partitionkey"], "p-7");
        assert_eq!(
            e.datacontenttype.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(&e.data_bytes()[..], b"\x01\x02");
        assert!(e.delivery.is_none());
        // Not a Pub/Sub delivery: the plain-message shape refuses it, saying which one takes it.
        let p = decode_message(&h, b"\x01\x02").unwrap_err();
        assert!(
            p.detail().unwrap().contains("take it as a CloudEvent"),
            "{p:?}"
        );
    }

    /// A push request as Google sends it: the id and the publish time in both spellings.
    #[test]
    fn googles_push_body_with_both_spellings() {
        let body = br#"{"message":{"attributes":{"ce-specversion":"1.0","ce-id":"pay-1","ce-source":"//payments","ce-type":"com.example.payment.completed"},
            "data":"eyJvcmRlcl9pZCI6Im9yZF8xIn0=","messageId":"2070443601311540","message_id":"2070443601311540",
            "publishTime":"2021-02-26T19:13:55.749Z","publish_time":"2021-02-26T19:13:55.749Z"},
            "subscription":"projects/myproject/subscriptions/mysubscription"}"#;
        let ev = decode(&json_headers(), body).unwrap();
        assert_eq!(ev.data["order_id"], "ord_1");
        let d = ev.delivery.unwrap();
        assert_eq!(d.message_id, "2070443601311540");
        assert!(d.publish_time.is_some());
        // Only the snake-case spelling: still read.
        let body = br#"{"message":{"data":"","message_id":"7","publish_time":"2021-02-26T19:13:55.749Z"},"subscription":"s"}"#;
        let m = decode_message(&json_headers(), body).unwrap();
        assert_eq!(m.message_id, "7");
        assert!(m.publish_time.is_some());
    }
}
