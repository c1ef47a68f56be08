#!/usr/bin/python3
"""make-png-folder.py OUT TRAIN VAL: a tiny ImageFolder written with the
standard library alone (zlib PNG, no numpy or Pillow):
OUT/{train,val}/class{0,1}/*.png, 32x32 RGB, TRAIN and VAL images per class
and split. Each image is a coloured square on a gradient with a little
pseudo-random noise, so pictures of it show structure."""
import os
import random
import struct
import sys
import zlib

SIZE = 32


def png_bytes(rows):
    """8-bit RGB PNG of rows (lists of bytes, 3 per pixel)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    raw = b"".join(b"\0" + bytes(r) for r in rows)
    head = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def image(rng, cls):
    x0, y0 = rng.randrange(4, 16), rng.randrange(4, 16)
    side = rng.randrange(8, 14)
    colour = (200, 60, 40) if cls == 0 else (40, 90, 210)
    rows = []
    for y in range(SIZE):
        row = []
        for x in range(SIZE):
            inside = x0 <= x < x0 + side and y0 <= y < y0 + side
            for c in range(3):
                v = colour[c] if inside else 4 * x + 2 * y
                row.append(max(0, min(255, v + rng.randrange(-12, 13))))
        rows.append(row)
    return png_bytes(rows)


def main():
    out, counts = sys.argv[1], {"train": int(sys.argv[2]), "val": int(sys.argv[3])}
    rng = random.Random(5)
    for split, n in counts.items():
        for cls in range(2):
            folder = os.path.join(out, split, "class%d" % cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                with open(os.path.join(folder, "%03d.png" % i), "wb") as f:
                    f.write(image(rng, cls))


main()
