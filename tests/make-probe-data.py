#!/usr/bin/python3
"""make-probe-data.py OUT: a small separable ImageFolder for the linear-probe
test: OUT/{train,val}/class{0,1,2}/*.png, 32x32 RGB. Each class has its own
dominant colour and stripe direction over random noise, so a linear probe
on any reasonable feature separates them."""
import os
import sys

import numpy as np
from PIL import Image


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(7)
    counts = {"train": 64, "val": 32}
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)
    yy, xx = np.mgrid[0:32, 0:32]
    for split, n in counts.items():
        for k in range(3):
            d = os.path.join(out, split, "class%d" % k)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                stripes = [np.sin(xx / 2.0), np.sin(yy / 2.0), np.sin((xx + yy) / 2.0)][k]
                img = base[k][None, None, :] + 40 * stripes[:, :, None]
                img = img + rng.normal(0, 25, size=(32, 32, 3))
                img = np.clip(img, 0, 255).astype(np.uint8)
                Image.fromarray(img, "RGB").save(os.path.join(d, "%03d.png" % i))


if __name__ == "__main__":
    main()
