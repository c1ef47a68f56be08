#!/usr/bin/python3
"""fashion_probe_torch.py [CKPT...] [--raw] [--all-features]: a PyTorch
cross-check of linear probing on Fashion-MNIST (the Debian package
dataset-fashion-mnist), to tell a weak encoder from a weak probe.

With CKPT (a cae-cl checkpoint of a model on 28x28 inputs, sizes read from
its metadata) the frozen encoder (cae_reference.Encoder, all patches) gives
the mean of the normed patch tokens (cae-cl-linear --use_mean_pooling); with
--all-features also a LayerNorm of the mean of the pre-norm tokens (the
official fc_norm style) and the cls token of the final norm. With --raw: the
784 raw pixels. Images are normalized with mean = std = 0.5 and not resized
(the official evaluation transform for inputs of 32 pixels or less).

Each feature gets two linear classifiers, and the top-1 on the 10k test
split is printed for both:
- cae-cl-linear's built-in recipe: BatchNorm1d(affine=False) + Linear, the
  official LARS, blr 3 at batch 256, 100 epochs with 5 of warmup, seed 0;
- multinomial logistic regression solved exactly by L-BFGS on standardized
  features, with L2 penalties 0, 1e-4 and 1e-3: the ceiling of any linear
  classifier, and for --raw the "linear classifier on raw pixels" baseline.
"""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cae_reference import CAEConfig, Encoder  # noqa: E402
from linear_probe_torch import train_probe  # noqa: E402
import safetensors_io  # noqa: E402

ROOT = "/usr/share/datasets/fashion-mnist/"
# cae-cl-linear's built-in recipe (tools/cae_cl_linear.c: linear_defaults)
BLR, BATCH, EPOCHS, WARMUP = 3.0, 256, 100, 5
L2 = (0.0, 1e-4, 1e-3)
MEAN = "mean of normed patch tokens"


def idx(name):
    d = gzip.open(ROOT + name).read()
    if d[3] == 3:
        n, h, w = np.frombuffer(d[4:16], ">i4")
        return np.frombuffer(d[16:], np.uint8).reshape(n, h, w)
    return np.frombuffer(d[8:], np.uint8)


def encoder_config(meta):
    """The encoder's sizes from the checkpoint's resolved flags (metadata
    'args', '... # resolved: --embed_dim 128 ...'); the built-in model's
    where a flag is missing."""
    sizes = dict(input_size=28, patch_size=7, embed_dim=256, depth=4, num_heads=8,
                 mlp_ratio=4.0)
    words = meta.get("args", "").split("# resolved:")[-1].split()
    for flag, value in zip(words, words[1:]):
        name = flag[2:]
        if flag.startswith("--") and name in sizes:
            sizes[name] = type(sizes[name])(value)
    return CAEConfig(decoder_embed_dim=sizes["embed_dim"], decoder_num_heads=sizes["num_heads"],
                     num_mask_patches=1, discrete_vae_type="pixel", **sizes)


def encoder_features(path, x):
    tensors, meta = safetensors_io.load(path)
    cfg = encoder_config(meta)
    enc = Encoder(cfg)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            p.copy_(torch.as_tensor(np.asarray(tensors["encoder." + name])).view_as(p))
    enc.eval()
    out = {MEAN: [], "LN of the mean of pre-norm tokens": [],
           "cls token": []}
    N = cfg.grid * cfg.grid
    with torch.no_grad():
        for s in range(0, len(x), 1000):
            a = (torch.tensor(x[s:s + 1000], dtype=torch.float32) / 255.0 - 0.5) / 0.5
            a = a[:, None].repeat(1, 3, 1, 1)
            h = enc.patch_embed(a)
            B, D = len(a), h.shape[-1]
            h = h + enc.pos_embed[:, 1:].expand(B, N, D)
            h = torch.cat([(enc.cls_token + enc.pos_embed[:, :1]).expand(B, 1, D), h], 1)
            for blk in enc.blocks:
                h = blk(h)
            post = enc.norm(h)
            out[MEAN].append(post[:, 1:].mean(1))
            out["LN of the mean of pre-norm tokens"].append(
                nn.functional.layer_norm(h[:, 1:].mean(1), (D,), eps=1e-6))
            out["cls token"].append(post[:, 0])
    return {k: torch.cat(v) for k, v in out.items()}


def lars_probe(ftr, ytr, fte, yte):
    """cae-cl-linear's built-in recipe; (last, best) top-1 over the epochs."""
    torch.manual_seed(0)
    return train_probe(ftr, ytr, fte, yte, 10, EPOCHS, BLR, BATCH, WARMUP)


def logistic_regression(ftr, ytr, fte, yte, l2):
    """Multinomial logistic regression on standardized features, solved by
    L-BFGS to convergence (the best any linear classifier trained on
    cross-entropy gets, up to the L2 penalty); (train, test) top-1."""
    m, s = ftr.mean(0), ftr.std(0) + 1e-5
    ftr, fte = (ftr - m) / s, (fte - m) / s
    w = torch.zeros(ftr.shape[1], 10, requires_grad=True)
    b = torch.zeros(10, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=500, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(ftr @ w + b, ytr) + l2 * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return tuple(((f @ w + b).argmax(1) == y).float().mean().item() * 100
                     for f, y in ((ftr, ytr), (fte, yte)))


def report(name, ftr, ytr, fte, yte):
    last, best = lars_probe(ftr, ytr, fte, yte)
    print("%s: LARS probe last %.2f%% best %.2f%%" % (name, last, best), flush=True)
    for l2 in L2:
        train, test = logistic_regression(ftr, ytr, fte, yte, l2)
        print("%s: logistic regression (L-BFGS, L2 %g): train %.2f%% test %.2f%%"
              % (name, l2, train, test), flush=True)


def main():
    args = sys.argv[1:]
    torch.set_num_threads(os.cpu_count() or 1)
    xtr, ytr = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    xte, yte = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    ytr, yte = torch.tensor(ytr, dtype=torch.long), torch.tensor(yte, dtype=torch.long)
    if "--raw" in args:
        ftr = torch.tensor(xtr.reshape(len(xtr), -1), dtype=torch.float32) / 255
        fte = torch.tensor(xte.reshape(len(xte), -1), dtype=torch.float32) / 255
        report("raw pixels", ftr, ytr, fte, yte)
    all_features = "--all-features" in args
    ckpts = [a for a in args if a not in ("--raw", "--all-features")]
    if not ckpts and "--raw" not in args:
        print(__doc__)
        return 2
    for path in ckpts:
        ftr, fte = encoder_features(path, xtr), encoder_features(path, xte)
        for k in ftr:
            if all_features or k == MEAN:
                report("%s, %s" % (path, k), ftr[k], ytr, fte[k], yte)
    return 0


if __name__ == "__main__":
    sys.exit(main())
