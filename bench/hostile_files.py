#!/usr/bin/env python3
"""Writes the hostile inputs the browser test feeds the viewer (scripts/test.sh runs this):

  huge.dcm      a 300 MB file (sparse: a DICOM header, then zeros; no disk space used)
  20000.dcm     a valid header for a 20,000 x 20,000 image with a few bytes of pixel data
  bomb.dcm      a deflated data set (1.2.840.10008.1.2.1.99) of 8 KB that inflates to 300 MB

    python3 bench/hostile_files.py OUT_DIR
"""
import struct
import sys
import zlib
from pathlib import Path

UIDS = ("1.2.840.10008.5.1.4.1.1.1.1", "2.25.1", "2.25.2", "2.25.3")


def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    """Explicit VR little endian element, padded to an even length."""
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def meta(transfer_syntax: str) -> bytes:
    body = (
        element(2, 1, b"OB", b"\0\1")
        + element(2, 2, b"UI", UIDS[0].encode())
        + element(2, 3, b"UI", UIDS[3].encode())
        + element(2, 0x10, b"UI", transfer_syntax.encode())
        + element(2, 0x12, b"UI", b"2.25.302043462331953486468745563893361840923")
    )
    return b"\0" * 128 + b"DICM" + element(2, 0, b"UL", struct.pack("<I", len(body))) + body


def image_header(rows: int, columns: int) -> bytes:
    return (
        element(8, 0x16, b"UI", UIDS[0].encode())
        + element(8, 0x18, b"UI", UIDS[3].encode())
        + element(8, 0x60, b"CS", b"DX")
        + element(0x20, 0x0D, b"UI", UIDS[1].encode())
        + element(0x20, 0x0E, b"UI", UIDS[2].encode())
        + element(0x28, 2, b"US", struct.pack("<H", 1))
        + element(0x28, 4, b"CS", b"MONOCHROME2")
        + element(0x28, 0x10, b"US", struct.pack("<H", rows))
        + element(0x28, 0x11, b"US", struct.pack("<H", columns))
        + element(0x28, 0x100, b"US", struct.pack("<H", 16))
        + element(0x28, 0x101, b"US", struct.pack("<H", 12))
        + element(0x28, 0x102, b"US", struct.pack("<H", 11))
        + element(0x28, 0x103, b"US", struct.pack("<H", 0))
    )


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    size = 300 * 1024 * 1024
    (out / "20000.dcm").write_bytes(meta("1.2.840.10008.1.2.1") + image_header(20000, 20000) + element(0x7FE0, 0x10, b"OW", b"\0" * 8))
    with open(out / "huge.dcm", "wb") as f:
        header = meta("1.2.840.10008.1.2.1") + image_header(8192, 8192)
        f.write(header + struct.pack("<HH2sHI", 0x7FE0, 0x10, b"OW", 0, size - len(header) - 12))
        f.truncate(size)
    # The deflate bomb: the data set (image header, then 300 MB of zero pixel data) compressed as
    # raw deflate, streamed so that the 300 MB never exist here at once.
    rows = columns = 12288  # 12288^2 x 2 bytes = 302 MB
    dataset_head = image_header(rows, columns) + struct.pack("<HH2sHI", 0x7FE0, 0x10, b"OW", 0, rows * columns * 2)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [c.compress(dataset_head)]
    chunk = b"\0" * (1 << 20)
    for _ in range(rows * columns * 2 // len(chunk)):
        parts.append(c.compress(chunk))
    parts.append(c.flush())
    (out / "bomb.dcm").write_bytes(meta("1.2.840.10008.1.2.1.99") + b"".join(parts))
    for name in ("huge.dcm", "20000.dcm", "bomb.dcm"):
        print(f"{name}: {(out / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
