//! Pub/Sub against the emulator: create topics and subscriptions, pull, publish.

use google_cloud_pubsub::client::{Subscriber, SubscriptionAdmin, TopicAdmin};
use tern_events::PubSubConfig;

fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

fn already_exists(e: &google_cloud_pubsub::Error) -> bool {
    e.status()
        .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::AlreadyExists)
}

/// Creates topics and subscriptions in the emulator (existing ones are fine).
pub struct Admin {
    cfg: PubSubConfig,
    topics: TopicAdmin,
    subs: SubscriptionAdmin,
}

impl Admin {
    /// An admin client for the emulator in `cfg`.
    pub async fn new(cfg: &PubSubConfig) -> Result<Self, String> {
        let endpoint = cfg.endpoint().ok_or("PUBSUB_EMULATOR_HOST is not set")?;
        let topics = TopicAdmin::builder()
            .with_endpoint(endpoint.clone())
            .with_credentials(anonymous())
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let subs = SubscriptionAdmin::builder()
            .with_endpoint(endpoint)
            .with_credentials(anonymous())
            .build()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            cfg: cfg.clone(),
            topics,
            subs,
        })
    }

    /// Creates topic `name`.
    pub async fn topic(&self, name: &str) -> Result<(), String> {
        match self
            .topics
            .create_topic()
            .set_name(self.cfg.topic_path(name))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if already_exists(&e) => Ok(()),
            Err(e) => Err(format!("create topic {name}: {e}")),
        }
    }

    /// Creates subscription `name` on `topic`.
    pub async fn subscription(&self, name: &str, topic: &str) -> Result<(), String> {
        match self
            .subs
            .create_subscription()
            .set_name(self.cfg.subscription_path(name))
            .set_topic(self.cfg.topic_path(topic))
            .set_ack_deadline_seconds(30)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if already_exists(&e) => Ok(()),
            Err(e) => Err(format!("create subscription {name}: {e}")),
        }
    }
}

/// A streaming-pull client for the emulator.
pub async fn subscriber(cfg: &PubSubConfig) -> Result<Subscriber, String> {
    let endpoint = cfg.endpoint().ok_or("PUBSUB_EMULATOR_HOST is not set")?;
    Subscriber::builder()
        .with_endpoint(endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .map_err(|e| e.to_string())
}
