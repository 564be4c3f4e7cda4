//! Hestia's core data model: labels, matchers, samples and tenant identity.
//!
//! Every other crate speaks these types; nothing here does I/O.

mod error;
mod labels;
mod matcher;
mod sample;
mod tenant;

pub use error::ModelError;
pub use labels::{
    hash_label_key, hash_label_pairs, write_label_key, Label, LabelPairs, Labels, LabelsBuilder,
    METRIC_NAME,
};
pub use matcher::{MatchOp, Matcher, MAX_REGEX_SIZE};
pub use sample::{is_stale_nan, Sample, STALE_NAN_BITS};
pub use tenant::{TenantId, WorkspaceId};
