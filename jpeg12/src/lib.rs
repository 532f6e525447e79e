//! 12-bit lossy JPEG frames (DICOM JPEG Extended, processes 2 and 4) decoded by libjpeg-turbo 3
//! (`tj3Decompress12`). The only `unsafe` code on the DICOM path: a handle guarded by a drop, the
//! declared size checked against a cap before the output is allocated, every return code read.

use std::ffi::CStr;
use turbojpeg_sys as tj;

/// Why a 12-bit JPEG frame was not decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Jpeg12Error {
    /// libjpeg-turbo refused the stream (its own message).
    #[error("libjpeg-turbo: {0}")]
    Library(String),
    /// The stream is not what this decoder reads.
    #[error("{0}")]
    Unsupported(String),
    /// The stream declares more pixels than the caller allows.
    #[error("the JPEG stream declares {width} x {height} pixels, more than the cap of {cap}")]
    TooLarge { width: u32, height: u32, cap: u64 },
}

/// A decoded grey frame: `samples` holds `width * height` values, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grey12 {
    pub width: u32,
    pub height: u32,
    /// The sample precision the stream declares (9 to 12 bits).
    pub precision: u32,
    pub samples: Vec<u16>,
}

/// A TurboJPEG instance, destroyed when dropped.
struct Handle(tj::tjhandle);

impl Handle {
    fn new(kind: tj::TJINIT) -> Result<Self, Jpeg12Error> {
        // SAFETY: tj3Init takes an enum value and returns an owned handle or null.
        let handle = unsafe { tj::tj3Init(kind as libc::c_int) };
        if handle.is_null() {
            return Err(Jpeg12Error::Library(
                "could not create a TurboJPEG instance".into(),
            ));
        }
        Ok(Handle(handle))
    }

