#!/usr/bin/python3
"""Fixtures for tests/check/test_cls_augment.c: timm's RandAugment ops (Pillow),
the evaluation transform (torchvision semantics) and Mixup/CutMix (torch).

timm is not installed here: the functions below restate timm 0.4's
auto_augment.py (level functions, ops and their Pillow calls) and mixup.py
(rand_bbox, cutmix_bbox_and_lam, _mix_batch, mixup_target) for given
parameters; the random draws are the C side's, tested for their statistics.

Writes tests/fixtures/cls_augment/ops.safetensors:
  image.K        U8  [h, w, 3]          test images
  ops.K.params   F64 [n, 8]             per case: op, magnitude, increasing, negate,
                                        interp (cae_filter: 2 bilinear, 4 bicubic),
                                        fill index (0: 128, 1: ImageNet mean), arg
                                        (timm's level_to_arg), 0
  ops.K.out      U8  [n, h, w, 3]       Pillow's result of the op on image K
  eval.N.image   I32 [1], eval.N.cfg F64 [4] (S, crop_pct, interp, imagenet)
  eval.N.view    F32 [3, S, S]          Resize(int(S / crop_pct)) + CenterCrop + ToTensor + Normalize
and tests/fixtures/cls_augment/mixup.safetensors:
  mix.N.cfg      F64 [8]   K, smoothing, use_cutmix, lam_raw (beta draw), cy, cx, S, B
  mix.N.images   F32 [B, 3, S, S], mix.N.labels I32 [B]
  mix.N.box      I32 [4]   yl, yh, xl, xh (cutmix), mix.N.lam F64 [1] (corrected)
  mix.N.out      F32 [B, 3, S, S], mix.N.targets F32 [B, K]

Usage: augment_cls_reference.py [OUTDIR]   (default tests/fixtures/cls_augment)
"""

import math
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402

BILINEAR, BICUBIC = Image.BILINEAR, Image.BICUBIC
CAE_FILTER = {BILINEAR: 2, BICUBIC: 4}
FILLS = [(128, 128, 128), (124, 116, 104)]  # img_mean for mean 0.5 and ImageNet's
_MAX_LEVEL = 10.0

# ---- timm 0.4 auto_augment.py, restated ----


def shear_x(img, factor, **kw):
    return img.transform(img.size, Image.AFFINE, (1, factor, 0, 0, 1, 0), **kw)


def shear_y(img, factor, **kw):
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, factor, 1, 0), **kw)


def translate_x_rel(img, pct, **kw):
    pixels = pct * img.size[0]
    return img.transform(img.size, Image.AFFINE, (1, 0, pixels, 0, 1, 0), **kw)


def translate_y_rel(img, pct, **kw):
    pixels = pct * img.size[1]
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, pixels), **kw)


def rotate(img, degrees, **kw):
    return img.rotate(degrees, **kw)


def solarize_add(img, add, thresh=128, **__):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut + lut + lut)


def posterize(img, bits_to_keep, **__):
    if bits_to_keep >= 8:
        return img
    return ImageOps.posterize(img, bits_to_keep)


OPS = [  # cae_ra_op order = timm's _RAND_TRANSFORMS order
    ("AutoContrast", lambda img, **_: ImageOps.autocontrast(img)),
    ("Equalize", lambda img, **_: ImageOps.equalize(img)),
    ("Invert", lambda img, **_: ImageOps.invert(img)),
    ("Rotate", rotate),
    ("Posterize", posterize),
    ("Solarize", lambda img, t, **_: ImageOps.solarize(img, t)),
    ("SolarizeAdd", solarize_add),
    ("Color", lambda img, f, **_: ImageEnhance.Color(img).enhance(f)),
    ("Contrast", lambda img, f, **_: ImageEnhance.Contrast(img).enhance(f)),
    ("Brightness", lambda img, f, **_: ImageEnhance.Brightness(img).enhance(f)),
    ("Sharpness", lambda img, f, **_: ImageEnhance.Sharpness(img).enhance(f)),
    ("ShearX", shear_x),
    ("ShearY", shear_y),
    ("TranslateXRel", translate_x_rel),
    ("TranslateYRel", translate_y_rel),
]
GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
ENHANCE = {"Color", "Contrast", "Brightness", "Sharpness"}


def neg(v, negate):
    return -v if negate else v


def level_to_arg(name, level, increasing, negate):
    """timm's LEVEL_TO_ARG (and the *Increasing variants); None = no argument."""
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return neg((level / _MAX_LEVEL) * 30.0, negate)
    if name == "Posterize":
        b = int((level / _MAX_LEVEL) * 4)
        return 4 - b if increasing else b
    if name == "Solarize":
        t = int((level / _MAX_LEVEL) * 256)
        return 256 - t if increasing else t
    if name == "SolarizeAdd":
        return int((level / _MAX_LEVEL) * 110)
    if name in ENHANCE:
        if increasing:
            return 1.0 + neg((level / _MAX_LEVEL) * 0.9, negate)
        return (level / _MAX_LEVEL) * 1.8 + 0.1
    if name in ("ShearX", "ShearY"):
        return neg((level / _MAX_LEVEL) * 0.3, negate)
    return neg((level / _MAX_LEVEL) * 0.45, negate)  # TranslateXRel / YRel


