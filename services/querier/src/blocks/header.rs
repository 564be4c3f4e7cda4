//! Index headers kept on local disk: every read a block reader makes while opening a block
//! (`meta.json`, `tombstones`, the index's TOC, symbol table and postings offset table, and the
//! sizes of those files), saved as `<index_header_dir>/<tenant>/<block>.header` once the block
//! opened. Opening the block again, after an eviction or a restart, replays them: blocks are
//! immutable and the reader asks for the same ranges, so nothing goes to the object store.
//!
//! Format: `HSTHDR01`, a u32 entry count, the entries, and the CRC32C of everything before it
//! (all integers big-endian). An entry is a kind byte, a u16-length file name, then for kind 0 a
//! u64 size, for kind 1 nothing (the file does not exist), for kind 2 a u64 start, a u64 end and
//! the `end - start` bytes. A file that does not parse is ignored and rewritten.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes};

const MAGIC: &[u8; 8] = b"HSTHDR01";
const SIZE: u8 = 0;
const ABSENT: u8 = 1;
const RANGE: u8 = 2;

/// The reads of one block's opening.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Header {
    /// File sizes; `None`: the file does not exist.
    pub(crate) sizes: HashMap<String, Option<u64>>,
    pub(crate) ranges: HashMap<(String, u64, u64), Bytes>,
}

impl Header {
    pub(crate) fn range(&self, file: &str, r: &Range<u64>) -> Option<Bytes> {
        self.ranges
            .get(&(file.to_string(), r.start, r.end))
            .cloned()
    }

    /// Bytes held by the ranges.
    pub(crate) fn bytes(&self) -> usize {
        self.ranges.values().map(Bytes::len).sum()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes() + 64 * (self.sizes.len() + 1));
        out.extend_from_slice(MAGIC);
        out.put_u32((self.sizes.len() + self.ranges.len()) as u32);
        let name = |out: &mut Vec<u8>, n: &str| {
            out.put_u16(n.len() as u16);
            out.extend_from_slice(n.as_bytes());
        };
        let mut sizes: Vec<_> = self.sizes.iter().collect();
        sizes.sort();
        for (file, size) in sizes {
            match size {
                Some(n) => {
                    out.put_u8(SIZE);
                    name(&mut out, file);
                    out.put_u64(*n);
                }
                None => {
                    out.put_u8(ABSENT);
                    name(&mut out, file);
                }
            }
        }
        let mut ranges: Vec<_> = self.ranges.iter().collect();
        ranges.sort_by(|a, b| a.0.cmp(b.0));
        for ((file, start, end), bytes) in ranges {
            out.put_u8(RANGE);
            name(&mut out, file);
            out.put_u64(*start);
            out.put_u64(*end);
            out.extend_from_slice(bytes);
        }
        let crc = crc32c::crc32c(&out);
        out.put_u32(crc);
        out
    }

    /// The header in `b`, or `None` when it is not a complete, intact header file.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let body_len = b.len().checked_sub(4)?;
        let (body, mut crc) = b.split_at(body_len);
        if crc.get_u32() != crc32c::crc32c(body) || !body.starts_with(MAGIC) {
            return None;
        }
        let mut d = &body[MAGIC.len()..];
        let n = read_u32(&mut d)?;
        let mut h = Header::default();
        for _ in 0..n {
            let kind = read_u8(&mut d)?;
            let len = usize::from(read_u16(&mut d)?);
            let file = std::str::from_utf8(take(&mut d, len)?).ok()?.to_string();
            match kind {
                SIZE => {
                    let size = read_u64(&mut d)?;
                    h.sizes.insert(file, Some(size));
                }
                ABSENT => {
                    h.sizes.insert(file, None);
                }
                RANGE => {
                    let (start, end) = (read_u64(&mut d)?, read_u64(&mut d)?);
                    let len = usize::try_from(end.checked_sub(start)?).ok()?;
                    let bytes = Bytes::copy_from_slice(take(&mut d, len)?);
                    h.ranges.insert((file, start, end), bytes);
                }
                _ => return None,
            }
        }
        d.is_empty().then_some(h)
    }

    /// Reads the header file at `path`; a missing or damaged one is `None`.
    pub(crate) async fn load(path: &Path) -> Option<Self> {
        let bytes = tokio::fs::read(path).await.ok()?;
        let h = Self::decode(&bytes);
        if h.is_none() {
            tracing::warn!(path = %path.display(), "ignoring a damaged index header file");
        }
        h
    }

    /// Writes the header file at `path` (a temporary file renamed over it).
    pub(crate) async fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, self.encode()).await?;
        tokio::fs::rename(&tmp, path).await
    }
}

/// `<dir>/<tenant>/<block>.header`.
pub(crate) fn header_path(dir: &Path, tenant: &str, block: ulid::Ulid) -> PathBuf {
    dir.join(tenant).join(format!("{block}.header"))
}

fn take<'a>(d: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if d.len() < n {
        return None;
    }
    let (head, rest) = d.split_at(n);
    *d = rest;
    Some(head)
}

fn read_u8(d: &mut &[u8]) -> Option<u8> {
    take(d, 1).map(|b| b[0])
}

fn read_u16(d: &mut &[u8]) -> Option<u16> {
    take(d, 2).map(|mut b| b.get_u16())
}

fn read_u32(d: &mut &[u8]) -> Option<u32> {
    take(d, 4).map(|mut b| b.get_u32())
}

fn read_u64(d: &mut &[u8]) -> Option<u64> {
    take(d, 8).map(|mut b| b.get_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let mut h = Header::default();
        h.sizes.insert("index".into(), Some(1234));
        h.sizes.insert("tombstones".into(), None);
        h.ranges
            .insert(("index".into(), 5, 9), Bytes::from_static(b"abcd"));
        h.ranges
            .insert(("meta.json".into(), 0, 2), Bytes::from_static(b"{}"));
        let enc = h.encode();
        assert_eq!(Header::decode(&enc), Some(h.clone()));
        assert_eq!(h.bytes(), 6);
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x40;
            assert_eq!(Header::decode(&bad), None, "flipped byte {i}");
        }
        assert_eq!(Header::decode(&enc[..enc.len() - 1]), None);
        assert_eq!(Header::decode(&[]), None);
    }
}
