#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

A few small valid inputs of each format and a few broken ones. Run with Debian's /usr/bin/python3
(numpy, PIL); the output is deterministic and committed, so this only needs rerunning when the
seeds change. Inputs that once crashed a target are added by hand as crash-* files and are
kept when this script rewrites the directory.

Usage: fuzz/make_seeds.py [--out fuzz/corpus]
"""
import argparse
import gzip
import io
import os
import struct

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


# --- IDX ---

def idx(array, type_code):
    dims = b"".join(struct.pack(">I", d) for d in array.shape)
    return bytes([0, 0, type_code, array.ndim]) + dims + array.tobytes()


def idx_seeds(rng):
    u8 = rng.integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    return {
        "u8_images_3x4x4.idx": idx(u8, 0x08),
        "u8_labels_5.idx": idx(np.array([0, 3, 1, 9, 2], np.uint8), 0x08),
        "i8_tabular_2x3.idx": idx(np.array([[-1, 2, 3], [4, -5, 6]], np.int8), 0x09),
        "i16_labels_3.idx": idx(np.array([1, 2, 300], ">i2"), 0x0B),
        "i32_images_2x2x2.idx": idx(np.arange(8, dtype=">i4").reshape(2, 2, 2), 0x0C),
        "f32_tabular_2x5.idx": idx(rng.standard_normal((2, 5)).astype(">f4"), 0x0D),
        "f64_images_1x2x3.idx": idx(rng.standard_normal((1, 2, 3)).astype(">f8"), 0x0E),
        "u8_nhwc_2x3x3x3.idx": idx(rng.integers(0, 256, (2, 3, 3, 3), dtype=np.uint8), 0x08),
        "u8_nchw_2x3x2x2.idx": idx(rng.integers(0, 256, (2, 3, 2, 2), dtype=np.uint8), 0x08),
        "bad_magic.idx": b"\x01\x00\x08\x01\x00\x00\x00\x01\x07",
        "bad_type.idx": b"\x00\x00\x07\x01\x00\x00\x00\x01\x07",
        "bad_rank5.idx": bytes([0, 0, 8, 5]) + struct.pack(">5I", 1, 1, 1, 1, 1) + b"\x00",
        "bad_truncated_header.idx": bytes([0, 0, 8, 3]) + struct.pack(">I", 2),
        "bad_truncated_data.idx": idx(u8, 0x08)[:-5],
        "bad_trailing_bytes.idx": idx(u8, 0x08) + b"\x00\x01",
        "bad_f32_nan.idx": idx(np.array([[np.nan, 1.0]], ">f4"), 0x0D),
    }


# --- NPY ---

def npy(array, version=None):
    out = io.BytesIO()
    if version is None:
        np.save(out, array)
    else:
        np.lib.format.write_array(out, array, version=version)
    return out.getvalue()


def npy_header(header, data=b"", version=1):
    header = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode("latin1") + data


def npy_seeds(rng):
    return {
        "u1_images_3x4x4.npy": npy(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)),
        "u1_nhwc_2x3x3x3.npy": npy(rng.integers(0, 256, (2, 3, 3, 3), dtype=np.uint8)),
        "f4_tabular_4x3.npy": npy(rng.standard_normal((4, 3)).astype("<f4")),
        "f8_nchw_2x1x3x3.npy": npy(rng.standard_normal((2, 1, 3, 3))),
        "be_f4_tabular_2x2.npy": npy(np.arange(4, dtype=">f4").reshape(2, 2)),
        "i1_tabular_2x2.npy": npy(np.array([[-1, 1], [2, -2]], np.int8)),
        "i2_tabular_2x2.npy": npy(np.array([[-1, 1], [2, -2]], np.int16)),
        "i4_labels_5.npy": npy(np.array([0, 1, 2, 1, 0], np.int32)),
        "i8_labels_4x1.npy": npy(np.array([[3], [0], [1], [2]], np.int64)),
        "v2_f4_tabular_2x2.npy": npy(np.ones((2, 2), np.float32), version=(2, 0)),
        "v3_f4_tabular_1x2.npy": npy_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
            np.zeros(2, np.float32).tobytes(), version=3),
        "bad_fortran.npy": npy(np.asfortranarray(np.ones((2, 3), np.float32))),
        "bad_scalar.npy": npy(np.float32(1.0)),
        "bad_rank5.npy": npy(np.zeros((1, 1, 1, 1, 2), np.uint8)),
        "bad_dtype_c8.npy": npy(np.zeros((2, 2), np.complex64)),
        "bad_truncated_data.npy": npy(np.ones((3, 3), np.float32))[:-4],
        "bad_shape_text.npy": npy_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", b"\x00" * 8),
        "bad_negative_dim.npy": npy_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (-1, 2), }"),
        "bad_inf.npy": npy(np.array([[np.inf, 0.0]], np.float32)),
        "bad_version.npy": npy(np.ones((1, 1), np.uint8))[:6] + b"\x04\x00" +
                           npy(np.ones((1, 1), np.uint8))[8:],
    }


# --- CSV ---

def csv_seeds():
    return {
        "header_string_labels.csv": b"x,y,label\n0.5,1,cat\n-2,3e-1,dog\n1.5,2,cat\n",
        "no_header_int_labels.csv": b"1,2,0\n3,4,1\n5,6,1\n",
        "label_column_first.csv": b"label,a,b\n1,0.1,0.2\n0,0.3,0.4\n",
        "quoted_fields.csv": b'"a","b, with comma",label\n"1",2,"say ""hi"""\n3,"4",x\n',
        "bom_crlf.csv": b"\xef\xbb\xbff1,f2,label\r\n1,2,a\r\n3,4,b\r\n",
        "blank_lines.csv": b"\n1,2,3\n\n4,5,6\n   \n",
        "single_column.csv": b"value\n1\n2\n",
        "bad_ragged.csv": b"a,b,label\n1,2,x\n3,y\n",
        "bad_not_number.csv": b"a,b,label\n1,two,x\n",
        "bad_nan.csv": b"a,label\nnan,1\n",
        "bad_huge_number.csv": b"a,label\n1e300,1\n",
        "bad_header_only.csv": b"a,b,label\n",
        "bad_empty.csv": b"",
    }


