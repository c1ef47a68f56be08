#!/usr/bin/python3
"""PyTorch reference of the DALL-E dVAE encoder (the CAE tokenizer) and its fixtures.

    dalle_reference.py --small                 # regenerate tests/fixtures/dalle-small
    dalle_reference.py --real --out DIR        # n_hid 256, vocab 8192, 112x112, batch 2
    dalle_reference.py --out DIR [--n_hid N --vocab V --image_size S --batch B
                                  --masked M --seed S --res_scale X]

The encoder is written from src/tokenizer/dalle.h (and src/model/DESIGN.md): input 7x7
conv 3 -> n_hid; four groups of two residual blocks of widths n_hid, 2n_hid,
4n_hid, 8n_hid with MaxPool2d(2) after groups 1-3; ReLU and a 1x1 conv to the
vocabulary. Block: id_path(x) + 1/n_layers^2 * res_path(x), n_layers = 8,
res_path = ReLU, 3x3 conv to n_out/4, ReLU, 3x3, ReLU, 3x3, ReLU, 1x1 to n_out;
id_path is a 1x1 conv only when the widths differ. Every conv has a bias and
'same' padding. The module tree and parameter names (w, b) are the official
dall_e.encoder.Encoder's, so state_dict() gives the keys cae-cl-convert-dall-e
writes (blocks.input.w, blocks.group_1.block_1.res_path.conv_1.w, ...,
blocks.output.conv.b).

A fixture folder holds weights.safetensors (every parameter, F32) and
data.safetensors: view F32 [B,3,S,S] in [0.1, 0.9] (already mapped with
0.8x + 0.1), mask_idx I32 [B,M] (masked grid cells in raster order), logits
F32 [B,V,G,G] and labels I32 [B*M] (argmax over V at each masked cell). The
small fixture adds data8.safetensors (8x8, batch 3, one masked cell) on the
same weights. The forward runs in float64 on the F32 weights and inputs.
Output is deterministic (fixed seeds). Random weights: w ~
N(0, 1/fan_in), biases U(-0.1, 0.1), each block's conv_4 weight times
--res_scale (default 8) so the residual paths, scaled by 1/64, still move the
logits well beyond the test tolerance.

Every run self-checks and exits non-zero on failure: an independent
plain-tensor forward (walking the state_dict by name) agrees to 1e-10, and a
float32 rerun agrees to 1e-4 relative L2.
"""

import argparse
import math
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUP_COUNT = 4
BLOCKS_PER_GROUP = 2
N_LAYERS = GROUP_COUNT * BLOCKS_PER_GROUP
MAX_FILE_BYTES = 1 << 20

SMALL = dict(n_hid=8, vocab=40, image_size=24, batch=2, masked=5, seed=7, res_scale=8.0)
# further data sets on the small fixture's weights: (file, image_size, batch, masked);
# 8x8 makes group 4 run on 1x1 planes (padding wider than the image)
SMALL_EXTRA = [("data8.safetensors", 8, 3, 1)]
REAL = dict(n_hid=256, vocab=8192, image_size=112, batch=2, masked=98, seed=8, res_scale=8.0)


class Conv2d(nn.Module):
    """The official dall_e.utils.Conv2d: parameters w [out,in,k,k] and b [out]."""

    def __init__(self, n_in, n_out, kw, use_float16=True):
        super().__init__()
        self.n_in, self.n_out, self.kw = n_in, n_out, kw
        self.use_float16 = use_float16
        self.w = nn.Parameter(torch.zeros(n_out, n_in, kw, kw))
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return F.conv2d(x, self.w.to(x.dtype), self.b.to(x.dtype), padding=(self.kw - 1) // 2)


class EncoderBlock(nn.Module):
    def __init__(self, n_in, n_out, n_layers):
        super().__init__()
        self.n_in, self.n_out, self.n_hid = n_in, n_out, n_out // 4
        self.post_gain = 1 / (n_layers ** 2)
        self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        self.res_path = nn.Sequential(OrderedDict([
            ("relu_1", nn.ReLU()), ("conv_1", Conv2d(n_in, self.n_hid, 3)),
            ("relu_2", nn.ReLU()), ("conv_2", Conv2d(self.n_hid, self.n_hid, 3)),
            ("relu_3", nn.ReLU()), ("conv_3", Conv2d(self.n_hid, self.n_hid, 3)),
            ("relu_4", nn.ReLU()), ("conv_4", Conv2d(self.n_hid, n_out, 1))]))

    def forward(self, x):
        return self.id_path(x) + self.post_gain * self.res_path(x)


class Encoder(nn.Module):
    def __init__(self, n_hid=256, vocab_size=8192, input_channels=3):
        super().__init__()
        self.n_hid, self.vocab_size, self.input_channels = n_hid, vocab_size, input_channels
        groups = [("input", Conv2d(input_channels, n_hid, 7))]
        width = n_hid
        for g in range(GROUP_COUNT):
            n_out = n_hid << g
            layers = []
            for i in range(BLOCKS_PER_GROUP):
                layers.append(("block_%d" % (i + 1), EncoderBlock(width, n_out, N_LAYERS)))
                width = n_out
            if g < GROUP_COUNT - 1:
                layers.append(("pool", nn.MaxPool2d(kernel_size=2)))
            groups.append(("group_%d" % (g + 1), nn.Sequential(OrderedDict(layers))))
        groups.append(("output", nn.Sequential(OrderedDict([
            ("relu", nn.ReLU()), ("conv", Conv2d(width, vocab_size, 1, use_float16=False))]))))
        self.blocks = nn.Sequential(OrderedDict(groups))

    def forward(self, x):
        return self.blocks(x)


def randomize(enc, res_scale, gen):
    """w ~ N(0, 1/fan_in), b ~ U(-0.1, 0.1); conv_4 weights times res_scale."""
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name.endswith(".w"):
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in))
                if name.endswith("res_path.conv_4.w"):
                    p.mul_(res_scale)
            else:
                p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) * 0.2 - 0.1)


