//! Delivers subscription messages to consumer functions the way Google Cloud does: as Pub/Sub
//! push requests, or as the binary-mode CloudEvents Eventarc sends. 2xx acknowledges; anything
//! else, or no answer within the ack deadline, is retried with exponential backoff (1s, 2s, 4s
//! ... capped at 60s), and after `max_attempts` the message goes to the topic's dead-letter
//! topic, like a subscription's dead-letter policy.

use crate::pubsub::{self, dead_letter_topic};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern_events::{EventPublisher, MESSAGE_PUBLISHED, OutgoingEvent, PubSubConfig, PushEnvelope};

/// How deliveries are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pub/Sub push requests (`{"message": ..., "subscription": ...}`), as a push subscription sends.
    Push,
    /// Binary-mode CloudEvents of type messagePublished, as Eventarc sends.
    Cloudevents,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "push" => Ok(Self::Push),
            "cloudevents" => Ok(Self::Cloudevents),
            other => Err(format!("{other:?}: expected push or cloudevents")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Push => "push",
            Self::Cloudevents => "cloudevents",
        })
    }
}

/// How a subscription's messages are delivered: in which form, how many times, how long each
/// push may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Pub/Sub push or Eventarc's CloudEvents.
    pub mode: Mode,
    /// Deliveries before the message is dead-lettered.
    pub max_attempts: u32,
    /// How long a push may go unanswered before it counts as failed and the message is retried,
    /// as a push subscription's ack deadline bounds each push request. Without it, a consumer
    /// that hangs would hold its push slot for ever, and [`PUSH_CONCURRENCY`] of them would stop
    /// the subscription.
    pub ack_deadline: Duration,
}

impl Policy {
    /// `mode` with the local run's dead-letter policy and ack deadline.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            max_attempts: crate::edge::MAX_DELIVERY_ATTEMPTS,
            ack_deadline: ACK_DEADLINE,
        }
    }
}

/// The ack deadline of every subscription, local and in `infra/` (`ack_deadline_seconds`; a
/// test holds the two equal): how long Pub/Sub waits for a push's answer.
pub const ACK_DEADLINE: Duration = Duration::from_secs(60);

/// One subscription's delivery loop.
#[derive(Debug, Clone)]
pub struct Target {
    /// Subscription id.
    pub subscription: String,
    /// Its topic.
    pub topic: String,
    /// Where to POST.
    pub url: String,
}

/// The body and headers of one delivery.
fn request_for(
    mode: Mode,
    cfg: &PubSubConfig,
    target: &Target,
    msg: &Message,
    attempt: u32,
) -> (Vec<(String, String)>, Vec<u8>) {
    let envelope = PushEnvelope::for_message(
        msg,
        cfg.subscription_path(&target.subscription),
        Some(attempt),
    );
    let publish_time = envelope.message.publish_time.clone();
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if mode == Mode::Cloudevents {
        headers.extend([
            ("ce-specversion".to_owned(), "1.0".to_owned()),
            ("ce-id".to_owned(), msg.message_id.clone()),
            (
                "ce-source".to_owned(),
                format!("//pubsub.googleapis.com/{}", cfg.topic_path(&target.topic)),
            ),
            ("ce-type".to_owned(), MESSAGE_PUBLISHED.to_owned()),
        ]);
        if let Some(t) = publish_time {
            headers.push(("ce-time".to_owned(), t));
        }
    }
    (headers, body)
}

/// Pushes one subscription's loop has in flight at once. Pub/Sub push sends concurrently too
/// (and Eventarc through it); Knative's `containerConcurrency` is what bounds a pod.
pub const PUSH_CONCURRENCY: usize = 64;

/// Runs one subscription's delivery loop until `stop` is cancelled: messages pulled over
/// [`pubsub::PULL_STREAMS`] streams, up to [`PUSH_CONCURRENCY`] pushed at once. Once stopped it
/// takes no new message; the pushes in flight finish on their own.
pub async fn run(
    policy: Policy,
    cfg: PubSubConfig,
    target: Target,
    dead_letter: EventPublisher,
    stop: stop::StopToken,
) -> Result<(), String> {
    let subscriber = pubsub::subscriber(&cfg).await?;
    let mut messages = pubsub::pull(&subscriber, &cfg.subscription_path(&target.subscription));
    let push = Arc::new(Push {
        policy,
        cfg,
        target,
        dead_letter,
        stop: stop.clone(),
        client: loopback::client(),
        attempts: Mutex::new(HashMap::new()),
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(PUSH_CONCURRENCY));
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => None,
            n = messages.next() => n,
        };
        let Some(item) = next else {
            in_flight.detach_all();
            return Ok(());
        };
        let (msg, handler) = match item {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(subscription = %push.target.subscription, error = %e, "pull failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => {
                in_flight.detach_all();
                return Ok(());
            }
            s = slots.clone().acquire_owned() => s.map_err(|e| e.to_string())?,
        };
        while let Some(done) = in_flight.try_join_next() {
            if let Err(e) = done {
                // A push that panicked: its message was not acknowledged and comes again.
                tracing::error!(subscription = %push.target.subscription, error = %e, "a push failed");
            }
        }
        let push = push.clone();
        in_flight.spawn(async move {
            push.deliver(msg, handler).await;
            drop(slot);
        });
    }
}

/// What every push of one subscription shares.
struct Push {
    policy: Policy,
    cfg: PubSubConfig,
    target: Target,
    dead_letter: EventPublisher,
    stop: stop::StopToken,
    client: loopback::HttpClient,
    /// Deliveries so far, by message id, for the backoff and the dead-letter policy.
    attempts: Mutex<HashMap<String, u32>>,
}

