//! The bad-input catalog: every case is a 4xx problem, never a 5xx, a panic or a hang, and
//! the function keeps serving afterwards.

use std::time::Duration;
use tern_e2e::*;

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    slug: &'static str,
}

fn json_case(name: &'static str, body: &str, status: u16, slug: &'static str) -> Case {
    Case {
        name,
        content_type: Some("application/json"),
        headers: vec![],
        body: body.as_bytes().to_vec(),
        status,
        slug,
    }
}

async fn check(sys: &System, url: &str, cases: Vec<Case>) {
    for c in cases {
        let mut req = sys
            .http
            .post(url)
            .body(c.body.clone())
            .timeout(Duration::from_secs(10));
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", c.name));
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        assert_eq!(status, c.status, "{}: {body}", c.name);
        assert_eq!(ct, "application/problem+json", "{}", c.name);
        assert_eq!(
            body["type"],
            format!("urn:tern:problem:{}", c.slug),
            "{}: {body}",
            c.name
        );
        assert_eq!(body["status"], c.status, "{}", c.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_create_rejects_bad_input_with_problems() {
    let mut sys = System::new().await;
    sys.set("TERN_BODY_LIMIT", "4096");
    let create = sys.start("orders-create");
    let url = format!("{create}/api/orders");
    let valid = order_body().to_string();
    let big_items: Vec<serde_json::Value> = (0..200)
        .map(|i| serde_json::json!({"sku": format!("S{i}"), "quantity": 1, "unit_price_cents": 1}))
        .collect();
    let cases = vec![
        json_case("malformed JSON", "{\"customer_email\": ", 400, "malformed-request"),
        json_case("not an object", "[1,2]", 422, "validation-failed"),
        Case { name: "no content type", content_type: None, headers: vec![], body: valid.clone().into_bytes(), status: 415, slug: "unsupported-media-type" },
        Case { name: "wrong content type", content_type: Some("text/plain"), headers: vec![], body: valid.clone().into_bytes(), status: 415, slug: "unsupported-media-type" },
        Case { name: "form post", content_type: Some("application/x-www-form-urlencoded"), headers: vec![], body: b"a=b".to_vec(), status: 415, slug: "unsupported-media-type" },
        Case {
            name: "body over the limit",
            content_type: Some("application/json"),
            headers: vec![],
            body: serde_json::json!({"customer_email": "a@b.co", "currency": "EUR", "items": big_items}).to_string().into_bytes(),
            status: 413,
            slug: "payload-too-large",
        },
        json_case("unknown field", r#"{"customer_email":"a@b.co","currency":"EUR","items":[{"sku":"A","quantity":1,"unit_price_cents":1}],"coupon":"FREE"}"#, 422, "validation-failed"),
        json_case("unknown item field", r#"{"customer_email":"a@b.co","currency":"EUR","items":[{"sku":"A","quantity":1,"unit_price_cents":1,"discount":5}]}"#, 422, "validation-failed"),
        json_case("quantity out of range", r#"{"customer_email":"a@b.co","currency":"EUR","items":[{"sku":"A","quantity":1001,"unit_price_cents":1}]}"#, 422, "validation-failed"),
        json_case("negative quantity", r#"{"customer_email":"a@b.co","currency":"EUR","items":[{"sku":"A","quantity":-1,"unit_price_cents":1}]}"#, 422, "validation-failed"),
        json_case("huge number", r#"{"customer_email":"a@b.co","currency":"EUR","items":[{"sku":"A","quantity":1,"unit_price_cents":99999999999999999999999}]}"#, 422, "validation-failed"),
        json_case("price out of range", r#"{"customer_email":"a@b.co","currency":"EUR","items":[{"sku":"A","quantity":1,"unit_price_cents":1000000001}]}"#, 422, "validation-failed"),
        json_case("bad currency", r#"{"customer_email":"a@b.co","currency":"XXY","items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}"#, 422, "validation-failed"),
        json_case("bad email", r#"{"customer_email":"nobody","currency":"EUR","items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}"#, 422, "validation-failed"),
        json_case("no items", r#"{"customer_email":"a@b.co","currency":"EUR","items":[]}"#, 422, "validation-failed"),
        json_case("missing field", r#"{"customer_email":"a@b.co","items":[]}"#, 422, "validation-failed"),
        json_case("wrong type", r#"{"customer_email":5,"currency":"EUR","items":[]}"#, 422, "validation-failed"),
        Case { name: "invalid UTF-8", content_type: Some("application/json"), headers: vec![], body: b"{\"customer_email\":\"\xff\xfe\"}".to_vec(), status: 400, slug: "malformed-request" },
        Case { name: "bad idempotency key", content_type: Some("application/json"), headers: vec![("idempotency-key", "has space".into())], body: valid.clone().into_bytes(), status: 400, slug: "malformed-request" },
    ];
    check(&sys, &url, cases).await;

    // Wrong method and unknown paths are problems too. The Gateway has no rule for a method the
    // route table does not name: 404, as in the cluster (the runtime's own 405 is tested in
    // shared/tern/tests/runtime.rs).
    let r = sys.http.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = sys.http.get(format!("{create}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // Still serving, and nothing was written.
    assert_eq!(sys.create_order(&create, &order_body()).await.status(), 201);
    let n = sys.count("orders").await;
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn payments_events_rejects_invalid_events_with_problems() {
    let mut sys = System::new().await;
    let consumer = sys.start("payments-events");
    let url = format!("{consumer}/events/payments");
    let ce = |pairs: &[(&'static str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect::<Vec<_>>()
    };
    let data =
        br#"{"order_id":"ord_x","payment_id":"p","amount_cents":1,"currency":"EUR"}"#.to_vec();
    let binary = |name, headers, status, slug| Case {
        name,
        content_type: Some("application/json"),
        headers,
        body: data.clone(),
        status,
        slug,
    };
    let mut bad_b64 = push_body(
        "e1",
        "com.example.payment.completed",
        &serde_json::json!({}),
    );
    bad_b64["message"]["data"] = "%%% not base64".into();
    let mut no_attrs = push_body(
        "e2",
        "com.example.payment.completed",
        &serde_json::json!({}),
    );
    no_attrs["message"]["attributes"] = serde_json::json!({});
    let cases = vec![
        binary(
            "CloudEvent without ce-id",
            ce(&[
                ("ce-specversion", "1.0"),
                ("ce-source", "//x"),
                ("ce-type", "com.example.payment.completed"),
            ]),
            400,
            "invalid-event",
        ),
        binary(
            "CloudEvent without ce-source",
            ce(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-type", "com.example.payment.completed"),
            ]),
            400,
            "invalid-event",
        ),
        binary(
            "CloudEvent without ce-type",
            ce(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "//x"),
            ]),
            400,
            "invalid-event",
        ),
        binary(
            "unsupported specversion",
            ce(&[
                ("ce-specversion", "0.3"),
                ("ce-id", "1"),
                ("ce-source", "//x"),
                ("ce-type", "com.example.payment.completed"),
            ]),
            400,
            "invalid-event",
        ),
        Case {
            name: "structured mode, not JSON",
            content_type: Some("application/cloudevents+json"),
            headers: vec![],
            body: b"{nope".to_vec(),
            status: 400,
            slug: "invalid-event",
        },
        json_case(
            "push envelope with invalid base64",
            &bad_b64.to_string(),
            400,
            "invalid-event",
        ),
        json_case(
            "push message without CloudEvents attributes",
            &no_attrs.to_string(),
            400,
            "invalid-event",
        ),
        json_case("neither", r#"{"hello":"world"}"#, 400, "invalid-event"),
        Case {
            name: "no content type",
            content_type: None,
            headers: vec![],
            body: b"x".to_vec(),
            status: 415,
            slug: "invalid-event",
        },
    ];
    check(&sys, &url, cases).await;
    // Still serving.
    let r = sys
        .http
        .get(format!("{}/_tern/ready", sys.pod_url("payments-events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
