use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::sync::Semaphore;

use crate::generator::{Generator, SampleClock};
use crate::sigv4::Signer;
use crate::stats::{Outcome, Stats, Summary};
use crate::{LoadgenError, Settings};

const HEADERS: [(&str, &str); 4] = [
    ("content-encoding", "snappy"),
    ("content-type", "application/x-protobuf"),
    ("user-agent", "hestia-loadgen"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sends load for `settings.duration`, printing a line every `report_every`, and returns the
/// totals once every request in flight has finished.
pub async fn run(settings: Settings) -> Result<Summary, LoadgenError> {
    settings.validate()?;
    let signer = if settings.sigv4 {
        Some(Arc::new(Signer::from_settings(&settings)?))
    } else {
        None
    };
    let client = reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .pool_max_idle_per_host(settings.concurrency)
        .build()?;
    let stats = Arc::new(Stats::new()?);
    let start = Instant::now();
    let reporter = {
        let stats = stats.clone();
        let every = settings.report_every;
        tokio::spawn(async move {
            let mut last = Summary::default();
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = stats.summary(start.elapsed());
                println!("{}", now.line(&last));
                last = now;
            }
        })
    };

    let generator = Generator::new(&settings);
    let clock = SampleClock::new(now_ms(), &settings);
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let urls: Vec<String> = (0..settings.workspaces)
        .map(|w| settings.url_for(&Settings::workspace(w)))
        .collect();
    let rate = settings.samples_per_second as f64;
    let mut sent = 0u64;
    'run: for tick in 0u64.. {
        let due = clock.due(tick);
        if due >= settings.duration {
            tokio::time::sleep_until((start + settings.duration).into()).await;
            break;
        }
        tokio::time::sleep_until((start + due).into()).await;
        let ts = clock.timestamp(tick);
        for url in &urls {
            for from in (0..settings.series).step_by(settings.batch_size) {
                if start.elapsed() >= settings.duration {
                    break 'run;
                }
                let req = generator.request(tick, ts, from, from + settings.batch_size);
                let samples = req.timeseries.len();
                if rate > 0.0 {
                    let at = Duration::from_secs_f64(sent as f64 / rate);
                    tokio::time::sleep_until((start + at).into()).await;
                }
                sent += samples as u64;
                let body = snap::raw::Encoder::new()
                    .compress_vec(&req.encode_to_vec())
                    .map_err(|e| LoadgenError::Invalid(format!("snappy: {e}")))?;
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break 'run;
                };
                let (client, stats, signer, url) =
                    (client.clone(), stats.clone(), signer.clone(), url.clone());
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let outcome = send(&client, signer.as_deref(), &url, body).await;
                    stats.record(outcome, samples, t0.elapsed());
                    drop(permit);
                });
            }
        }
    }
    // Every permit back: nothing in flight.
    let _all = permits
        .acquire_many(settings.concurrency as u32)
        .await
        .map_err(|e| LoadgenError::Invalid(e.to_string()))?;
    reporter.abort();
    Ok(stats.summary(start.elapsed()))
}

async fn send(
    client: &reqwest::Client,
    signer: Option<&Signer>,
    url: &str,
    body: Vec<u8>,
) -> Outcome {
    let mut req = client.post(url);
    for (k, v) in HEADERS {
        req = req.header(k, v);
    }
    if let Some(s) = signer {
        // The signed headers include HEADERS, and replace them.
        match s.sign(url, &HEADERS, &body) {
            Ok(headers) => req = req.headers(headers),
            Err(e) => return Outcome::Transport(e.to_string()),
        }
    }
    match req.body(body).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = if resp.status().is_success() {
                String::new()
            } else {
                resp.text().await.unwrap_or_default()
            };
            Outcome::Status(status, text)
        }
        Err(e) => Outcome::Transport(e.to_string()),
    }
}
