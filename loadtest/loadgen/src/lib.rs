//! `hestia-loadgen`: remote-write 1.0 load with synthetic series.
//!
//! Every workspace `ws-load-<i>` gets `series` series of `labels_per_series` labels; each
//! scrape interval every series gets one sample, sent in requests of `batch_size` series, paced
//! to `samples_per_second`. `churn_percent` of the series are replaced every interval. With
//! `time_compression` sample time runs faster than the wall clock (for benchmarks), starting in
//! the past and never ahead of now by more than a few seconds.

mod error;
pub mod generator;
mod runner;
mod settings;
pub mod sigv4;
mod stats;

pub use error::LoadgenError;
pub use runner::run;
pub use settings::{Args, Settings};
pub use stats::Summary;
