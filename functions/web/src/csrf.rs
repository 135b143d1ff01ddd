//! CSRF protection for the form post: a random value in a `SameSite=Strict` cookie, and in the
//! form its HMAC under a server secret. A cross-site page can neither read the cookie nor forge
//! the HMAC; a post without both, or with a foreign `Origin`, is refused with 403.

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "tern_csrf";

#[derive(Clone)]
pub struct Csrf {
    secret: Vec<u8>,
    secure_cookie: bool,
}

impl Csrf {
    pub fn new(secret: &str, secure_cookie: bool) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            secure_cookie,
        }
    }

    /// The cookie value the browser has, if any.
    pub fn cookie(headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, v)| {
                *k == COOKIE && v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .map(|(_, v)| v.to_owned())
    }

    /// A new cookie value and its `Set-Cookie` header.
    pub fn new_cookie(&self) -> (String, String) {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let value = hex::encode(raw);
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        let header = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}");
        (value, header)
    }

    /// The form token for a cookie value.
    pub fn token(&self, cookie: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(cookie.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether a post carries a valid cookie and token from our own origin.
    pub fn verify(&self, headers: &HeaderMap, form_token: &str) -> bool {
        if let Some(origin) = headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
        {
            let host = headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            if origin == "null" || origin_host != host {
                return false;
            }
        }
        let Some(cookie) = Self::cookie(headers) else {
            return false;
        };
        self.token(&cookie)
            .as_bytes()
            .ct_eq(form_token.as_bytes())
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_must_match_cookie_and_origin() {
        let csrf = Csrf::new("0123456789abcdef0123456789abcdef", false);
        let (value, header) = csrf.new_cookie();
        assert!(header.contains("HttpOnly; SameSite=Strict"));
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("other=1; {COOKIE}={value}").parse().unwrap(),
        );
        h.insert(http::header::HOST, "127.0.0.1:8080".parse().unwrap());
        let token = csrf.token(&value);
        assert!(csrf.verify(&h, &token));
        assert!(!csrf.verify(&h, "00"));
        h.insert(http::header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!csrf.verify(&h, &token));
        h.insert(
            http::header::ORIGIN,
            "http://127.0.0.1:8080".parse().unwrap(),
        );
        assert!(csrf.verify(&h, &token));
        h.remove(http::header::COOKIE);
        assert!(!csrf.verify(&h, &token));
    }
}
