//! A load loop of our own for the drills, where we need every request's time and status
//! (wrk only reports totals).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

/// One request's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it started, since the load began.
    pub at: Duration,
    /// How long it took.
    pub took: Duration,
    /// The status, or 0 for a transport error or a timeout.
    pub status: u16,
}

/// The client type.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Runs `workers` loops of GET (or POST `body`) `url` until `duration` has passed.
pub async fn run(url: &str, workers: usize, body: Option<&str>, duration: Duration) -> Vec<Sample> {
    let start = Instant::now();
    let tasks = (0..workers).map(|_| {
        let url = url.to_owned();
        let body = body.map(str::to_owned);
        tokio::spawn(async move {
            let c = client();
            let mut out = Vec::new();
            while start.elapsed() < duration {
                let t = Instant::now();
                let status = one(&c, &url, body.as_deref()).await;
                out.push(Sample {
                    at: t - start,
                    took: t.elapsed(),
                    status,
                });
            }
            out
        })
    });
    let mut all: Vec<Sample> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    all.sort_by_key(|s| s.at);
    all
}

/// One request; 0 on a transport error or after 10 s.
pub async fn one(c: &Client<HttpConnector, Full<Bytes>>, url: &str, body: Option<&str>) -> u16 {
    let req = match body {
        Some(b) => http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(b.to_owned()))),
        None => http::Request::get(url).body(Full::new(Bytes::new())),
    };
    let Ok(req) = req else { return 0 };
    match tokio::time::timeout(Duration::from_secs(10), async {
        let res = c.request(req).await.ok()?;
        let status = res.status().as_u16();
        res.into_body().collect().await.ok()?;
        Some(status)
    })
    .await
    {
        Ok(Some(s)) => s,
        _ => 0,
    }
}