impl Push {
    fn attempts(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One push: 2xx acknowledges; anything else, or no answer within the ack deadline, is
    /// retried after a backoff, or dead-lettered after `max_attempts`.
    async fn deliver(&self, msg: Message, handler: Handler) {
        let target = &self.target;
        let attempt = {
            let mut attempts = self.attempts();
            let a = attempts.entry(msg.message_id.clone()).or_insert(0);
            *a += 1;
            *a
        };
        let (headers, body) = request_for(self.policy.mode, &self.cfg, target, &msg, attempt);
        let push = loopback::post(&self.client, &target.url, &headers, body);
        // Past the deadline the request is dropped (its connection closed), as Pub/Sub gives up
        // on a push; the consumer may still finish it, which is why consumers are idempotent.
        let answer = tokio::time::timeout(self.policy.ack_deadline, push)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within the ack deadline ({} s)",
                    self.policy.ack_deadline.as_secs_f64()
                ))
            });
        match answer {
            Ok(s) if (200..300).contains(&s) => {
                tracing::info!(subscription = %target.subscription, message_id = %msg.message_id, status = s, "delivered");
                self.attempts().remove(&msg.message_id);
                handler.ack();
            }
            other => {
                let why = match other {
                    Ok(s) => format!("HTTP {s}"),
                    Err(e) => e,
                };
                if attempt >= self.policy.max_attempts {
                    let dlq = dead_letter_topic(&target.topic);
                    tracing::warn!(subscription = %target.subscription, message_id = %msg.message_id, %why, attempts = attempt, topic = %dlq, "giving up: dead-lettered");
                    let event = dead_letter_event(&msg, target);
                    if let Err(e) = self.dead_letter.publish(&dlq, &event).await {
                        tracing::error!(error = %e, "dead-letter publish failed; will redeliver");
                        handler.nack();
                        return;
                    }
                    self.attempts().remove(&msg.message_id);
                    handler.ack();
                } else {
                    let backoff = Duration::from_secs(1u64 << (attempt - 1).min(6))
                        .min(Duration::from_secs(60));
                    tracing::warn!(subscription = %target.subscription, message_id = %msg.message_id, %why, attempt, backoff_s = backoff.as_secs(), "delivery failed; will retry");
                    let stop = self.stop.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {},
                            () = stop.cancelled() => {},
                        }
                        handler.nack();
                    });
                }
            }
        }
    }
}

fn dead_letter_event(msg: &Message, target: &Target) -> OutgoingEvent {
    let attr = |k: &str| msg.attributes.get(k).cloned();
    OutgoingEvent {
        id: attr("ce-id").unwrap_or_else(|| msg.message_id.clone()),
        source: attr("ce-source").unwrap_or_else(|| "//tern/dev".to_owned()),
        ty: attr("ce-type").unwrap_or_else(|| "com.example.unknown".to_owned()),
        subject: Some(format!("dead-lettered from {}", target.subscription)),
        time: chrono::Utc::now(),
        data: serde_json::from_slice(&msg.data)
            .unwrap_or(serde_json::Value::String(B64.encode(&msg.data))),
        traceparent: attr("ce-traceparent"),
    }
}

/// A cancellation token without pulling tokio-util into this crate's API.
pub(crate) mod stop {
    use std::sync::Arc;
    use tokio::sync::watch;

    /// Cancelled once; clones see it.
    #[derive(Clone, Debug)]
    pub struct StopToken(Arc<watch::Sender<bool>>, watch::Receiver<bool>);

    impl Default for StopToken {
        fn default() -> Self {
            let (tx, rx) = watch::channel(false);
            Self(Arc::new(tx), rx)
        }
    }

    impl StopToken {
        /// Cancels.
        pub fn cancel(&self) {
            let _ = self.0.send(true);
        }
        /// Resolves once cancelled.
        pub async fn cancelled(&self) {
            let mut rx = self.1.clone();
            let _ = rx.wait_for(|v| *v).await;
        }
    }
}

/// A tiny HTTP/1.1 client over hyper-util for loopback calls.
pub mod loopback {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    /// The client type.
    pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

    /// A pooled client.
    pub fn client() -> HttpClient {
        Client::builder(TokioExecutor::new()).build_http()
    }

    /// GETs and returns the status (the body is dropped).
    pub async fn get(client: &HttpClient, url: &str) -> Result<u16, String> {
        send(client, http::Request::get(url), url, Vec::new()).await
    }

    /// POSTs and returns the status.
    pub async fn post(
        client: &HttpClient,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<u16, String> {
        let mut req = http::Request::post(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        send(client, req, url, body).await
    }

    async fn send(
        client: &HttpClient,
        req: http::request::Builder,
        url: &str,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let res = client
            .request(req)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(res.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local subscriptions and the deliveries keep the deadline `infra/` gives Pub/Sub's.
    #[test]
    fn the_ack_deadline_is_infras() {
        let tf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../infra/modules/pubsub/main.tf");
        let tf = std::fs::read_to_string(&tf).expect("infra/modules/pubsub/main.tf");
        let deadlines: Vec<u64> = tf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ack_deadline_seconds"))
            .map(|v| {
                v.trim()
                    .trim_start_matches('=')
                    .trim()
                    .parse()
                    .expect("a number")
            })
            .collect();
        assert!(!deadlines.is_empty(), "no ack_deadline_seconds in infra");
        for d in deadlines {
            assert_eq!(d, ACK_DEADLINE.as_secs(), "infra's ack deadline");
        }
    }
}
