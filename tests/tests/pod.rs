//! A function as Knative runs it: in a network namespace of its own, behind Knative Serving's
//! own queue-proxy (built here from its Go module), reached over h2c as Kourier reaches it, and
//! counted in queue-proxy's request metrics on :9091 as the platform's PodMonitoring scrapes
//! them. Needs root for the namespace (CI runs as root).

use serde_json::Value;
use tern_e2e::*;
use tern_local::{Pod, RevisionSettings};

/// The chart's `defaults.timeoutSeconds` (the revision timeout Knative gives queue-proxy).
fn chart_timeout_seconds() -> u32 {
    let text = std::fs::read_to_string(root().join("knative/chart/tern-functions/values.yaml"))
        .expect("chart values");
    let values: Value = serde_norway::from_str(&text).expect("chart values YAML");
    values["defaults"]["timeoutSeconds"]
        .as_u64()
        .expect("defaults.timeoutSeconds") as u32
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_behind_queue_proxy_answers_over_h2c_and_is_counted() {
    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    let order: Value = sys
        .create_order(&create, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();

    let table = table();
    let get = table.function("orders-get").unwrap();
    let revision = RevisionSettings {
        container_concurrency: get.scale.concurrency,
        timeout_seconds: chart_timeout_seconds(),
    };
    let pod = Pod::start(
        &bin_dir(),
        &root().join(".local/bin/queue"),
        get,
        &sys.env,
        &revision,
        Output::Quiet,
    )
    .expect("the orders-get pod");

    // Through queue-proxy, over h2c, to the function (which reads PostgreSQL from the pod).
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = h2c
            .get(format!("{}/api/orders/{id}", pod.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        statuses.push(r.status().as_u16());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["id"], id);
    }
    assert_eq!(statuses, [200; 5]);
    let missing = h2c
        .get(format!(
            "{}/api/orders/ord_00000000000000000000000000",
            pod.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["status"], 404);

    // queue-proxy counted them, by status, where the PodMonitoring scrapes.
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
        .get(pod.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |status: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
            .filter(|l| l.contains(&format!("http_response_status_code=\"{status}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("200"), 5.0, "{metrics}");
    assert_eq!(count("404"), 1.0, "{metrics}");
}
