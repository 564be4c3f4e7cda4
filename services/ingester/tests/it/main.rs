//! The ingester's integration tests, one binary.

mod cli;
mod retention;
mod shipper;
