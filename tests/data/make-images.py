#!/usr/bin/python3
"""tests/data/make-images.py: the small images tests/check/test_data.c decodes.

Run from the repository root with Debian's python3-pil and numpy:

    /usr/bin/python3 tests/data/make-images.py

It writes, under tests/data/images/ (all deterministic, a few KiB each):

  decode/    good JPEG and PNG files of every colour type the decoder
             converts, and expected/<name>.ppm with what Pillow makes of
             each (Image.open(f).convert("RGB"), as torchvision's loader);
  bad/       files the decoder must refuse: truncated, empty, text, a bad
             CRC, 20000x20000 headers ("bombs") with almost no data;
  folder/    a small ImageFolder tree (three classes, nested folders, mixed
             extension case, a non-image file) and folder-order.txt, the
             order torchvision's ImageFolder gives its samples.

Pillow writes neither 16-bit RGB nor interlaced PNG, so write_png() below
encodes those by hand.
"""
import io
import os
import shutil
import struct
import zlib

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")
rng = np.random.default_rng(20240607)


def picture(h, w, channels=3):
    """Smooth gradients, a disc and mild noise: content JPEG must work on."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        fx, fy = rng.uniform(0.5, 3.0, 2)
        base = 127 + 90 * np.sin(fx * x / max(w, 1) * np.pi + c) * np.cos(fy * y / max(h, 1) * np.pi)
        disc = ((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2) < (min(h, w) * 0.25) ** 2
        base = base + 60 * disc * (1 if c % 2 else -1)
        planes.append(base + rng.normal(0, 6, (h, w)))
    return np.clip(np.stack(planes, -1), 0, 255).round().astype(np.uint8)


def chunk(kind, data, crc=None):
    body = kind + data
    if crc is None:
        crc = zlib.crc32(body) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + body + struct.pack(">I", crc)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, arr, color_type, interlace=False):
    """arr: [h, w, c] uint8 or uint16 (big-endian on disk), filter 0 rows."""
    h, w = arr.shape[:2]
    depth = 16 if arr.dtype == np.uint16 else 8
    raw = arr.astype(">u2" if depth == 16 else np.uint8)

    def scanlines(img):
        return b"".join(b"\0" + img[r].tobytes() for r in range(img.shape[0]))

    if interlace:
        data = b"".join(scanlines(raw[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7
                        if raw[y0::dy, x0::dx].size)
    else:
        data = scanlines(raw)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data, 9))
                + chunk(b"IEND", b""))


def save_expected(name, src):
    """What Pillow (torchvision's loader) decodes src to, as a binary PPM."""
    with Image.open(src) as im:
        im.convert("RGB").save(os.path.join(ROOT, "expected", name + ".ppm"))


def save_ppm(name, rgb):
    Image.fromarray(rgb, "RGB").save(os.path.join(ROOT, "expected", name + ".ppm"))


def decode_set():
    d = os.path.join(ROOT, "decode")
    jpeg = {
        "rgb420.jpg": (dict(quality=90), picture(29, 37)),
        "rgb444.jpg": (dict(quality=95, subsampling=0), picture(24, 40)),
        "rgb422.jpg": (dict(quality=85, subsampling=1), picture(33, 21)),
        "progressive.jpg": (dict(quality=80, progressive=True), picture(40, 30)),
        "tiny-1x1.jpg": (dict(quality=90), picture(1, 1)),
        "gray.jpg": (dict(quality=90), picture(27, 35, 1)[:, :, 0]),
        "cmyk.jpg": (dict(quality=92), picture(26, 31, 4)),
    }
    for name, (opts, arr) in jpeg.items():
        mode = "L" if arr.ndim == 2 else {3: "RGB", 4: "CMYK"}[arr.shape[-1]]
        path = os.path.join(d, name)
        Image.fromarray(arr, mode).save(path, "JPEG", **opts)
        save_expected(name, path)

    rgb = picture(23, 19)
    Image.fromarray(rgb, "RGB").save(os.path.join(d, "rgb.png"))
    rgba = np.concatenate([picture(17, 26), rng.integers(0, 256, (17, 26, 1), dtype=np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(os.path.join(d, "rgba.png"))
    gray = picture(20, 15, 1)[:, :, 0]
    Image.fromarray(gray, "L").save(os.path.join(d, "gray.png"))
    la = np.stack([gray, 255 - gray], -1)
    Image.fromarray(la, "LA").save(os.path.join(d, "gray-alpha.png"))
    pal = Image.fromarray(picture(22, 25), "RGB").quantize(colors=13)
    pal.save(os.path.join(d, "palette.png"))
    pal.save(os.path.join(d, "palette-trns.png"), transparency=3)
    pal4 = Image.fromarray(picture(9, 11), "RGB").quantize(colors=4)
    pal4.save(os.path.join(d, "palette-2bit.png"), bits=2)
    bw = Image.fromarray((picture(13, 18, 1)[:, :, 0] > 127).astype(np.uint8) * 255, "L").convert("1")
    bw.save(os.path.join(d, "bilevel.png"))
    Image.fromarray(picture(1, 1), "RGB").save(os.path.join(d, "tiny-1x1.png"))
    rgb16 = (picture(14, 12).astype(np.uint16) * 257 + rng.integers(0, 257, (14, 12, 3))).astype(np.uint16)
    write_png(os.path.join(d, "rgb16.png"), rgb16, 2)
    write_png(os.path.join(d, "interlaced.png"), picture(21, 19), 2, interlace=True)
    for name in ["rgb.png", "rgba.png", "gray.png", "gray-alpha.png", "palette.png", "palette-trns.png",
                 "palette-2bit.png", "bilevel.png", "tiny-1x1.png", "rgb16.png", "interlaced.png"]:
        save_expected(name, os.path.join(d, name))
    # Pillow opens 16-bit gray as mode "I" and clips it to 0..255 on
    # convert("RGB"); the decoder keeps the high byte, as for 16-bit RGB.
    gray16 = (picture(11, 16, 1).astype(np.uint16) * 257)
    write_png(os.path.join(d, "gray16.png"), gray16, 0)
    save_ppm("gray16.png", np.repeat((gray16 >> 8).astype(np.uint8), 3, axis=2))


def bad_set():
    d = os.path.join(ROOT, "bad")
    buf = io.BytesIO()
    Image.fromarray(picture(40, 48), "RGB").save(buf, "JPEG", quality=90)
    jpg = buf.getvalue()
    with open(os.path.join(d, "truncated.jpg"), "wb") as f:
        f.write(jpg[: len(jpg) * 6 // 10])
    buf = io.BytesIO()
    Image.fromarray(picture(40, 48), "RGB").save(buf, "PNG")
    png = buf.getvalue()
    with open(os.path.join(d, "truncated.png"), "wb") as f:
        f.write(png[: len(png) * 6 // 10])
    open(os.path.join(d, "empty.jpg"), "wb").close()
    with open(os.path.join(d, "text.jpg"), "w") as f:
        f.write("this is a text file, not a JPEG\n")
    # flip one bit of the first IDAT chunk's CRC
    i = png.index(b"IDAT")
    n = struct.unpack(">I", png[i - 4:i])[0]
    crc_at = i + 4 + n
    bad = bytearray(png)
    bad[crc_at] ^= 0x01
    with open(os.path.join(d, "badcrc.png"), "wb") as f:
        f.write(bytes(bad))
    # a real small JPEG whose frame header says 20000 x 20000
    b = bytearray(jpg)
    i = 2
    while True:
        assert b[i] == 0xFF
        marker, length = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", 20000, 20000)
            break
        i += 2 + length
    with open(os.path.join(d, "bomb.jpg"), "wb") as f:
        f.write(bytes(b))
    # a real small PNG whose IHDR says 20000 x 20000 (CRC fixed up)
    ihdr = struct.pack(">II", 20000, 20000) + png[24:29]
    with open(os.path.join(d, "bomb.png"), "wb") as f:
        f.write(png[:8] + chunk(b"IHDR", ihdr) + png[33:])


FOLDER = [
    # class folders sort byte-wise ("Zebra" < "cat" < "dog"), files too,
    # and walked folders by their whole path ("dog/d" < "dog/d-x" < "dog/dd")
    "Zebra/z1.png", "Zebra/sub/z2.jpg", "Zebra/sub/deeper/z3.JPEG",
    "cat/a.JPG", "cat/B.png", "cat/c.jpeg", "cat/c10.jpg", "cat/c9.jpg", "cat/readme.txt",
    "dog/d1.jpg", "dog/D2.Jpeg", "dog/d/x.png", "dog/d-x/y.jpg", "dog/dd/z.jpg", "dog/notes",
    "dog/d/e.PNG",
]
IMAGE_EXT = (".jpg", ".jpeg", ".png")


def folder_set():
    d = os.path.join(ROOT, "folder")
    for rel in FOLDER:
        path = os.path.join(d, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not rel.lower().endswith(IMAGE_EXT):
            with open(path, "w") as f:
                f.write("not an image\n")
            continue
        h, w = rng.integers(12, 60, 2)
        im = Image.fromarray(picture(int(h), int(w)), "RGB")
        if rel.lower().endswith(".png"):
            im.save(path, "PNG")
        else:
            im.save(path, "JPEG", quality=85)
    # torchvision.datasets.ImageFolder's order (folder.py: find_classes and
    # make_dataset), written out here since torchvision is not installed
    classes = sorted(e.name for e in os.scandir(d) if e.is_dir())
    with open(os.path.join(ROOT, "folder-order.txt"), "w") as f:
        for label, cls in enumerate(classes):
            for root, _, names in sorted(os.walk(os.path.join(d, cls), followlinks=True)):
                for name in sorted(names):
                    if name.lower().endswith(IMAGE_EXT):
                        rel = os.path.relpath(os.path.join(root, name), d)
                        f.write(f"{label} {rel}\n")


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for sub in ["decode", "expected", "bad", "folder"]:
        os.makedirs(os.path.join(ROOT, sub))
    decode_set()
    bad_set()
    folder_set()


if __name__ == "__main__":
    main()