# --- Images ---

def image_bytes(img, fmt, **kwargs):
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def image_seeds(rng):
    grey = Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8), "L")
    rgb = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(rng.integers(0, 256, (3, 5, 4), dtype=np.uint8), "RGBA")
    la = Image.fromarray(rng.integers(0, 256, (2, 2, 2), dtype=np.uint8), "LA")
    png = image_bytes(rgb, "PNG")
    return {
        "grey_4x4.png": image_bytes(grey, "PNG"),
        "rgb_4x4.png": png,
        "rgba_5x3.png": image_bytes(rgba, "PNG"),
        "grey_alpha_2x2.png": image_bytes(la, "PNG"),
        "palette_4x4.png": image_bytes(rgb.convert("P"), "PNG"),
        "rgb_8x8.jpg": image_bytes(rgb.resize((8, 8)), "JPEG", quality=80),
        "grey_8x8_progressive.jpg": image_bytes(grey.resize((8, 8)), "JPEG", progressive=True),
        "rgb_4x4.bmp": image_bytes(rgb, "BMP"),
        "grey_4x4.gif": image_bytes(grey, "GIF"),
        "rgb_4x4.tga": image_bytes(rgb, "TGA"),
        "grey_4x4.pgm": image_bytes(grey, "PPM"),
        "rgb_4x4.ppm": image_bytes(rgb, "PPM"),
        "bad_truncated.png": png[: len(png) // 2],
        "bad_crc.png": png[:20] + bytes([png[20] ^ 0xFF]) + png[21:],
        "bad_not_an_image.png": b"hello, world\n",
    }


# --- Any file (format detection, gzip, dispatch) ---

def _npz(x, y, compressed):
    """np.savez bytes with fixed member timestamps (zipfile stamps the current time)."""
    import zipfile
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, array in (("x.npy", x), ("y.npy", y)):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = method
            with archive.open(info, "w", force_zip64=True) as member:
                member.write(npy(array))
    return out.getvalue()


def dataset_seeds(rng):
    u8 = rng.integers(0, 256, size=(2, 3, 3), dtype=np.uint8)
    images = idx(u8, 0x08)
    table = b"a,b,label\n1,2,x\n3,4,y\n"
    return {
        "images.idx": images,
        "images.idx.gz": gzip.compress(images, mtime=0),
        "labels_4.npy": npy(np.array([0, 1, 1, 0], np.int64)),
        "tabular.npy.gz": gzip.compress(npy(np.ones((2, 3), np.float32)), mtime=0),
        "table.csv": table,
        "table.csv.gz": gzip.compress(table, mtime=0),
        "no_comma_text": b"1\n2\n3\n",
        "x_y.npz": _npz(u8, np.array([0, 1], np.int64), compressed=False),
        "x_y_compressed.npz": _npz(u8, np.array([0, 1], np.int64), compressed=True),
        "bad_binary": bytes(range(1, 40)),
        "bad_truncated.gz": gzip.compress(images, mtime=0)[:-8],
    }


# --- Requests: two big-endian length bytes, the message, then the data payload ---

def varint(v):
    v &= (1 << 64) - 1  # negative int32/int64 values take ten bytes on the wire
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, v):
    return varint(field << 3) + varint(v)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def f_packed(field, values):
    return f_bytes(field, b"".join(varint(v) for v in values))


