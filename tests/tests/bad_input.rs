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

/// Reads from `s` until the peer closes (or 20 s pass); returns what arrived and whether it closed.
fn read_until_closed(s: &mut std::net::TcpStream) -> (Vec<u8>, bool) {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

/// What the runtime's server and the router do with slow, idle and oversized clients, with short
/// limits (head 1 s, idle 3 s, headers 4 KiB).
#[tokio::test(flavor = "multi_thread")]
async fn slow_idle_and_oversized_clients_are_cut_or_refused() {
    use std::io::Write;
    let mut sys = System::new().await;
    let limits = [
        ("TERN_HEADER_READ_TIMEOUT", "1s"),
        ("TERN_IDLE_TIMEOUT", "3s"),
        ("TERN_MAX_HEADER_BYTES", "4096"),
    ];
    for (k, v) in limits {
        sys.set(k, v);
    }
    let function = sys.start_process("orders-get");
    sys.start("orders-get");
    // A router of the tests' own with the same limits, in front of the pod.
    let conn = tern::platform::ConnLimits::from_env(&tern::Env::from_pairs(limits)).unwrap();
    let upstreams = tern_local::Upstreams::default();
    upstreams.write().unwrap().insert(
        "orders-get".into(),
        vec![sys.pod_url("orders-get")["http://".len()..].to_owned()],
    );
    let listener = tern::platform::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let router = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tern_local::Router::new(&table(), upstreams)
            .limits(conn)
            .serve(listener, std::future::pending()),
    );

    for base in [function, router] {
        let addr = base["http://".len()..].to_owned();
        let connect = move || std::net::TcpStream::connect(&addr).unwrap();
        let report = tokio::task::spawn_blocking(move || {
            // A head that never ends, and a connection that sends nothing: both cut.
            let mut slow = connect();
            slow.write_all(b"GET /api/orders/ord_x HTTP/1.1\r\nHost: a\r\nX-Slow: ").unwrap();
            let (_, slow_closed) = read_until_closed(&mut slow);
            let (_, silent_closed) = read_until_closed(&mut connect());

            // An idle kept-alive connection outlives the head deadline, then is closed.
            let mut idle = connect();
            idle.write_all(b"GET /api/orders/nope HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let mut first = [0u8; 12];
            std::io::Read::read_exact(&mut idle, &mut first).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            idle.set_nonblocking(true).unwrap();
            let mut probe = [0u8; 1];
            let open_after_head_deadline = loop {
                match std::io::Read::read(&mut idle, &mut probe) {
                    Ok(0) => break false,
                    Ok(_) => continue, // the rest of the 404
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                    Err(_) => break false,
                }
            };
            idle.set_nonblocking(false).unwrap();
            let (_, idle_closed) = read_until_closed(&mut idle);

            // Oversized heads: a 431 problem; far beyond the limit, hyper's own 431.
            let mut big = connect();
            let pad = "a".repeat(5000);
            write!(big, "GET /api/orders/ord_x HTTP/1.1\r\nHost: a\r\nX-Pad: {pad}\r\nConnection: close\r\n\r\n").unwrap();
            let (big_res, _) = read_until_closed(&mut big);
            let mut huge = connect();
            let pad = "a".repeat(20_000);
            let _ = write!(huge, "GET /api/orders/ord_x HTTP/1.1\r\nHost: a\r\nX-Pad: {pad}\r\n\r\n");
            let (huge_res, _) = read_until_closed(&mut huge);
            (
                slow_closed,
                silent_closed,
                open_after_head_deadline,
                idle_closed,
                String::from_utf8_lossy(&first).into_owned(),
                String::from_utf8_lossy(&big_res).into_owned(),
                String::from_utf8_lossy(&huge_res).into_owned(),
            )
        })
        .await
        .unwrap();
        let (slow, silent, open, idle, first, big, huge) = report;
        assert!(slow, "{base}: a slow head was not cut");
        assert!(silent, "{base}: a silent connection was not cut");
        assert_eq!(first, "HTTP/1.1 404", "{base}");
        assert!(
            open,
            "{base}: an idle connection was closed at the head deadline"
        );
        assert!(idle, "{base}: an idle connection was not closed");
        assert!(big.starts_with("HTTP/1.1 431"), "{base}: {big}");
        assert!(big.contains("header-too-large"), "{base}: {big}");
        assert!(huge.starts_with("HTTP/1.1 431"), "{base}: {huge}");
        // Still serving.
        let ok = sys
            .http
            .get(format!("{base}/api/orders/ord_x"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 404, "{base}");
    }
}
