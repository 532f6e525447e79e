//! PNG and JPEG pictures read as images, for the collections that ship radiographs that way
//! (public teaching sets, papers' figures, exports of viewers). A picture has display values
//! already (8 or 16 bits, air dark), no pixel spacing, no view and no identity: the image says so
//! in [`Image::meta`] (empty UIDs, `modality` None) and callers warn. Decoding is the `image`
//! crate's; sizes are checked against [`ReadOptions::max_pixels`] before decoding.

use crate::error::{DicomError, DicomErrorKind};
use crate::read::{Image, ImageMeta, ReadOptions, VoiFunction, VoiWindow};
use std::io::Cursor;

/// What a picture is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureFormat {
    Png,
    Jpeg,
}

impl PictureFormat {
    /// The format's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            PictureFormat::Png => "PNG",
            PictureFormat::Jpeg => "JPEG",
        }
    }
}

/// PNG or JPEG by their signatures; None for anything else (DICOM included).
pub fn picture_format(bytes: &[u8]) -> Option<PictureFormat> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some(PictureFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(PictureFormat::Jpeg)
    } else {
        None
    }
}

/// The warning every analysis of a picture carries.
pub fn picture_warning(format: PictureFormat) -> String {
    format!(
        "a {} picture, not DICOM: 8-bit (or 16-bit) display values as stored, pixel spacing unknown (sizes are in pixels), no view position or patient information",
        format.name()
    )
}

/// Decodes a PNG or JPEG picture into an [`Image`] whose pixels are the stored grey values
/// (colour converted to luma), with an exact linear window from 0 to the format's maximum, so
/// that [`Image::display`] gives `value / max`.
pub fn read_picture(
    bytes: &[u8],
    source_name: &str,
    options: &ReadOptions,
) -> Result<Image, DicomError> {
    let err = |kind| DicomError::new(source_name, kind);
    let format = picture_format(bytes).ok_or_else(|| {
        err(DicomErrorKind::NotDicom(
            "neither DICOM nor a PNG or JPEG picture".into(),
        ))
    })?;
    let decode = |e: image::ImageError| {
        err(DicomErrorKind::Decode(format!(
            "{} picture: {e}",
            format.name()
        )))
    };
    let mut reader = image::ImageReader::new(Cursor::new(bytes));
    reader.set_format(match format {
        PictureFormat::Png => image::ImageFormat::Png,
        PictureFormat::Jpeg => image::ImageFormat::Jpeg,
    });
    let (w, h) = reader.into_dimensions().map_err(decode)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > options.max_pixels || w == 0 || h == 0 {
        return Err(err(DicomErrorKind::TooLarge {
            rows: u64::from(h),
            columns: u64::from(w),
            frames: 1,
            cap: options.max_pixels,
        }));
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes));
    reader.set_format(match format {
        PictureFormat::Png => image::ImageFormat::Png,
        PictureFormat::Jpeg => image::ImageFormat::Jpeg,
    });
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // Decoded RGBA at 16 bits is the largest form a decoder holds.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(1 << 20));
    reader.limits(limits);
    let decoded = reader.decode().map_err(decode)?;
    let sixteen = matches!(
        decoded.color(),
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    let (values, bits): (Vec<f32>, u16) = if sixteen {
        let g = decoded.into_luma16();
        (g.into_raw().into_iter().map(f32::from).collect(), 16)
    } else {
        let g = decoded.into_luma8();
        (g.into_raw().into_iter().map(f32::from).collect(), 8)
    };
    let max = ((1u32 << bits) - 1) as f64;
    Ok(Image {
        width: w,
        height: h,
        pixels: values,
        stored: None,
        meta: ImageMeta {
            sop_class_uid: String::new(),
            sop_instance_uid: String::new(),
            study_instance_uid: String::new(),
            series_instance_uid: String::new(),
            transfer_syntax_uid: String::new(),
            modality: None,
            rows: h,
            columns: w,
            frames: 1,
            bits_allocated: bits,
            bits_stored: bits,
            pixel_representation: 0,
            samples_per_pixel: 1,
            photometric_interpretation: "MONOCHROME2".into(),
            rescale_slope: 1.0,
            rescale_intercept: 0.0,
            pixel_spacing_mm: None,
            view_position: None,
            body_part_examined: None,
            laterality: None,
            patient_orientation: None,
            window: Some(VoiWindow {
                center: max / 2.0,
                width: max,
            }),
            voi_function: VoiFunction::LinearExact,
            voi_lut: None,
            modality_lut: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn an_8_bit_png_reads_as_its_values_and_displays_as_value_over_255() {
        let g = image::GrayImage::from_fn(5, 3, |x, y| image::Luma([(x * 50 + y) as u8]));
        let bytes = png(image::DynamicImage::ImageLuma8(g.clone()));
        assert_eq!(picture_format(&bytes), Some(PictureFormat::Png));
        let img = read_picture(&bytes, "a.png", &ReadOptions::default()).unwrap();
        assert_eq!((img.width, img.height), (5, 3));
        assert_eq!(img.pixels[1], 50.0);
        let d = img.display();
        for (v, p) in d.iter().zip(g.as_raw()) {
            assert!((v - *p as f32 / 255.0).abs() < 1e-6, "{v} {p}");
        }
        assert!(img.meta.pixel_spacing_mm.is_none());
    }

    #[test]
    fn a_16_bit_png_keeps_its_depth_and_colour_becomes_grey() {
        let g = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(4, 4, |x, _| {
            image::Luma([(x * 20000) as u16])
        });
        let img = read_picture(
            &png(image::DynamicImage::ImageLuma16(g)),
            "b.png",
            &ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(img.meta.bits_stored, 16);
        assert!((img.display()[3] - 60000.0 / 65535.0).abs() < 1e-6);
        let rgb = image::RgbImage::from_pixel(2, 2, image::Rgb([200, 200, 200]));
        let img = read_picture(
            &png(image::DynamicImage::ImageRgb8(rgb)),
            "c.png",
            &ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(img.pixels, vec![200.0; 4]);
    }

    #[test]
    fn a_jpeg_decodes() {
        let g = image::GrayImage::from_pixel(16, 8, image::Luma([128]));
        let mut out = Vec::new();
        image::DynamicImage::ImageLuma8(g)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .unwrap();
        assert_eq!(picture_format(&out), Some(PictureFormat::Jpeg));
        let img = read_picture(&out, "d.jpg", &ReadOptions::default()).unwrap();
        assert_eq!((img.width, img.height), (16, 8));
        assert!((img.pixels[0] - 128.0).abs() <= 2.0);
    }

    #[test]
    fn oversized_truncated_and_foreign_bytes_are_named_errors() {
        let g = image::GrayImage::from_pixel(100, 100, image::Luma([1]));
        let bytes = png(image::DynamicImage::ImageLuma8(g));
        let small = ReadOptions {
            max_pixels: 50 * 50,
            ..ReadOptions::default()
        };
        let e = read_picture(&bytes, "big.png", &small).unwrap_err();
        assert!(matches!(e.kind, DicomErrorKind::TooLarge { .. }), "{e}");
        assert!(e.to_string().starts_with("big.png: "));
        let e = read_picture(&bytes[..60], "cut.png", &ReadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("cut.png"), "{e}");
        let e = read_picture(b"GIF89a....", "x.gif", &ReadOptions::default()).unwrap_err();
        assert!(matches!(e.kind, DicomErrorKind::NotDicom(_)), "{e}");
    }
}