    fn error(&self) -> Jpeg12Error {
        // SAFETY: the handle is live; tj3GetErrorStr returns a NUL-terminated string it owns.
        let text = unsafe {
            let p = tj::tj3GetErrorStr(self.0);
            if p.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Jpeg12Error::Library(text)
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: the handle is live; an unknown parameter answers -1.
        unsafe { tj::tj3Get(self.0, param as libc::c_int) }
    }

    fn set(&self, param: tj::TJPARAM, value: i32) -> Result<(), Jpeg12Error> {
        // SAFETY: the handle is live.
        if unsafe { tj::tj3Set(self.0, param as libc::c_int, value) } != 0 {
            return Err(self.error());
        }
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// Decodes one grey JPEG frame of 9 to 12 bits per sample (DCT, sequential or progressive;
/// lossless 12-bit streams too). `max_pixels` caps `width * height` before anything is allocated.
pub fn decode_grey12(data: &[u8], max_pixels: u64) -> Result<Grey12, Jpeg12Error> {
    let handle = Handle::new(tj::TJINIT_TJINIT_DECOMPRESS)?;
    // Warnings (a corrupt segment the library would paper over) are errors here.
    handle.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
    // A progressive stream with thousands of scans is a known denial of service; real ones have ~10.
    handle.set(tj::TJPARAM_TJPARAM_SCANLIMIT, 500)?;
    // SAFETY: data is a live slice of data.len() bytes.
    if unsafe { tj::tj3DecompressHeader(handle.0, data.as_ptr(), data.len() as tj::size_t) } != 0 {
        return Err(handle.error());
    }
    let width = handle.get(tj::TJPARAM_TJPARAM_JPEGWIDTH);
    let height = handle.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT);
    let precision = handle.get(tj::TJPARAM_TJPARAM_PRECISION);
    let colourspace = handle.get(tj::TJPARAM_TJPARAM_COLORSPACE);
    if width <= 0 || height <= 0 {
        return Err(Jpeg12Error::Unsupported(format!(
            "the JPEG stream declares {width} x {height} pixels"
        )));
    }
    if !(9..=12).contains(&precision) {
        return Err(Jpeg12Error::Unsupported(format!(
            "the JPEG stream's samples are {precision} bits; this decoder reads 9 to 12"
        )));
    }
    if colourspace != tj::TJCS_TJCS_GRAY as i32 {
        return Err(Jpeg12Error::Unsupported(
            "a colour JPEG of more than 8 bits per sample is not decoded (grey only)".into(),
        ));
    }
    let (width, height) = (width as u32, height as u32);
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(Jpeg12Error::TooLarge {
            width,
            height,
            cap: max_pixels,
        });
    }
    let mut samples = vec![0i16; pixels as usize];
    // SAFETY: samples holds width * height shorts, which is what a grey frame with pitch 0
    // (= width samples a row) writes; the header read above fixed the size.
    let rc = unsafe {
        tj::tj3Decompress12(
            handle.0,
            data.as_ptr(),
            data.len() as tj::size_t,
            samples.as_mut_ptr(),
            0,
            tj::TJPF_TJPF_GRAY as libc::c_int,
        )
    };
    if rc != 0 {
        return Err(handle.error());
    }
    let limit = (1u16 << precision) - 1;
    let samples = samples.into_iter().map(|v| (v as u16).min(limit)).collect();
    Ok(Grey12 {
        width,
        height,
        precision: precision as u32,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey 12-bit JPEG written by libjpeg-turbo's own encoder (tj3Compress12).
    // bindgen gives the enums c_int or c_uint by platform: the casts are kept for both.
    #[allow(clippy::unnecessary_cast)]
    fn encode12(width: usize, height: usize, samples: &[i16], quality: i32) -> Vec<u8> {
        let handle = Handle::new(tj::TJINIT_TJINIT_COMPRESS).unwrap();
        handle
            .set(tj::TJPARAM_TJPARAM_SUBSAMP, tj::TJSAMP_TJSAMP_GRAY as i32)
            .unwrap();
        handle.set(tj::TJPARAM_TJPARAM_QUALITY, quality).unwrap();
        handle.set(tj::TJPARAM_TJPARAM_PRECISION, 12).unwrap();
        let mut out: *mut libc::c_uchar = std::ptr::null_mut();
        let mut size: tj::size_t = 0;
        // SAFETY: samples holds width * height shorts; the library allocates `out`.
        let rc = unsafe {
            tj::tj3Compress12(
                handle.0,
                samples.as_ptr(),
                width as libc::c_int,
                0,
                height as libc::c_int,
                tj::TJPF_TJPF_GRAY as libc::c_int,
                &mut out,
                &mut size,
            )
        };
        assert_eq!(rc, 0, "{:?}", handle.error());
        // SAFETY: out holds size bytes written by the library, freed with tj3Free.
        let bytes = unsafe { std::slice::from_raw_parts(out, size as usize).to_vec() };
        unsafe { tj::tj3Free(out as *mut libc::c_void) };
        bytes
    }

    fn ramp(width: usize, height: usize) -> Vec<i16> {
        (0..width * height)
            .map(|i| (((i % width) * 4095 / (width - 1) + (i / width) * 7) % 4096) as i16)
            .collect()
    }

    #[test]
    fn a_12_bit_stream_decodes_to_its_samples_within_the_lossy_error() {
        let (w, h) = (40, 24);
        let original = ramp(w, h);
        let jpeg = encode12(w, h, &original, 100);
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let frame = decode_grey12(&jpeg, 1 << 20).unwrap();
        assert_eq!((frame.width, frame.height, frame.precision), (40, 24, 12));
        let worst = frame
            .samples
            .iter()
            .zip(&original)
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .max()
            .unwrap();
        // Quality 100 at 12 bits: a few units of 4096 from the DCT's rounding.
        assert!(worst <= 16, "worst difference {worst}");
        assert!(frame.samples.iter().any(|&v| v > 3000), "not 12-bit values");
    }

    #[test]
    fn the_cap_refuses_before_decoding() {
        let jpeg = encode12(40, 24, &ramp(40, 24), 90);
        assert_eq!(
            decode_grey12(&jpeg, 100),
            Err(Jpeg12Error::TooLarge {
                width: 40,
                height: 24,
                cap: 100
            })
        );
    }

    #[test]
    fn a_cut_or_foreign_stream_is_an_error_not_a_crash() {
        let jpeg = encode12(40, 24, &ramp(40, 24), 90);
        for cut in [0, 2, 20, jpeg.len() / 2, jpeg.len() - 2] {
            assert!(
                decode_grey12(&jpeg[..cut], 1 << 20).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode_grey12(b"not a jpeg at all", 1 << 20).is_err());
        let mut flipped = jpeg.clone();
        for i in (200..flipped.len() - 2).step_by(7) {
            flipped[i] ^= 0x5A;
        }
        // Corrupt entropy-coded data: an error (warnings stop the decoder), never a crash.
        let _ = decode_grey12(&flipped, 1 << 20);
    }
}
