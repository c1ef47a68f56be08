#!/usr/bin/python3
"""make-probe-data.py OUT [--hard]: a small ImageFolder for the linear-probe
test: OUT/{train,val}/class{0,1,2}/*.png, 32x32 RGB. Each class has its own
dominant colour and stripe direction over random noise, so a linear probe
on any reasonable feature separates them. --hard: more images (300 per
class and split), closer colours, faint stripes and strong noise, so the
classes overlap and a probe lands well below 100% (there the comparison
with PyTorch's accuracy means something: both optimize the same convex
head towards the same optimum)."""
import os
import sys

import numpy as np
from PIL import Image


# the --hard set's knobs: colour contrast (fraction of the easy set's),
# stripe amplitude and noise deviation, in 8-bit levels
HARD_COLOUR = 0.05
HARD_STRIPES = 6
HARD_NOISE = 60


def main():
    out = sys.argv[1]
    hard = "--hard" in sys.argv[2:]
    rng = np.random.default_rng(7)
    counts = {"train": 300, "val": 300} if hard else {"train": 64, "val": 32}
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)
    amp, noise = 40, 25
    if hard:
        base = 128 + (base - 120) * HARD_COLOUR
        amp, noise = HARD_STRIPES, HARD_NOISE
    yy, xx = np.mgrid[0:32, 0:32]
    for split, n in counts.items():
        for k in range(3):
            d = os.path.join(out, split, "class%d" % k)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                stripes = [np.sin(xx / 2.0), np.sin(yy / 2.0), np.sin((xx + yy) / 2.0)][k]
                img = base[k][None, None, :] + amp * stripes[:, :, None]
                img = img + rng.normal(0, noise, size=(32, 32, 3))
                img = np.clip(img, 0, 255).astype(np.uint8)
                Image.fromarray(img, "RGB").save(os.path.join(d, "%03d.png" % i))


if __name__ == "__main__":
    main()
