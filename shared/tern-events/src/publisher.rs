//! Events out to Pub/Sub, through Google's official `google-cloud-pubsub` crate.
//!
//! The crate does not read `PUBSUB_EMULATOR_HOST`; this module does. When it is set, the client
//! talks plain gRPC to that address with anonymous credentials, as the other Google client
//! libraries do.
//!
//! Each message carries its CloudEvent in the Pub/Sub protocol binding's binary form: the data
//! is the event data, and the attributes are `ce-specversion`, `ce-id`, `ce-source`, `ce-type`,
//! `ce-time`, `ce-subject` and `content-type`. Any subscriber therefore receives a CloudEvent.

use crate::metrics::{PublishMetrics, PublishResult};
use chrono::{DateTime, SecondsFormat, Utc};
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_pubsub::client::{BasePublisher, Publisher};
use google_cloud_pubsub::model::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern::{ConfigError, Env};

/// An event to publish.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    /// `id`.
    pub id: String,
    /// `source`.
    pub source: String,
    /// `type`.
    pub ty: String,
    /// `subject`.
    pub subject: Option<String>,
    /// `time`.
    pub time: DateTime<Utc>,
    /// JSON data.
    pub data: serde_json::Value,
    /// The trace it continues (W3C `traceparent`; the CloudEvents distributed-tracing
    /// extension), published as the `ce-traceparent` attribute.
    pub traceparent: Option<String>,
}

impl OutgoingEvent {
    /// The Pub/Sub message for this event (CloudEvents Pub/Sub binding, binary mode).
    pub fn to_message(&self) -> Message {
        let mut attrs: Vec<(&str, String)> = vec![
            ("ce-specversion", "1.0".to_owned()),
            ("ce-id", self.id.clone()),
            ("ce-source", self.source.clone()),
            ("ce-type", self.ty.clone()),
            (
                "ce-time",
                self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            ("content-type", "application/json".to_owned()),
        ];
        if let Some(s) = &self.subject {
            attrs.push(("ce-subject", s.clone()));
        }
        if let Some(t) = &self.traceparent {
            attrs.push(("ce-traceparent", t.clone()));
        }
        Message::new()
            .set_data(serde_json::to_vec(&self.data).unwrap_or_default())
            .set_attributes(attrs)
    }
}

/// How long one publish may retry unless `PUBSUB_PUBLISH_TIMEOUT` says otherwise.
const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Pub/Sub settings.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    /// `PUBSUB_PROJECT`, else `GOOGLE_CLOUD_PROJECT`: the project the topics live in.
    pub project: String,
    /// `PUBSUB_EMULATOR_HOST`: `host:port` of an emulator.
    pub emulator_host: Option<String>,
    /// `PUBSUB_PUBLISH_TIMEOUT` (default 5s): how long one publish may retry before the
    /// event is left to the outbox relay.
    pub publish_timeout: Duration,
}

