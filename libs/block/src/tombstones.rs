//! The `tombstones` file (`tsdb/docs/format/tombstones.md`): deletion intervals per series.
//!
//! ```text
//! magic 0x0130BA30 u32 BE | version 1 u8 | (uvarint series ref, varint mint, varint maxt)… |
//! CRC32C of the tombstones u32 BE
//! ```
//!
//! Hestia writes no deletions, so its files hold no tombstone (9 bytes, as Prometheus writes for
//! a block without deletions). Blocks of other writers may carry some; the reader applies them.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::enc::{crc32c, Decoder};
use crate::BlockError;

pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
const TOMBSTONES_VERSION: u8 = 1;
/// File name of the tombstones in a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";

/// Writes a tombstones file without tombstones; returns its size.
pub(crate) fn write_empty_tombstones(path: &Path) -> Result<u64, BlockError> {
    let mut b = TOMBSTONES_MAGIC.to_be_bytes().to_vec();
    b.push(TOMBSTONES_VERSION);
    b.extend_from_slice(&crc32c(&[]).to_be_bytes());
    let mut f = File::create(path)?;
    f.write_all(&b)?;
    f.sync_all()?;
    Ok(b.len() as u64)
}

/// Deleted `[mint, maxt]` intervals (inclusive) by series ref.
pub(crate) type Tombstones = HashMap<u64, Vec<(i64, i64)>>;

/// Parses a tombstones file.
pub(crate) fn parse_tombstones(b: &[u8]) -> Result<Tombstones, BlockError> {
    let what = "tombstones";
    if b.len() < 9 {
        return Err(BlockError::corrupt(what, "truncated"));
    }
    let (head, rest) = b.split_at(5);
    let (stones, crc) = rest.split_at(rest.len() - 4);
    let mut d = Decoder::new(head, what);
    if d.be32()? != TOMBSTONES_MAGIC {
        return Err(d.err("bad magic"));
    }
    if d.u8()? != TOMBSTONES_VERSION {
        return Err(d.err("unsupported version"));
    }
    if crc32c(stones).to_be_bytes() != crc {
        return Err(BlockError::corrupt(what, "checksum mismatch"));
    }
    let mut out = Tombstones::new();
    let mut d = Decoder::new(stones, what);
    while !d.is_empty() {
        let r = d.uvarint()?;
        let (min, max) = (d.varint()?, d.varint()?);
        out.entry(r).or_default().push((min, max));
    }
    Ok(out)
}
