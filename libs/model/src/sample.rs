/// The bit pattern Prometheus uses to mark a series as stale (remote-write spec, "Stale Markers").
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Reports whether `v` is the staleness marker (a specific NaN, not any NaN).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample: milliseconds since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Self { t, v }
    }
}