def is_signed(name, increasing):
    return name in GEOMETRIC or (name in ENHANCE and increasing)


# ---- test images ----


def images(rng):
    h, w = 11, 15
    y, x = np.mgrid[0:h, 0:w]
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # smooth with hard edges, full range
    edges = np.stack([x * 255.0 / (w - 1), y * 255.0 / (h - 1), ((x // 3 + y // 4) % 2) * 255.0],
                     axis=-1).astype(np.uint8)
    # low contrast, per-channel ranges differ (autocontrast / equalize do something)
    low = np.stack([60 + x * 7 + y, 90 + (x * y) % 50, 120 + rng.integers(0, 40, (h, w))],
                   axis=-1).astype(np.uint8)
    return [noise, edges, low]


def sweep_cases(img_arr, k, rng, n):
    """Random ops, magnitudes, signs and filters (the rotation's rounded
    matrix and the filters' edges at many angles and offsets)."""
    img = Image.fromarray(img_arr, "RGB")
    params, outs = [], []
    for c in range(n):
        op_id = int(rng.integers(0, len(OPS)))
        name, fn = OPS[op_id]
        m = float(np.round(rng.uniform(0, 10), 6))
        inc = int(rng.integers(0, 2))
        negate = int(rng.integers(0, 2)) if is_signed(name, inc) else 0
        interp = [BILINEAR, BICUBIC][int(rng.integers(0, 2))]
        fill_idx = c % 2
        arg = level_to_arg(name, m, inc, negate)
        kw = dict(fillcolor=FILLS[fill_idx], resample=interp)
        out = fn(img, arg, **kw) if arg is not None else fn(img, **kw)
        params.append([op_id, m, inc, negate, CAE_FILTER[interp], fill_idx,
                       0.0 if arg is None else float(arg), 0.0])
        outs.append(np.asarray(out.convert("RGB"), dtype=np.uint8))
    return np.array(params, dtype=np.float64), np.stack(outs)


def op_cases(img_arr, k):
    img = Image.fromarray(img_arr, "RGB")
    params, outs = [], []
    mags = [0.0, 2.7, 9.0, 10.0]
    for op_id, (name, fn) in enumerate(OPS):
        if name in ("AutoContrast", "Equalize", "Invert"):
            settings = [(0.0, 0, 0)]
        else:
            settings = []
            for m in mags:
                for inc in (0, 1):
                    if inc and name not in ("Posterize", "Solarize") and name not in ENHANCE:
                        continue
                    for negate in ((0, 1) if is_signed(name, inc) else (0,)):
                        settings.append((m, inc, negate))
        for case, (m, inc, negate) in enumerate(settings):
            arg = level_to_arg(name, m, inc, negate)
            interps = [BICUBIC, BILINEAR] if name in GEOMETRIC else [BICUBIC]
            for interp in interps:
                fill_idx = (case + k + op_id) % 2
                kw = dict(fillcolor=FILLS[fill_idx], resample=interp)
                out = fn(img, arg, **kw) if arg is not None else fn(img, **kw)
                params.append([op_id, m, inc, negate, CAE_FILTER[interp], fill_idx,
                               0.0 if arg is None else float(arg), 0.0])
                outs.append(np.asarray(out.convert("RGB"), dtype=np.uint8))
    return np.array(params, dtype=np.float64), np.stack(outs)


# ---- evaluation transform (torchvision Resize(int) + CenterCrop + ToTensor + Normalize) ----

INET_MEAN, INET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def eval_view(img_arr, S, crop_pct, interp, imagenet):
    img = Image.fromarray(img_arr, "RGB")
    size = int(S / crop_pct)
    w, h = img.size
    if w <= h:
        ow, oh = size, int(size * h / w)
    else:
        oh, ow = size, int(size * w / h)
    img = img.resize((ow, oh), interp)
    top, left = int(round((oh - S) / 2.0)), int(round((ow - S) / 2.0))
    img = img.crop((left, top, left + S, top + S))
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    mean = torch.tensor(INET_MEAN if imagenet else (0.5,) * 3)
    std = torch.tensor(INET_STD if imagenet else (0.5,) * 3)
    t.sub_(mean[:, None, None]).div_(std[:, None, None])
    return t.numpy()


# ---- timm 0.4 mixup.py, restated for given draws ----


def one_hot(x, num_classes, on_value=1.0, off_value=0.0):
    x = x.long().view(-1, 1)
    return torch.full((x.size()[0], num_classes), off_value).scatter_(1, x, on_value)


def mixup_target(target, num_classes, lam=1.0, smoothing=0.0):
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value
    y1 = one_hot(target, num_classes, on_value=on_value, off_value=off_value)
    y2 = one_hot(target.flip(0), num_classes, on_value=on_value, off_value=off_value)
    return y1 * lam + y2 * (1.0 - lam)


def rand_bbox_at(img_shape, lam, cy, cx):
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    yl = np.clip(cy - cut_h // 2, 0, img_h)
    yh = np.clip(cy + cut_h // 2, 0, img_h)
    xl = np.clip(cx - cut_w // 2, 0, img_w)
    xh = np.clip(cx + cut_w // 2, 0, img_w)
    return int(yl), int(yh), int(xl), int(xh)


def mix_batch(x, lam, use_cutmix, cy, cx):
    box = (0, 0, 0, 0)
    if lam == 1.0:
        return lam, box
    if use_cutmix:
        yl, yh, xl, xh = rand_bbox_at(x.shape, lam, cy, cx)
        lam = 1.0 - (yh - yl) * (xh - xl) / float(x.shape[-2] * x.shape[-1])
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
        box = (yl, yh, xl, xh)
    else:
        x_flipped = x.flip(0).mul_(1.0 - lam)
        x.mul_(lam).add_(x_flipped)
    return lam, box


def mixup_cases(rng):
    t = {}
    cases = [  # K, smoothing, use_cutmix, lam_raw, cy, cx, S, B
        (5, 0.1, 0, 0.3, 0, 0, 8, 4),
        (7, 0.1, 0, 0.8123456789, 0, 0, 9, 6),
        (5, 0.1, 1, 0.3, 4, 3, 8, 4),
        (5, 0.1, 1, 0.55, 0, 7, 8, 4),   # box clipped at the top and right
        (6, 0.0, 1, 0.05, 5, 5, 11, 2),  # odd S, big box
        (5, 0.1, 0, 1.0, 0, 0, 8, 4),    # no mixing: smoothed one-hot
        (3, 0.0, 0, 1.0, 0, 0, 8, 2),    # plain one-hot
        (10, 0.2, 0, 0.5, 0, 0, 8, 8),
    ]
    for n, (K, sm, cut, lam_raw, cy, cx, S, B) in enumerate(cases):
        x = torch.from_numpy(rng.standard_normal((B, 3, S, S)).astype(np.float32))
        labels = torch.from_numpy(rng.integers(0, K, B).astype(np.int32))
        t["mix.%d.cfg" % n] = np.array([K, sm, cut, lam_raw, cy, cx, S, B], dtype=np.float64)
        t["mix.%d.images" % n] = x.numpy().copy()
        t["mix.%d.labels" % n] = labels.numpy()
        lam, box = mix_batch(x, lam_raw, cut, cy, cx)
        t["mix.%d.box" % n] = np.array(box, dtype=np.int32)
        t["mix.%d.lam" % n] = np.array([lam], dtype=np.float64)
        t["mix.%d.out" % n] = x.numpy()
        t["mix.%d.targets" % n] = mixup_target(labels, K, lam, sm).numpy()
    return t, len(cases)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "..", "..", "tests", "fixtures", "cls_augment")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20261129)
    t = {}
    imgs = images(rng)
    total = 0
    for k, a in enumerate(imgs):
        t["image.%d" % k] = a
        params, outs = op_cases(a, k)
        t["ops.%d.params" % k] = params
        t["ops.%d.out" % k] = outs
        total += len(params)
    # a bigger, smooth-and-noisy image for random settings
    k = len(imgs)
    y, x = np.mgrid[0:18, 0:24]
    big = np.clip(np.stack([x * 10, y * 14, (x * y) % 256], axis=-1)
                  + rng.integers(-20, 21, (18, 24, 3)), 0, 255).astype(np.uint8)
    t["image.%d" % k] = big
    params, outs = sweep_cases(big, k, rng, 40)
    t["ops.%d.params" % k] = params
    t["ops.%d.out" % k] = outs
    total += len(params)
    imgs.append(big)
    # evaluation: odd and even centre offsets (Python's round is half to even)
    big = [rng.integers(0, 256, (36, 50, 3), dtype=np.uint8),
           rng.integers(0, 256, (41, 27, 3), dtype=np.uint8),
           rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)]
    evals = [(0, 16, 0.875, BICUBIC, 0), (1, 16, 0.875, BICUBIC, 1), (2, 16, 0.9, BILINEAR, 0),
             (0, 12, 1.0, BICUBIC, 1)]
    for n, (bi, S, pct, interp, inet) in enumerate(evals):
        t["evalimg.%d" % n] = big[bi]
        t["eval.%d.cfg" % n] = np.array([S, pct, CAE_FILTER[interp], inet], dtype=np.float64)
        t["eval.%d.view" % n] = eval_view(big[bi], S, pct, interp, inet)
    meta = {"images": str(len(imgs)), "op_cases": str(total), "eval_cases": str(len(evals)),
            "pillow": Image.__version__}
    safetensors_io.save(os.path.join(out_dir, "ops.safetensors"), t, meta)
    mt, nmix = mixup_cases(rng)
    safetensors_io.save(os.path.join(out_dir, "mixup.safetensors"), mt,
                        {"mix_cases": str(nmix), "torch": torch.__version__})
    print("wrote %d op cases, %d eval cases, %d mixup cases to %s" % (total, len(evals), nmix,
                                                                      out_dir))


if __name__ == "__main__":
    main()
