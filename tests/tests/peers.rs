//! The bench's peers answer what the orders functions answer: the same bodies for the same order,
//! whoever created it, the same statuses for a missing order and for invalid ones (the error
//! bodies differ: each stack words its own), the same outbox row for a new order. Without this, `scripts/bench`'s Tern ÷ peer ratios could compare
//! different work. The peers run as the bench runs them (`tern_local::peers`), on this test's
//! database, beside orders-get and orders-create behind the router.

use serde_json::{Value, json};
use std::time::Duration;
use tern_e2e::*;
use tern_local::peers::{Peer, PeerProcess};

/// `created_at` and `updated_at` as instants: Go writes `…41.12Z` where serde writes
/// `…41.120000Z`, and both mean the same time.
fn normalized(mut order: Value) -> Value {
    for field in ["created_at", "updated_at"] {
        let text = order[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is not a string: {order}"));
        let at = chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{field} {text}: {e}"));
        order[field] = json!(at.timestamp_micros());
    }
    order
}

async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_peers_answer_what_the_orders_functions_answer() {
    let root = root();
    tern_local::peers::available(&root).expect("the peers (scripts/tools peers)");
    let mut sys = System::new().await;
    sys.start("orders-get");
    let tern = sys.start("orders-create");
    let dir = scratch("peers");
    let unknown = "/api/orders/ord_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut servers = vec![("tern".to_owned(), tern)];
    let mut peers = Vec::new();
    for peer in Peer::ALL {
        let mut p = PeerProcess::spawn(
            peer,
            &root,
            &sys.database_url,
            2,
            dir.join(format!("{}.log", peer.name())),
        )
        .expect("start the peer");
        p.wait_for(unknown, 404, Duration::from_secs(60))
            .expect("the peer answers");
        servers.push((peer.name().to_owned(), p.url()));
        peers.push(p);
    }
    let http = &sys.http;

    // Every server creates an order; every server then reads every order the same way. The
    // SKU comes with spaces around it: stored and answered trimmed, by the POST as by the GET.
    let mut body = order_body();
    body["items"][0]["sku"] = json!("  TEA-SENCHA ");
    let mut created = Vec::new();
    for (name, base) in &servers {
        let res = sys.create_order(base, &body).await;
        assert_eq!(res.status().as_u16(), 201, "{name}: POST /api/orders");
        let location = res
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("{name}: no Location"))
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = res.json().await.expect("JSON");
        let id = body["id"].as_str().expect("an id").to_owned();
        assert_eq!(location, format!("/api/orders/{id}"), "{name}: Location");
        created.push((name.clone(), id, normalized(body)));
    }
    for (creator, id, body) in &created {
        let mut want = body.clone();
        want["id"] = json!(id);
        for (name, base) in &servers {
            let got = fetch_json(http, &format!("{base}/api/orders/{id}"))
                .await
                .unwrap_or_else(|| panic!("{name}: GET {creator}'s order"));
            assert_eq!(
                normalized(got),
                want,
                "{name}'s GET of the order {creator} created differs from {creator}'s POST"
            );
        }
    }
    // The bodies differ only in the id and the times.
    let shape = |v: &Value| {
        let mut v = v.clone();
        for f in ["id", "created_at", "updated_at"] {
            v[f] = Value::Null;
        }
        v
    };
    for (name, _, body) in &created[1..] {
        assert_eq!(shape(body), shape(&created[0].2), "{name}'s new order");
    }
    assert_eq!(created[0].2["customer_email"], "a***@example.com");
    assert_eq!(created[0].2["items"][0]["sku"], "TEA-SENCHA");

    // A missing order, a malformed id, an invalid order, a field unknown or of the wrong type:
    // the same statuses. (JSON that does not parse is 400 for Tern and Go, 422 for FastAPI: its
    // default, kept as a FastAPI team would.)
    let item = json!({"sku": "TEA", "quantity": 1, "unit_price_cents": 625});
    let invalid = [
        json!({"customer_email": "ada@example.com", "currency": "EURO",
            "items": [{"sku": "TEA", "quantity": 0, "unit_price_cents": 625}]}),
        json!({"customer_email": "ada@example.com", "currency": "EUR", "items": [item], "coupon": "x"}),
        json!({"customer_email": "ada@example.com", "currency": "EUR",
            "items": [{"sku": "TEA", "quantity": "2", "unit_price_cents": 625}]}),
        json!({"customer_email": "ada", "currency": "EUR", "items": []}),
    ];
    for (name, base) in &servers {
        for path in [unknown, "/api/orders/nope"] {
            let status = status_of(http.get(format!("{base}{path}"))).await;
            assert_eq!(status, 404, "{name}: GET {path}");
        }
        for body in &invalid {
            let status = status_of(http.post(format!("{base}/api/orders")).json(body)).await;
            assert_eq!(status, 422, "{name}: {body}");
        }
    }

    // One outbox row per new order, with the same event.
    let db = sys.sql().await;
    for (name, id, _) in &created {
        let rows = db
            .query(
                "SELECT event_type, topic, data FROM tern_outbox WHERE subject = $1",
                &[id],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{name}: outbox rows of its order");
        assert_eq!(rows[0].get::<_, String>(0), "com.example.order.created");
        assert_eq!(rows[0].get::<_, String>(1), "orders");
        let data: Value = rows[0].get(2);
        assert_eq!(
            data,
            json!({"order_id": id, "currency": "EUR", "total_cents": 1250, "items": 1}),
            "{name}: the event's data"
        );
    }
    assert_eq!(sys.count("orders").await, 3);
    drop(peers);
}
