//! What recording one request costs in each candidate metrics crate: the work Tern's HTTP
//! layer does per request (one latency histogram observation labelled by method, route and
//! status code, the in-flight gauge up and down), on 1 thread and on 2 (this machine's cores),
//! and the time to render the result as Prometheus text once.
//!
//!     cargo run --release --manifest-path bench/metrics-crates/Cargo.toml
//!
//! The figures are in docs/decisions/0022-metrics-crate.md.

use std::sync::Arc;
use std::time::Instant;

const OPS: usize = 2_000_000;
const ROUTES: [&str; 3] = ["/api/orders/{id}", "/api/orders", "/orders/{id}"];
const METHODS: [&str; 3] = ["GET", "POST", "GET"];
const CODES: [u16; 5] = [200, 200, 200, 404, 503];
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
];

trait Candidate: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn record(&self, i: usize);
    fn render(&self) -> usize;
}

fn latency(i: usize) -> f64 {
    (i % 1000) as f64 * 0.0001
}

// --- prometheus-client ---------------------------------------------------------------------
mod pc {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        http_request_method: &'static str,
        http_route: &'static str,
        http_response_status_code: u16,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Active {
        http_request_method: &'static str,
        http_route: &'static str,
    }

    pub struct Pc {
        reg: Registry,
        hist: Family<Labels, Histogram>,
        active: Family<Active, Gauge>,
    }

    pub fn new() -> Pc {
        let mut reg = Registry::default();
        let hist = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(BUCKETS.iter().copied())
        });
        let active = Family::<Active, Gauge>::default();
        reg.register("http_server_request_duration_seconds", "latency", hist.clone());
        reg.register("http_server_active_requests", "in flight", active.clone());
        Pc { reg, hist, active }
    }

    impl Candidate for Pc {
        fn name(&self) -> &'static str {
            "prometheus-client 0.26"
        }
        fn record(&self, i: usize) {
            let r = i % 3;
            let a = Active {
                http_request_method: METHODS[r],
                http_route: ROUTES[r],
            };
            self.active.get_or_create(&a).inc();
            self.hist
                .get_or_create(&Labels {
                    http_request_method: METHODS[r],
                    http_route: ROUTES[r],
                    http_response_status_code: CODES[i % 5],
                })
                .observe(latency(i));
            self.active.get_or_create(&a).dec();
        }
        fn render(&self) -> usize {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, &self.reg).expect("encode");
            s.len()
        }
    }
}

// --- metrics + metrics-exporter-prometheus -------------------------------------------------
mod mx {
    use super::*;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    pub struct Mx {
        handle: PrometheusHandle,
    }

    pub fn new() -> Mx {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_server_request_duration_seconds".into()),
                &BUCKETS,
            )
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("recorder");
        Mx { handle }
    }

    impl Candidate for Mx {
        fn name(&self) -> &'static str {
            "metrics 0.24 + metrics-exporter-prometheus 0.18"
        }
        fn record(&self, i: usize) {
            let r = i % 3;
            let g = metrics::gauge!("http_server_active_requests", "http_request_method" => METHODS[r], "http_route" => ROUTES[r]);
            g.increment(1.0);
            metrics::histogram!(
                "http_server_request_duration_seconds",
                "http_request_method" => METHODS[r],
                "http_route" => ROUTES[r],
                "http_response_status_code" => CODES[i % 5].to_string()
            )
            .record(latency(i));
            g.decrement(1.0);
        }
        fn render(&self) -> usize {
            self.handle.render().len()
        }
    }
}

// --- OpenTelemetry SDK + opentelemetry-prometheus ------------------------------------------
mod ot {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::{Histogram, MeterProvider, UpDownCounter};
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use prometheus::{Encoder, TextEncoder};

    pub struct Ot {
        reg: prometheus::Registry,
        _provider: SdkMeterProvider,
        hist: Histogram<f64>,
        active: UpDownCounter<i64>,
    }

    pub fn new() -> Ot {
        let reg = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(reg.clone())
            .build()
            .expect("exporter");
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("bench");
        let hist = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_boundaries(BUCKETS.to_vec())
            .build();
        let active = meter.i64_up_down_counter("http.server.active_requests").build();
        Ot {
            reg,
            _provider: provider,
            hist,
            active,
        }
    }

    impl Candidate for Ot {
        fn name(&self) -> &'static str {
            "opentelemetry_sdk 0.33 + opentelemetry-prometheus 0.33"
        }
        fn record(&self, i: usize) {
            let r = i % 3;
            let a = [
                KeyValue::new("http.request.method", METHODS[r]),
                KeyValue::new("http.route", ROUTES[r]),
            ];
            self.active.add(1, &a);
            self.hist.record(
                latency(i),
                &[
                    KeyValue::new("http.request.method", METHODS[r]),
                    KeyValue::new("http.route", ROUTES[r]),
                    KeyValue::new("http.response.status_code", i64::from(CODES[i % 5])),
                ],
            );
            self.active.add(-1, &a);
        }
        fn render(&self) -> usize {
            let mut buf = Vec::new();
            TextEncoder::new()
                .encode(&self.reg.gather(), &mut buf)
                .expect("encode");
            buf.len()
        }
    }
}

fn run(c: Arc<dyn Candidate>, threads: usize) -> f64 {
    // Warm up: every label set exists before timing.
    for i in 0..1000 {
        c.record(i);
    }
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..OPS / threads {
                    c.record(i * threads + t);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    start.elapsed().as_nanos() as f64 / OPS as f64
}

fn main() {
    let candidates: Vec<Arc<dyn Candidate>> = vec![
        Arc::new(pc::new()),
        Arc::new(mx::new()),
        Arc::new(ot::new()),
    ];
    println!("| crate | ns per request, 1 thread | ns per request, 2 threads (wall ÷ requests) | render, µs |");
    println!("|---|---|---|---|");
    for c in candidates {
        let mut one = Vec::new();
        let mut two = Vec::new();
        for _ in 0..3 {
            one.push(run(Arc::clone(&c), 1));
            two.push(run(Arc::clone(&c), 2));
        }
        one.sort_by(f64::total_cmp);
        two.sort_by(f64::total_cmp);
        let t = Instant::now();
        let n = c.render();
        let render = t.elapsed().as_secs_f64() * 1e6;
        println!(
            "| {} | {:.0} | {:.0} | {:.0} ({} bytes) |",
            c.name(),
            one[1],
            two[1],
            render,
            n
        );
    }
}
