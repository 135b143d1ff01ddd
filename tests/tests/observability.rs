//! The local Prometheus as `scripts/dev` runs it (Debian's package, the chart's rules with the
//! local thresholds), scraping functions that run as the cluster runs them (pods behind
//! queue-proxy, as root): traffic and a Pub/Sub outage, then Prometheus' HTTP API asked for the
//! counters and for the alert the outage should fire.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tern_e2e::*;
use tern_local::prometheus::Prometheus;

/// `GET /api/v1/query`: the result vector, as (labels, value) pairs.
async fn query(
    http: &reqwest::Client,
    prom: &str,
    q: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let body: Value = http
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .expect("Prometheus answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["status"], "success", "{q}: {body}");
    body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let value = r["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (labels, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_counts_the_traffic_and_fires_the_outbox_alert_during_a_pubsub_outage() {
    let mut emulator = own_emulator();
    let pg = own_postgres("pg-observability").await;
    let mut sys = System::on(&pg, &emulator.addr).await;
    sys.set("PUBSUB_PUBLISH_TIMEOUT", "1s");
    let base = sys.start("orders-create");
    sys.start("orders-get");
    let table = table();
    let targets: Vec<_> = sys
        .functions
        .values()
        .map(|i| {
            let f = table.function(i.name()).expect("in the table");
            let visibility = match f.visibility {
                tern_routes::Visibility::Public => "public",
                tern_routes::Visibility::Internal => "internal",
            };
            i.scrape_target(visibility)
        })
        .collect();
    let in_pods = targets.iter().all(|t| t.queue_proxy.is_some());
    let prom = Prometheus::start(
        &scratch("prometheus"),
        &root(),
        0,
        &targets,
        Duration::from_secs(1),
    )
    .expect("Prometheus");
    let prom = prom.url();

    // Traffic: 4 orders, each read 3 times, and one read of an order that does not exist.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = sys.create_order(&base, &order_body()).await;
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        for _ in 0..3 {
            let r = sys
                .http
                .get(format!("{base}/api/orders/{id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    let missing = sys
        .http
        .get(format!("{base}/api/orders/ord_00000000000000000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Prometheus scraped what the test did: by function, route template and status.
    let want: BTreeMap<(String, String, String), f64> = [
        (("orders-create", "/api/orders", "201"), 4.0),
        (("orders-get", "/api/orders/{id}", "200"), 12.0),
        (("orders-get", "/api/orders/{id}", "404"), 1.0),
    ]
    .into_iter()
    .map(|((f, r, s), n)| ((f.to_owned(), r.to_owned(), s.to_owned()), n))
    .collect();
    let q = r#"sum by (function, http_route, http_response_status_code) (http_server_request_duration_seconds_count{job="tern-functions",visibility="public"})"#;
    let seen = eventually(
        "Prometheus has the requests",
        Duration::from_secs(30),
        || async {
            let got: BTreeMap<(String, String, String), f64> = query(&sys.http, &prom, q)
                .await
                .into_iter()
                .map(|(l, v)| {
                    (
                        (
                            l["function"].clone(),
                            l["http_route"].clone(),
                            l["http_response_status_code"].clone(),
                        ),
                        v,
                    )
                })
                .collect();
            (got == want).then_some(got)
        },
    )
    .await;
    eprintln!("requests in Prometheus: {seen:?}");
    // The pool's and the process's series are there too, per function.
    let pools = query(
        &sys.http,
        &prom,
        r#"sum by (function) (db_client_connection_max{job="tern-functions"})"#,
    )
    .await;
    assert_eq!(pools.len(), 2, "{pools:?}");
    let ready = query(
        &sys.http,
        &prom,
        r#"min by (function) (tern_ready{job="tern-functions"})"#,
    )
    .await;
    if in_pods {
        // queue-proxy's readiness probes reached the runtime; and queue-proxy counted the same
        // requests on its own job.
        assert!(
            ready.len() == 2 && ready.iter().all(|(_, v)| *v == 1.0),
            "{ready:?}"
        );
        let q = r#"sum(http_server_request_duration_seconds_count{job="tern-queue-proxy",function="orders-get",http_response_status_code="200"})"#;
        let targets = fetch_json(&sys.http, &format!("{prom}/api/v1/targets"))
            .await
            .expect("Prometheus's targets");
        eventually(
            &format!("queue-proxy's count in Prometheus; targets: {targets}"),
            Duration::from_secs(30),
            || async {
                let qp = query(&sys.http, &prom, q).await;
                (qp.first().map(|(_, v)| *v) == Some(12.0)).then_some(())
            },
        )
        .await;
    } else {
        eprintln!("not root: plain processes, no queue-proxy job to compare");
    }

    // The outage: orders are still created, their events wait in the outbox, and the backlog's
    // age crosses the local threshold (10 s) for the rule's minute.
    emulator.stop();
    for _ in 0..3 {
        let r = sys.create_order(&base, &order_body()).await;
        assert_eq!(r.status(), 201, "creates succeed while Pub/Sub is down");
    }
    let started = std::time::Instant::now();
    let pending = eventually(
        "the backlog is scraped",
        Duration::from_secs(30),
        || async {
            let v = query(
                &sys.http,
                &prom,
                r#"max(tern_outbox_pending_rows{job="tern-functions"})"#,
            )
            .await;
            v.first().map(|(_, n)| *n).filter(|n| *n == 3.0)
        },
    )
    .await;
    assert_eq!(pending, 3.0);
    let alert = eventually(
        "TernOutboxBacklogOld fires",
        Duration::from_secs(150),
        || async {
            let body = fetch_json(&sys.http, &format!("{prom}/api/v1/alerts")).await?;
            body["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "TernOutboxBacklogOld" && a["state"] == "firing"
                })
                .cloned()
        },
    )
    .await;
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    let failed = query(
        &sys.http,
        &prom,
        r#"sum(messaging_client_sent_messages_total{job="tern-functions",error_type!=""})"#,
    )
    .await;
    assert_eq!(
        failed.first().map(|(_, v)| *v),
        Some(3.0),
        "one failed publish per order: {failed:?}"
    );
    eprintln!(
        "TernOutboxBacklogOld firing {:.0} s after the outage began ({}); 3 rows pending",
        started.elapsed().as_secs_f64(),
        alert["annotations"]["summary"]
    );
}
