//! Native (uncompressed) pixel data read in place: one frame's samples straight from the parsed
//! Pixel Data element, with no copy of the pixel bytes before they become model values; also the
//! layouts dicom-pixeldata does not convert: 1- and 32-bit allocations and native YBR colour.

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

/// How the Pixel Data's samples are held in memory after parsing.
#[derive(Clone, Copy)]
enum Held<'a> {
    /// OB (or UN): the bytes as in the file.
    Bytes(&'a [u8], Endian),
    /// OW: 16-bit words already in host order (dicom-parser decoded the file's byte order).
    Words(&'a [u16], Endian),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

/// One frame of native pixel data, borrowed from the parsed object.
pub(crate) struct NativeFrame<'a> {
    held: Held<'a>,
    bits_allocated: u32,
    bits_stored: u32,
    signed: bool,
    /// Index of the frame's first sample in the whole Pixel Data.
    first: usize,
    /// Samples in the frame (Rows x Columns x Samples per Pixel; for YBR_FULL_422, 2 per pixel).
    count: usize,
}

/// Samples in one native frame: YBR_FULL_422 stores two luma and one pair of chroma samples per
/// two pixels (PS3.3 C.7.6.3.1.2), so 2 samples per pixel; otherwise Samples per Pixel.
pub(crate) fn samples_per_frame(rows: u32, columns: u32, samples: u32, photometric: &str) -> u64 {
    let pixels = rows as u64 * columns as u64;
    if photometric == "YBR_FULL_422" {
        pixels * 2
    } else {
        pixels * samples as u64
    }
}

impl<'a> NativeFrame<'a> {
    /// The frame, or None when the layout is not one read here (dicom-pixeldata then decodes it).
    /// The caller has checked that the Pixel Data is long enough for every frame.
    pub(crate) fn borrow(
        obj: &'a DefaultDicomObject,
        frame: u32,
        count: usize,
        bits_allocated: u32,
        bits_stored: u32,
        signed: bool,
    ) -> Option<Self> {
        let endian = match obj.meta().transfer_syntax().trim_end_matches('\0') {
            "1.2.840.10008.1.2.2" => Endian::Big,
            "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.1.99" => {
                Endian::Little
            }
            _ => return None,
        };
        let element = obj.element_opt(tags::PIXEL_DATA).ok().flatten()?;
        let held = match element.value() {
            Value::Primitive(PrimitiveValue::U8(b)) => Held::Bytes(b.as_slice(), endian),
            Value::Primitive(PrimitiveValue::U16(w)) => Held::Words(w.as_slice(), endian),
            _ => return None,
        };
        // 8- and 1-bit samples inside big-endian words: byte order within a word is a matter of
        // convention between readers; left to dicom-pixeldata.
        if matches!(held, Held::Words(_, Endian::Big)) && bits_allocated < 16 {
            return None;
        }
        if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
            return None;
        }
        let frame = Self {
            held,
            bits_allocated,
            bits_stored: bits_stored.clamp(1, bits_allocated),
            signed,
            first: frame as usize * count,
            count,
        };
        // The caller checked the length; checked again here rather than indexed past the end.
        (frame.available() >= frame.first as u64 + count as u64).then_some(frame)
    }

    /// Frame `frame` of native little-endian pixel data borrowed from the file's bytes.
    pub(crate) fn from_le_frame(
        bytes: &'a [u8],
        frame: u32,
        count: usize,
        bits_allocated: u32,
        bits_stored: u32,
        signed: bool,
    ) -> Option<Self> {
        let frame = Self {
            held: Held::Bytes(bytes, Endian::Little),
            bits_allocated,
            bits_stored: bits_stored.clamp(1, bits_allocated.max(1)),
            signed,
            first: frame as usize * count,
            count,
        };
        (matches!(bits_allocated, 1 | 8 | 16 | 32)
            && frame.available() >= frame.first as u64 + count as u64)
            .then_some(frame)
    }

    /// A whole frame of 16-bit samples already decoded into host-order words (a codec's output).
    #[cfg(feature = "jpeg12")]
    pub(crate) fn from_words(words: &'a [u16], bits_stored: u32, signed: bool) -> Self {
        Self {
            held: Held::Words(words, Endian::Little),
            bits_allocated: 16,
            bits_stored: bits_stored.clamp(1, 16),
            signed,
            first: 0,
            count: words.len(),
        }
    }

    /// How many samples the held data has room for.
    fn available(&self) -> u64 {
        let bits = match self.held {
            Held::Bytes(b, _) => b.len() as u64 * 8,
            Held::Words(w, _) => w.len() as u64 * 16,
        };
        bits / self.bits_allocated as u64
    }

    /// Calls `sink` with every sample of the frame in order, as the stored value: the low
    /// Bits Stored bits, sign-extended when Pixel Representation is signed.
    pub(crate) fn for_each(&self, mut sink: impl FnMut(i64)) {
        let (first, count) = (self.first, self.count);
        let shift = 64 - self.bits_stored;
        let signed = self.signed;
        let mask: u64 = if self.bits_stored >= 64 {
            u64::MAX
        } else {
            (1u64 << self.bits_stored) - 1
        };
        let mut value = |raw: u64| {
            if signed {
                sink(((raw << shift) as i64) >> shift)
            } else {
                sink((raw & mask) as i64)
            }
        };
        match (self.held, self.bits_allocated) {
            (Held::Bytes(b, _), 8) => b[first..first + count]
                .iter()
                .for_each(|&v| value(v as u64)),
            (Held::Bytes(b, Endian::Little), 16) => b[2 * first..2 * (first + count)]
                .chunks_exact(2)
                .for_each(|c| value(u16::from_le_bytes([c[0], c[1]]) as u64)),
            (Held::Bytes(b, Endian::Big), 16) => b[2 * first..2 * (first + count)]
                .chunks_exact(2)
                .for_each(|c| value(u16::from_be_bytes([c[0], c[1]]) as u64)),
            (Held::Bytes(b, Endian::Little), 32) => b[4 * first..4 * (first + count)]
                .chunks_exact(4)
                .for_each(|c| value(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)),
            (Held::Bytes(b, Endian::Big), 32) => b[4 * first..4 * (first + count)]
                .chunks_exact(4)
                .for_each(|c| value(u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64)),
            (Held::Words(w, _), 16) => w[first..first + count]
                .iter()
                .for_each(|&v| value(v as u64)),
            // Little-endian words: the low-order byte is the earlier sample.
            (Held::Words(w, _), 8) => (first..first + count)
                .for_each(|i| value(((w[i / 2] >> (8 * (i % 2))) & 0xFF) as u64)),
            (Held::Words(w, Endian::Little), 32) => w[2 * first..2 * (first + count)]
                .chunks_exact(2)
                .for_each(|c| value(c[0] as u64 | (c[1] as u64) << 16)),
            (Held::Words(w, Endian::Big), 32) => w[2 * first..2 * (first + count)]
                .chunks_exact(2)
                .for_each(|c| value((c[0] as u64) << 16 | c[1] as u64)),
            // 1 bit per pixel, least significant bit first (PS3.5 8.1.1); a frame may start
            // inside a byte.
            (Held::Bytes(b, _), 1) => {
                (first..first + count).for_each(|i| value(((b[i / 8] >> (i % 8)) & 1) as u64))
            }
            (Held::Words(w, _), 1) => {
                (first..first + count).for_each(|i| value(((w[i / 16] >> (i % 16)) & 1) as u64))
            }
            // Excluded by `borrow`.
            _ => {}
        }
    }

    /// The frame's stored values.
    pub(crate) fn stored(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.count);
        self.for_each(|v| out.push(v));
        out
    }

    /// The frame's modality values: stored x slope + intercept, in one pass.
    pub(crate) fn rescaled(&self, slope: f64, intercept: f64) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.count);
        if slope == 1.0 && intercept == 0.0 {
            self.for_each(|v| out.push(v as f32));
        } else {
            self.for_each(|v| out.push((v as f64 * slope + intercept) as f32));
        }
        out
    }
}

