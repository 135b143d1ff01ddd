//! CSRF protection for the form post: a random value in a `SameSite=Strict` cookie, and in the
//! form its HMAC under a server secret. A cross-site page can neither read the cookie nor forge
//! the HMAC. The post must also come from one of the public origins the site is served at
//! (`TERN_PUBLIC_ORIGINS`, rendered by the chart from the hosts the Gateway routes): `Origin`,
//! or `Referer` when a browser sent no `Origin`. `Host` is never consulted: behind the Gateway
//! it is the function's cluster-local name, not the one the browser used.

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tern::ConfigError;

/// The cookie's name.
pub const COOKIE: &str = "tern_csrf";
/// The setting naming the origins the form may be posted from.
pub const ORIGINS_VAR: &str = "TERN_PUBLIC_ORIGINS";

/// Why a post was refused (logged; the client gets the same 403 page for every reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Origin: null` (a sandboxed frame, a privacy redirect, a `data:` page).
    NullOrigin,
    /// An origin that is not one of ours.
    ForeignOrigin,
    /// Neither `Origin` nor `Referer`: nothing says where the post came from.
    NoOrigin,
    /// No CSRF cookie, or a form token that is not its HMAC.
    BadToken,
}

impl Refusal {
    /// A short reason for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NullOrigin => "Origin is null",
            Self::ForeignOrigin => "Origin (or Referer) is not a public origin of this site",
            Self::NoOrigin => "neither Origin nor Referer",
            Self::BadToken => "missing cookie or wrong form token",
        }
    }
}

#[derive(Clone)]
pub struct Csrf {
    secret: Vec<u8>,
    secure_cookie: bool,
    origins: Vec<String>,
}