def f_double(field, v):
    return varint(field << 3 | 1) + struct.pack("<d", v)


def request(message, payload=b""):
    return struct.pack(">H", len(message)) + message + payload


FLOAT32, UINT8 = 1, 2
IMAGE, TABULAR = 1, 2


def recommend_header(shape, n, encoding, task=0, labels=(), inline=b"", metric=0, extra=b""):
    m = f_varint(1, 3) + f_varint(3, metric) + f_varint(5, task) + f_packed(6, shape)
    m += f_varint(7, n) + f_varint(8, encoding)
    if labels:
        m += f_packed(9, labels)
    return m + f_bytes(11, inline) + extra


def recommend_seeds(rng):
    images = rng.integers(0, 256, (3, 1, 2, 2), dtype=np.uint8).tobytes()
    table = rng.standard_normal((2, 3)).astype("<f4").tobytes()
    named = f_bytes(10, "cat") + f_bytes(10, "dog") + f_double(12, 250.0)
    return {
        "uint8_images_inline": request(recommend_header([1, 2, 2], 3, UINT8, IMAGE, [0, 1, 0],
                                                        inline=images)),
        "uint8_images_chunk": request(recommend_header([1, 2, 2], 3, UINT8, extra=named), images),
        "float32_tabular_split": request(
            recommend_header([3], 2, FLOAT32, TABULAR, [1, 0], inline=table[:8], metric=2),
            table[8:]),
        "float32_images_short": request(recommend_header([3, 2, 2], 1, FLOAT32), b"\x00" * 7),
        "bad_zero_samples": request(recommend_header([3], 0, FLOAT32)),
        "bad_negative_dim": request(recommend_header([1, -2, 2], 1, UINT8)),
        "bad_no_encoding": request(recommend_header([4], 1, 0)),
        "bad_too_big": request(recommend_header([1 << 20, 1 << 20], 4, FLOAT32)),
        "bad_labels_count": request(recommend_header([2], 3, FLOAT32, labels=[0, 1])),
        "bad_negative_label": request(recommend_header([2], 2, FLOAT32, labels=[0, -1])),
        "bad_too_much_data": request(recommend_header([2], 1, UINT8, inline=b"abc")),
        "bad_metric": request(recommend_header([2], 1, FLOAT32, metric=99)),
        "bad_unparseable": request(b"\x0a\xff\xff\xff"),
    }


SHA = "ab" * 32


def register_header(name, shape, task=0, labels=(), sha=SHA, size=1234):
    spec = f_bytes(1, name) + f_bytes(2, "1.0.0") + f_bytes(3, "a model") + f_varint(4, task)
    spec += f_packed(5, shape) + b"".join(f_bytes(6, l) for l in labels)
    spec += f_bytes(7, "CC0-1.0") + f_bytes(8, "fashion")
    return f_bytes(1, spec) + f_varint(2, size) + f_bytes(3, sha)


def list_request(task=0, state=0, shape=()):
    m = f_bytes(1, "cnn") + f_varint(2, task) + f_varint(5, state) + f_varint(6, 10)
    return m + (f_packed(3, shape) if shape else b"")


def register_seeds():
    return {
        "image_model": request(register_header("fmnist-cnn", [1, 28, 28], IMAGE, ["a", "b"]),
                               list_request(IMAGE, 3, [1, 28, 28])),
        "tabular_inferred": request(register_header("tab", [8], 0, ["x", "y", "z"]),
                                    list_request(0, 1)),
        "bad_task_not_inferable": request(register_header("m", [2, 2], 0), list_request(7, 9)),
        "bad_sha": request(register_header("m", [3], sha="AB" * 32)),
        "bad_size": request(register_header("m", [3], size=-5)),
        "bad_task": request(register_header("m", [3], task=5)),
    }