def plain_forward(sd, x):
    """The encoder again, from the state_dict by name, without the module tree."""
    def conv(prefix, h):
        w, b = sd[prefix + ".w"].double(), sd[prefix + ".b"].double()
        return F.conv2d(h, w, b, padding=w.shape[-1] // 2)

    h = conv("blocks.input", x)
    for g in range(1, GROUP_COUNT + 1):
        for i in range(1, BLOCKS_PER_GROUP + 1):
            p = "blocks.group_%d.block_%d" % (g, i)
            r = h
            for j in range(1, 5):
                r = conv("%s.res_path.conv_%d" % (p, j), torch.relu(r))
            ident = conv(p + ".id_path", h) if (p + ".id_path.w") in sd else h
            h = ident + r / 64.0
        if g < GROUP_COUNT:
            h = F.max_pool2d(h, 2)
    return conv("blocks.output.conv", torch.relu(h))


def rel_l2(a, b):
    return float(torch.linalg.norm((a - b).flatten()) / max(torch.linalg.norm(b.flatten()), 1e-300))


def make_data(enc, sd, gen, vocab, B, S, M):
    """A view, masked cells and the expected logits and labels; self-checks."""
    G = S // 8
    if S % 8 != 0 or not 0 < M <= G * G:
        sys.exit("dalle_reference: image_size must be a multiple of 8 and 0 < masked <= grid^2")
    view = (0.8 * torch.rand((B, 3, S, S), generator=gen, dtype=torch.float64) + 0.1).float()
    mask_idx = torch.stack([torch.sort(torch.randperm(G * G, generator=gen)[:M]).values
                            for _ in range(B)]).to(torch.int32)
    with torch.no_grad():
        logits = enc.double()(view.double())
        logits32 = enc.float()(view)
        plain = plain_forward(sd, view.double())
    cells = logits.reshape(B, vocab, G * G)
    picked = torch.stack([cells[b][:, mask_idx[b].long()] for b in range(B)])  # [B, V, M]
    labels = picked.argmax(dim=1).reshape(-1).to(torch.int32)
    top2 = picked.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).flatten()

    failures = []
    err = rel_l2(plain, logits)
    if err > 1e-10:
        failures.append("plain forward differs: relative L2 %.3g" % err)
    err32 = rel_l2(logits32.double(), logits)
    if err32 > 1e-4:
        failures.append("float32 forward differs: relative L2 %.3g" % err32)
    data = {"view": view.numpy(), "mask_idx": mask_idx.numpy(),
            "logits": logits.float().numpy(), "labels": labels.numpy()}
    note = ("image %d batch %d masked %d: fp32 rel L2 %.2g, smallest label margin %.3g "
            "(%d of %d above 1e-3)" % (S, B, M, err32, float(margin.min()),
                                       int((margin > 1e-3).sum()), margin.numel()))
    return data, failures, note


def make(cfg, out_dir, extra=()):
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    gen = torch.Generator().manual_seed(cfg["seed"])
    enc = Encoder(cfg["n_hid"], cfg["vocab"])
    randomize(enc, cfg["res_scale"], gen)
    enc.float()
    sd = {k: v.detach().float().clone() for k, v in enc.state_dict().items()}
    os.makedirs(out_dir, exist_ok=True)
    meta = {k: str(v) for k, v in cfg.items()}
    meta["format"] = "cae-cl dalle fixture 1"
    weights = {k: v.numpy() for k, v in sd.items()}
    safetensors_io.save(os.path.join(out_dir, "weights.safetensors"), weights, meta)
    print("%s: n_hid %d vocab %d, %d tensors" % (out_dir, cfg["n_hid"], cfg["vocab"], len(weights)))
    failures = []
    sets = [("data.safetensors", cfg["image_size"], cfg["batch"], cfg["masked"])] + list(extra)
    for name, S, B, M in sets:
        data, fails, note = make_data(enc, sd, gen, cfg["vocab"], B, S, M)
        m = dict(meta, image_size=str(S), batch=str(B), masked=str(M))
        safetensors_io.save(os.path.join(out_dir, name), data, m)
        print("  %s: %s" % (name, note))
        failures += ["%s: %s" % (name, f) for f in fails]
    for f in failures:
        print("SELF-CHECK FAILED: " + f, file=sys.stderr)
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="regenerate tests/fixtures/dalle-small")
    ap.add_argument("--real", action="store_true", help="n_hid 256, vocab 8192, 112x112, batch 2")
    ap.add_argument("--out", help="output folder")
    for k in ("n_hid", "vocab", "image_size", "batch", "masked", "seed"):
        ap.add_argument("--" + k, type=int)
    ap.add_argument("--res_scale", type=float)
    a = ap.parse_args()
    cfg = dict(REAL if a.real else SMALL)
    for k in cfg:
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    if a.small:
        out = a.out or os.path.join(REPO_ROOT, "tests", "fixtures", "dalle-small")
    elif a.out:
        out = a.out
    else:
        ap.error("--out is required (or --small)")
    rc = make(cfg, out, SMALL_EXTRA if a.small else ())
    if a.small:
        for name in ["weights.safetensors", "data.safetensors"] + [e[0] for e in SMALL_EXTRA]:
            size = os.path.getsize(os.path.join(out, name))
            if size > MAX_FILE_BYTES:
                print("%s is %d bytes, over the fixture limit" % (name, size), file=sys.stderr)
                rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
