//! Pub/Sub for a local run: the emulator process (our wrapper of Google's `pstest`), the
//! topology the route table declares, and clients that pull from it.

use crate::process::{die_with_parent, free_port, signal, signal_tree, wait_for_port};
use google_cloud_pubsub::client::{Subscriber, SubscriptionAdmin, TopicAdmin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tern_events::PubSubConfig;
use tern_routes::RouteTable;

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
            .set_ack_deadline_seconds(
                i32::try_from(crate::delivery::ACK_DEADLINE.as_secs()).unwrap_or(i32::MAX),
            )
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

/// Streaming pulls [`pull`] opens on one subscription. pstest hands each stream at most one
/// message per delivery tick (10 ms): one stream caps a subscription at about 100 messages a
/// second, and a burst waits in the emulator. Pub/Sub itself has no such cap (a client opens
/// streams as it needs), so the local run opens enough of them that the tick, not the count,
/// bounds a message's wait.
pub const PULL_STREAMS: usize = 16;

/// One pulled message and what acknowledges it.
pub type Pulled = google_cloud_pubsub::Result<(
    google_cloud_pubsub::model::Message,
    google_cloud_pubsub::subscriber::handler::Handler,
)>;

/// The messages of one subscription over [`PULL_STREAMS`] streaming pulls, merged. Dropping it
/// closes every stream.
pub struct Pull(
    futures::stream::SelectAll<std::pin::Pin<Box<dyn futures::Stream<Item = Pulled> + Send>>>,
);

impl Pull {
    /// The next message of any stream; `None` once every stream has ended.
    pub async fn next(&mut self) -> Option<Pulled> {
        futures::StreamExt::next(&mut self.0).await
    }
}

/// Pulls the subscription at `path` over [`PULL_STREAMS`] streams at once.
pub fn pull(subscriber: &Subscriber, path: &str) -> Pull {
    Pull(futures::stream::select_all((0..PULL_STREAMS).map(|_| {
        let stream: std::pin::Pin<Box<dyn futures::Stream<Item = Pulled> + Send>> =
            Box::pin(futures::stream::unfold(
                subscriber.subscribe(path).build(),
                |mut stream| async move { stream.next().await.map(|item| (item, stream)) },
            ));
        stream
    })))
}

/// The Pub/Sub emulator (`pubsub-emulator`, our wrapper of Google's pstest).
pub struct Emulator {
    /// `host:port`, what `PUBSUB_EMULATOR_HOST` takes.
    pub addr: String,
    child: Option<Child>,
    bin: PathBuf,
}

impl Emulator {
    /// Starts `bin` on `127.0.0.1:port` (0: any free port).
    pub fn start(bin: &Path, port: u16) -> Result<Self, String> {
        if !bin.exists() {
            return Err(format!(
                "{} not found: run scripts/tools first",
                bin.display()
            ));
        }
        let port = if port == 0 { free_port() } else { port };
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.args(["--addr", &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd, libc::SIGTERM);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        wait_for_port(&addr, Duration::from_secs(20))?;
        Ok(Self {
            addr,
            child: Some(child),
            bin: bin.to_owned(),
        })
    }

    /// Stops it (its state is lost, as with the real emulator).
    pub fn stop(&mut self) {
        self.thaw();
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            let _ = c.wait();
        }
    }

    /// Freezes it (`SIGSTOP`): connections are accepted by the kernel and never answered,
    /// which is what a partition or an overloaded endpoint looks like. [`Emulator::thaw`]
    /// resumes it.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            signal_tree(c.id(), libc::SIGSTOP);
        }
    }

    /// Resumes a frozen emulator (`SIGCONT`).
    pub fn thaw(&self) {
        if let Some(c) = &self.child {
            signal_tree(c.id(), libc::SIGCONT);
        }
    }

    /// Starts it again on the same address.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let port = self
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let mut again = Self::start(&self.bin, port)?;
        self.child = again.child.take();
        Ok(())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Topics, their dead-letter topics, and one subscription per consumer, from the route table.
pub async fn create_topology(ps: &PubSubConfig, table: &RouteTable) -> Result<(), String> {
    let admin = Admin::new(ps).await?;
    for t in &table.topics {
        admin.topic(&t.name).await?;
        admin.topic(&dead_letter_topic(&t.name)).await?;
    }
    for f in &table.functions {
        for s in &f.subscriptions {
            admin.subscription(&s.id(&f.name), &s.topic).await?;
        }
    }
    Ok(())
}

/// The dead-letter topic of `topic`, as infra/ names it.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}-dead-letter")
}
