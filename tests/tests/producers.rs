//! Producers that are not Tern (issue 13): a plain Pub/Sub message (bytes, attributes, ordering
//! key) and a CloudEvent with non-JSON data and extensions, published to the real emulator and
//! delivered by the local push deliverer in both of Google's delivery forms (push and Eventarc),
//! taken by the `PubSubMessage` and `CloudEvent` extractors.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use google_cloud_pubsub::model::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern_e2e::*;
use tern_events::incoming::{CloudEvent, EventData, PubSubMessage};
use tern_local::{Mode, StopToken, Target};

#[derive(Clone, Default)]
struct Seen {
    messages: Arc<Mutex<Vec<PubSubMessage>>>,
    events: Arc<Mutex<Vec<CloudEvent>>>,
}

async fn serve(seen: Seen) -> String {
    let app = Router::new()
        .route(
            "/plain",
            post(|State(s): State<Seen>, m: PubSubMessage| async move {
                s.messages.lock().unwrap().push(m);
                "ok"
            }),
        )
        .route(
            "/cloudevent",
            post(|State(s): State<Seen>, e: CloudEvent| async move {
                s.events.lock().unwrap().push(e);
                "ok"
            }),
        )
        .with_state(seen);
    let ctx = tern::Context::for_env(tern::Env::from_pairs([("TERN_LOG", "warn")])).unwrap();
    let listener = tern::platform::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(tern::platform::serve(
        listener,
        tern::platform::assemble(app, &ctx),
        ctx.clone(),
    ));
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_messages_and_any_cloudevent_are_taken() {
    let sys = System::new().await;
    let admin = tern_local::Admin::new(&sys.pubsub).await.unwrap();
    admin.topic("external").await.unwrap();
    admin.topic("external-dead-letter").await.unwrap();
    let seen = Seen::default();
    let url = serve(seen.clone()).await;
    let dead_letter = tern_events::EventPublisher::new(sys.pubsub.clone())
        .await
        .unwrap();
    let stop = StopToken::default();
    for (sub, path, mode) in [
        ("plain-push", "/plain", Mode::Push),
        ("plain-eventarc", "/plain", Mode::Cloudevents),
        ("ce-push", "/cloudevent", Mode::Push),
        ("ce-eventarc", "/cloudevent", Mode::Cloudevents),
    ] {
        sys.subscribe(sub, "external").await;
        let target = Target {
            subscription: sub.to_owned(),
            topic: "external".to_owned(),
            url: format!("{url}{path}"),
        };
        let policy = tern_local::Policy {
            max_attempts: 3,
            ..tern_local::Policy::new(mode)
        };
        tokio::spawn(tern_local::deliver(
            policy,
            sys.pubsub.clone(),
            target,
            dead_letter.clone(),
            stop.clone(),
        ));
    }

    // What `gcloud pubsub topics publish` or a storage notification sends: bytes and attributes.
    let publisher = sys.plain_publisher("external").await;
    let plain = Message::new()
        .set_data(vec![0u8, 159, 146, 150, 255])
        .set_attributes([("eventType", "OBJECT_FINALIZE"), ("bucketId", "uploads")]);
    let plain_id = publisher.publish(plain).await.unwrap();
    // A CloudEvent in the Pub/Sub binding with Avro data, a schema and two extensions.
    let ce = Message::new()
        .set_data(b"\x02\x06abc".to_vec())
        .set_attributes([
            ("ce-specversion", "1.0"),
            ("ce-id", "inv-7"),
            ("ce-source", "//billing.example.com"),
            ("ce-type", "com.example.invoice.issued"),
            ("ce-dataschema", "https://schemas.example.com/invoice.avsc"),
            ("ce-partitionkey", "customer-42"),
            (
                "ce-traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("content-type", "application/avro"),
        ]);
    let ce_id = publisher.publish(ce).await.unwrap();

    eventually(
        "four plain deliveries and four CloudEvents",
        Duration::from_secs(20),
        || async {
            (seen.messages.lock().unwrap().len() == 4 && seen.events.lock().unwrap().len() == 2)
                .then_some(())
        },
    )
    .await;
    stop.cancel();
    let messages = seen.messages.lock().unwrap().clone();
    // Both messages reach both plain subscriptions, each in both forms.
    let plain: Vec<&PubSubMessage> = messages
        .iter()
        .filter(|m| m.message_id == plain_id)
        .collect();
    assert_eq!(plain.len(), 2, "{messages:?}");
    for m in &plain {
        assert_eq!(&m.data[..], &[0u8, 159, 146, 150, 255]);
        assert_eq!(m.attributes["eventType"], "OBJECT_FINALIZE");
        assert_eq!(m.attributes["bucketId"], "uploads");
        assert!(m.publish_time.is_some());
        assert!(
            m.subscription.ends_with("/subscriptions/plain-push")
                || m.subscription.ends_with("/subscriptions/plain-eventarc")
        );
    }
    let push = plain
        .iter()
        .find(|m| m.subscription.ends_with("plain-push"))
        .unwrap();
    assert_eq!(
        push.delivery_attempt,
        Some(1),
        "push says which attempt this is"
    );
    assert!(
        messages.iter().any(|m| m.message_id == ce_id),
        "a CloudEvent's message is a message too"
    );

    // The plain message is not a CloudEvent: refused (and, after the retries, dead-lettered);
    // the CloudEvent arrives whole in both forms.
    let events = seen.events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.id, "inv-7");
        assert_eq!(e.ty, "com.example.invoice.issued");
        assert_eq!(e.datacontenttype.as_deref(), Some("application/avro"));
        assert_eq!(
            e.dataschema.as_deref(),
            Some("https://schemas.example.com/invoice.avsc")
        );
        assert_eq!(e.extensions["partitionkey"], "customer-42");
        assert!(e.extensions["traceparent"].starts_with("00-0af7"));
        assert_eq!(
            e.data,
            Some(EventData::Binary(bytes::Bytes::from_static(b"\x02\x06abc")))
        );
        assert_eq!(e.delivery.as_ref().unwrap().message_id, ce_id);
        assert!(e.data_json().is_err(), "Avro is not JSON");
    }
}
