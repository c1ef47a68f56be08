#!/usr/bin/python3
"""tests/data/make-bad.py: the bad-input corpus (tests/bad-inputs.sh) and the
libFuzzer seed corpora (tests/fuzz/corpus/<harness>/).

Run from the repository root after tests/data/make-images.py:

    /usr/bin/python3 tests/data/make-bad.py

tests/data/bad/ gets:
  images/    one file per broken image kind (copies of make-images.py's
             bad/ and decode/ files: truncated JPEG, zero-byte file, PNG with
             a bad CRC, CMYK JPEG, 1x1 image, 20000x20000 header-only bomb,
             text file named .jpg);
  mixed/     an ImageFolder with good images and one truncated JPEG;
  empty/     an ImageFolder with a class folder but no images;
  st-*.safetensors  one safetensors file per kind of header corruption.
The checkpoint of a different model size is made by the test itself (it
trains one), and the flags are in the test script.
"""
import gzip
import json
import os
import shutil
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "images")
BAD = os.path.join(HERE, "bad")
CORPUS = os.path.join(HERE, "..", "fuzz", "corpus")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def st_bytes(header, data=b"", raw_header=None, length=None):
    """A safetensors file: u64 header length, the JSON header, the data."""
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def safetensors_set():
    good_data = np.arange(6, dtype="<f4").tobytes()
    good = {"__metadata__": {"format": "pt"},
            "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    cases = {
        # header length larger than the file
        "st-length-past-end": st_bytes(good, good_data, length=1 << 20),
        # header length that overflows any size computation
        "st-length-huge": st_bytes(good, good_data, length=(1 << 64) - 1),
        # shorter than the 8-byte length field
        "st-short": b"\x10\x00\x00",
        # JSON cut off in the middle
        "st-json-truncated": st_bytes(None, b"", raw_header=b'{"w": {"dtype": "F32", "sha'),
        # not a JSON object
        "st-json-array": st_bytes([1, 2, 3]),
        # unknown dtype
        "st-bad-dtype": st_bytes({"w": {"dtype": "F7", "shape": [2, 3],
                                        "data_offsets": [0, 24]}}, good_data),
        # shape that does not match the byte count
        "st-shape-mismatch": st_bytes({"w": {"dtype": "F32", "shape": [4, 3],
                                             "data_offsets": [0, 24]}}, good_data),
        # negative dimension
        "st-negative-dim": st_bytes({"w": {"dtype": "F32", "shape": [-2, 3],
                                           "data_offsets": [0, 24]}}, good_data),
        # offsets past the data area
        "st-offsets-past-end": st_bytes({"w": {"dtype": "F32", "shape": [2, 3],
                                               "data_offsets": [0, 24]}}, good_data[:12]),
        # offsets the wrong way round
        "st-offsets-reversed": st_bytes({"w": {"dtype": "F32", "shape": [2, 3],
                                               "data_offsets": [24, 0]}}, good_data),
        # two tensors sharing bytes
        "st-overlap": st_bytes({"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]},
                                "b": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}},
                               good_data),
        # metadata value that is not a string
        "st-metadata-not-string": st_bytes({"__metadata__": {"format": 3},
                                            "w": good["w"]}, good_data),
        # a tensor entry without data_offsets
        "st-missing-offsets": st_bytes({"w": {"dtype": "F32", "shape": [2, 3]}}, good_data),
        # header that is not UTF-8 / has a NUL inside
        "st-nul-in-header": st_bytes(None, good_data, raw_header=b'{"w\x00x": {}}'),
    }
    for name, data in cases.items():
        write(os.path.join(BAD, name + ".safetensors"), data)
    seeds = dict(cases)
    seeds["st-good"] = st_bytes(good, good_data)
    seeds["st-empty-header"] = st_bytes({})
    for name, data in seeds.items():
        write(os.path.join(CORPUS, "safetensors", name), data)


