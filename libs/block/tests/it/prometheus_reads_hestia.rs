//! Prometheus 2.42 itself serves Hestia's integer histogram chunks: promtool's dump prints float
//! samples only, so the server (started on the block directory) is asked for the histograms.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hestia_chunkenc::Histogram;

use crate::common::{random_series, write_block, STALE_NAN_BITS};

const START: i64 = 1_700_000_000_000;
const SPAN: i64 = 2 * 3600 * 1000;

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.get(9..12)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Buckets as Prometheus' API lists them: `(lower, upper, count)`, zero counts left out.
fn buckets(h: &Histogram) -> Vec<(f64, f64, f64)> {
    let base = 2f64.powf(2f64.powi(-h.schema));
    let mut out = Vec::new();
    if h.zero_count > 0.0 {
        out.push((-h.zero_threshold, h.zero_threshold, h.zero_count));
    }
    for (spans, counts, sign) in [
        (&h.positive_spans, &h.positive_buckets, 1.0),
        (&h.negative_spans, &h.negative_buckets, -1.0),
    ] {
        let mut idx = 0i32;
        let mut counts = counts.iter();
        for s in spans.iter() {
            idx += s.offset;
            for _ in 0..s.length {
                let c = *counts.next().expect("bucket count");
                let (lo, hi) = (base.powi(idx - 1), base.powi(idx));
                if c > 0.0 {
                    out.push(if sign > 0.0 {
                        (lo, hi, c)
                    } else {
                        (-hi, -lo, c)
                    });
                }
                idx += 1;
            }
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_str()
        .expect("number as string")
        .parse()
        .expect("number")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn prometheus_serves_hestia_histogram_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut series = random_series(13, 60, START, SPAN, false);
    series.retain(|s| !s.histograms.is_empty());
    for s in &mut series {
        let t = s.histograms.last().unwrap().0 + 15_000;
        let stale = Histogram {
            sum: f64::from_bits(STALE_NAN_BITS),
            ..Histogram::default()
        };
        s.histograms.push((t, stale));
    }
    let meta = write_block(&data, &series);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").unwrap();
    let port = hestia_testing::free_port();
    let server = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--enable-feature=native-histograms")
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (make deps installs package prometheus)");
    let _server = Server(server);
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(port, "/-/ready").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "prometheus did not get ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    let time = meta.max_time as f64 / 1000.0;
    let mut compared = 0;
    for s in &series {
        let selector: String = s
            .labels
            .iter()
            .map(|l| {
                format!(
                    "{}=\"{}\"",
                    l.name,
                    l.value.replace('\\', "\\\\").replace('"', "\\\"")
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let query: String = form_query(&format!("{{{selector}}}[3h]"));
        let (status, body) =
            get(port, &format!("/api/v1/query?query={query}&time={time}")).unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = v["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{} {body}", s.labels);
        let got = result[0]["histograms"].as_array().expect("histograms");
        // Range selections leave stale markers out.
        let want = &s.histograms[..s.histograms.len() - 1];
        assert_eq!(got.len(), want.len(), "{}", s.labels);
        for (g, (t, h)) in got.iter().zip(want) {
            assert_eq!((g[0].as_f64().unwrap() * 1000.0).round() as i64, *t);
            assert_eq!(num(&g[1]["count"]), h.count);
            assert!(
                close(num(&g[1]["sum"]), h.sum),
                "{} vs {}",
                g[1]["sum"],
                h.sum
            );
            let gb: Vec<(f64, f64, f64)> = g[1]["buckets"]
                .as_array()
                .map(|b| {
                    b.iter()
                        .map(|b| (num(&b[1]), num(&b[2]), num(&b[3])))
                        .collect()
                })
                .unwrap_or_default();
            let wb = buckets(h);
            assert_eq!(gb.len(), wb.len(), "{gb:?} != {wb:?}");
            for (a, b) in gb.iter().zip(&wb) {
                assert!(
                    close(a.0, b.0) && close(a.1, b.1) && a.2 == b.2,
                    "{a:?} != {b:?}"
                );
            }
            compared += 1;
        }
    }
    assert!(compared > 1000, "{compared} histograms compared");
}

/// Percent-encodes a query parameter.
fn form_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
