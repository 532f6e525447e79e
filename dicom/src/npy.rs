//! Writing NumPy `.npy` files (format version 1.0), for outside checks of decoded pixels.
//! Hand-written: the format is a short text header before raw little-endian values.

/// Element types we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl NpyType {
    fn descr(self) -> &'static str {
        match self {
            NpyType::U8 => "|u1",
            NpyType::I8 => "|i1",
            NpyType::U16 => "<u2",
            NpyType::I16 => "<i2",
            NpyType::U32 => "<u4",
            NpyType::I32 => "<i4",
            NpyType::F32 => "<f4",
        }
    }

    /// The type numpy uses for stored values of this many bits and signedness.
    pub fn for_stored(bits_allocated: u16, signed: bool) -> Self {
        match (bits_allocated, signed) {
            (0..=8, false) => NpyType::U8,
            (0..=8, true) => NpyType::I8,
            (9..=16, false) => NpyType::U16,
            (9..=16, true) => NpyType::I16,
            (_, false) => NpyType::U32,
            (_, true) => NpyType::I32,
        }
    }
}

/// Encodes `values` (row-major, `shape`) as `.npy` bytes of element type `ty` (values are cast).
pub fn encode(shape: &[usize], ty: NpyType, values: impl Iterator<Item = f64>) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        ty.descr()
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + shape.iter().product::<usize>() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        match ty {
            NpyType::U8 => out.push(v as u8),
            NpyType::I8 => out.push(v as i8 as u8),
            NpyType::U16 => out.extend_from_slice(&(v as u16).to_le_bytes()),
            NpyType::I16 => out.extend_from_slice(&(v as i16).to_le_bytes()),
            NpyType::U32 => out.extend_from_slice(&(v as u32).to_le_bytes()),
            NpyType::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
            NpyType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_readable() {
        let bytes = encode(
            &[2, 3],
            NpyType::I16,
            [-1.0, 2.0, 3.0, 4.0, 5.0, -32768.0].into_iter(),
        );
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(header.starts_with("{'descr': '<i2', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(&bytes[10 + hlen..10 + hlen + 2], &(-1i16).to_le_bytes());
        assert_eq!(bytes.len(), 10 + hlen + 12);
    }
}
