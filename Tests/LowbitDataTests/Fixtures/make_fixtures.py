#!/usr/bin/env python3
"""Writes the small NPY, NPZ and IDX fixtures that LowbitDataTests compare against.

Run from anywhere: `python3 Tests/LowbitDataTests/Fixtures/make_fixtures.py` (needs numpy).
The values here are repeated in DataFixtures.swift; change both together.
"""
import gzip
import os
import struct
import zipfile
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# One (2, 3) array per dtype, reaching the edges of each type's range.
ARRAYS = {
    "f2": np.array([0.0, 1.5, -2.25, 65504.0, 2.0**-24, np.inf], dtype="<f2"),
    "f4": np.array([0.5, -1.0, 3.25, 1e10, 2.0**-149, -np.inf], dtype="<f4"),
    "f8": np.array([0.1, 2.5, -3.0, 1e300, 1e-300, 123456.789], dtype="<f8"),
    "i1": np.array([-128, -1, 0, 1, 2, 127], dtype="|i1"),
    "i2": np.array([-32768, -1, 0, 1, 300, 32767], dtype="<i2"),
    "i4": np.array([-(2**31), -1, 0, 1, 70000, 2**31 - 1], dtype="<i4"),
    "i8": np.array([-(2**63), -1, 0, 1, 2**40, 2**63 - 1], dtype="<i8"),
    "u1": np.array([0, 1, 2, 128, 200, 255], dtype="|u1"),
    "u2": np.array([0, 1, 2, 300, 40000, 65535], dtype="<u2"),
    "u4": np.array([0, 1, 2, 70000, 3000000000, 2**32 - 1], dtype="<u4"),
    "u8": np.array([0, 1, 2, 2**40, 2**62, 2**63 - 1], dtype="<u8"),
    "b1": np.array([True, False, True, True, False, False], dtype="|b1"),
}
ARRAYS = {k: v.reshape(2, 3) for k, v in ARRAYS.items()}


def path(name):
    return os.path.join(HERE, name)


def write_version(name, array, version):
    with open(path(name), "wb") as f:
        np.lib.format.write_array(f, array, version=version)


def zip64_npz(name, members):
    """A stored zip whose central directory uses ZIP64 for every size and offset, with a ZIP64
    end record, as zip writers do for archives past 4 GiB (numpy via Python's zipfile)."""
    out = bytearray()
    central = bytearray()
    for key, array in members.items():
        import io
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array)
        data = buf.getvalue()
        fname = (key + ".npy").encode()
        crc = zlib.crc32(data)
        offset = len(out)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc,
                           0xFFFFFFFF, 0xFFFFFFFF, len(fname), len(extra))
        out += fname + extra + data
        cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc,
                               0xFFFFFFFF, 0xFFFFFFFF, len(fname), len(cextra), 0, 0, 0, 0,
                               0xFFFFFFFF)
        central += fname + cextra
    cd_offset = len(out)
    out += central
    z64_offset = len(out)
    n = len(members)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, z64_offset, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(path(name), "wb") as f:
        f.write(out)
    with zipfile.ZipFile(path(name)) as z:  # Python's reader agrees
        assert z.testzip() is None
    loaded = np.load(path(name))
    for key, array in members.items():
        assert np.array_equal(loaded[key], array)


def idx(array, type_byte):
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def gz(name, data):
    # mtime=0 keeps the output reproducible.
    with open(path(name), "wb") as f:
        f.write(gzip.compress(data, mtime=0))


def main():
    for key, array in ARRAYS.items():
        np.save(path(key + ".npy"), array)
    np.savez(path("dtypes.npz"), **ARRAYS)
    np.savez_compressed(path("dtypes_compressed.npz"), **ARRAYS)
    zip64_npz("zip64.npz", {"x": ARRAYS["f4"], "labels": np.array([3, 1], dtype="<i8")})

    f4 = ARRAYS["f4"]
    write_version("v2.npy", f4, (2, 0))
    write_version("v3.npy", f4, (3, 0))
    np.save(path("scalar.npy"), np.float32(3.5))
    np.save(path("empty.npy"), np.zeros((0, 3), dtype="<f4"))
    np.save(path("fortran.npy"), np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)))
    np.save(path("bigendian.npy"), np.arange(3, dtype=">i4"))
    np.save(path("object.npy"), np.array([1, "a"], dtype=object), allow_pickle=True)
    np.save(path("structured.npy"), np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
    np.save(path("unicode.npy"), np.array(["ab", "c"]))

    # IDX: images (3, 2, 2) uint8 and labels (3,) uint8, gzip-compressed like Fashion-MNIST.
    images = np.arange(12, dtype=np.uint8).reshape(3, 2, 2) * 20
    labels = np.array([7, 0, 9], dtype=np.uint8)
    gz("images.idx3.gz", idx(images, 0x08))
    gz("labels.idx1.gz", idx(labels, 0x08))
    # Hostile: a header for one label followed by 10 MB of zeros (a small decompression bomb),
    # a header promising 1000 images over 10 bytes, and a gzip member with a wrong CRC.
    gz("bomb.idx1.gz", idx(np.array([1], dtype=np.uint8), 0x08) + bytes(10_000_000))
    gz("short.idx3.gz", bytes([0, 0, 8, 3]) + struct.pack(">III", 1000, 28, 28) + bytes(10))
    bad = bytearray(gzip.compress(idx(labels, 0x08), mtime=0))
    bad[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    with open(path("badcrc.idx1.gz"), "wb") as f:
        f.write(bad)


if __name__ == "__main__":
    main()
