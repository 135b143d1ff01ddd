//! Google-signed OIDC tokens, verified for real: keys generated here and published on loopback,
//! tokens signed with them, checked by the runtime's verifier (`tern::GoogleOidc`) in front of a
//! function, and by the real `payments-events` and `outbox-relay` binaries.

use axum::Router;
use axum::extract::Extension;
use axum::routing::post;
use serde_json::{Value, json};
use std::time::Duration;
use tern::Caller;
use tern::{Context, Env, GoogleOidc};
use tern_e2e::oidc::{KeyServer, PUSH_SA, Signer, claims, with};
use tern_e2e::{System, order_body, payment, push_body};

const AUDIENCE: &str = "https://orders.example.com/events/payments";

/// A function that echoes who called it, behind the verifier, served with the runtime stack.
async fn serve_function(jwks_url: &str) -> String {
    let env = Env::from_pairs([
        ("TERN_OIDC", "google"),
        ("TERN_OIDC_AUDIENCE", AUDIENCE),
        (
            "TERN_OIDC_SERVICE_ACCOUNTS",
            "scheduler@tern-prod.iam.gserviceaccount.com, pubsub-push@tern-prod.iam.gserviceaccount.com",
        ),
        ("TERN_OIDC_JWKS_URL", jwks_url),
        ("TERN_OIDC_REFRESH_INTERVAL", "2s"),
        ("TERN_LOG", "warn"),
    ]);
    let oidc = GoogleOidc::from_env(&env).unwrap();
    let ctx = Context::for_env(env).unwrap();
    let app = Router::new()
        .route(
            "/events/payments",
            post(|Extension(caller): Extension<Caller>| async move { caller.email }),
        )
        .layer(oidc.layer());
    let listener = tern::platform::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let url = format!("http://{}/events/payments", listener.local_addr().unwrap());
    tokio::spawn(tern::platform::serve(
        listener,
        tern::platform::assemble(app, &ctx),
        ctx.clone(),
    ));
    url
}

/// POSTs `body` with an optional bearer token; the status, the JSON body (or `{"text": ..}`) and
/// whether a Retry-After came back.
async fn call(url: &str, token: Option<&str>, body: &Value) -> (u16, Value, bool) {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().contains_key("retry-after");
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(json!({ "text": text }));
    (status, body, retry_after)
}

#[tokio::test]
async fn tokens_are_verified_against_published_keys() {
    let keys = KeyServer::default();
    let k1 = Signer::new("k1");
    keys.set.write().await.push(k1.jwk());
    let url = serve_function(&keys.serve().await).await;
    let ok = |c: &Value| k1.sign(c);

    // A valid push token passes and the handler sees its caller.
    let (status, body, _) = call(&url, Some(&ok(&claims(AUDIENCE))), &json!({})).await;
    assert_eq!((status, body["text"].as_str()), (200, Some(PUSH_SA)));
    // The bare issuer form Google also uses is accepted.
    let bare = with(claims(AUDIENCE), "iss", json!("accounts.google.com"));
    assert_eq!(call(&url, Some(&ok(&bare)), &json!({})).await.0, 200);

    // Every way a token can be wrong is a 401 problem that says why.
    let now = chrono::Utc::now().timestamp();
    let c = || claims(AUDIENCE);
    let mut no_email = c();
    no_email.as_object_mut().unwrap().remove("email");
    let forger = Signer::new("k1"); // the same kid, another key
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "Bearer"),
        ("not a JWT", Some("abc.def".into()), "malformed"),
        (
            "another audience",
            Some(ok(&with(c(), "aud", json!("https://evil.example.com")))),
            "audience",
        ),
        (
            "another issuer",
            Some(ok(&with(c(), "iss", json!("https://issuer.example.com")))),
            "not issued by Google",
        ),
        (
            "expired",
            Some(ok(&with(
                with(c(), "exp", json!(now - 600)),
                "iat",
                json!(now - 4200),
            ))),
            "expired",
        ),
        (
            "not yet valid",
            Some(ok(&with(c(), "nbf", json!(now + 600)))),
            "not valid yet",
        ),
        (
            "another service account",
            Some(ok(&with(
                c(),
                "email",
                json!("attacker@evil.iam.gserviceaccount.com"),
            ))),
            "not an allowed caller",
        ),
        (
            "unverified email",
            Some(ok(&with(c(), "email_verified", json!(false)))),
            "not verified",
        ),
        ("no email", Some(ok(&no_email)), "no email"),
        ("forged signature", Some(forger.sign(&c())), "signature"),
        (
            "HS256",
            Some(k1.sign_with_header(json!({"alg": "HS256", "kid": "k1"}), &c())),
            "RS256",
        ),
        (
            "no kid",
            Some(k1.sign_with_header(json!({"alg": "RS256"}), &c())),
            "kid",
        ),
    ];
    for (name, token, says) in cases {
        let (status, body, _) = call(&url, token.as_deref(), &json!({})).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(
            body["type"], "urn:tern:problem:unauthorized",
            "{name}: {body}"
        );
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(says),
            "{name}: {detail:?} should mention {says:?}"
        );
    }
    // All of that was served from one fetch of the keys.
    assert_eq!(keys.fetched(), 1);

    // Google rotates: a token signed with a new key makes the cache refresh once (no sooner than
    // TERN_OIDC_REFRESH_INTERVAL after the last fetch).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let k2 = Signer::new("k2");
    keys.set.write().await.push(k2.jwk());
    assert_eq!(call(&url, Some(&k2.sign(&c())), &json!({})).await.0, 200);
    assert_eq!(keys.fetched(), 2);
    assert_eq!(call(&url, Some(&ok(&c())), &json!({})).await.0, 200);

    // Unknown key ids right after a refresh do not hammer the key endpoint.
    let stranger = Signer::new("k9");
    for _ in 0..5 {
        assert_eq!(
            call(&url, Some(&stranger.sign(&c())), &json!({})).await.0,
            401
        );
    }
    assert_eq!(keys.fetched(), 2);
}

