//! docs/openapi.yaml against the real responses of the real functions, and against the route
//! table: every JSON route is documented, every documented path is routed.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use tern_e2e::*;

fn spec() -> Value {
    let text = std::fs::read_to_string(root().join("docs/openapi.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// Validates a response body against the schema the spec gives for `method path status`.
async fn conforms(spec: &Value, method: &str, path: &str, res: reqwest::Response) -> u16 {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = res.json().await.unwrap();
    let op = &spec["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {path} is not in the spec");
    let mut response = op["responses"][status.to_string()].clone();
    assert!(
        response.is_object(),
        "{method} {path} {status} is not documented: {body}"
    );
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        response = spec["components"]["responses"][name].clone();
    }
    let media = ct.split(';').next().unwrap().trim();
    let schema = &response["content"][media]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no schema for {media}"
    );
    let mut root = spec.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = schema["$ref"].clone();
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match the spec: {errors:?}\n{body}"
    );
    status
}

#[test]
fn the_spec_and_the_route_table_agree() {
    let spec = spec();
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_ascii_uppercase(), p.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = table()
        .functions
        .iter()
        .filter(|f| f.name != "web")
        .flat_map(|f| f.routes.iter().map(|r| (r.method.clone(), r.path.clone())))
        .collect();
    assert_eq!(documented, routed);
}

#[tokio::test(flavor = "multi_thread")]
async fn real_responses_match_the_spec() {
    let spec = spec();
    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    let get = sys.start("orders-get");
    let list = sys.start("orders-list");
    let events = sys.start("payments-events");
    let relay = sys.start("outbox-relay");
    let h = sys.http.clone();

    let res = h
        .post(format!("{create}/api/orders"))
        .header("idempotency-key", "k")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["location"].to_str().unwrap().len(),
        "/api/orders/".len() + 30
    );
    let order: Value = res.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    let replay = h
        .post(format!("{create}/api/orders"))
        .header("idempotency-key", "k")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(conforms(&spec, "POST", "/api/orders", replay).await, 201);
    let bad = h
        .post(format!("{create}/api/orders"))
        .json(&json!({"customer_email": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(conforms(&spec, "POST", "/api/orders", bad).await, 422);
    let wrong_type = h
        .post(format!("{create}/api/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        conforms(&spec, "POST", "/api/orders", wrong_type).await,
        415
    );

    let one = h
        .get(format!("{get}/api/orders/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(conforms(&spec, "GET", "/api/orders/{id}", one).await, 200);
    let none = h
        .get(format!("{get}/api/orders/ord_aaaaaaaaaaaaaaaaaaaaaaaaaa"))
        .send()
        .await
        .unwrap();
    assert_eq!(conforms(&spec, "GET", "/api/orders/{id}", none).await, 404);

    let page = h
        .get(format!("{list}/api/orders?limit=1"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(conforms(&spec, "GET", "/api/orders", page).await, 200);
    let denied = h.get(format!("{list}/api/orders")).send().await.unwrap();
    assert_eq!(conforms(&spec, "GET", "/api/orders", denied).await, 401);
    let tampered = h
        .get(format!("{list}/api/orders?cursor=abc"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(conforms(&spec, "GET", "/api/orders", tampered).await, 400);

    let paid = push_body(
        "p1",
        "com.example.payment.completed",
        &payment(&id, 1250, "EUR"),
    );
    let ok = h
        .post(format!("{events}/events/payments"))
        .json(&paid)
        .send()
        .await
        .unwrap();
    assert_eq!(conforms(&spec, "POST", "/events/payments", ok).await, 200);
    let dup = h
        .post(format!("{events}/events/payments"))
        .json(&paid)
        .send()
        .await
        .unwrap();
    assert_eq!(conforms(&spec, "POST", "/events/payments", dup).await, 200);
    let invalid = h
        .post(format!("{events}/events/payments"))
        .json(&json!({"x": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        conforms(&spec, "POST", "/events/payments", invalid).await,
        400
    );

    let flushed = h
        .post(format!("{relay}/internal/outbox/flush"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        conforms(&spec, "POST", "/internal/outbox/flush", flushed).await,
        200
    );
}
