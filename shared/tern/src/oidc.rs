//! Google-signed OIDC tokens on requests that Google services make: Pub/Sub push subscriptions
//! and Cloud Scheduler jobs. Both send `Authorization: Bearer <ID token>`, an RS256 JWT signed
//! with one of Google's published keys, whose `aud` is the audience configured on the
//! subscription or job and whose `email` is the service account it was told to use.
//!
//! Settings (all read at start; a bad one stops the start with one line):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `TERN_OIDC` | `google` to require tokens, `off` (default) to accept unauthenticated calls, as `scripts/dev` does |
//! | `TERN_OIDC_AUDIENCE` | the expected `aud` (required with `google`), usually the function's public URL |
//! | `TERN_OIDC_SERVICE_ACCOUNTS` | comma-separated service-account emails allowed to call (required with `google`) |
//! | `TERN_OIDC_JWKS_URL` | where the keys are published (default Google's); `https`, or `http` on loopback for tests |
//! | `TERN_OIDC_REFRESH_INTERVAL` | the shortest time between two key fetches caused by unknown key ids (default 10s) |
//!
//! The keys are fetched on first use and cached for the response's `Cache-Control: max-age`
//! (1 hour when absent, 24 hours at most). Once stale they keep serving while one refresh runs
//! in the background, backing off after failures (1 s doubling to a minute): a key endpoint that
//! hangs costs no request any time. A token whose `kid` is not in the cache makes one request
//! wait for a refresh, at most every `TERN_OIDC_REFRESH_INTERVAL`, so forged key ids cannot turn
//! into a request flood towards Google; others arriving meanwhile are not queued behind it. A
//! missing or invalid token is a 401 problem; keys that cannot be fetched are a 503 problem with
//! `Retry-After`, so Pub/Sub retries rather than dead-letters the event.

use crate::config::{ConfigError, Env, Setting};
use crate::guard::{Guard, GuardLayer};
use crate::problem::Problem;
use axum::extract::Request;
use http::header;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// Google's published signing keys for ID tokens.
pub(crate) const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The issuers Google puts in ID tokens.
pub(crate) const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// The default shortest time between two key fetches caused by unknown key ids.
pub(crate) const MIN_REFRESH: Duration = Duration::from_secs(10);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The longest wait between two failed key fetches.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `TERN_OIDC`: whether calls must carry a Google-signed token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OidcMode {
    /// Accept calls without a token (local development).
    Off,
    /// Require a Google-signed token.
    Google,
}

impl Setting for OidcMode {
    const EXPECTED: &'static str = "google or off";
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "google" => Ok(Self::Google),
            "off" => Ok(Self::Off),
            other => Err(format!("expected google or off, got {other:?}")),
        }
    }
}

/// What a verified token says about its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The service account the token was issued to.
    pub email: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

/// The verifier for one function: `off`, or the audience, the accepted callers and the keys.
#[derive(Clone, Debug)]
pub struct GoogleOidc {
    verifier: Option<Arc<Verifier>>,
}

#[derive(Debug)]
struct Verifier {
    audience: String,
    accounts: Vec<String>,
    jwks_url: String,
    refresh_interval: Duration,
    http: reqwest::Client,
    keys: RwLock<KeyCache>,
    /// Held by the one fetch that may run at a time.
    refresh: Arc<Mutex<()>>,
}

#[derive(Debug, Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    max_age: Duration,
    /// Fetches failed in a row.
    failures: u32,
    /// No fetch before this, after a failure.
    retry_at: Option<Instant>,
}

impl KeyCache {
    fn fresh(&self) -> bool {
        self.fetched_at
            .is_some_and(|at| at.elapsed() < self.max_age)
    }
    fn fetched_within(&self, interval: Duration) -> bool {
        self.fetched_at.is_some_and(|at| at.elapsed() < interval)
    }
    fn backoff_left(&self) -> Option<Duration> {
        self.retry_at
            .and_then(|at| at.checked_duration_since(Instant::now()))
    }
    fn backing_off(&self) -> bool {
        self.backoff_left().is_some()
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// No usable `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// The token is malformed, expired, for another audience or issuer, badly signed, or from a
    /// caller that is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The keys could not be fetched; the call may succeed later.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl From<OidcError> for Problem {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Missing => Problem::unauthorized(
                "Send Authorization: Bearer <Google-signed OIDC token> (a Pub/Sub push subscription or Cloud Scheduler job with an OIDC token).",
            ),
            OidcError::Invalid(why) => {
                Problem::unauthorized(format!("The OIDC token is not accepted: {why}."))
            }
            OidcError::KeysUnavailable(why) => Problem::unavailable(
                format!("Google's signing keys could not be fetched ({why}); retry later."),
                RETRY_AFTER,
            ),
        }
    }
}

impl GoogleOidc {
    /// A verifier that accepts every call.
    pub fn off() -> Self {
        Self { verifier: None }
    }

