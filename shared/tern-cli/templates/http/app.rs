use axum::{Json, Router, routing::__AXUM_METHOD__};
use serde_json::{Value, json};
use tern::{Context, Problem, StartError};

/// Builds the function once, at start: read settings from `ctx.env()`, connect what the routes
/// need (`tern_db::Db::connect(&ctx)` for the database pool), and return the routes. An error
/// here is one line naming the bad setting, and a non-zero exit.
pub async fn app(_ctx: Context) -> Result<Router, StartError> {
    Ok(Router::new().route("__PATH__", __AXUM_METHOD__(handle)))
}

/// Answers with JSON. An error is a [`Problem`]: an RFC 9457 `application/problem+json` answer.
async fn handle() -> Result<Json<Value>, Problem> {
    Ok(Json(json!({"hello": "from __NAME__"})))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tern::{Context, Env};
    use tower::ServiceExt;

    /// The function inside the runtime's whole stack (request ids, access log, problem bodies,
    /// timeout, body limit, metrics), as `tern::run` serves it.
    async fn function() -> axum::Router {
        let env = Env::from_pairs([("TERN_HTTP_ROUTES", "__METHOD__ __PATH__".to_owned())]);
        let ctx = Context::for_env(env).expect("the settings");
        let app = super::app(ctx.clone()).await.expect("the function starts");
        tern::platform::assemble(app, &ctx)
    }

    async fn call(method: &str, path: &str) -> (StatusCode, String, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("a request");
        let res = function().await.oneshot(req).await.expect("an answer");
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
            .await
            .expect("the body");
        let json = serde_json::from_slice(&body).unwrap_or_default();
        (status, content_type, json)
    }

    #[tokio::test]
    async fn answers_its_route() {
        let (status, _, body) = call("__METHOD__", "__SAMPLE_PATH__").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["hello"], "from __NAME__");
    }

    #[tokio::test]
    async fn anything_else_is_a_problem() {
        let (status, content_type, body) = call("__METHOD__", "/__NAME__/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["status"], 404);
    }
}
