//! One error type for every function: [`Problem`], rendered as RFC 9457
//! `application/problem+json`.
//!
//! The `type` member is a stable URI under [`PROBLEM_BASE`] followed by a slug such as
//! `validation-failed`; clients switch on it. The slugs are listed in `docs/openapi.yaml`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use std::time::Duration;

/// Where problem types live. The `type` of every problem is this plus a slug.
pub const PROBLEM_BASE: &str = "urn:tern:problem:";

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error a handler returns; the response is a problem+json document.
///
/// Boxed, so `Result<T, Problem>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
pub struct Problem {
    inner: Box<ProblemBody>,
}

#[derive(Debug, Clone, Serialize)]
struct ProblemBody {
    #[serde(skip)]
    status: StatusCode,
    #[serde(rename = "type")]
    type_uri: String,
    title: String,
    #[serde(rename = "status")]
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    /// Per-field errors for `validation-failed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    #[serde(skip)]
    retry_after: Option<Duration>,
    #[serde(skip)]
    extra_headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// One invalid field: a JSON pointer to it and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer to the field, such as `/items/0/quantity`.
    pub pointer: String,
    /// What is wrong, in words a person can act on.
    pub detail: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

impl Problem {
    /// A problem of type `slug` with the given status and title.
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Self {
            inner: Box::new(ProblemBody {
                status,
                type_uri: format!("{PROBLEM_BASE}{slug}"),
                title: title.into(),
                status_code: status.as_u16(),
                detail: None,
                instance: None,
                errors: Vec::new(),
                retry_after: None,
                extra_headers: Vec::new(),
            }),
        }
    }

    /// Adds a human-readable explanation specific to this occurrence.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.inner.detail = Some(detail.into());
        self
    }

    /// Adds per-field errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.inner.errors = errors;
        self
    }

    /// Sets `Retry-After` (whole seconds, at least 1).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.inner.retry_after = Some(after);
        self
    }

    /// Adds a response header (for example `WWW-Authenticate`).
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.inner.extra_headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.inner.status
    }

    /// The full `type` URI.
    pub fn type_uri(&self) -> &str {
        &self.inner.type_uri
    }

    /// The slug part of the `type` URI.
    pub fn slug(&self) -> &str {
        self.inner.type_uri.trim_start_matches(PROBLEM_BASE)
    }

    /// The per-field errors of a `validation-failed` problem (empty for any other).
    pub fn errors(&self) -> &[FieldError] {
        &self.inner.errors
    }

    /// The occurrence's explanation, if any.
    pub fn detail(&self) -> Option<&str> {
        self.inner.detail.as_deref()
    }

    // Common problems. Every function uses these so the same situation always has the
    // same `type`.

    /// 400: the body is not well-formed.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
        )
        .with_detail(detail)
    }

    /// 422: well-formed but invalid input.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.pointer, e.detail))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            "The request is not valid",
        )
        .with_detail(detail)
        .with_errors(errors)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(detail)
    }

    /// 401 with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            .with_detail(detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 503 with `Retry-After`: a dependency is unavailable; try again.
    pub fn unavailable(detail: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service-unavailable",
            "Temporarily unavailable",
        )
        .with_detail(detail)
        .with_retry_after(retry_after)
    }

    /// 500: a bug. The detail is logged, never sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal error",
        )
        .with_detail("The error was logged; retrying will not help until it is fixed.")
    }

    /// The generic problem for a status produced outside a handler (routing, limits).
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, title) = match status {
            StatusCode::NOT_FOUND => ("not-found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Request body too large"),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                ("header-too-large", "Request header fields too large")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported-media-type", "Unsupported media type")
            }
            StatusCode::GATEWAY_TIMEOUT => ("timeout", "The request took too long"),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "The request took too long"),
            StatusCode::SERVICE_UNAVAILABLE => ("service-unavailable", "Temporarily unavailable"),
            StatusCode::UNAUTHORIZED => ("unauthorized", "Unauthorized"),
            StatusCode::FORBIDDEN => ("forbidden", "Forbidden"),
            s if s.is_server_error() => ("internal-error", "Internal error"),
            _ => ("bad-request", "Bad request"),
        };
        Self::new(status, slug, title)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        // Serializing a struct of strings and numbers cannot fail.
        serde_json::to_string(&*self.inner).unwrap_or_else(|_| String::from("{}"))
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.inner.status_code, self.slug())?;
        if let Some(d) = &self.inner.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut res = (self.inner.status, self.body()).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(after) = self.inner.retry_after {
            let secs = after.as_secs().max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.inner.extra_headers {
            headers.insert(name, value);
        }
        res
    }
}

/// Whether a response already carries a problem document.
pub(crate) fn is_problem(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn renders_rfc9457_with_retry_after() {
        let res =
            Problem::unavailable("database is down", Duration::from_millis(1500)).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "urn:tern:problem:service-unavailable");
        assert_eq!(v["status"], 503);
        assert_eq!(v["detail"], "database is down");
        assert!(v.get("errors").is_none());
    }

    #[test]
    fn validation_lists_fields() {
        let p = Problem::validation(vec![FieldError::new("/currency", "not an ISO 4217 code")]);
        assert_eq!(p.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p.slug(), "validation-failed");
        let v: serde_json::Value = serde_json::from_str(&p.body()).unwrap();
        assert_eq!(v["errors"][0]["pointer"], "/currency");
    }
}
