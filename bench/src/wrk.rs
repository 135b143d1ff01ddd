//! Load from `wrk` (Debian's package, pinned by scripts/bench), and its output parsed.

use crate::stats::Spread;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One wrk run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WrkResult {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Responses that were not 2xx/3xx, plus socket errors.
    pub errors: u64,
    /// Requests completed.
    pub requests: u64,
}

/// Runs `wrk` against `url` with `connections` for `duration`, optionally with a Lua script.
pub fn run(
    url: &str,
    connections: u32,
    duration: Duration,
    script: Option<&Path>,
) -> Result<WrkResult, String> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{}s", duration.as_secs().max(1)),
        "--latency",
        "--timeout",
        "10s",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Parses wrk's `--latency` report.
pub fn parse(text: &str) -> Result<WrkResult, String> {
    let mut r = WrkResult::default();
    let mut in_dist = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        }
        if in_dist {
            if let Some(v) = t.strip_prefix("50%") {
                r.p50_ms = duration_ms(v.trim())?;
            } else if let Some(v) = t.strip_prefix("99%") {
                r.p99_ms = duration_ms(v.trim())?;
                in_dist = false;
            }
        }
        if let Some((n, _)) = t.split_once(" requests in ") {
            r.requests = n.parse().map_err(|_| format!("bad request count: {t}"))?;
        }
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v
                .trim()
                .parse()
                .map_err(|_| format!("bad Requests/sec: {t}"))?;
        }
        if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(v) = t.strip_prefix("Socket errors:") {
            // connect 0, read 0, write 0, timeout 0
            r.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if r.rps == 0.0 {
        return Err(format!("no Requests/sec in wrk output: {text}"));
    }
    Ok(r)
}

fn duration_ms(v: &str) -> Result<f64, String> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("bad duration {v}"))?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("bad duration {v}"))?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return Err(format!("bad unit in {v}")),
    })
}

/// A Lua script making wrk POST `body` as JSON.
pub fn post_script(dir: &Path, name: &str, body: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join(format!("{name}.lua"));
    let escaped = body.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &path,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{escaped}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    Ok(path)
}

fn spread<F: Fn(&WrkResult) -> f64>(runs: &[WrkResult], f: F) -> Spread {
    Spread::of(&runs.iter().map(f).collect::<Vec<_>>())
}

/// The runs, and the median and spread of each figure over them.
pub fn wrk_json(runs: &[WrkResult]) -> Value {
    json!({
        "runs": runs,
        "rps": spread(runs, |w| w.rps),
        "p50_ms": spread(runs, |w| w.p50_ms),
        "p99_ms": spread(runs, |w| w.p99_ms),
        "errors": runs.iter().map(|w| w.errors).sum::<u64>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report() {
        let out = "Running 3s test @ http://127.0.0.1:1/\n  1 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   410.95us  132.14us   3.42ms   79.96%\n  Latency Distribution\n     50%  386.00us\n     75%  460.00us\n     90%  558.00us\n     99%    1.02ms\n  231466 requests in 3.00s, 25.40MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  77143.02\nTransfer/sec:      8.47MB\n";
        let r = parse(out).unwrap();
        assert_eq!(r.rps, 77143.02);
        assert_eq!(r.p50_ms, 0.386);
        assert_eq!(r.p99_ms, 1.02);
        assert_eq!(r.errors, 7);
        assert_eq!(r.requests, 231466);
        assert!(parse("nothing").is_err());
    }
}
