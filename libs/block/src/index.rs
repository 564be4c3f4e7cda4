//! The `index` file, format v2 (`tsdb/docs/format/index.md`):
//!
//! ```text
//! magic 0xBAAAD700 u32 BE | version 2 u8
//! symbol table    len u32 | #symbols u32 | sorted uvarint-prefixed strings | CRC32C
//! series          each 16-byte aligned, ref = offset / 16: uvarint len | uvarint #labels |
//!                 (uvarint name symbol, uvarint value symbol)… | uvarint #chunks | first chunk:
//!                 varint mint, uvarint maxt-mint, uvarint ref; then uvarint mint-prev maxt,
//!                 uvarint maxt-mint, varint ref-prev ref | CRC32C
//! label indices   per name, 4-byte aligned: len u32 | #names=1 u32 | #values u32 |
//!                 value symbols u32… | CRC32C
//! postings        per label pair, 4-byte aligned, all series (`"" = ""`) first: len u32 |
//!                 #refs u32 | sorted series refs u32… | CRC32C
//! label offset table     len u32 | #entries u32 | (uvarint 1, name, uvarint64 offset)… | CRC32C
//! postings offset table  len u32 | #entries u32 | (uvarint 2, name, value, uvarint64 offset)…
//!                        sorted by name then value | CRC32C
//! TOC             offsets u64 BE of: symbols, series, label indices, label offset table,
//!                 postings, postings offset table | CRC32C
//! ```
//!
//! Every `len` counts the bytes between it and the CRC32C, which covers exactly those bytes.
//! Symbol references are positions in the symbol table.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use hestia_model::Labels;

use crate::enc::{crc32c, put_str, put_uvarint, put_varint, Decoder};
use crate::BlockError;

pub const INDEX_MAGIC: u32 = 0xBAAA_D700;
pub const INDEX_VERSION: u8 = 2;
/// File name of the index in a block directory.
pub const INDEX_FILENAME: &str = "index";
pub(crate) const TOC_LEN: u64 = 6 * 8 + 4;

/// The table of contents: where each section starts (0: absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Toc {
    pub(crate) symbols: u64,
    pub(crate) series: u64,
    pub(crate) label_indices: u64,
    pub(crate) label_offset_table: u64,
    pub(crate) postings: u64,
    pub(crate) postings_offset_table: u64,
}

impl Toc {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(TOC_LEN as usize);
        for x in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_offset_table,
            self.postings,
            self.postings_offset_table,
        ] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        let crc = crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Parses the last [`TOC_LEN`] bytes of an index of `size` bytes.
    pub(crate) fn decode(b: &[u8], size: u64) -> Result<Self, BlockError> {
        let mut d = Decoder::new(b, "index TOC");
        let body = d.take(48)?;
        if crc32c(body) != d.be32()? {
            return Err(d.err("checksum mismatch"));
        }
        let mut d = Decoder::new(body, "index TOC");
        let toc = Toc {
            symbols: d.be64()?,
            series: d.be64()?,
            label_indices: d.be64()?,
            label_offset_table: d.be64()?,
            postings: d.be64()?,
            postings_offset_table: d.be64()?,
        };
        let end = size - TOC_LEN;
        for off in [
            toc.symbols,
            toc.series,
            toc.label_indices,
            toc.label_offset_table,
            toc.postings,
            toc.postings_offset_table,
        ] {
            if off > end {
                return Err(BlockError::corrupt("index TOC", "offset past the end"));
            }
        }
        Ok(toc)
    }
}

/// A chunk's place in a series entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) r: u64,
}

/// Writes an index file. Symbols come first (all of them, at creation); series follow in sorted
/// order and go straight to the file. Memory: the symbols, plus 4 bytes per label of every series
/// and a map entry per distinct label pair for the postings, written at [`IndexWriter::finish`].
pub(crate) struct IndexWriter {
    f: BufWriter<File>,
    pos: u64,
    toc: Toc,
    symbols: Vec<String>,
    /// (name symbol, value symbol) → series refs, ascending.
    postings: HashMap<(u32, u32), Vec<u32>>,
    all: Vec<u32>,
    last: Option<Labels>,
    buf: Vec<u8>,
}

