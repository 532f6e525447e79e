//! A pre-walk of a DICOM stream's element headers that rejects any declared length running past
//! the end of the data, before dicom-parser allocates (and zero-fills) a buffer of that length.
//! Hand-written because the parser has no such bound; it reads headers only and never allocates.
//! Headers are read the way dicom-encoding reads them (an unknown VR is UN, with a 32-bit length).
//! A deflated data set is inflated first (with the `codecs` feature; at most 1 GiB, more is
//! refused as a deflate bomb) and walked the same way.

use dicom_core::{Tag, VR};

/// An element whose declared length runs past the end of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthOverrun {
    pub tag: Tag,
    pub declared: u64,
    pub remaining: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
}

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// VRs whose explicit length is 16 bits (PS3.5 7.1.2), as dicom-encoding decodes them.
fn short_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

/// The bytes dicom-parser actually consumes for a value of `len` bytes: binary numeric values are
/// read as whole numbers (`len / size` of them), so a length that is not a multiple of the size
/// leaves the remainder unread and the next header is read from there. The walk follows the same
/// bytes, or it would check other headers than the parser then reads.
fn consumed(vr: VR, len: usize) -> usize {
    use VR::*;
    match vr {
        SS | US | OW => len & !1,
        SL | UL | FL | OL | OF | AT => len & !3,
        FD | OD | SV | UV | OV => len & !7,
        _ => len,
    }
}

/// The VR an implicit VR data set's element has: the dictionary's (ambiguous ones relaxed as
/// dicom-parser relaxes them), else UN.
fn dictionary_vr(tag: Tag) -> VR {
    use dicom_core::dictionary::DataDictionary;
    use dicom_core::dictionary::DataDictionaryEntry;
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr().relaxed())
        .unwrap_or(VR::UN)
}

/// Where the top-level native Pixel Data's value lies in the walked bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelSpan {
    pub offset: usize,
    pub len: usize,
}

/// What a walk found besides the lengths being sound.
#[derive(Debug, Default)]
pub struct Walk {
    /// The inflated data set of a deflated stream (inflated once, here).
    pub inflated: Option<Vec<u8>>,
    /// The top-level Pixel Data of defined length (native pixel data), in the walked bytes.
    pub pixels: Option<PixelSpan>,
}

/// Walks `data` (the bytes after the "DICM" magic). `Ok` when every header fits (or the walk met
/// something it leaves to the parser); `Err` names the first element whose length overruns. A
/// deflated data set may inflate to at most `max_inflated` bytes (and never past
/// [`MAX_INFLATED_BYTES`]).
///
/// Returns the inflated data set of a deflated stream (so that it is inflated once, here), else
/// None.
pub fn check(data: &[u8], max_inflated: u64) -> Result<Walk, WalkError> {
    match walk(data, None)? {
        Walked::Done(pixels) => Ok(Walk {
            inflated: None,
            pixels,
        }),
        Walked::Deflated(start) => Ok(Walk {
            inflated: check_deflated(&data[start.min(data.len())..], max_inflated)?,
            pixels: None,
        }),
    }
}

/// Walks a data set with no meta group, in the transfer syntax `uid` (native syntaxes only).
pub fn check_dataset(data: &[u8], uid: &str) -> Result<(), WalkError> {
    let encoding = match uid {
        "1.2.840.10008.1.2" => Encoding::ImplicitLe,
        "1.2.840.10008.1.2.2" => Encoding::ExplicitBe,
        _ => Encoding::ExplicitLe,
    };
    walk(data, Some(encoding))?;
    Ok(())
}

