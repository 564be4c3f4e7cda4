//! Each tenant's retention: [`hestia_limits::Retentions`], shared with the ingesters that keep
//! their data (`hestia_ingester::retention`), fed from the control plane's workspace watch. A
//! tenant the control plane does not know gets no retention: its blocks are kept.

pub use hestia_limits::{Retentions, DEFAULT_RETENTION_DAYS};
