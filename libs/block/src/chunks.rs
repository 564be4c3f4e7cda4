//! Chunk segment files (`chunks/000001`, …), as `tsdb/docs/format/chunks.md` describes:
//!
//! ```text
//! magic 0x85BD40DD u32 BE | version 1 u8 | 3 zero bytes
//! per chunk: uvarint data length | encoding u8 | data | CRC32C(encoding, data) u32 BE
//! ```
//!
//! A segment is cut before it would exceed [`MAX_SEGMENT_SIZE`]. The index refers to a chunk by
//! `segment index << 32 | byte offset`, the segment index counting from 0 for `000001`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use hestia_chunkenc::Encoding;

use crate::enc::{crc32c, put_uvarint, Decoder};
use crate::BlockError;

pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
const SEGMENT_VERSION: u8 = 1;
pub(crate) const SEGMENT_HEADER_LEN: u64 = 8;
/// Segment files are cut before they would grow past 512 MiB.
pub const MAX_SEGMENT_SIZE: u64 = 512 << 20;
/// Directory of the segment files inside a block.
pub const CHUNKS_DIR: &str = "chunks";

/// One chunk of a series: its time range (both inclusive), encoding and encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_t: i64,
    pub max_t: i64,
    pub encoding: Encoding,
    pub data: Bytes,
}

impl ChunkMeta {
    /// The sample count every chunk encoding starts with (u16 BE).
    pub fn num_samples(&self) -> u16 {
        match self.data.as_ref() {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        }
    }
}

/// `segment << 32 | offset`.
pub(crate) fn chunk_ref(segment: u32, offset: u32) -> u64 {
    (u64::from(segment) << 32) | u64::from(offset)
}

/// Name of the segment file with index `i` (`000001` for 0).
pub fn segment_name(i: u32) -> String {
    format!("{:06}", u64::from(i) + 1)
}

/// Writes chunks to segment files as they come, so no chunk bytes are held after they are written.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    /// Index of the open segment.
    seq: u32,
    /// Bytes written to the open segment.
    pos: u64,
    /// Name and size of every finished segment.
    done: Vec<(String, u64)>,
    buf: Vec<u8>,
}

impl SegmentWriter {
    pub(crate) fn new(dir: &Path) -> Result<Self, BlockError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file: None,
            seq: 0,
            pos: 0,
            done: Vec::new(),
            buf: Vec::new(),
        })
    }

    /// Writes a chunk and returns its reference.
    pub(crate) fn write(&mut self, c: &ChunkMeta) -> Result<u64, BlockError> {
        self.buf.clear();
        put_uvarint(&mut self.buf, c.data.len() as u64);
        let crc_from = self.buf.len();
        self.buf.push(c.encoding.as_u8());
        self.buf.extend_from_slice(&c.data);
        let crc = crc32c(&self.buf[crc_from..]);
        self.buf.extend_from_slice(&crc.to_be_bytes());
        let len = self.buf.len() as u64;
        if SEGMENT_HEADER_LEN + len > MAX_SEGMENT_SIZE {
            return Err(BlockError::Invalid(format!(
                "a {len}-byte chunk does not fit a segment"
            )));
        }
        if self.file.is_some() && self.pos + len > MAX_SEGMENT_SIZE {
            self.close_segment()?;
            self.seq += 1;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let path = self.dir.join(segment_name(self.seq));
                let mut f = BufWriter::with_capacity(1 << 20, File::create(path)?);
                f.write_all(&SEGMENT_MAGIC.to_be_bytes())?;
                f.write_all(&[SEGMENT_VERSION, 0, 0, 0])?;
                self.pos = SEGMENT_HEADER_LEN;
                self.file.insert(f)
            }
        };
        // pos < MAX_SEGMENT_SIZE < 4 GiB.
        let r = chunk_ref(self.seq, self.pos as u32);
        file.write_all(&self.buf)?;
        self.pos += len;
        Ok(r)
    }

    fn close_segment(&mut self) -> Result<(), BlockError> {
        if let Some(f) = self.file.take() {
            let f = f.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            self.done.push((segment_name(self.seq), self.pos));
        }
        Ok(())
    }

    /// Flushes and fsyncs; returns every segment's name and size.
    pub(crate) fn finish(mut self) -> Result<Vec<(String, u64)>, BlockError> {
        self.close_segment()?;
        Ok(self.done)
    }
}

/// Checks a segment file's header.
pub(crate) fn check_segment_header(b: &[u8]) -> Result<(), BlockError> {
    let mut d = Decoder::new(b, "chunk segment header");
    if d.be32()? != SEGMENT_MAGIC {
        return Err(d.err("bad magic"));
    }
    if d.u8()? != SEGMENT_VERSION {
        return Err(d.err("unsupported version"));
    }
    Ok(())
}

/// Parses the chunk at the start of `b` (which may hold more bytes), verifying its checksum.
/// `Ok(Err(n))`: `b` is too short, the chunk takes `n` bytes.
pub(crate) fn parse_chunk(b: &Bytes) -> Result<Result<(Encoding, Bytes), usize>, BlockError> {
    let mut d = Decoder::new(b, "chunk");
    let Ok(len) = d.uvarint() else {
        return match b.len() {
            0..10 => Ok(Err(b.len() + 10)),
            _ => Err(d.err("bad length")),
        };
    };
    let head = b.len() - d.len();
    let total = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(head + 5))
        .filter(|&t| t as u64 <= MAX_SEGMENT_SIZE)
        .ok_or_else(|| d.err("length beyond any segment"))?;
    if b.len() < total {
        return Ok(Err(total));
    }
    let enc_and_data = &b[head..total - 4];
    let crc = u32::from_be_bytes([b[total - 4], b[total - 3], b[total - 2], b[total - 1]]);
    if crc32c(enc_and_data) != crc {
        return Err(BlockError::corrupt("chunk", "checksum mismatch"));
    }
    let encoding = Encoding::from_u8(enc_and_data[0]).ok_or_else(|| {
        BlockError::corrupt("chunk", format!("unknown encoding {}", enc_and_data[0]))
    })?;
    Ok(Ok((encoding, b.slice(head + 1..total - 4))))
}
