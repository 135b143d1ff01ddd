//! The parts around the functions, as in the cloud: event deliveries to the consumers (Pub/Sub
//! push or Eventarc's CloudEvents), a tap printing every event, the scheduler calling scheduled
//! functions, and the router mapping method + path to each function's pods. Deliveries and
//! scheduled calls go through the router, as Pub/Sub push and Cloud Scheduler reach the
//! functions through the public Gateway in the cluster.

use crate::delivery::{self, Policy, Target, stop::StopToken};
use crate::pubsub::{Admin, subscriber};
use crate::router::Router;
use std::time::Duration;
use tern_events::{EventPublisher, PubSubConfig};
use tern_routes::RouteTable;

/// How many times a message is delivered before it is dead-lettered (as infra/ configures the
/// subscriptions' dead-letter policy).
pub const MAX_DELIVERY_ATTEMPTS: u32 = 5;

/// Everything around the functions of one local system.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The route table the router and the deliveries follow.
    pub table: RouteTable,
    /// The Pub/Sub project and emulator.
    pub pubsub: PubSubConfig,
    /// Where each HTTP function's pods listen, `host:port`, by name; shared, so a new build's
    /// pods can be swapped in while serving (`tern dev --watch`).
    pub upstreams: crate::router::Upstreams,
    /// How events reach consumers.
    pub delivery: Policy,
    /// How often scheduled functions are called.
    pub schedule_every: Duration,
    /// Limits on the router's client connections.
    pub limits: tern::platform::ConnLimits,
}

impl Edge {
    /// [`Edge::serve`] until SIGTERM or SIGINT (Ctrl-C), as `tern dev` and `tern edge` run.
    pub async fn serve_until_signal(self, listener: tokio::net::TcpListener) -> Result<(), String> {
        self.serve(listener, async {
            tern::platform::stop_signal().await;
        })
        .await
    }

    /// Serves the router on `listener`, and runs the deliveries, the tap and the scheduler,
    /// until `stop` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        stop: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let cancel = StopToken::default();
        let dlq = EventPublisher::new(self.pubsub.clone()).await?;
        let mut router_addr = listener
            .local_addr()
            .map_err(|e| format!("the router's address: {e}"))?;
        if router_addr.ip().is_unspecified() {
            router_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let served: std::collections::HashSet<String> = self
            .upstreams
            .read()
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default();
        let url = |f: &str, path: &str| -> Result<String, String> {
            if served.contains(f) {
                Ok(format!("http://{router_addr}{path}"))
            } else {
                Err(format!("no upstream for {f}"))
            }
        };
        for f in &self.table.functions {
            for s in &f.subscriptions {
                let target = Target {
                    subscription: s.id(&f.name),
                    topic: s.topic.clone(),
                    url: url(&f.name, &s.path)?,
                };
                tokio::spawn(log_err(delivery::run(
                    self.delivery,
                    self.pubsub.clone(),
                    target,
                    dlq.clone(),
                    cancel.clone(),
                )));
            }
        }
        // The tap that prints every event; only local runs have one (unread, it would hold every
        // message in the emulator).
        let tap_admin = Admin::new(&self.pubsub).await?;
        for t in &self.table.topics {
            tap_admin.subscription(&tap_name(&t.name), &t.name).await?;
            tokio::spawn(log_err(tap(
                self.pubsub.clone(),
                t.name.clone(),
                cancel.clone(),
            )));
        }
        for f in self.table.functions.iter().filter(|f| f.schedule.is_some()) {
            if let Some(route) = f.routes.first() {
                tokio::spawn(schedule(
                    f.name.clone(),
                    url(&f.name, &route.path)?,
                    self.schedule_every,
                    cancel.clone(),
                ));
            }
        }
        let router = Router::new(&self.table, self.upstreams).limits(self.limits);
        router.serve(listener, stop).await;
        cancel.cancel();
        Ok(())
    }
}

fn tap_name(topic: &str) -> String {
    format!("tern-dev-tap-{topic}")
}

async fn log_err(f: impl Future<Output = Result<(), String>>) {
    if let Err(e) = f.await {
        eprintln!("tern: {e}");
    }
}

async fn tap(ps: PubSubConfig, topic: String, stop: StopToken) -> Result<(), String> {
    let sub = subscriber(&ps).await?;
    let mut stream = crate::pubsub::pull(&sub, &ps.subscription_path(&tap_name(&topic)));
    loop {
        let next =
            tokio::select! { n = stream.next() => n, () = stop.cancelled() => return Ok(()) };
        let (msg, handler) = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("event tap on {topic}: {e}")),
            None => return Ok(()),
        };
        handler.ack();
        let a = |k: &str| msg.attributes.get(k).cloned().unwrap_or_default();
        println!(
            "{:>16} | {topic}: {} subject={} id={} data={}",
            "event",
            a("ce-type"),
            a("ce-subject"),
            a("ce-id"),
            String::from_utf8_lossy(&msg.data)
        );
    }
}

/// Calls `url` every `every`, as Cloud Scheduler does; a call that fails is printed (a quiet
/// success is not: the function logs what it did).
async fn schedule(name: String, url: String, every: Duration, stop: StopToken) {
    let client = delivery::loopback::client();
    loop {
        tokio::select! { () = tokio::time::sleep(every) => {}, () = stop.cancelled() => return }
        match delivery::loopback::post(&client, &url, &[], Vec::new()).await {
            Ok(s) if (200..300).contains(&s) => {}
            Ok(s) => println!("{:>16} | scheduled call to {name}: HTTP {s}", "scheduler"),
            Err(e) => println!("{:>16} | scheduled call to {name} failed: {e}", "scheduler"),
        }
    }
}
