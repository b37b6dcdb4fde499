#!/usr/bin/env python3
"""Packs assets/icons/vggtune-N.png into the macOS and Windows icon containers.

    python3 packaging/make-icons.py        # writes packaging/macos/vggtune.icns
                                           # and packaging/windows/vggtune.ico

Both formats hold PNG images as they are (ICNS since macOS 10.7, ICO since Windows Vista), so
no image library is needed: the script only writes the containers' headers around the PNG
bytes. The PNGs themselves are rendered from assets/icon.svg (see packaging/README.md).
"""

import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "assets" / "icons"

# ICNS element types that take PNG data, with the pixel size each holds.
ICNS_TYPES = [
    (b"icp4", 16),
    (b"icp5", 32),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic09", 512),
    (b"ic10", 1024),  # 512@2x
    (b"ic11", 32),  # 16@2x
    (b"ic12", 64),  # 32@2x
    (b"ic13", 256),  # 128@2x
    (b"ic14", 512),  # 256@2x
]

ICO_SIZES = [16, 32, 48, 64, 128, 256]


def png(size: int) -> bytes:
    path = ICONS / f"vggtune-{size}.png"
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    bit_depth, colour_type = data[24], data[25]
    if (width, height) != (size, size):
        sys.exit(f"{path}: is {width}x{height}, expected {size}x{size}")
    if (bit_depth, colour_type) != (8, 6):
        # Windows reads only 8-bit RGBA PNGs inside an ICO.
        sys.exit(f"{path}: must be 8-bit RGBA (bit depth {bit_depth}, colour type {colour_type})")
    return data


def icns() -> bytes:
    body = b"".join(t + struct.pack(">I", 8 + len(png(s))) + png(s) for t, s in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def ico() -> bytes:
    images = [png(s) for s in ICO_SIZES]
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = len(header) + 16 * len(images)
    entries = b""
    for size, data in zip(ICO_SIZES, images):
        dim = 0 if size == 256 else size  # 0 means 256 in an ICO directory entry
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    return header + entries + b"".join(images)


def main() -> None:
    outputs = {
        ROOT / "packaging" / "macos" / "vggtune.icns": icns(),
        ROOT / "packaging" / "windows" / "vggtune.ico": ico(),
    }
    for path, data in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{path.relative_to(ROOT)}: {len(data)} bytes")


if __name__ == "__main__":
    main()