/// The most a deflated data set may inflate to before it is refused (a deflate bomb).
#[cfg(feature = "codecs")]
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// Inflates a deflated data set (raw deflate, PS3.5 A.5) up to `max_inflated` bytes (at most
/// [`MAX_INFLATED_BYTES`]) and walks it as explicit VR little endian. A stream that does not
/// inflate is left to the parser, which names the cause.
#[cfg(feature = "codecs")]
fn check_deflated(stream: &[u8], max_inflated: u64) -> Result<Option<Vec<u8>>, WalkError> {
    use std::io::Read;
    let limit = max_inflated.min(MAX_INFLATED_BYTES);
    // Inflated in chunks into a buffer that doubles but never past the limit (read_to_end's
    // doubling would reserve up to twice the limit: in the browser that is the tab's memory).
    let mut inflated: Vec<u8> = Vec::new();
    let mut decoder = flate2::read::DeflateDecoder::new(stream);
    let mut chunk = [0u8; 64 * 1024];
    let read = loop {
        match decoder.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if (inflated.len() + n) as u64 > limit {
                    return Err(WalkError::InflatesTooLarge { limit });
                }
                if inflated.len() + n > inflated.capacity() {
                    let want = (inflated.capacity() * 2)
                        .max(inflated.len() + n)
                        .max(1 << 16);
                    let capped = want.min(limit as usize + 1);
                    inflated.reserve_exact(capped - inflated.len());
                }
                inflated.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    if read.is_err() {
        // Damaged: what did inflate is walked (an element running past it is an overrun all the
        // same), and the parser is left to name the damage.
        if !inflated.is_empty() {
            walk(&inflated, Some(Encoding::ExplicitLe))?;
        }
        return Ok(None);
    }
    walk(&inflated, Some(Encoding::ExplicitLe))?;
    Ok(Some(inflated))
}

/// Without the codecs a deflated data set is not read at all (the parser refuses it).
#[cfg(not(feature = "codecs"))]
fn check_deflated(_stream: &[u8], _max_inflated: u64) -> Result<Option<Vec<u8>>, WalkError> {
    Ok(None)
}

/// What the pre-walk refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "codecs"), allow(dead_code))]
pub enum WalkError {
    /// An element's declared length runs past the end of the data.
    Overrun(LengthOverrun),
    /// A deflated data set inflates to more than `limit` bytes.
    InflatesTooLarge { limit: u64 },
}

impl From<LengthOverrun> for WalkError {
    fn from(o: LengthOverrun) -> Self {
        WalkError::Overrun(o)
    }
}

/// How far a walk got.
enum Walked {
    /// The whole data (with the top-level native Pixel Data's place, if it has one).
    Done(Option<PixelSpan>),
    /// Up to a deflated data set starting at this offset.
    Deflated(usize),
}

/// Where the walk is, as dicom-parser's reader sees it: directly inside a sequence it reads item
/// headers (tag and length, no VR), anywhere else element headers (so an item tag outside a
/// sequence is read as an element, as the parser reads it). Defined-length sequences and items
/// end at their length.
#[derive(Clone, Copy)]
enum Frame {
    Sequence(Option<usize>),
    Item(Option<usize>),
}

fn walk(data: &[u8], dataset: Option<Encoding>) -> Result<Walked, LengthOverrun> {
    let mut pos = 0usize;
    let mut encoding = dataset.unwrap_or(Encoding::ExplicitLe);
    let mut transfer_syntax: Option<String> = None;
    let mut in_meta = dataset.is_none();
    let mut in_fragments = false;
    // Where the meta group ends by its group length (0002,0000): dicom-object reads the meta group
    // by that length, so the data set (and a deflated stream) starts there whatever tag follows.
    let mut meta_end: Option<usize> = None;
    let mut frames: Vec<Frame> = Vec::new();
    let mut pixels: Option<PixelSpan> = None;
    let u16_at = |p: usize, be: bool| -> Option<u16> {
        let b: [u8; 2] = data.get(p..p + 2)?.try_into().ok()?;
        Some(if be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |p: usize, be: bool| -> Option<u32> {
        let b: [u8; 4] = data.get(p..p + 4)?.try_into().ok()?;
        Some(if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    while pos < data.len() {
        // Defined-length sequences and items that end here.
        while let Some(&(Frame::Sequence(Some(end)) | Frame::Item(Some(end)))) = frames.last() {
            if pos < end {
                break;
            }
            frames.pop();
        }
        // The meta group is explicit VR little endian; the data set follows its transfer syntax.
        let Some(group_le) = u16_at(pos, false) else {
            return Ok(Walked::Done(pixels));
        };
        if in_meta && meta_end.map_or(group_le != 0x0002, |end| pos >= end) {
            in_meta = false;
            match transfer_syntax.as_deref() {
                Some("1.2.840.10008.1.2") => encoding = Encoding::ImplicitLe,
                Some("1.2.840.10008.1.2.2") => encoding = Encoding::ExplicitBe,
                // Deflated data sets cannot be walked without inflating them.
                Some("1.2.840.10008.1.2.1.99") | Some("1.2.840.10008.1.2.1.99\0") => {
                    return Ok(Walked::Deflated(pos))
                }
                _ => encoding = Encoding::ExplicitLe,
            }
        }
        let be = encoding == Encoding::ExplicitBe && !in_meta;
        let (Some(group), Some(element)) = (u16_at(pos, be), u16_at(pos + 2, be)) else {
            return Ok(Walked::Done(pixels));
        };
        let tag = Tag(group, element);
        let remaining_after = |header: usize| data.len().saturating_sub(pos + header) as u64;
        let overrun = |len: u32, header: usize| LengthOverrun {
            tag,
            declared: len as u64,
            remaining: remaining_after(header),
        };
        if in_fragments {
            // Encapsulated pixel data: fragments (tag + 4-byte length) until the delimiter.
            let Some(len) = u32_at(pos + 4, be) else {
                return Ok(Walked::Done(pixels));
            };
            match tag {
                Tag(0xFFFE, 0xE000) if len != UNDEFINED => {
                    if len as u64 > remaining_after(8) {
                        return Err(overrun(len, 8));
                    }
                    pos += 8 + len as usize;
                }
                Tag(0xFFFE, 0xE0DD) => {
                    in_fragments = false;
                    pos += 8;
                }
                // The parser stops with an error here, before allocating.
                _ => return Ok(Walked::Done(pixels)),
            }
            continue;
        }
        if let Some(Frame::Sequence(_)) = frames.last() {
            // Directly inside a sequence the parser reads item headers only.
            let Some(len) = u32_at(pos + 4, be) else {
                return Ok(Walked::Done(pixels));
            };
            match tag {
                Tag(0xFFFE, 0xE000) => {
                    if len != UNDEFINED && len as u64 > remaining_after(8) {
                        return Err(overrun(len, 8));
                    }
                    frames.push(Frame::Item(
                        (len != UNDEFINED).then_some(pos + 8 + len as usize),
                    ));
                    pos += 8; // step into the item
                }
                Tag(0xFFFE, 0xE0DD) => {
                    frames.pop();
                    pos += 8;
                }
                // Anything else where an item should start: the parser stops with an error
                // there, before allocating anything.
                _ => return Ok(Walked::Done(pixels)),
            }
            continue;
        }
        if group == 0xFFFE && in_meta {
            // The meta group's reader reads every value raw by its length, an item-group tag
            // too (tag + 4-byte length, no VR).
            let Some(len) = u32_at(pos + 4, false) else {
                return Ok(Walked::Done(pixels));
            };
            if len == UNDEFINED {
                return Ok(Walked::Done(pixels));
            }
            if len as u64 > remaining_after(8) {
                return Err(overrun(len, 8));
            }
            pos += 8 + len as usize;
            continue;
        }
        if group == 0xFFFE {
            // Where an element is expected, the parser reads any item-group tag as tag + 4-byte
            // length with no VR: an item delimiter closes what is open (ignored when nothing
            // is), an undefined length opens a sequence, anything else is a value of that length.
            let Some(len) = u32_at(pos + 4, be) else {
                return Ok(Walked::Done(pixels));
            };
            if element == 0xE00D {
                frames.pop();
                pos += 8;
            } else if len == UNDEFINED {
                frames.push(Frame::Sequence(None));
                pos += 8;
            } else {
                if len as u64 > remaining_after(8) {
                    return Err(overrun(len, 8));
                }
                pos += 8 + len as usize;
            }
            continue;
        }
        let (len, header, sequence, vr) = if encoding == Encoding::ImplicitLe && !in_meta {
            let Some(len) = u32_at(pos + 4, false) else {
                return Ok(Walked::Done(pixels));
            };
            let vr = dictionary_vr(tag);
            (len, 8, len == UNDEFINED || vr == VR::SQ, vr)
        } else {
            // As dicom-encoding reads it: an unknown VR is UN (reserved bytes, 32-bit length).
            let Some(vr_bytes) = data.get(pos + 4..pos + 6) else {
                return Ok(Walked::Done(pixels));
            };
            let vr = VR::from_binary([vr_bytes[0], vr_bytes[1]]).unwrap_or(VR::UN);
            if short_length(vr) {
                let Some(len) = u16_at(pos + 6, be) else {
                    return Ok(Walked::Done(pixels));
                };
                (len as u32, 8, false, vr)
            } else {
                let Some(len) = u32_at(pos + 8, be) else {
                    return Ok(Walked::Done(pixels));
                };
                (len, 12, vr == VR::SQ || len == UNDEFINED, vr)
            }
        };
        if in_meta && tag == Tag(0x0002, 0x0000) && len == 4 && meta_end.is_none() {
            if let Some(v) = data.get(pos + header..pos + header + 4) {
                let group_length = u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize;
                meta_end = Some(pos + header + 4 + group_length);
            }
        }
        if in_meta && tag == Tag(0x0002, 0x0010) {
            if let Some(v) = data.get(pos + header..pos + header + len as usize) {
                transfer_syntax = Some(
                    String::from_utf8_lossy(v)
                        .trim_end_matches(['\0', ' '])
                        .to_string(),
                );
            }
        }
        if len == UNDEFINED && in_meta {
            // The meta group's reader refuses an undefined length before allocating.
            return Ok(Walked::Done(pixels));
        }
        if len == UNDEFINED {
            // Encapsulated pixel data, or a sequence: step into it.
            if tag == Tag(0x7FE0, 0x0010) {
                in_fragments = true;
            } else {
                frames.push(Frame::Sequence(None));
            }
            pos += header;
            continue;
        }
        if len as u64 > remaining_after(header) {
            return Err(LengthOverrun {
                tag,
                declared: len as u64,
                remaining: remaining_after(header),
            });
        }
        if !in_meta && frames.is_empty() && tag == Tag(0x7FE0, 0x0010) && !sequence {
            pixels = Some(PixelSpan {
                offset: pos + header,
                len: consumed(vr, len as usize),
            });
        }
        if sequence && !in_meta {
            frames.push(Frame::Sequence(Some(pos + header + len as usize)));
            pos += header;
        } else {
            // The meta group's values are read whole (it is parsed apart, by its own reader).
            pos += header
                + if in_meta {
                    len as usize
                } else {
                    consumed(vr, len as usize)
                };
        }
    }
    Ok(Walked::Done(pixels))
}