impl IndexWriter {
    /// Creates the file and writes the header and symbol table. `symbols` must be sorted and unique.
    pub(crate) fn new(path: &Path, symbols: Vec<String>) -> Result<Self, BlockError> {
        if !symbols.windows(2).all(|w| w[0] < w[1]) {
            return Err(BlockError::Invalid(
                "index symbols must be sorted and unique".into(),
            ));
        }
        let n = u32::try_from(symbols.len())
            .map_err(|_| BlockError::Invalid("more than 2^32 symbols".into()))?;
        let mut w = Self {
            f: BufWriter::with_capacity(1 << 20, File::create(path)?),
            pos: 0,
            toc: Toc::default(),
            symbols,
            postings: HashMap::new(),
            all: Vec::new(),
            last: None,
            buf: Vec::new(),
        };
        let mut head = INDEX_MAGIC.to_be_bytes().to_vec();
        head.push(INDEX_VERSION);
        w.write(&head)?;
        w.toc.symbols = w.pos;
        let mut body = n.to_be_bytes().to_vec();
        for s in &w.symbols {
            put_str(&mut body, s);
        }
        w.write_section(&body)?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), BlockError> {
        self.f.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<(), BlockError> {
        let n = (align - self.pos % align) % align;
        self.write(&[0u8; 16][..n as usize])
    }

    /// `len u32 | body | CRC32C(body)`.
    fn write_section(&mut self, body: &[u8]) -> Result<(), BlockError> {
        let len = u32::try_from(body.len())
            .map_err(|_| BlockError::Invalid("index section over 4 GiB".into()))?;
        self.write(&len.to_be_bytes())?;
        self.write(body)?;
        self.write(&crc32c(body).to_be_bytes())
    }

    fn symbol(&self, s: &str) -> Result<u32, BlockError> {
        self.symbols
            .binary_search_by(|x| x.as_str().cmp(s))
            .map(|i| i as u32)
            .map_err(|_| BlockError::Invalid(format!("{s:?} is not among the index symbols")))
    }

    /// Adds a series; series come in ascending label order, chunks in time order without overlap.
    pub(crate) fn add_series(
        &mut self,
        labels: &Labels,
        chunks: &[ChunkRef],
    ) -> Result<(), BlockError> {
        if self.last.as_ref().is_some_and(|l| l >= labels) {
            return Err(BlockError::Invalid(format!(
                "series {labels} is not after the previous series"
            )));
        }
        if self.toc.series == 0 {
            self.pad(16)?;
            self.toc.series = self.pos;
        }
        self.pad(16)?;
        let r = u32::try_from(self.pos / 16)
            .map_err(|_| BlockError::Invalid("index series section over 64 GiB".into()))?;
        let mut body = std::mem::take(&mut self.buf);
        body.clear();
        put_uvarint(&mut body, labels.len() as u64);
        for l in labels {
            let (n, v) = (self.symbol(&l.name)?, self.symbol(&l.value)?);
            put_uvarint(&mut body, u64::from(n));
            put_uvarint(&mut body, u64::from(v));
            self.postings.entry((n, v)).or_default().push(r);
        }
        put_uvarint(&mut body, chunks.len() as u64);
        let mut prev: Option<&ChunkRef> = None;
        for c in chunks {
            if c.max_t < c.min_t {
                return Err(BlockError::Invalid(format!(
                    "{labels}: chunk ends before it starts"
                )));
            }
            match prev {
                None => {
                    put_varint(&mut body, c.min_t);
                    put_uvarint(&mut body, c.max_t.abs_diff(c.min_t));
                    put_uvarint(&mut body, c.r);
                }
                Some(p) => {
                    if c.min_t <= p.max_t {
                        return Err(BlockError::Invalid(format!(
                            "{labels}: chunks overlap or are out of order"
                        )));
                    }
                    put_uvarint(&mut body, c.min_t.abs_diff(p.max_t));
                    put_uvarint(&mut body, c.max_t.abs_diff(c.min_t));
                    put_varint(&mut body, c.r.wrapping_sub(p.r) as i64);
                }
            }
            prev = Some(c);
        }
        let mut head = Vec::with_capacity(10);
        put_uvarint(&mut head, body.len() as u64);
        self.write(&head)?;
        self.write(&body)?;
        self.write(&crc32c(&body).to_be_bytes())?;
        self.buf = body;
        self.all.push(r);
        self.last = Some(labels.clone());
        Ok(())
    }

    /// Writes label indices, postings, both offset tables and the TOC; fsyncs. Returns the size.
    pub(crate) fn finish(mut self) -> Result<u64, BlockError> {
        if self.toc.series == 0 {
            self.pad(16)?;
            self.toc.series = self.pos;
        }
        let mut keys: Vec<(u32, u32)> = self.postings.keys().copied().collect();
        keys.sort_unstable();

        // Label indices: the values of each name.
        self.toc.label_indices = self.pos;
        let mut label_offsets = Vec::new();
        let mut i = 0;
        while i < keys.len() {
            let name = keys[i].0;
            let n = keys[i..].partition_point(|k| k.0 == name);
            self.pad(4)?;
            label_offsets.push((name, self.pos));
            let mut body = Vec::with_capacity(8 + 4 * n);
            body.extend_from_slice(&1u32.to_be_bytes());
            body.extend_from_slice(&(n as u32).to_be_bytes());
            for k in &keys[i..i + n] {
                body.extend_from_slice(&k.1.to_be_bytes());
            }
            self.write_section(&body)?;
            i += n;
        }

        // Postings: all series first (the `"" = ""` key), then every label pair in order.
        self.toc.postings = self.pos;
        let all = std::mem::take(&mut self.all);
        self.pad(4)?;
        let mut postings_offsets = vec![(None, self.pos)];
        self.write_postings(&all)?;
        for k in &keys {
            let refs = self.postings.remove(k).unwrap_or_default();
            self.pad(4)?;
            postings_offsets.push((Some(*k), self.pos));
            self.write_postings(&refs)?;
        }

        self.toc.label_offset_table = self.pos;
        let mut body = (label_offsets.len() as u32).to_be_bytes().to_vec();
        for (name, off) in &label_offsets {
            put_uvarint(&mut body, 1);
            put_str(&mut body, &self.symbols[*name as usize]);
            put_uvarint(&mut body, *off);
        }
        self.write_section(&body)?;

        self.toc.postings_offset_table = self.pos;
        let mut body = (postings_offsets.len() as u32).to_be_bytes().to_vec();
        for (k, off) in &postings_offsets {
            let (name, value) = match k {
                Some((n, v)) => (
                    self.symbols[*n as usize].as_str(),
                    self.symbols[*v as usize].as_str(),
                ),
                None => ("", ""),
            };
            put_uvarint(&mut body, 2);
            put_str(&mut body, name);
            put_str(&mut body, value);
            put_uvarint(&mut body, *off);
        }
        self.write_section(&body)?;

        let toc = self.toc.encode();
        self.write(&toc)?;
        let f = self.f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(self.pos)
    }

    fn write_postings(&mut self, refs: &[u32]) -> Result<(), BlockError> {
        let mut body = Vec::with_capacity(4 + 4 * refs.len());
        body.extend_from_slice(&(refs.len() as u32).to_be_bytes());
        for r in refs {
            body.extend_from_slice(&r.to_be_bytes());
        }
        self.write_section(&body)
    }
}