/// `scheme://host[:port]` in canonical form (lower case, default port dropped), or `None` when
/// `raw` is not an absolute http(s) URL.
fn origin_of(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    match url.origin() {
        o @ url::Origin::Tuple(..) => Some(o.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// Parses `TERN_PUBLIC_ORIGINS`: comma-separated `http(s)://host[:port]`, nothing after the
/// authority.
pub fn parse_origins(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            ConfigError::new(
                ORIGINS_VAR,
                format!(
                    "expected comma-separated origins like https://orders.example.com, got {item:?}"
                ),
            )
        };
        let origin = origin_of(item).ok_or_else(bad)?;
        // An origin has no path, query or fragment: "https://a.example/" is tolerated, more is not.
        let whole = url::Url::parse(item).map_err(|_| bad())?;
        if whole.path() != "/"
            || whole.query().is_some()
            || whole.fragment().is_some()
            || !whole.username().is_empty()
        {
            return Err(bad());
        }
        out.push(origin);
    }
    if out.is_empty() {
        return Err(ConfigError::new(
            ORIGINS_VAR,
            "is required (the origins the pages are served at, e.g. https://orders.example.com) but not set",
        ));
    }
    Ok(out)
}

impl Csrf {
    pub fn new(secret: &str, secure_cookie: bool, origins: Vec<String>) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            secure_cookie,
            origins,
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

    /// Whether the post came from one of our public origins.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let claimed = match header(http::header::ORIGIN) {
            Some(o) if o.trim() == "null" => return Err(Refusal::NullOrigin),
            Some(o) => o,
            None => header(http::header::REFERER).ok_or(Refusal::NoOrigin)?,
        };
        match origin_of(claimed.trim()) {
            Some(o) if self.origins.contains(&o) => Ok(()),
            _ => Err(Refusal::ForeignOrigin),
        }
    }

    /// Whether a post carries a valid cookie and token from one of our public origins.
    pub fn verify(&self, headers: &HeaderMap, form_token: &str) -> Result<(), Refusal> {
        self.check_origin(headers)?;
        let cookie = Self::cookie(headers).ok_or(Refusal::BadToken)?;
        if bool::from(self.token(&cookie).as_bytes().ct_eq(form_token.as_bytes())) {
            Ok(())
        } else {
            Err(Refusal::BadToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "https://orders.example.com";

    fn csrf() -> Csrf {
        let origins = parse_origins(&format!("{SITE}, http://127.0.0.1:8080")).unwrap();
        Csrf::new("0123456789abcdef0123456789abcdef", true, origins)
    }

    /// A post with a valid cookie and token, and the given headers.
    fn post(csrf: &Csrf, extra: &[(&str, &str)]) -> Result<(), Refusal> {
        let (value, _) = csrf.new_cookie();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("other=1; {COOKIE}={value}").parse().unwrap(),
        );
        for (k, v) in extra {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        csrf.verify(&h, &csrf.token(&value))
    }

    #[test]
    fn the_public_origin_passes_whatever_the_host() {
        let c = csrf();
        // Behind the Gateway: Host is the cluster-local name, Origin the public one.
        let host = ("host", "web.tern.svc.cluster.local");
        assert_eq!(post(&c, &[host, ("origin", SITE)]), Ok(()));
        assert_eq!(
            post(&c, &[("origin", "HTTPS://Orders.Example.com:443")]),
            Ok(())
        );
        assert_eq!(post(&c, &[("origin", "http://127.0.0.1:8080")]), Ok(()));
        // No Origin: the Referer's origin decides.
        assert_eq!(
            post(&c, &[host, ("referer", "https://orders.example.com/?x=1")]),
            Ok(())
        );
    }

    #[test]
    fn foreign_null_and_missing_origins_are_refused() {
        let c = csrf();
        let host = ("host", "orders.example.com");
        assert_eq!(
            post(&c, &[host, ("origin", "https://evil.example")]),
            Err(Refusal::ForeignOrigin)
        );
        // Same host, other scheme or port: another origin.
        assert_eq!(
            post(&c, &[("origin", "http://orders.example.com")]),
            Err(Refusal::ForeignOrigin)
        );
        assert_eq!(
            post(&c, &[("origin", "https://orders.example.com:8443")]),
            Err(Refusal::ForeignOrigin)
        );
        assert_eq!(post(&c, &[("origin", "null")]), Err(Refusal::NullOrigin));
        assert_eq!(post(&c, &[host]), Err(Refusal::NoOrigin));
        assert_eq!(
            post(&c, &[("referer", "https://evil.example/orders")]),
            Err(Refusal::ForeignOrigin)
        );
        // A foreign Origin is not excused by a good Referer.
        assert_eq!(
            post(&c, &[("origin", "https://evil.example"), ("referer", SITE)]),
            Err(Refusal::ForeignOrigin)
        );
    }

    #[test]
    fn the_token_must_match_the_cookie() {
        let c = csrf();
        let (value, header) = c.new_cookie();
        assert!(header.contains("HttpOnly; SameSite=Strict; Secure"));
        let mut h = HeaderMap::new();
        h.insert(http::header::ORIGIN, SITE.parse().unwrap());
        h.insert(
            http::header::COOKIE,
            format!("{COOKIE}={value}").parse().unwrap(),
        );
        assert_eq!(c.verify(&h, &c.token(&value)), Ok(()));
        assert_eq!(c.verify(&h, "00"), Err(Refusal::BadToken));
        h.remove(http::header::COOKIE);
        assert_eq!(c.verify(&h, &c.token(&value)), Err(Refusal::BadToken));
    }

    #[test]
    fn origins_are_validated_at_start() {
        assert_eq!(
            parse_origins("https://a.example, http://localhost:8080/").unwrap(),
            ["https://a.example", "http://localhost:8080"]
        );
        for bad in [
            "",
            " , ",
            "a.example",
            "https://a.example/path",
            "ftp://a.example",
            "https://a.example?q",
        ] {
            let err = parse_origins(bad).unwrap_err();
            assert_eq!(err.var, ORIGINS_VAR, "{bad}");
        }
    }
}
