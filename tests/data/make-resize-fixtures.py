#!/usr/bin/python3
"""Pillow fixtures for tests/check/test_augment.c (run with Debian's python3-pil).

Writes tests/data/resize-fixtures.safetensors holding, for every case N:

  image.K          U8  [h, w, 3]   a small RGB image (random, or smooth with edges)
  resize.N.image   I32 [1]         K: the source image of case N
  resize.N.box     F64 [4]         Image.resize's box (x0, y0, x1, y1)
  resize.N.filter  I32 [1]         cae_filter: 0 nearest, 1 box, 2 bilinear,
                                   3 hamming, 4 bicubic, 5 lanczos
  resize.N.out     U8  [oh, ow, 3] Pillow's Image.resize((ow, oh), filter, box)

  jitter.N.image   I32 [1]
  jitter.N.order   I32 [3]         the ops in the order applied: 0 brightness,
                                   1 contrast, 2 saturation (ImageEnhance)
  jitter.N.factor  F32 [3]         factor of each op, indexed by op
  jitter.N.out     U8  [h, w, 3]

  augment.N.image  I32 [1]
  augment.N.plan   I32 [9]         flip, i, j, h, w, S, S2, interp, interp2
  augment.N.jitter F32 [3], augment.N.order I32 [3] (factor 1 = the op is off)
  augment.N.norm   I32 [1]         1 ImageNet mean/std, 0 0.5/0.5
  augment.N.view   F32 [3, S, S]   ColorJitter, flip, crop (i, j, h, w),
  augment.N.view2  F32 [3, S2, S2] resize, ToTensor + Normalize / map_pixels

Deterministic: fixed seeds. Usage: make-resize-fixtures.py [OUT]
"""

import os
import sys

import numpy as np
from PIL import Image, ImageEnhance

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
import safetensors_io  # noqa: E402

try:
    R = Image.Resampling
    FILTERS = [R.NEAREST, R.BOX, R.BILINEAR, R.HAMMING, R.BICUBIC, R.LANCZOS]
except AttributeError:  # Pillow < 9.1
    FILTERS = [Image.NEAREST, Image.BOX, Image.BILINEAR, Image.HAMMING, Image.BICUBIC,
               Image.LANCZOS]