# --- model worker frames (sandbox/wire.h: little-endian head, then raw float32 values) ---

def _frame(head, floats):
    values = np.asarray(floats, "<f4").tobytes()
    return struct.pack("<IIQ", 0x4D445731, len(head), len(floats)) + head + values


def _str(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _shape(dims):
    return struct.pack("<Q", len(dims)) + b"".join(struct.pack("<q", d) for d in dims)


def _response_head(code, message, logits, features, has_embed=0, feature_dim=0):
    return (struct.pack("<q", code) + _str(message) + struct.pack("<Qqqd", has_embed, feature_dim,
                                                                   2, 1.5)
            + struct.pack("<Q", 0) + _shape(logits) + _shape(features))


def worker_frame_seeds(rng):
    logits = rng.standard_normal(6).astype("<f4")
    features = rng.standard_normal(9).astype("<f4")
    request_head = (struct.pack("<Q", 2) + _str("/blobs/ab/model") + _str("ab|1x28x28")
                    + _shape([1, 2, 2]) + struct.pack("<qqQqqq", 2, 3, 1, 256, 4, 0)
                    + struct.pack("<qqq", 100000, 65536, 1 << 20) + struct.pack("<Q", 1)
                    + _str("old|1x28x28") + _shape([3, 1, 2, 2]))
    return {
        "hello.frame": _frame(_response_head(0, "no network; seccomp", [], []), []),
        "run_logits_3x2.frame": _frame(_response_head(0, "", [3, 2], []), list(logits)),
        "run_logits_features.frame": _frame(_response_head(0, "", [3, 2], [3, 3], 1, 3),
                                            list(logits) + list(features)),
        "error.frame": _frame(_response_head(9, "forward raised an error", [], []), []),
        "values_missing.frame": _frame(_response_head(0, "", [3, 2], []), [])[:-0 or None],
        "request_head.bin": request_head,
        "text_request_head.bin": _text_request_head(),
    }


def _text_request_head():
    """A run request of a text model: no input shape, no samples, three framed texts."""
    texts = ["", "caf\u00e9 au lait", "a\x00b"]
    return (struct.pack("<Q", 2) + _str("") + _str("k") + _shape([])
            + struct.pack("<qqQ", 3, 0, 0) + struct.pack("<Q", 0)
            + struct.pack("<qqq", 256, 4, 0)
            + struct.pack("<qqqq", 100000, 65536, 1 << 20, 8) + struct.pack("<Q", 0)
            + _shape([]) + struct.pack("<QQ", 1, len(texts))
            + b"".join(_str(t) for t in texts))


def text_frames_seeds():
    """Declared count byte, then u32-length-prefixed UTF-8 texts (common/text_frames.h)."""
    def frame(texts):
        return bytes([len(texts)]) + b"".join(struct.pack("<I", len(t)) + t for t in texts)
    return {
        "three.bin": frame([b"", "caf\u00e9".encode("utf-8"), b"a\x00b"]),
        "emoji.bin": frame(["\U0001F600 \u6771\u4eac".encode("utf-8")]),
        "latin1.bin": frame([b"caf\xe9"]),
        "short.bin": frame([b"abc"])[:-1],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(HERE, "corpus"))
    args = parser.parse_args()
    rng = np.random.default_rng(8)
    corpora = {
        "idx_fuzzer": idx_seeds(rng),
        "npy_fuzzer": npy_seeds(rng),
        "csv_fuzzer": csv_seeds(),
        "image_fuzzer": image_seeds(rng),
        "dataset_fuzzer": dataset_seeds(rng),
        "recommend_request_fuzzer": recommend_seeds(rng),
        "register_request_fuzzer": register_seeds(),
        "worker_frame_fuzzer": worker_frame_seeds(rng),
        "text_frames_fuzzer": text_frames_seeds(),
    }
    total = 0
    for target, files in corpora.items():
        directory = os.path.join(args.out, target)
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if not name.startswith("crash-"):
                os.remove(os.path.join(directory, name))
        for name, data in files.items():
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
            total += len(data)
    print(f"make_seeds: {sum(len(f) for f in corpora.values())} seeds, {total} bytes in {args.out}")


if __name__ == "__main__":
    main()