impl PubSubConfig {
    /// The settings for the emulator at `host` (`host:port`) and project `project`, with the
    /// default publish timeout: what local runs, tests and the bench use.
    pub fn emulator(host: impl Into<String>, project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            emulator_host: Some(host.into()),
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
        }
    }

    /// The same settings with another publish timeout.
    #[must_use]
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Reads the settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let project = match env.optional::<String>("PUBSUB_PROJECT")? {
            Some(p) => p,
            None => env
                .optional::<String>("GOOGLE_CLOUD_PROJECT")?
                .ok_or_else(|| {
                    ConfigError::new(
                        "PUBSUB_PROJECT",
                        "is required (or GOOGLE_CLOUD_PROJECT) but not set",
                    )
                })?,
        };
        if project.contains('/') || project.contains(' ') {
            return Err(ConfigError::new(
                "PUBSUB_PROJECT",
                format!("{project:?} is not a project id"),
            ));
        }
        let emulator_host: Option<String> = env.optional("PUBSUB_EMULATOR_HOST")?;
        if let Some(h) = &emulator_host
            && (!h.contains(':') || h.contains("://"))
        {
            return Err(ConfigError::new(
                "PUBSUB_EMULATOR_HOST",
                format!("expected host:port, got {h:?}"),
            ));
        }
        Ok(Self {
            project,
            emulator_host,
            publish_timeout: env.or("PUBSUB_PUBLISH_TIMEOUT", DEFAULT_PUBLISH_TIMEOUT)?,
        })
    }

    /// `projects/P/topics/T`.
    pub fn topic_path(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    /// `projects/P/subscriptions/S`.
    pub fn subscription_path(&self, sub: &str) -> String {
        format!("projects/{}/subscriptions/{sub}", self.project)
    }

    /// The gRPC endpoint, and whether credentials are anonymous (emulator).
    pub fn endpoint(&self) -> Option<String> {
        self.emulator_host.as_ref().map(|h| format!("http://{h}"))
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[error("publishing to {topic} failed: {reason}")]
pub struct PublishError {
    /// The topic.
    pub topic: String,
    /// What went wrong.
    pub reason: String,
    /// Pub/Sub refused this message for a reason that retrying will not change (the topic does
    /// not exist, permission denied, the message is invalid or too large). A timeout or an
    /// unreachable Pub/Sub is not permanent: it is an outage, which only delays.
    pub permanent: bool,
}

/// Whether Pub/Sub's answer says the message itself (or its topic) is the problem.
fn is_permanent(e: &google_cloud_pubsub::error::PublishError) -> bool {
    use google_cloud_gax::error::rpc::Code;
    let google_cloud_pubsub::error::PublishError::Rpc(inner) = e else {
        return false;
    };
    inner.status().is_some_and(|s| {
        matches!(
            s.code,
            Code::NotFound
                | Code::InvalidArgument
                | Code::PermissionDenied
                | Code::FailedPrecondition
                | Code::OutOfRange
                | Code::Unimplemented
        )
    })
}

/// Publishes events to topics, one batching `Publisher` per topic, created on first use.
#[derive(Clone)]
pub struct EventPublisher {
    cfg: PubSubConfig,
    base: BasePublisher,
    topics: Arc<Mutex<HashMap<String, Publisher>>>,
    metrics: Option<PublishMetrics>,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl EventPublisher {
    /// A publisher for `cfg`. Does not connect until the first publish.
    pub async fn new(cfg: PubSubConfig) -> Result<Self, String> {
        let mut builder = BasePublisher::builder().with_retry_policy(
            google_cloud_pubsub::retry_policy::RetryableErrors.with_time_limit(cfg.publish_timeout),
        );
        if let Some(endpoint) = cfg.endpoint() {
            builder = builder.with_endpoint(endpoint).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let base = builder
            .build()
            .await
            .map_err(|e| format!("cannot create the Pub/Sub client: {e}"))?;
        Ok(Self {
            cfg,
            base,
            topics: Arc::new(Mutex::new(HashMap::new())),
            metrics: None,
        })
    }

    /// Times every publish into `metrics` (`messaging_client_*`).
    pub fn with_metrics(mut self, metrics: &tern::metrics::Metrics) -> Self {
        self.metrics = Some(PublishMetrics::register(metrics));
        self
    }

    /// The settings.
    pub fn config(&self) -> &PubSubConfig {
        &self.cfg
    }

    fn publisher(&self, topic: &str) -> Publisher {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| {
                self.base
                    .publisher(self.cfg.topic_path(topic))
                    // Outbox rows are published in batches already; keep latency low.
                    .set_delay_threshold(Duration::from_millis(1))
                    .build()
            })
            .clone()
    }

    /// Publishes one event and returns the Pub/Sub message id.
    pub async fn publish(
        &self,
        topic: &str,
        event: &OutgoingEvent,
    ) -> Result<String, PublishError> {
        let start = std::time::Instant::now();
        let result = self.publish_once(topic, event).await;
        if let Some(m) = &self.metrics {
            let outcome = match &result {
                Ok(_) => PublishResult::Ok,
                Err(e) if e.permanent => PublishResult::Rejected,
                Err(_) => PublishResult::Unavailable,
            };
            m.published(topic, start.elapsed(), outcome);
        }
        result
    }

    async fn publish_once(
        &self,
        topic: &str,
        event: &OutgoingEvent,
    ) -> Result<String, PublishError> {
        let fut = self.publisher(topic).publish(event.to_message());
        // The client's retry policy gives up after `publish_timeout`; the outer timeout is a
        // backstop for a connection that hangs without failing.
        match tokio::time::timeout(self.cfg.publish_timeout + Duration::from_secs(1), fut).await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(PublishError {
                topic: topic.to_owned(),
                reason: e.to_string(),
                permanent: is_permanent(&e),
            }),
            Err(_) => Err(PublishError {
                topic: topic.to_owned(),
                reason: format!("no answer within {:?}", self.cfg.publish_timeout),
                permanent: false,
            }),
        }
    }

    /// Sends whatever is batched. Called at shutdown.
    pub async fn flush(&self) {
        let publishers: Vec<Publisher> = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for p in publishers {
            p.flush().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let env = Env::from_pairs([
            ("GOOGLE_CLOUD_PROJECT", "tern-dev"),
            ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
        ]);
        let c = PubSubConfig::from_env(&env).unwrap();
        assert_eq!(c.topic_path("orders"), "projects/tern-dev/topics/orders");
        assert_eq!(c.endpoint().as_deref(), Some("http://127.0.0.1:8085"));
        assert_eq!(
            PubSubConfig::from_env(&Env::default()).unwrap_err().var,
            "PUBSUB_PROJECT"
        );
        let env = Env::from_pairs([
            ("PUBSUB_PROJECT", "p"),
            ("PUBSUB_EMULATOR_HOST", "http://x:1"),
        ]);
        assert_eq!(
            PubSubConfig::from_env(&env).unwrap_err().var,
            "PUBSUB_EMULATOR_HOST"
        );
    }

    #[test]
    fn messages_carry_cloudevent_attributes() {
        let ev = OutgoingEvent {
            id: "e1".into(),
            source: "//tern/orders-create".into(),
            ty: "com.example.order.created".into(),
            subject: Some("ord_1".into()),
            time: DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            data: serde_json::json!({"a": 1}),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".into()),
        };
        let m = ev.to_message();
        assert_eq!(
            m.attributes["ce-traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
        assert_eq!(m.attributes["ce-specversion"], "1.0");
        assert_eq!(m.attributes["ce-type"], "com.example.order.created");
        assert_eq!(m.attributes["ce-subject"], "ord_1");
        assert_eq!(m.attributes["ce-time"], "2026-11-23T10:00:00.000000Z");
        assert_eq!(&m.data[..], br#"{"a":1}"#);
    }
}