    /// Reads the `TERN_OIDC*` settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        if env.or("TERN_OIDC", OidcMode::Off)? == OidcMode::Off {
            return Ok(Self::off());
        }
        let audience: String = env.required("TERN_OIDC_AUDIENCE")?;
        let accounts: String = env.required("TERN_OIDC_SERVICE_ACCOUNTS")?;
        let accounts: Vec<String> = accounts
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = accounts.iter().find(|a| !a.contains('@')) {
            return Err(ConfigError::new(
                "TERN_OIDC_SERVICE_ACCOUNTS",
                format!("expected comma-separated service-account emails, got {bad:?}"),
            ));
        }
        if accounts.is_empty() {
            return Err(ConfigError::new(
                "TERN_OIDC_SERVICE_ACCOUNTS",
                "lists no service accounts",
            ));
        }
        let jwks_url = env
            .raw("TERN_OIDC_JWKS_URL")
            .unwrap_or(GOOGLE_JWKS_URL)
            .trim()
            .to_owned();
        check_jwks_url(&jwks_url)?;
        let refresh_interval = env.or("TERN_OIDC_REFRESH_INTERVAL", MIN_REFRESH)?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::new("TERN_OIDC_JWKS_URL", format!("HTTP client: {e}")))?;
        Ok(Self {
            verifier: Some(Arc::new(Verifier {
                audience,
                accounts,
                jwks_url,
                refresh_interval,
                http,
                keys: RwLock::new(KeyCache::default()),
                refresh: Arc::new(Mutex::new(())),
            })),
        })
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// Verifies the request's token. `Ok(None)` when verification is off.
    pub async fn verify_request(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<Caller>, OidcError> {
        let Some(v) = &self.verifier else {
            return Ok(None);
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(OidcError::Missing)?;
        v.verify(token).await.map(Some)
    }

    /// A layer that answers 401 (or 503 while keys cannot be fetched) unless the request carries
    /// an accepted token; a no-op when verification is off.
    pub fn layer(&self) -> RequireGoogleOidc {
        GuardLayer::new(self.clone())
    }
}

fn check_jwks_url(url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| ConfigError::new("TERN_OIDC_JWKS_URL", format!("{why}, got {url:?}"));
    let uri: http::Uri = url.parse().map_err(|_| bad("expected a URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if host == "127.0.0.1" || host == "[::1]" || host == "localhost" => Ok(()),
        _ => Err(bad("expected an https URL (http only on loopback)")),
    }
}

impl Verifier {
    async fn verify(self: &Arc<Self>, token: &str) -> Result<Caller, OidcError> {
        let head = jsonwebtoken::decode_header(token)
            .map_err(|e| OidcError::Invalid(format!("malformed token ({e})")))?;
        if head.alg != Algorithm::RS256 {
            return Err(OidcError::Invalid(format!(
                "algorithm {:?} is not RS256",
                head.alg
            )));
        }
        let kid = head
            .kid
            .ok_or_else(|| OidcError::Invalid("the token names no key (kid)".into()))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.leeway = 60;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| OidcError::Invalid(describe(&e)))?;
        let email = data
            .claims
            .email
            .ok_or_else(|| OidcError::Invalid("the token carries no email claim".into()))?;
        if !data.claims.email_verified {
            return Err(OidcError::Invalid(
                "the token's email is not verified".into(),
            ));
        }
        if !self.accounts.iter().any(|a| a.eq_ignore_ascii_case(&email)) {
            tracing::warn!(caller = %email, "OIDC token from a service account that is not allowed");
            return Err(OidcError::Invalid(format!(
                "{email} is not an allowed caller"
            )));
        }
        Ok(Caller { email })
    }

    /// The key for `kid`. A known key is served from the cache even when the cache is stale:
    /// a stale cache is refreshed in the background, one fetch at a time, with a backoff after
    /// each failure, so a key endpoint that hangs never holds up a request. An unknown `kid`
    /// (a rotation) makes one request wait for a fetch, no sooner than
    /// `TERN_OIDC_REFRESH_INTERVAL` after the last one; while that fetch runs, or while a
    /// failed fetch backs off, other requests for unknown keys get a 503 at once.
    async fn key(self: &Arc<Self>, kid: &str) -> Result<DecodingKey, OidcError> {
        let unknown = || OidcError::Invalid(format!("unknown signing key {kid:?}"));
        {
            let cache = self.keys.read().await;
            if let Some(k) = cache.keys.get(kid) {
                if !cache.fresh() && !cache.backing_off() {
                    self.refresh_in_background();
                }
                return Ok(k.clone());
            }
            if cache.fresh() && cache.fetched_within(self.refresh_interval) {
                return Err(unknown());
            }
            if let Some(wait) = cache.backoff_left() {
                // The key may be a rotation the failed fetch would have brought: retryable.
                return Err(OidcError::KeysUnavailable(format!(
                    "the last fetch failed; the next one is in {} ms",
                    wait.as_millis()
                )));
            }
        }
        let Ok(_single_flight) = self.refresh.clone().try_lock_owned() else {
            return Err(OidcError::KeysUnavailable(
                "the keys are being fetched".into(),
            ));
        };
        {
            // Another request may have refreshed just before this one took the lock.
            let cache = self.keys.read().await;
            if let Some(k) = cache.keys.get(kid) {
                return Ok(k.clone());
            }
            if cache.fresh() && cache.fetched_within(self.refresh_interval) {
                return Err(unknown());
            }
        }
        self.refresh_now()
            .await
            .map_err(OidcError::KeysUnavailable)?;
        self.keys
            .read()
            .await
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(unknown)
    }

    /// Starts a refresh in the background unless one is running.
    fn refresh_in_background(self: &Arc<Self>) {
        let Ok(guard) = self.refresh.clone().try_lock_owned() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _single_flight = guard;
            if !this.keys.read().await.fresh() {
                let _ = this.refresh_now().await;
            }
        });
    }

    /// Fetches the keys and replaces the cache; on failure keeps the cached keys and backs off
    /// (1 s, doubling, at most a minute). The caller holds the refresh lock.
    async fn refresh_now(&self) -> Result<(), String> {
        match self.fetch().await {
            Ok((keys, max_age)) => {
                tracing::info!(
                    keys = keys.len(),
                    max_age_s = max_age.as_secs(),
                    "fetched OIDC signing keys"
                );
                *self.keys.write().await = KeyCache {
                    keys,
                    fetched_at: Some(Instant::now()),
                    max_age,
                    failures: 0,
                    retry_at: None,
                };
                Ok(())
            }
            Err(why) => {
                let mut cache = self.keys.write().await;
                cache.failures = cache.failures.saturating_add(1);
                let backoff = (Duration::from_secs(1) * 2u32.saturating_pow(cache.failures - 1))
                    .min(MAX_BACKOFF);
                cache.retry_at = Some(Instant::now() + backoff);
                tracing::warn!(
                    url = %self.jwks_url,
                    error = %why,
                    cached_keys = cache.keys.len(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "could not fetch OIDC signing keys; cached keys stay in use"
                );
                Err(why)
            }
        }
    }

    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Duration), String> {
        let res = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status().as_u16()));
        }
        let max_age = res
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_MAX_AGE)
            .min(LONGEST_MAX_AGE);
        let body = res.bytes().await.map_err(|e| e.to_string())?;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), AlgorithmParameters::RSA(rsa)) = (&jwk.common.key_id, &jwk.algorithm)
            else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_rsa_components(&rsa.n, &rsa.e) {
                keys.insert(kid.clone(), key);
            }
        }
        if keys.is_empty() {
            return Err("the key set has no RSA keys".into());
        }
        Ok((keys, max_age))
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token is not issued by Google".into(),
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        other => format!("invalid token ({other:?})"),
    }
}

fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// See [`GoogleOidc::layer`]. A verified caller is put in the request's extensions as
/// [`Caller`].
pub type RequireGoogleOidc = GuardLayer<GoogleOidc>;

impl Guard for GoogleOidc {
    fn active(&self) -> bool {
        self.enabled()
    }

    async fn admit(&self, req: &mut Request) -> Result<(), Problem> {
        match self.verify_request(req.headers()).await {
            Ok(caller) => {
                if let Some(caller) = caller {
                    req.extensions_mut().insert(caller);
                }
                Ok(())
            }
            Err(e) => {
                tracing::info!(reason = %e, "call refused: OIDC");
                Err(Problem::from(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_at_start() {
        let env = |pairs: &[(&str, &str)]| Env::from_pairs(pairs.iter().copied());
        assert!(!GoogleOidc::from_env(&env(&[])).unwrap().enabled());
        let e = GoogleOidc::from_env(&env(&[("TERN_OIDC", "yes")])).unwrap_err();
        assert_eq!(e.var, "TERN_OIDC");
        let e = GoogleOidc::from_env(&env(&[("TERN_OIDC", "google")])).unwrap_err();
        assert_eq!(e.var, "TERN_OIDC_AUDIENCE");
        let e = GoogleOidc::from_env(&env(&[
            ("TERN_OIDC", "google"),
            ("TERN_OIDC_AUDIENCE", "https://x"),
            ("TERN_OIDC_SERVICE_ACCOUNTS", "push"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "TERN_OIDC_SERVICE_ACCOUNTS");
        let e = GoogleOidc::from_env(&env(&[
            ("TERN_OIDC", "google"),
            ("TERN_OIDC_AUDIENCE", "https://x"),
            (
                "TERN_OIDC_SERVICE_ACCOUNTS",
                "push@p.iam.gserviceaccount.com",
            ),
            ("TERN_OIDC_JWKS_URL", "http://keys.example.com/certs"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "TERN_OIDC_JWKS_URL");
        assert!(
            GoogleOidc::from_env(&env(&[
                ("TERN_OIDC", "google"),
                ("TERN_OIDC_AUDIENCE", "https://x"),
                (
                    "TERN_OIDC_SERVICE_ACCOUNTS",
                    "push@p.iam.gserviceaccount.com"
                ),
            ]))
            .unwrap()
            .enabled()
        );
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=22155, must-revalidate, no-transform"),
            Some(Duration::from_secs(22155))
        );
        assert_eq!(max_age("no-store"), None);
    }
}
