//! Bearer API keys for back-office calls, as a tower layer.
//!
//! Keys are configured as SHA-256 hashes (hex), never as keys: a leaked configuration does not
//! leak a usable key. `ApiKeys::from_secret(ctx, "ORDERS_API_KEY_HASHES")` reads a
//! comma-separated list through [`crate::secrets`], so in Google Cloud it comes from Secret
//! Manager. Generate a key and its hash with `scripts/dev api-key`.

use crate::config::ConfigError;
use crate::context::Context;
use crate::guard::{Guard, GuardLayer};
use crate::problem::Problem;
use axum::extract::Request;
use http::header;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The accepted key hashes.
#[derive(Clone, Debug)]
pub struct ApiKeys {
    hashes: Arc<Vec<[u8; 32]>>,
}

impl ApiKeys {
    /// Parses a comma-separated list of hex SHA-256 hashes; `var` names the setting in errors.
    pub fn from_hashes(var: &str, list: &str) -> Result<Self, ConfigError> {
        let mut hashes = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bytes = hex::decode(item)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    ConfigError::new(
                        var,
                        "expected comma-separated SHA-256 hashes (64 hex characters each)",
                    )
                })?;
            let mut h = [0u8; 32];
            h.copy_from_slice(&bytes);
            hashes.push(h);
        }
        if hashes.is_empty() {
            return Err(ConfigError::new(var, "lists no key hashes"));
        }
        Ok(Self {
            hashes: Arc::new(hashes),
        })
    }

    /// Reads the hashes from the secret setting `var` (see [`crate::secrets`]); required.
    pub async fn from_secret(ctx: &Context, var: &str) -> Result<Self, ConfigError> {
        match crate::secrets::resolve(ctx.env(), var).await? {
            Some(list) => Self::from_hashes(var, &list),
            None => Err(ConfigError::new(
                var,
                format!(
                    "is required (SHA-256 hashes of the API keys; or {var}_FILE / {var}_SECRET) but not set"
                ),
            )),
        }
    }

    /// The hex SHA-256 of `key`, the form configuration takes.
    pub fn hash(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    /// Whether `key` is one of the configured keys. Compares in constant time.
    pub fn accepts(&self, key: &str) -> bool {
        let digest = Sha256::digest(key.as_bytes());
        let mut ok = subtle::Choice::from(0);
        for h in self.hashes.iter() {
            ok |= h.as_slice().ct_eq(digest.as_slice());
        }
        ok.into()
    }

    /// A layer that answers 401 unless `Authorization: Bearer <key>` carries an accepted key.
    pub fn layer(&self) -> RequireApiKey {
        GuardLayer::new(self.clone())
    }
}

/// See [`ApiKeys::layer`].
pub type RequireApiKey = GuardLayer<ApiKeys>;

impl Guard for ApiKeys {
    async fn admit(&self, req: &mut Request) -> Result<(), Problem> {
        check(self, req)
    }
}

fn check(keys: &ApiKeys, req: &Request) -> Result<(), Problem> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(Problem::unauthorized(
            "Send Authorization: Bearer <API key>.",
        ));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Problem::unauthorized("Send Authorization: Bearer <API key>."))?;
    if keys.accepts(key) {
        Ok(())
    } else {
        tracing::warn!("request with an unknown API key");
        Err(Problem::unauthorized("The API key is not valid."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::response::{IntoResponse, Response};
    use tower::{Layer, Service, ServiceExt};

    fn service()
    -> impl Service<Request, Response = Response, Error = std::convert::Infallible> + Clone {
        let keys = ApiKeys::from_hashes("K", &ApiKeys::hash("s3cret")).unwrap();
        keys.layer().layer(tower::service_fn(|_req: Request| async {
            Ok::<_, std::convert::Infallible>("ok".into_response())
        }))
    }

    async fn status(auth: Option<&str>) -> u16 {
        let mut req = Request::new(Body::empty());
        if let Some(a) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        service().oneshot(req).await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn only_the_right_key_passes() {
        assert_eq!(status(None).await, 401);
        assert_eq!(status(Some("Bearer wrong")).await, 401);
        assert_eq!(status(Some("Basic czNjcmV0")).await, 401);
        assert_eq!(status(Some("Bearer ")).await, 401);
        assert_eq!(status(Some("Bearer s3cret")).await, 200);
    }

    #[test]
    fn bad_hash_lists_are_config_errors() {
        assert!(ApiKeys::from_hashes("K", "").is_err());
        assert!(ApiKeys::from_hashes("K", "abc").is_err());
        let e = ApiKeys::from_hashes("ORDERS_API_KEY_HASHES", "zz").unwrap_err();
        assert_eq!(e.var, "ORDERS_API_KEY_HASHES");
    }
}
