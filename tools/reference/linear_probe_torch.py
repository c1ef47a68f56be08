#!/usr/bin/python3
"""linear_probe_torch.py DATA [EPOCHS BLR BATCH SEED] [--save-encoder F]
[--encoder F] [--use-mean]: the linear-probe
recipe of cae-cl-linear (and the official run_linear.py) in PyTorch, on an
ImageFolder made by tests/shell/make-probe-data.py, with the tiny model of
tests/shell/linear-probe.sh: a freshly initialized CAE encoder (cae_reference.py's
Encoder, official init), features = cls token of the final norm computed
once with the evaluation transform (Resize(int(S/0.875)) bicubic + center
crop, except for inputs of 32 pixels or less, which are used as they are,
as the official build_transform; normalized with mean = std = 0.5), then BatchNorm1d(affine=False,
eps=1e-6) + Linear (trunc-normal 0.01 weights, zero bias), cross-entropy,
LARS (util/lars.py: weight decay 0, momentum 0.9, trust 0.001), lr = blr *
batch / 256 with linear warmup and cosine per step. Prints the best top-1
on DATA/val and the last epoch's. --save-encoder writes the random encoder
(official encoder.* keys, safetensors) so cae-cl-linear can probe the very
same one (--finetune F); --encoder loads one instead of drawing it;
--use-mean takes the mean of the patch tokens instead of the cls token.
tests/shell/linear-probe.sh compares cae-cl-linear with this script's result,
committed in tests/fixtures/linear-probe/ (written by --fixture DIR: the
encoder and expected.json). torchvision is not needed: the transforms are
done with Pillow and numpy."""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cae_reference import CAEConfig, Encoder  # noqa: E402
import safetensors_io  # noqa: E402


def load_split(root, split, S):
    classes = sorted(os.listdir(os.path.join(root, split)))
    xs, ys = [], []
    size = int(S / 0.875)
    for k, c in enumerate(classes):
        d = os.path.join(root, split, c)
        for f in sorted(os.listdir(d)):
            img = Image.open(os.path.join(d, f)).convert("RGB")
            w, h = img.size
            if S <= 32:  # build_transform: small inputs are not resized or cropped
                assert (w, h) == (S, S), "%s is %dx%d, not %dx%d" % (f, w, h, S, S)
                ow, oh = w, h
            else:
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


def train_probe(ftr, ytr, fva, yva, K, epochs, blr, batch, warmup_epochs, verbose=False):
    """BatchNorm1d(affine=False, eps=1e-6) + Linear (trunc-normal 0.01, zero
    bias) on features ftr, LARS at blr * batch / 256 with warmup and cosine
    per step; returns the last and the best top-1 on (fva, yva)."""
    bn = nn.BatchNorm1d(ftr.shape[1], affine=False, eps=1e-6)
    head = nn.Linear(ftr.shape[1], K)
    nn.init.trunc_normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    steps = len(ftr) // batch
    lrs = schedule(blr * batch / 256, epochs, steps, warmup_epochs)
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
        if verbose:
            print("epoch %d: loss %.4f acc1 %.2f%%" % (epoch, loss.item(), acc))
    return acc, best


def take_flag(args, name, has_value=True):
    if name not in args:
        return None
    i = args.index(name)
    value = args[i + 1] if has_value else True
    del args[i:i + (2 if has_value else 1)]
    return value


def main():
    args = sys.argv[1:]
    save_encoder = take_flag(args, "--save-encoder")
    load_encoder = take_flag(args, "--encoder")
    fixture = take_flag(args, "--fixture")
    use_mean = take_flag(args, "--use-mean", has_value=False)
    root = args[0]
    epochs = int(args[1]) if len(args) > 1 else 20
    blr = float(args[2]) if len(args) > 2 else 50.0
    batch = int(args[3]) if len(args) > 3 else 32
    seed = int(args[4]) if len(args) > 4 else 1
    if fixture:
        os.makedirs(fixture, exist_ok=True)
        save_encoder = os.path.join(fixture, "encoder.safetensors")
    torch.manual_seed(seed)
    cfg = CAEConfig(input_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                    decoder_embed_dim=32, decoder_num_heads=2, num_mask_patches=8,
                    discrete_vae_type="pixel")
    enc = Encoder(cfg)
    if load_encoder:
        t, _ = safetensors_io.load(load_encoder)
        with torch.no_grad():
            for name, p in enc.named_parameters():
                p.copy_(torch.as_tensor(np.asarray(t["encoder." + name])).view_as(p))
    else:
        init_encoder(enc)
    if save_encoder:
        safetensors_io.save(save_encoder, {"encoder." + n: p.detach().float().numpy()
                                           for n, p in enc.named_parameters()})
    enc.eval()
    xtr, ytr, K = load_split(root, "train", 32)
    xva, yva, _ = load_split(root, "val", 32)
    N = cfg.grid * cfg.grid
    with torch.no_grad():
        sel = torch.ones(1, N, dtype=torch.bool)
        ftr = enc(xtr, sel.expand(len(xtr), N))
        fva = enc(xva, sel.expand(len(xva), N))
        ftr, fva = (ftr[:, 1:].mean(1), fva[:, 1:].mean(1)) if use_mean else (ftr[:, 0], fva[:, 0])
    acc, best = train_probe(ftr, ytr, fva, yva, K, epochs, blr, batch, 2, verbose=True)
    print("Max accuracy: %.2f%%" % best)
    print("Last accuracy: %.2f%%" % acc)
    if fixture:
        import json
        with open(os.path.join(fixture, "expected.json"), "w") as f:
            json.dump({"epochs": epochs, "blr": blr, "batch_size": batch, "seed": seed,
                       "pool": "mean" if use_mean else "cls", "torch_last_acc1": round(acc, 4),
                       "torch_max_acc1": round(best, 4)}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
