//! Google-style OIDC for tests: RSA signing keys generated here, a key endpoint on loopback that
//! publishes them the way Google publishes its certificates, and ID tokens as Pub/Sub push and
//! Cloud Scheduler send them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::RwLock;

/// The push service account the tests configure as an allowed caller.
pub const PUSH_SA: &str = "pubsub-push@tern-prod.iam.gserviceaccount.com";

/// A signing key with its key id.
pub struct Signer {
    kid: String,
    key: KeyPair,
}

impl Signer {
    /// A fresh 2048-bit RSA key known as `kid`.
    pub fn new(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            key: KeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
        }
    }

    /// The public key as a JWK, as Google's certificate endpoint lists it.
    pub fn jwk(&self) -> Value {
        let c: PublicKeyComponents<Vec<u8>> = self.key.public_key().into();
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
               "n": B64.encode(&c.n), "e": B64.encode(&c.e)})
    }

    /// A JWT with `header` and `claims`, signed RS256 whatever the header says.
    pub fn sign_with_header(&self, header: Value, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .expect("signature");
        format!("{msg}.{}", B64.encode(sig))
    }

    /// A JWT with `claims`, signed RS256 and naming this key.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }
}

/// Claims as Pub/Sub puts them in a push request's token for `audience`, valid for an hour.
pub fn claims(audience: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": "https://accounts.google.com", "aud": audience, "azp": "1234567890",
           "email": PUSH_SA, "email_verified": true, "sub": "1234567890",
           "iat": now, "exp": now + 3600})
}

/// `claims` with `key` set to `value`.
pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// The key endpoint: serves the key set the test puts in, counting fetches; 503 while empty;
/// never answers while `hang` is set.
#[derive(Clone, Default)]
pub struct KeyServer {
    /// The published keys (JWKs).
    pub set: Arc<RwLock<Vec<Value>>>,
    /// How many times the key set was fetched.
    pub fetches: Arc<AtomicUsize>,
    /// Accept requests and never answer them, as an endpoint behind a partition does.
    pub hang: Arc<AtomicBool>,
    /// The `Cache-Control: max-age` it serves, in seconds (0: Google's usual 21600).
    pub max_age: Arc<AtomicU64>,
}

impl KeyServer {
    /// Serves the key set on loopback; returns its URL.
    pub async fn serve(&self) -> String {
        async fn certs(State(k): State<KeyServer>) -> Response {
            k.fetches.fetch_add(1, Ordering::SeqCst);
            if k.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let set = k.set.read().await.clone();
            if set.is_empty() {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
            }
            let max_age = match k.max_age.load(Ordering::SeqCst) {
                0 => 21600,
                s => s,
            };
            (
                [(
                    "cache-control",
                    format!("public, max-age={max_age}, must-revalidate"),
                )],
                axum::Json(json!({"keys": set})),
            )
                .into_response()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/oauth2/v3/certs",
            listener.local_addr().expect("addr")
        );
        let app = Router::new()
            .route("/oauth2/v3/certs", get(certs))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// How many times the key set was fetched so far.
    pub fn fetched(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
