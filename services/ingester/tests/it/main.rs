//! The ingester's integration tests, one binary.

mod cli;
mod shipper;
