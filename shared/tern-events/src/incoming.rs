//! Events in: CloudEvents 1.0 over HTTP (binary and structured mode) and the Pub/Sub push
//! envelope, all turned into the one shape a handler sees: [`DomainEvent`].
//!
//! Pub/Sub deliveries are `google.cloud.pubsub.topic.v1.messagePublished` events, whether they
//! arrive as a push request (`{"message": {...}, "subscription": "..."}`) or as the CloudEvent
//! Eventarc makes of one. Their message carries the producer's own CloudEvent in the Pub/Sub
//! binding's attributes (`ce-id`, `ce-type`, ...) and data; that inner event is what the
//! handler gets. Any other CloudEvent (from Knative Eventing, say) is the domain event itself.
//!
//! Anything malformed is a 400 `invalid-event` problem: a permanent failure that Pub/Sub
//! retries up to the subscription's budget and then moves to the dead-letter topic.

use crate::MESSAGE_PUBLISHED;
use axum::extract::{FromRequest, Request};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Data, Event};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use tern::Problem;

/// The CloudEvent a producer published, with where it came from.
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
}

/// One Pub/Sub message as push delivers it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushMessage {
    /// Base64 of the data.
    #[serde(default)]
    pub data: String,
    /// The attributes.
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    /// The message id.
    #[serde(alias = "message_id")]
    pub message_id: String,
    /// RFC 3339.
    #[serde(default, alias = "publish_time")]
    pub publish_time: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for DomainEvent {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Problem> {
        let headers = req.headers().clone();
        let body = tern::platform::read_body(req).await?;
        decode(&headers, &body)
    }
}

/// Decodes a delivery from its headers and body. See the module docs.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<DomainEvent, Problem> {
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
        return from_cloudevent(event);
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
        return from_envelope(envelope);
    }
    Err(invalid(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "send a CloudEvent (binary or structured mode) or a Pub/Sub push request (application/json)",
    ))
}

fn from_cloudevent(event: Event) -> Result<DomainEvent, Problem> {
    if event.specversion() != cloudevents::event::SpecVersion::V10 {
        return Err(invalid(
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported CloudEvents specversion {}; only 1.0 is accepted",
                event.specversion()
            ),
        ));
    }
    if event.ty() == MESSAGE_PUBLISHED {
        let data = event_json(&event)?;
        let envelope: PushEnvelope = serde_json::from_value(data).map_err(|e| {
            invalid(
                StatusCode::BAD_REQUEST,
                format!("messagePublished data is not a Pub/Sub message: {e}"),
            )
        })?;
        return from_envelope(envelope);
    }
    Ok(DomainEvent {
        id: event.id().to_owned(),
        source: event.source().to_string(),
        ty: event.ty().to_owned(),
        subject: event.subject().map(str::to_owned),
        time: event.time().copied(),
        data: event_json(&event)?,
        delivery: None,
    })
}

fn event_json(event: &Event) -> Result<serde_json::Value, Problem> {
    match event.data() {
        Some(Data::Json(v)) => Ok(v.clone()),
        Some(Data::String(s)) => serde_json::from_str(s).map_err(|e| {
            invalid(
                StatusCode::BAD_REQUEST,
                format!("the event data is not JSON: {e}"),
            )
        }),
        Some(Data::Binary(b)) => serde_json::from_slice(b).map_err(|e| {
            invalid(
                StatusCode::BAD_REQUEST,
                format!("the event data is not JSON: {e}"),
            )
        }),
        None => Err(invalid(StatusCode::BAD_REQUEST, "the event has no data")),
    }
}

fn from_envelope(env: PushEnvelope) -> Result<DomainEvent, Problem> {
    let m = env.message;
    let data = B64.decode(m.data.as_bytes()).map_err(|e| {
        invalid(
            StatusCode::BAD_REQUEST,
            format!("message.data is not valid base64: {e}"),
        )
    })?;
    let attr = |name: &str| m.attributes.get(name).filter(|v| !v.is_empty()).cloned();
    let missing = |name: &str| {
        invalid(
            StatusCode::BAD_REQUEST,
            format!("the Pub/Sub message has no {name} attribute (CloudEvents Pub/Sub binding)"),
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
        Some(t) => Some(
            DateTime::parse_from_rfc3339(&t)
                .map_err(|_| {
                    invalid(
                        StatusCode::BAD_REQUEST,
                        format!("ce-time {t:?} is not RFC 3339"),
                    )
                })?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    let data = serde_json::from_slice(&data).map_err(|e| {
        invalid(
            StatusCode::BAD_REQUEST,
            format!("the message data is not JSON: {e}"),
        )
    })?;
    Ok(DomainEvent {
        id,
        source,
        ty,
        subject: attr("ce-subject"),
        time,
        data,
        delivery: Some(Delivery {
            message_id: m.message_id,
            subscription: env.subscription,
            publish_time: m
                .publish_time
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
        }),
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
}
