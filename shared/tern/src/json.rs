//! [`Json`]: a request-body extractor whose every rejection is a problem a client can act on.

use crate::problem::{FieldError, Problem};
use axum::extract::{FromRequest, Request};
use http::{StatusCode, header};
use serde::de::DeserializeOwned;

/// Extracts a JSON body into `T`.
///
/// | input | answer |
/// |---|---|
/// | no `Content-Type`, or not `application/json` / `*+json` | 415 `unsupported-media-type` |
/// | body over the limit | 413 `payload-too-large` |
/// | not UTF-8 | 400 `malformed-request` |
/// | not JSON (syntax, truncated) | 400 `malformed-request`, with line and column |
/// | JSON of the wrong shape: unknown field, wrong type, number out of range | 422 `validation-failed`, with a pointer to the field |
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("Send the body as JSON with Content-Type: application/json."));
        }
        let bytes = read_body(req).await?;
        parse(&bytes).map(Json)
    }
}

/// Reads the whole body, mapping the body limit to 413.
pub async fn read_body(req: Request) -> Result<bytes::Bytes, Problem> {
    axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| {
            if is_length_limit(&e) {
                Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE)
                    .with_detail("The request body is larger than this function accepts.")
            } else {
                Problem::malformed(format!("The request body could not be read: {e}"))
            }
        })
}

fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Parses JSON bytes into `T` with the rejections described on [`Json`].
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(Problem::malformed("The request body is not valid UTF-8."));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let pointer = to_pointer(&e.path().to_string());
            let inner = e.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    Err(Problem::validation(vec![FieldError::new(
                        pointer,
                        strip_position(&inner.to_string()),
                    )]))
                }
                _ => Err(Problem::malformed(format!(
                    "The body is not valid JSON: {inner}"
                ))),
            }
        }
    }
}

/// `items[0].quantity` → `/items/0/quantity`; `.` (the root) → ``.
fn to_pointer(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let mut out = String::new();
    for seg in path.split('.') {
        let mut rest = seg;
        while let Some(open) = rest.find('[') {
            if open > 0 {
                out.push('/');
                out.push_str(&rest[..open]);
            }
            let close = rest[open..].find(']').map_or(rest.len(), |c| open + c);
            out.push('/');
            out.push_str(&rest[open + 1..close]);
            rest = rest.get(close + 1..).unwrap_or("");
        }
        if !rest.is_empty() {
            out.push('/');
            out.push_str(rest);
        }
    }
    out
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        sku: String,
        quantity: u16,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    #[test]
    fn syntax_errors_are_400() {
        let p = parse::<Order>(b"{\"items\": [").unwrap_err();
        assert_eq!(p.status(), StatusCode::BAD_REQUEST);
        assert_eq!(p.slug(), "malformed-request");
    }

    #[test]
    fn invalid_utf8_is_400() {
        let p = parse::<Order>(b"{\"items\": \"\xff\"}").unwrap_err();
        assert_eq!(p.status(), StatusCode::BAD_REQUEST);
        assert!(p.detail().unwrap().contains("UTF-8"));
    }

    #[test]
    fn shape_errors_are_422_with_a_pointer() {
        let p = parse::<Order>(br#"{"items":[{"sku":"a","quantity":70000}]}"#).unwrap_err();
        assert_eq!(p.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v: serde_json::Value = serde_json::from_str(&p.body()).unwrap();
        assert_eq!(v["errors"][0]["pointer"], "/items/0/quantity");

        let p = parse::<Order>(br#"{"items":[],"coupon":"x"}"#).unwrap_err();
        assert_eq!(p.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            p.detail().unwrap().contains("unknown field `coupon`"),
            "{p}"
        );
    }

    #[test]
    fn pointers_are_json_pointers() {
        assert_eq!(to_pointer("."), "");
        assert_eq!(to_pointer("items[0].quantity"), "/items/0/quantity");
        assert_eq!(to_pointer("a.b"), "/a/b");
    }

    #[test]
    fn content_types() {
        let mut h = http::HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/cloudevents+json".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
    }
}
