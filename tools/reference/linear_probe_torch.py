#!/usr/bin/python3
"""linear_probe_torch.py DATA [EPOCHS BLR BATCH SEED]: the linear-probe
recipe of cae-cl-linear (and the official run_linear.py) in PyTorch, on an
ImageFolder made by tests/make-probe-data.py, with the tiny model of
tests/linear-probe.sh: a freshly initialized CAE encoder (cae_reference.py's
Encoder, official init), features = cls token of the final norm computed
once with the evaluation transform (Resize(int(S/0.875)) bicubic + center
crop, normalized with mean = std = 0.5), then BatchNorm1d(affine=False,
eps=1e-6) + Linear (trunc-normal 0.01 weights, zero bias), cross-entropy,
LARS (util/lars.py: weight decay 0, momentum 0.9, trust 0.001), lr = blr *
batch / 256 with linear warmup and cosine per step. Prints the best top-1
on DATA/val. For comparing with cae-cl-linear by hand (torchvision is not
needed: the transforms are done with Pillow and numpy)."""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cae_reference import CAEConfig, Encoder  # noqa: E402


def load_split(root, split, S):
    classes = sorted(os.listdir(os.path.join(root, split)))
    xs, ys = [], []
    size = int(S / 0.875)
    for k, c in enumerate(classes):
        d = os.path.join(root, split, c)
        for f in sorted(os.listdir(d)):
            img = Image.open(os.path.join(d, f)).convert("RGB")
            w, h = img.size
            ow, oh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
            img = img.resize((ow, oh), Image.BICUBIC)
            top, left = int(round((oh - S) / 2.0)), int(round((ow - S) / 2.0))
            a = np.asarray(img, dtype=np.float32)[top:top + S, left:left + S] / 255.0
            xs.append(((a - 0.5) / 0.5).transpose(2, 0, 1))
            ys.append(k)
    return torch.tensor(np.stack(xs)), torch.tensor(ys), len(classes)


def init_encoder(enc):
    for name, p in enc.named_parameters():
        if name == "cls_token":
            nn.init.trunc_normal_(p, std=0.02, a=-0.02, b=0.02)
        elif name.endswith("gamma_1") or name.endswith("gamma_2"):
            pass  # layer scale: its constant
        elif p.ndim >= 2:
            nn.init.xavier_uniform_(p.view(p.shape[0], -1))
        elif "norm" in name and name.endswith("weight"):
            nn.init.ones_(p)
        else:
            nn.init.zeros_(p)


def lars_step(params, lr, mu, momentum=0.9, trust=0.001, wd=0.0):
    with torch.no_grad():
        for p in params:
            dp = p.grad
            if p.ndim > 1:
                dp = dp.add(p, alpha=wd)
                pn, un = torch.norm(p), torch.norm(dp)
                one = torch.ones_like(pn)
                q = torch.where(pn > 0., torch.where(un > 0, trust * pn / un, one), one)
                dp = dp.mul(q)
            m = mu.setdefault(id(p), torch.zeros_like(p))
            m.mul_(momentum).add_(dp)
            p.add_(m, alpha=-lr)


def schedule(base, epochs, niter, warmup_epochs):
    warm = np.linspace(0.0, base, warmup_epochs * niter) if warmup_epochs > 0 else np.array([])
    iters = np.arange(epochs * niter - len(warm))
    cos = 0.5 * base * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warm, cos))


def main():
    root = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    blr = float(sys.argv[3]) if len(sys.argv) > 3 else 50.0
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    torch.manual_seed(seed)
    cfg = CAEConfig(input_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                    decoder_embed_dim=32, decoder_num_heads=2, num_mask_patches=8,
                    discrete_vae_type="pixel")
    enc = Encoder(cfg)
    init_encoder(enc)
    enc.eval()
    xtr, ytr, K = load_split(root, "train", 32)
    xva, yva, _ = load_split(root, "val", 32)
    N = cfg.grid * cfg.grid
    with torch.no_grad():
        sel = torch.ones(1, N, dtype=torch.bool)
        ftr = enc(xtr, sel.expand(len(xtr), N))[:, 0]
        fva = enc(xva, sel.expand(len(xva), N))[:, 0]
    bn = nn.BatchNorm1d(cfg.embed_dim, affine=False, eps=1e-6)
    head = nn.Linear(cfg.embed_dim, K)
    nn.init.trunc_normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    steps = len(ftr) // batch
    lrs = schedule(blr * batch / 256, epochs, steps, 2)
    mu, it, best = {}, 0, 0.0
    for epoch in range(epochs):
        bn.train()
        perm = torch.randperm(len(ftr))
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            loss = nn.functional.cross_entropy(head(bn(ftr[idx])), ytr[idx])
            head.zero_grad()
            loss.backward()
            lars_step(list(head.parameters()), float(lrs[it]), mu)
            it += 1
        bn.eval()
        with torch.no_grad():
            acc = (head(bn(fva)).argmax(1) == yva).float().mean().item() * 100
        best = max(best, acc)
        print("epoch %d: loss %.4f acc1 %.2f%%" % (epoch, loss.item(), acc))
    print("Max accuracy: %.2f%%" % best)


if __name__ == "__main__":
    main()
