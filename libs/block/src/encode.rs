//! Cutting a series' samples into chunks.

use bytes::Bytes;
use hestia_chunkenc::prom_histogram::{is_integer_histogram, PromHistogramAppender};
use hestia_chunkenc::{Encoding, Histogram, XorAppender};

use crate::chunks::ChunkMeta;
use crate::BlockError;

/// Prometheus' samples per chunk.
pub const DEFAULT_CHUNK_SAMPLES: u16 = 120;

fn check_order(ts: impl Iterator<Item = i64>) -> Result<(), BlockError> {
    let mut prev = None;
    for t in ts {
        if prev.is_some_and(|p| t <= p) {
            return Err(BlockError::Invalid(format!(
                "sample at {t} is not after the previous one"
            )));
        }
        prev = Some(t);
    }
    Ok(())
}

/// XOR chunks of at most `max_samples` samples each; timestamps must increase.
pub fn xor_chunks(samples: &[(i64, f64)], max_samples: u16) -> Result<Vec<ChunkMeta>, BlockError> {
    check_order(samples.iter().map(|s| s.0))?;
    let mut out = Vec::with_capacity(samples.len().div_ceil(max_samples.max(1).into()));
    for part in samples.chunks(max_samples.max(1).into()) {
        let mut a = XorAppender::with_capacity(part.len() * 2 + 16);
        for &(t, v) in part {
            a.append(t, v)?;
        }
        let c = a.into_chunk();
        out.push(ChunkMeta {
            min_t: c.min_time(),
            max_t: c.max_time(),
            encoding: Encoding::Xor,
            data: c.into_bytes(),
        });
    }
    Ok(out)
}

/// Prometheus histogram chunks of at most `max_samples` samples each; timestamps must increase.
/// A chunk is integer while its samples have integer counts, float otherwise, and a new one
/// starts where Prometheus' rules require (layout change, counter reset, gauge switch).
pub fn histogram_chunks(
    samples: &[(i64, Histogram)],
    max_samples: u16,
) -> Result<Vec<ChunkMeta>, BlockError> {
    check_order(samples.iter().map(|s| s.0))?;
    let mut out = Vec::new();
    let mut app: Option<PromHistogramAppender> = None;
    for (t, h) in samples {
        let a = match app.take() {
            Some(a) if a.num_samples() < max_samples && a.fits(h) => app.insert(a),
            prev => {
                out.extend(prev.map(finish_histogram_chunk));
                app.insert(match is_integer_histogram(h) {
                    true => PromHistogramAppender::integer(),
                    false => PromHistogramAppender::float(),
                })
            }
        };
        a.append(*t, h)?;
    }
    out.extend(app.map(finish_histogram_chunk));
    Ok(out)
}

fn finish_histogram_chunk(a: PromHistogramAppender) -> ChunkMeta {
    ChunkMeta {
        min_t: a.min_time(),
        max_t: a.max_time(),
        encoding: a.encoding(),
        data: Bytes::from(a.into_bytes()),
    }
}
