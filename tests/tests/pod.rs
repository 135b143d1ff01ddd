//! A function as Knative runs it: in a network namespace of its own, behind Knative Serving's
//! own queue-proxy (built here from its Go module), reached over h2c as Kourier reaches it, and
//! counted in queue-proxy's request metrics on :9091 and in the runtime's own on :9464, as the
//! chart's PodMonitorings scrape them. Needs root for the namespace (CI runs as root).

use serde_json::Value;
use tern_e2e::*;
use tern_local::{Pod, RevisionSettings};

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
    let revision: RevisionSettings = launcher().chart.revision(get);
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

    // And the runtime counted them on its own port, by route template (never the raw path),
    // leaving out queue-proxy's readiness probes; the pool says what it holds.
    let own = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
        .get(pod.function_metrics_url())
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.headers()["content-type"],
        tern::metrics::CONTENT_TYPE,
        "OpenMetrics text"
    );
    let own = own.text().await.unwrap();
    let series = |name: &str| -> Option<f64> {
        own.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let route = r#"http_request_method="GET",http_route="/api/orders/{id}""#;
    assert_eq!(
        series(&format!(
            r#"http_server_request_duration_seconds_count{{{route},http_response_status_code="200"}}"#
        )),
        Some(5.0),
        "{own}"
    );
    assert_eq!(
        series(&format!(
            r#"http_server_request_duration_seconds_count{{{route},http_response_status_code="404"}}"#
        )),
        Some(1.0),
        "{own}"
    );
    assert!(!own.contains("/_tern/") && !own.contains(id), "{own}");
    assert_eq!(
        series(&format!(r#"http_server_active_requests{{{route}}}"#)),
        Some(0.0),
        "{own}"
    );
    // (The pool is named after the database: the test's own.)
    let pool = |name: &str, state: &str| -> f64 {
        own.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(state))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let idle = pool("db_client_connection_count", r#"state="idle""#);
    let used = pool("db_client_connection_count", r#"state="used""#);
    assert!(idle >= 1.0 && used == 0.0, "{own}");
    assert_eq!(
        pool("db_client_connection_wait_time_seconds_count", ""),
        5.0,
        "one checkout per order read: {own}"
    );
}

/// A new revision replaces the old one under load through the whole path (router → queue-proxy
/// over h2c → function), the old pod deleted as the kubelet deletes it: SIGTERM to queue-proxy
/// while the function's preStop hook waits for its drain, and a second later out of the router's
/// endpoints (requests still reach it meanwhile); then SIGTERM to the function. No request may
/// fail. (About 35 s: queue-proxy drains until 30 s pass without a request.)
#[tokio::test(flavor = "multi_thread")]
async fn a_revision_swap_under_load_fails_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    assert!(
        matches!(launcher().runner, tern_local::Runner::Pods(_)),
        "the drill needs pods (root)"
    );
    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    let order: Value = sys
        .create_order(&create, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let base = sys.start("orders-get");
    let url = format!("{base}/api/orders/{}", order["id"].as_str().unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (url, stop, http) = (url.clone(), stop.clone(), sys.http.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    match http.get(&url).timeout(Duration::from_secs(10)).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failed.push(format!("HTTP {}", r.status())),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    sys.start_as("orders-get-2", "orders-get");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Deleting the old pod: the kubelet's SIGTERM and the endpoints update race, so requests keep
    // arriving at the old pod for a while after queue-proxy got SIGTERM; it serves them.
    let swapped = Instant::now();
    let Instance::Pod(mut old) = sys.take("orders-get") else {
        panic!("orders-get is not a pod");
    };
    let old_addr = old.addr();
    let ending = tokio::task::spawn_blocking(move || old.terminate());
    tokio::time::sleep(Duration::from_secs(1)).await;
    sys.unroute(&old_addr);
    let end = ending.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!(
        "revision swap: {ok} requests succeeded, {} failed; the old pod's preStop (queue-proxy's drain) took {:.1} s, its termination {:.1} s ({:.1} s after the swap)",
        failed.len(),
        end.pre_stop_took.as_secs_f64(),
        end.took.as_secs_f64(),
        swapped.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 0);
    assert_eq!(end.pre_stop, Some(200), "the preStop hook");
    assert!(
        end.pre_stop_took >= tern_local::QUEUE_PROXY_DRAIN,
        "queue-proxy returned from its drain after {:?}",
        end.pre_stop_took
    );
    assert!(
        end.function.is_some_and(|s| s.success()),
        "{:?}",
        end.function
    );
    assert!(
        end.queue_proxy.is_some_and(|s| s.success()),
        "{:?}",
        end.queue_proxy
    );
}
