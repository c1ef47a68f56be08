#!/usr/bin/python3
"""fashion_probe_torch.py [CKPT] [--raw]: a PyTorch cross-check of linear
probing on Fashion-MNIST (the Debian package dataset-fashion-mnist), to tell
a weak encoder from a weak probe. With CKPT (a cae-cl checkpoint of a model
on 28x28 inputs, sizes read from its metadata), the frozen encoder
(cae_reference.Encoder, all patches) gives three features: the mean of the
normed patch tokens (cae-cl-linear --use_mean_pooling), a LayerNorm of the
mean of the pre-norm tokens (the official fc_norm style) and the cls token of
the final norm; with --raw, the 784 raw pixels. Each feature gets the same
head: BatchNorm1d(affine=False) + Linear, Adam lr 1e-2, 30 epochs of batch
1024, seed 0; prints the top-1 on the 10k test split. Images are normalized
with mean = std = 0.5 and not resized (the official evaluation transform for
inputs of 32 pixels or less)."""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cae_reference import CAEConfig, Encoder  # noqa: E402
import safetensors_io  # noqa: E402

ROOT = "/usr/share/datasets/fashion-mnist/"


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
    sizes = dict(input_size=28, patch_size=4, embed_dim=128, depth=4, num_heads=4,
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
    out = {"mean of normed patch tokens": [], "LN of the mean of pre-norm tokens": [],
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
            out["mean of normed patch tokens"].append(post[:, 1:].mean(1))
            out["LN of the mean of pre-norm tokens"].append(
                nn.functional.layer_norm(h[:, 1:].mean(1), (D,), eps=1e-6))
            out["cls token"].append(post[:, 0])
    return {k: torch.cat(v) for k, v in out.items()}


def probe(ftr, ytr, fte, yte):
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(ftr.shape[1], affine=False)
    head = nn.Linear(ftr.shape[1], 10)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(30):
        bn.train()
        perm = torch.randperm(len(ftr))
        for s in range(0, len(ftr), 1024):
            i = perm[s:s + 1024]
            loss = nn.functional.cross_entropy(head(bn(ftr[i])), ytr[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    bn.eval()
    with torch.no_grad():
        return (head(bn(fte)).argmax(1) == yte).float().mean().item() * 100


def main():
    args = sys.argv[1:]
    torch.set_num_threads(os.cpu_count() or 1)
    xtr, ytr = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    xte, yte = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    ytr, yte = torch.tensor(ytr, dtype=torch.long), torch.tensor(yte, dtype=torch.long)
    if "--raw" in args:
        ftr = torch.tensor(xtr.reshape(len(xtr), -1), dtype=torch.float32) / 255
        fte = torch.tensor(xte.reshape(len(xte), -1), dtype=torch.float32) / 255
        print("raw pixels: %.2f%%" % probe(ftr, ytr, fte, yte))
    ckpts = [a for a in args if a != "--raw"]
    if not ckpts and "--raw" not in args:
        print(__doc__)
        return 2
    for path in ckpts:
        ftr, fte = encoder_features(path, xtr), encoder_features(path, xte)
        for k in ftr:
            print("%s, %s: %.2f%%" % (path, k, probe(ftr[k], ytr, fte[k], yte)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