/// Decodes one RLE Lossless frame (PS3.5 Annex G) into little-endian, pixel-first samples:
/// segment `s * bytes + k` holds byte `k` (most significant first) of sample `s`, PackBits coded.
/// Written here because dicom-rs's RLE decoder handles neither 32-bit allocations nor short
/// segments (it panicked on one), and because decoding straight into the layout the native path
/// reads saves a conversion pass; the header and segment lengths were validated before
/// (`check_rle`), and a short segment is still an error.
pub(crate) fn rle_decode(
    fragment: &[u8],
    pixels: usize,
    samples: usize,
    bytes: usize,
) -> Result<Vec<u8>, String> {
    let segments = samples * bytes;
    if fragment.len() < 64 || segments == 0 || segments > 15 {
        return Err(format!(
            "RLE frame of {} bytes with {segments} segments",
            fragment.len()
        ));
    }
    let u32_at = |p: usize| {
        u32::from_le_bytes([
            fragment[p],
            fragment[p + 1],
            fragment[p + 2],
            fragment[p + 3],
        ]) as usize
    };
    let mut out = vec![0u8; pixels * segments];
    for segment in 0..segments {
        let start = u32_at(4 + 4 * segment);
        let end = if segment + 1 < segments {
            u32_at(8 + 4 * segment)
        } else {
            fragment.len()
        };
        let data = fragment
            .get(start..end)
            .ok_or_else(|| format!("RLE segment {segment} spans bytes {start}..{end}"))?;
        let (s, k) = (segment / bytes, segment % bytes);
        let at = |i: usize| (i * samples + s) * bytes + (bytes - 1 - k);
        let (mut i, mut n) = (0usize, 0usize);
        while i < data.len() && n < pixels {
            let code = data[i] as usize;
            if code < 128 {
                let run = data.get(i + 1..i + 2 + code).unwrap_or(&data[i + 1..]);
                for &b in run.iter().take(pixels - n) {
                    out[at(n)] = b;
                    n += 1;
                }
                i += code + 2;
            } else if code > 128 {
                if let Some(&b) = data.get(i + 1) {
                    for _ in 0..(257 - code).min(pixels - n) {
                        out[at(n)] = b;
                        n += 1;
                    }
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        if n < pixels {
            return Err(format!(
                "RLE segment {segment} decodes to {n} bytes, Rows x Columns needs {pixels}"
            ));
        }
    }
    Ok(out)
}

/// YBR_FULL (or, with `subsampled`, YBR_FULL_422) samples, interleaved Y Cb Cr (YBR_FULL_422: Y1
/// Y2 Cb Cr per pixel pair), to interleaved R G B, as pydicom converts them: the PS3.3 C.7.6.3.1.2
/// equations in single precision, rounded half up, clipped to the sample range.
pub(crate) fn ybr_to_rgb(
    samples: &[i64],
    pixels: usize,
    bits: u32,
    subsampled: bool,
) -> Option<Vec<i64>> {
    let offset = (1i64 << (bits.clamp(1, 31) - 1)) as f32;
    let max = ((1i64 << bits.clamp(1, 31)) - 1) as f32;
    let convert = |y: i64, cb: i64, cr: i64| -> [i64; 3] {
        let (y, cb, cr) = (y as f32, cb as f32 - offset, cr as f32 - offset);
        let r = y + 1.402f32 * cr;
        let g = y + (-0.114f32 * 1.772 / 0.587) * cb + (-0.299f32 * 1.402 / 0.587) * cr;
        let b = y + 1.772f32 * cb;
        [r, g, b].map(|v| (v + 0.5).floor().clamp(0.0, max) as i64)
    };
    let mut out = Vec::with_capacity(pixels * 3);
    if subsampled {
        if samples.len() < pixels * 2 || !pixels.is_multiple_of(2) {
            return None;
        }
        for q in samples[..pixels * 2].chunks_exact(4) {
            out.extend(convert(q[0], q[2], q[3]));
            out.extend(convert(q[1], q[2], q[3]));
        }
    } else {
        if samples.len() < pixels * 3 {
            return None;
        }
        for t in samples[..pixels * 3].chunks_exact(3) {
            out.extend(convert(t[0], t[1], t[2]));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ybr_grey_and_primaries_convert_as_the_standard_says() {
        // Neutral chroma is grey; Cr at its top is red-ish (R = Y + 1.402 x 127).
        assert_eq!(
            ybr_to_rgb(&[100, 128, 128], 1, 8, false),
            Some(vec![100, 100, 100])
        );
        let red = ybr_to_rgb(&[76, 85, 255], 1, 8, false).unwrap_or_default();
        assert_eq!(red[0], 254); // 76 + 1.402 * 127 = 254.05
        assert_eq!(red[2], 0); // 76 + 1.772 * -43 < 0: clipped
    }

    #[test]
    fn rle_32_bit_segments_are_reassembled_most_significant_byte_first() {
        // Two pixels, one sample of 4 bytes: segments hold bytes MSB..LSB; literal runs.
        let mut f = vec![0u8; 64];
        f[0] = 4;
        let mut body = Vec::new();
        for (k, pair) in [[0x01u8, 0x05], [0x02, 0x06], [0x03, 0x07], [0x04, 0x08]]
            .iter()
            .enumerate()
        {
            let offset = (64 + body.len()) as u32;
            f[4 + 4 * k..8 + 4 * k].copy_from_slice(&offset.to_le_bytes());
            body.extend([1u8, pair[0], pair[1]]); // literal run of 2
        }
        f.extend(body);
        let out = rle_decode(&f, 2, 1, 4).unwrap_or_default();
        let frame = NativeFrame::from_le_frame(&out, 0, 2, 32, 32, false);
        assert_eq!(
            frame.map(|f| f.stored()),
            Some(vec![0x01020304, 0x05060708])
        );
        // A segment that decodes short is an error.
        assert!(rle_decode(&f[..70], 2, 1, 4).is_err());
    }

    #[test]
    fn ybr_422_shares_chroma_between_a_pair() {
        let rgb = ybr_to_rgb(&[10, 200, 128, 128], 2, 8, true).unwrap_or_default();
        assert_eq!(rgb, vec![10, 10, 10, 200, 200, 200]);
        // An odd pixel count cannot be 4:2:2.
        assert_eq!(ybr_to_rgb(&[1, 2, 3], 1, 8, true), None);
    }
}