def random_image(rng, w, h, smooth=False):
    if smooth:
        # gradients with a few hard edges: overshoot of the negative lobes clips
        y, x = np.mgrid[0:h, 0:w]
        a = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1),
                      ((x // 3 + y // 4) % 2) * 255.0], axis=-1)
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def resize_cases(rng):
    a = random_image(rng, 37, 23)
    b = random_image(rng, 64, 48)
    c = random_image(rng, 16, 16)
    d = random_image(rng, 29, 31, smooth=True)
    # (image, out_w, out_h, box or None)
    geoms = [
        (a, 16, 11, None),                       # downscale both ways
        (a, 60, 40, None),                       # upscale both ways
        (b, 30, 70, None),                       # down in x, up in y
        (b, 24, 24, (3.3, 5.7, 50.25, 40.9)),    # fractional box, downscale
        (b, 40, 30, (10.5, 7.25, 20.75, 15.5)),  # small fractional box, upscale
        (c, 16, 16, (0.5, 0.5, 15.5, 15.5)),     # same size, fractional shift
        (c, 8, 8, (4, 4, 12, 12)),               # integer box of the output size: a crop
        (c, 7, 5, None),                         # strong downscale
        (a, 37, 11, None),                       # vertical pass only
        (a, 12, 23, None),                       # horizontal pass only
        (a, 37, 23, (0, 0, 37, 23)),             # identity
        (d, 13, 45, (1.75, 0, 27.5, 31)),        # smooth image with edges
        (d, 64, 9, None),
    ]
    cases = []
    for flt in FILTERS:
        for img, ow, oh, box in geoms:
            bx = box if box is not None else (0, 0) + img.size
            out = img.resize((ow, oh), flt, box=box)
            cases.append((np.asarray(img), bx, int(FILTERS.index(flt)), np.asarray(out)))
    return cases


def enhance(img, op, factor):
    cls = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color][op]
    return cls(img).enhance(float(factor))


def jitter_cases(rng):
    imgs = [random_image(rng, 37, 23), random_image(rng, 29, 31, smooth=True)]
    factor_sets = [
        (0.6, 1.3, 0.2), (1.4, 0.7, 1.8), (0.0, 1.0, 1.0), (1.0, 0.0, 0.0),
        (1.0, 1.0, 2.5), (2.0, 1.9, 1.0), (0.35, 0.55, 1.45), (1.6, 0.05, 0.9),
    ]
    orders = [(0, 1, 2), (2, 1, 0), (1, 0, 2), (1, 2, 0), (0, 2, 1), (2, 0, 1)]
    cases = []
    n = 0
    for img in imgs:
        for fs in factor_sets:
            order = orders[n % len(orders)]
            n += 1
            f32 = np.asarray(fs, dtype=np.float32)
            out = img
            for op in order:
                out = enhance(out, op, f32[op])
            cases.append((np.asarray(img), np.asarray(order, np.int32), f32, np.asarray(out)))
    return cases


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def to_tensor(img):
    return np.asarray(img).astype(np.float32).transpose(2, 0, 1) / np.float32(255)


def augment_cases(rng):
    src = random_image(rng, 45, 38)
    # flip, i, j, h, w, S, S2, interp, interp2, jitter factors, order, imagenet
    plans = [
        (0, 3, 5, 30, 33, 24, 12, 4, 5, (1.0, 1.0, 1.0), (0, 1, 2), 1),
        (1, 0, 0, 38, 45, 16, 8, 4, 5, (1.0, 1.0, 1.0), (0, 1, 2), 0),
        (1, 7, 2, 20, 17, 20, 17, 2, 3, (0.7, 1.3, 1.6), (2, 0, 1), 1),
        (0, 10, 20, 11, 25, 32, 9, 1, 0, (1.25, 0.6, 0.3), (1, 2, 0), 0),
    ]
    cases = []
    for flip, i, j, h, w, s, s2, it, it2, fac, order, inet in plans:
        f32 = np.asarray(fac, dtype=np.float32)
        img = src
        for op in order:
            img = enhance(img, op, f32[op])
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        crop = img.crop((j, i, j + w, i + h))
        v1 = to_tensor(crop.resize((s, s), FILTERS[it]))
        v2 = to_tensor(crop.resize((s2, s2), FILTERS[it2]))
        mean, std = IMAGENET if inet else HALF
        mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(std, np.float32).reshape(3, 1, 1)
        v1 = (v1 - mean) / std
        v2 = np.float32(0.8) * v2 + np.float32(0.1)
        plan = np.asarray([flip, i, j, h, w, s, s2, it, it2], np.int32)
        cases.append((np.asarray(src), plan, f32, np.asarray(order, np.int32),
                      np.asarray([inet], np.int32), v1.astype(np.float32),
                      v2.astype(np.float32)))
    return cases


class Images:
    """Each distinct source image is stored once, as image.K."""

    def __init__(self, tensors):
        self.tensors = tensors
        self.index = {}

    def __call__(self, arr):
        key = (arr.shape, arr.tobytes())
        if key not in self.index:
            self.index[key] = len(self.index)
            self.tensors["image.%d" % self.index[key]] = arr
        return np.asarray([self.index[key]], np.int32)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "resize-fixtures.safetensors")
    rng = np.random.default_rng(20240611)
    t = {}
    image = Images(t)
    for n, (src, box, flt, out) in enumerate(resize_cases(rng)):
        t["resize.%d.image" % n] = image(src)
        t["resize.%d.box" % n] = np.asarray(box, np.float64)
        t["resize.%d.filter" % n] = np.asarray([flt], np.int32)
        t["resize.%d.out" % n] = out
    nr = n + 1
    for n, (src, order, fac, out) in enumerate(jitter_cases(rng)):
        t["jitter.%d.image" % n] = image(src)
        t["jitter.%d.order" % n] = order
        t["jitter.%d.factor" % n] = fac
        t["jitter.%d.out" % n] = out
    nj = n + 1
    for n, (src, plan, fac, order, inet, v1, v2) in enumerate(augment_cases(rng)):
        t["augment.%d.image" % n] = image(src)
        t["augment.%d.plan" % n] = plan
        t["augment.%d.jitter" % n] = fac
        t["augment.%d.order" % n] = order
        t["augment.%d.norm" % n] = inet
        t["augment.%d.view" % n] = v1
        t["augment.%d.view2" % n] = v2
    na = n + 1
    import PIL
    meta = {"resize_cases": str(nr), "jitter_cases": str(nj), "augment_cases": str(na),
            "images": str(len(image.index)), "pillow": PIL.__version__}
    safetensors_io.save(out_path, t, meta)
    print("%s: %d images, %d resize, %d jitter, %d augment cases (Pillow %s), %d bytes" %
          (out_path, len(image.index), nr, nj, na, PIL.__version__, os.path.getsize(out_path)))

if __name__ == "__main__":
    main()
