use crate::DecodeError;

/// Decompresses a snappy block-format body, refusing before any allocation when the size the
/// block declares exceeds `max_decoded` bytes.
pub fn decompress(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    let declared =
        snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if declared > max_decoded {
        return Err(DecodeError::DecodedTooLarge {
            declared,
            limit: max_decoded,
        });
    }
    let mut out = vec![0u8; declared];
    let n = snap::raw::Decoder::new()
        .decompress(body, &mut out)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data = b"hello hello hello hello".repeat(10);
        let c = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(&c, 1 << 20).unwrap(), data);
    }

    #[test]
    fn declared_size_checked_before_allocating() {
        // A varint header claiming 1 GiB followed by garbage.
        let mut body = Vec::new();
        let mut n: u64 = 1 << 30;
        while n >= 0x80 {
            body.push((n as u8) | 0x80);
            n >>= 7;
        }
        body.push(n as u8);
        body.extend_from_slice(b"junk");
        assert_eq!(
            decompress(&body, 32 << 20),
            Err(DecodeError::DecodedTooLarge {
                declared: 1 << 30,
                limit: 32 << 20
            })
        );
    }

    #[test]
    fn not_snappy() {
        assert!(matches!(
            decompress(&[0xff; 12], 1 << 20),
            Err(DecodeError::Snappy(_))
        ));
        assert!(decompress(b"", 1 << 20).is_err());
    }
}
