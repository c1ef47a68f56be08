#!/usr/bin/python3
"""Statistics of CAE's block-wise MaskingGenerator, the numbers that
tests/check/test_augment.c (test_mask_regions) compares src/data/masking.c with.

The generator below follows the official CAE code's algorithm (a loop until
exactly M patches are masked; each call tries 10 rectangles of random area
and log-uniform aspect ratio). Usage: mask-stats.py [G M MIN_PER_BLOCK N]
(default 14 98 16 20000). Prints the mean number of 4-connected regions per
mask and how often the corner, centre and top-middle cells are masked.
"""

import math
import random
import sys

import numpy as np


def block(mask, max_patches, min_patches, log_aspect):
    g = mask.shape[0]
    delta = 0
    for _ in range(10):
        area = random.uniform(min_patches, max_patches)
        aspect = math.exp(random.uniform(*log_aspect))
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if w < g and h < g:
            top = random.randint(0, g - h)
            left = random.randint(0, g - w)
            fresh = h * w - mask[top:top + h, left:left + w].sum()
            if 0 < fresh <= max_patches:
                delta += fresh
                mask[top:top + h, left:left + w] = 1
            if delta > 0:
                break
    return delta


def generate(g, m, min_patches, max_per_block=None):
    log_aspect = (math.log(0.3), math.log(1 / 0.3))
    limit = m if max_per_block is None else max_per_block
    mask = np.zeros((g, g), dtype=np.int64)
    count = 0
    while count != m:
        count += block(mask, min(m - count, limit), min_patches, log_aspect)
    return mask


def regions(mask):
    g = mask.shape[0]
    seen = np.zeros_like(mask)
    n = 0
    for y in range(g):
        for x in range(g):
            if mask[y, x] and not seen[y, x]:
                n += 1
                stack = [(y, x)]
                seen[y, x] = 1
                while stack:
                    cy, cx = stack.pop()
                    for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                        if 0 <= ny < g and 0 <= nx < g and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = 1
                            stack.append((ny, nx))
    return n


def main():
    args = [int(a) for a in sys.argv[1:]]
    g, m, mn, n = args + [14, 98, 16, 20000][len(args):]
    random.seed(0)
    hits = np.zeros((g, g))
    total = 0
    for _ in range(n):
        mask = generate(g, m, mn)
        assert mask.sum() == m
        hits += mask
        total += regions(mask)
    print("G %d M %d min %d, %d masks: %.3f regions per mask; masked: corner %.3f, "
          "centre %.3f, top middle %.3f" % (g, m, mn, n, total / n, hits[0, 0] / n,
                                            hits[g // 2, g // 2] / n, hits[0, g // 2] / n))


if __name__ == "__main__":
    main()
