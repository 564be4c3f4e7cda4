//! The querier over blocks in a filesystem bucket: real blocks written with `hestia-block`'s
//! writer, uploaded with `hestia-bucket`, queried through the HTTP router.

mod blocks;
mod harness;