def images_set():
    copies = {
        "truncated.jpg": "bad/truncated.jpg",
        "zero-bytes.jpg": "bad/empty.jpg",
        "badcrc.png": "bad/badcrc.png",
        "cmyk.jpg": "decode/cmyk.jpg",
        "tiny-1x1.png": "decode/tiny-1x1.png",
        "tiny-1x1.jpg": "decode/tiny-1x1.jpg",
        "bomb.jpg": "bad/bomb.jpg",
        "bomb.png": "bad/bomb.png",
        "text.jpg": "bad/text.jpg",
    }
    os.makedirs(os.path.join(BAD, "images"), exist_ok=True)
    for dst, src in copies.items():
        shutil.copyfile(os.path.join(IMAGES, src), os.path.join(BAD, "images", dst))
    # an ImageFolder with good images and one corrupt one (skipped and counted)
    mixed = os.path.join(BAD, "mixed", "things")
    os.makedirs(mixed, exist_ok=True)
    for i, src in enumerate(["decode/rgb420.jpg", "decode/rgb.png", "decode/gray.jpg",
                             "decode/palette.png"]):
        shutil.copyfile(os.path.join(IMAGES, src),
                        os.path.join(mixed, "good%d%s" % (i, os.path.splitext(src)[1])))
    shutil.copyfile(os.path.join(IMAGES, "bad/truncated.jpg"), os.path.join(mixed, "broken.jpg"))
    # an ImageFolder with a class folder and no images in it
    write(os.path.join(BAD, "empty", "things", "README.txt"), b"no images here\n")
    # fuzz seeds for the decoder
    for src in ["decode/rgb420.jpg", "decode/progressive.jpg", "decode/cmyk.jpg",
                "decode/tiny-1x1.png", "decode/palette-trns.png", "decode/gray16.png",
                "decode/interlaced.png", "bad/truncated.jpg", "bad/badcrc.png",
                "bad/bomb.jpg", "bad/text.jpg"]:
        shutil.copyfile(os.path.join(IMAGES, src),
                        os.path.join(CORPUS, "image", src.replace("/", "-")))


def idx_set():
    """Seeds for the IDX harness: u16 BE images length, images file, labels."""
    def idx3(n, r, c, pixels):
        return struct.pack(">IIII", 2051, n, r, c) + pixels

    def idx1(labels):
        return struct.pack(">II", 2049, len(labels)) + bytes(labels)

    def seed(img, lab):
        return struct.pack(">H", len(img)) + img + lab

    px = bytes(range(3 * 4 * 4))
    seeds = {
        "plain": seed(idx3(3, 4, 4, px), idx1([0, 9, 4])),
        "gzip": seed(gzip.compress(idx3(3, 4, 4, px), mtime=0), gzip.compress(idx1([1, 2, 3]), mtime=0)),
        "bad-magic": seed(struct.pack(">IIII", 2050, 3, 4, 4) + px, idx1([0, 1, 2])),
        "truncated": seed(idx3(3, 4, 4, px[:20]), idx1([0, 1, 2])),
        "label-count": seed(idx3(3, 4, 4, px), idx1([0, 1])),
        "trailing": seed(idx3(3, 4, 4, px + b"x"), idx1([0, 1, 2])),
        "huge-shape": seed(struct.pack(">IIII", 2051, 1 << 28, 4096, 4096), idx1([0])),
    }
    for name, data in seeds.items():
        write(os.path.join(CORPUS, "idx", name), data)


def args_set():
    seeds = {
        "preset": "--model\ncae_base_patch16_224\n--batch_size\n8\n--lr=1e-3",
        "tiny": "--input_size\n16\n--patch_size\n4\n--embed_dim\n32\n--depth\n1\n--num_heads\n2",
        "unknown": "--no_such_flag\n1",
        "malformed-int": "--batch_size\nabc",
        "malformed-float": "--lr\n1e-3x",
        "negative": "--epochs\n-4",
        "missing-value": "--data_path",
        "bool-value": "--auto_resume=1",
        "positional": "train\n--epochs\n1",
        "ignored-list": "--dist_url\nenv://\n--opt_betas\n0.9\n0.999\n--epochs\n1",
    }
    for name, text in seeds.items():
        write(os.path.join(CORPUS, "args", name), text.encode())


if __name__ == "__main__":
    safetensors_set()
    images_set()
    idx_set()
    args_set()