#[tokio::test]
async fn unreachable_keys_are_a_retryable_503() {
    let keys = KeyServer::default();
    let url = serve_function(&keys.serve().await).await;
    let k1 = Signer::new("k1");
    let (status, body, retry_after) =
        call(&url, Some(&k1.sign(&claims(AUDIENCE))), &json!({})).await;
    assert_eq!((status, retry_after), (503, true), "{body}");
    // Right after a failed fetch the next one waits its backoff (1 s): still 503, no fetch.
    let fetched = keys.fetched();
    let (status, body, _) = call(&url, Some(&k1.sign(&claims(AUDIENCE))), &json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("next one"),
        "{body}"
    );
    assert_eq!(keys.fetched(), fetched);
    // Once the keys are back, the same token passes: the failed fetch cached nothing.
    keys.set.write().await.push(k1.jwk());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        call(&url, Some(&k1.sign(&claims(AUDIENCE))), &json!({}))
            .await
            .0,
        200
    );
}

/// Stale keys cached and the key endpoint hanging: every push is still verified at once from
/// the cache, and one background fetch at a time waits on the endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_key_endpoint_costs_no_request() {
    let keys = KeyServer::default();
    keys.max_age.store(1, std::sync::atomic::Ordering::SeqCst);
    let k1 = Signer::new("k1");
    keys.set.write().await.push(k1.jwk());
    let url = serve_function(&keys.serve().await).await;
    let token = k1.sign(&claims(AUDIENCE));
    assert_eq!(call(&url, Some(&token), &json!({})).await.0, 200);
    assert_eq!(keys.fetched(), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await; // the keys are stale now
    keys.hang.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    let empty = json!({});
    let concurrent = (0..40).map(|_| call(&url, Some(&token), &empty));
    let statuses: Vec<u16> = futures::future::join_all(concurrent)
        .await
        .into_iter()
        .map(|(s, _, _)| s)
        .collect();
    for _ in 0..40 {
        assert_eq!(call(&url, Some(&token), &json!({})).await.0, 200);
    }
    eprintln!(
        "80 pushes verified with the key endpoint hanging in {} ms; fetches started: {}",
        started.elapsed().as_millis(),
        keys.fetched() - 1
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // One refresh in flight at a time (the HTTP client gives up after 5 s, then backs off).
    assert!(keys.fetched() - 1 <= 2, "{} fetches", keys.fetched() - 1);
}

#[tokio::test]
async fn off_accepts_calls_without_a_token() {
    let oidc = GoogleOidc::from_env(&Env::from_pairs([("TERN_OIDC", "off")])).unwrap();
    assert!(!oidc.enabled());
    assert_eq!(
        oidc.verify_request(&http::HeaderMap::new()).await.unwrap(),
        None
    );
}

/// The real binaries with `TERN_OIDC=google`, as the chart configures them: a push without a
/// token changes nothing; the same push with the subscription's token is processed.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_functions_require_tokens_when_configured() {
    let keys = KeyServer::default();
    let signer = Signer::new("push-key");
    keys.set.write().await.push(signer.jwk());
    let jwks = keys.serve().await;

    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    sys.set("TERN_OIDC", "google");
    sys.set("TERN_OIDC_AUDIENCE", AUDIENCE);
    sys.set("TERN_OIDC_SERVICE_ACCOUNTS", PUSH_SA);
    sys.set("TERN_OIDC_JWKS_URL", jwks);
    let consumer = format!("{}/events/payments", sys.start("payments-events"));
    let relay = format!("{}/internal/outbox/flush", sys.start("outbox-relay"));

    let order: Value = sys
        .create_order(&create, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    let event = push_body(
        "evt-oidc-1",
        "com.example.payment.completed",
        &payment(id, 1250, "EUR"),
    );

    let (status, body, _) = call(&consumer, None, &event).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (401, Some("urn:tern:problem:unauthorized"))
    );
    let (status, _, _) = call(
        &consumer,
        Some(&signer.sign(&claims("https://other.example.com"))),
        &event,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        sys.count("tern_inbox").await,
        0,
        "a refused push must not be recorded"
    );

    let (status, body, _) = call(&consumer, Some(&signer.sign(&claims(AUDIENCE))), &event).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("updated")),
        "{body}"
    );
    assert_eq!(sys.count("tern_inbox").await, 1);

    // The relay, called by Cloud Scheduler in the cloud, is guarded the same way.
    assert_eq!(call(&relay, None, &json!({})).await.0, 401);
    let (status, body, _) = call(&relay, Some(&signer.sign(&claims(AUDIENCE))), &json!({})).await;
    assert_eq!(status, 200, "{body}");
}
