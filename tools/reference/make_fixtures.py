#!/usr/bin/python3
"""Write CAE conformance fixtures: weights, a batch, and one step's expected outputs.

    make_fixtures.py --name NAME --out DIR [--seed S] [model/batch flags]
    make_fixtures.py --all [--out DIR]      # regenerate tests/fixtures/*

Each fixture directory holds weights.safetensors, batch.safetensors,
expected.safetensors and args.txt. `--discrete_vae_type pixel [--norm_pix_loss]`
makes a pixel-target fixture (head of 3*P*P outputs, MSE on the masked
patches' pixels, no labels, no mlm_acc). Every run also runs the self-checks
(analytic zero of norm1_k.bias gradients, finite differences, and an
independent plain-tensor forward) and exits non-zero if one fails.
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.stateless import functional_call

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from cae_reference import (CAE, CAEConfig, LN_EPS, fan_in, pixel_target,  # noqa: E402
                           trainable_names)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORMAT_VERSION = "1"
MAX_FILE_BYTES = 1 << 20

# Flags written to args.txt, in this order; official names.
FLAG_ORDER = ["input_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio",
              "decoder_embed_dim", "regressor_depth", "decoder_depth", "decoder_num_heads",
              "decoder_num_classes", "layer_scale_init_value",
              "decoder_layer_scale_init_value", "align_loss_weight", "batch_size",
              "num_mask_patches"]

# The committed fixtures: name -> (seed, config overrides).
COMMITTED = {
    "ls01": (101, dict(input_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4,
                       decoder_embed_dim=32, regressor_depth=2, decoder_depth=1,
                       decoder_num_heads=4, decoder_num_classes=64,
                       layer_scale_init_value=0.1, decoder_layer_scale_init_value=0.1,
                       batch_size=2, num_mask_patches=6, align_loss_weight=2.0)),
    "proj": (202, dict(input_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=3,
                       decoder_embed_dim=32, regressor_depth=1, decoder_depth=2,
                       decoder_num_heads=2, decoder_num_classes=96,
                       layer_scale_init_value=0.0, decoder_layer_scale_init_value=0.0,
                       batch_size=2, num_mask_patches=7, align_loss_weight=1.5)),
    "odd": (303, dict(input_size=20, patch_size=4, embed_dim=40, depth=1, num_heads=5,
                      decoder_embed_dim=40, regressor_depth=2, decoder_depth=1,
                      decoder_num_heads=5, decoder_num_classes=100, mlp_ratio=2.0,
                      layer_scale_init_value=0.1, decoder_layer_scale_init_value=0.05,
                      batch_size=3, num_mask_patches=13, align_loss_weight=2.0)),
    "tiny": (404, dict(input_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2,
                       decoder_embed_dim=16, regressor_depth=1, decoder_depth=1,
                       decoder_num_heads=2, decoder_num_classes=24,
                       layer_scale_init_value=0.1, decoder_layer_scale_init_value=0.1,
                       batch_size=2, num_mask_patches=2, align_loss_weight=2.0)),
    # pixel target: the head has 3*P*P outputs (decoder_num_classes is derived)
    "pixel": (505, dict(input_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                        decoder_embed_dim=24, regressor_depth=1, decoder_depth=1,
                        decoder_num_heads=3, layer_scale_init_value=0.1,
                        decoder_layer_scale_init_value=0.0, batch_size=2,
                        num_mask_patches=7, align_loss_weight=2.0,
                        discrete_vae_type="pixel")),
    "pixnorm": (606, dict(input_size=12, patch_size=3, embed_dim=24, depth=1, num_heads=3,
                          decoder_embed_dim=20, regressor_depth=1, decoder_depth=1,
                          decoder_num_heads=5, layer_scale_init_value=0.0,
                          decoder_layer_scale_init_value=0.1, batch_size=3,
                          num_mask_patches=5, align_loss_weight=1.5,
                          discrete_vae_type="pixel", norm_pix_loss=True)),
    # no alignment term (the built-in Fashion-MNIST model's setting): the
    # step skips the alignment pass, and the gradients must not change
    "noalign": (707, dict(input_size=12, patch_size=3, embed_dim=24, depth=2, num_heads=3,
                          decoder_embed_dim=20, regressor_depth=1, decoder_depth=1,
                          decoder_num_heads=4, layer_scale_init_value=0.1,
                          decoder_layer_scale_init_value=0.1, batch_size=2,
                          num_mask_patches=8, align_loss_weight=0.0,
                          discrete_vae_type="pixel")),
}

# committed fixtures checked by finite differences (small enough to be quick)
FD_FIXTURES = ("tiny", "proj", "pixel", "pixnorm", "noalign")


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def fmt_flag(value):
    if isinstance(value, float):
        return "%g" % value
    return str(value)


def args_line(cfg):
    """Flags reproducing cfg. The dall-e line is unchanged from before the pixel
    target existed; a pixel line adds its flags (decoder_num_classes is 3*P*P)."""
    d = cfg.as_dict()
    line = " ".join("--%s %s" % (k, fmt_flag(d[k])) for k in FLAG_ORDER)
    if cfg.pixel_target:
        line += " --discrete_vae_type pixel"
        if cfg.norm_pix_loss:
            line += " --norm_pix_loss"
    return line


# ---------------------------------------------------------------- generation

def random_weights(cfg, rng):
    """Random fp32 tensors for every state-dict entry, chosen to exercise every path."""
    model = CAE(cfg)
    train = set(trainable_names(model))
    out = {}
    for name, ref in model.state_dict().items():
        shape = tuple(ref.shape)
        if name not in train:
            # position tables and frozen regressor gammas keep their fixed values
            out[name] = ref.detach().numpy().astype(np.float32)
            continue
        leaf = name.rsplit(".", 1)[-1]
        noise = rng.standard_normal(shape)
        if leaf.startswith("gamma"):
            init = (cfg.layer_scale_init_value if name.startswith("encoder.")
                    else cfg.decoder_layer_scale_init_value)
            val = init * (1.0 + 0.3 * noise)
        elif name in ("encoder.cls_token", "mask_token"):
            val = 0.5 * noise
        elif "norm" in name.rsplit(".", 2)[-2] and leaf == "weight":
            val = 1.0 + 0.1 * noise
        elif leaf in ("bias", "q_bias", "v_bias"):
            val = 0.1 * noise
        elif leaf == "weight":
            val = noise / math.sqrt(fan_in(name, shape))
        else:
            raise ValueError("no rule for %s" % name)
        out[name] = val.astype(np.float32)
    return out


def random_mask(cfg, rng):
    """[B,N] uint8 with exactly M ones per row, rows pairwise different."""
    B, N, M = cfg.batch_size, cfg.num_patches, cfg.num_mask_patches
    while True:
        mask = np.zeros((B, N), dtype=np.uint8)
        for b in range(B):
            mask[b, rng.permutation(N)[:M]] = 1
        if len({row.tobytes() for row in mask}) == B:
            return mask


def build_model(cfg, weights, dtype=torch.float64):
    model = CAE(cfg).to(dtype)
    state = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)).to(dtype)
             for k, v in weights.items()}
    model.load_state_dict(state, strict=True)
    return model


def to_torch(batch):
    """(samples, mask, labels); labels is None for a pixel-target batch."""
    labels = batch.get("labels")
    return (torch.from_numpy(batch["samples"].astype(np.float64)),
            torch.from_numpy(batch["bool_masked_pos"].astype(bool)),
            None if labels is None else torch.from_numpy(labels.astype(np.int64)))


def pick_labels(cfg, logits, rng, margin=1e-3):
    """Labels in [0,K): about half equal the argmax (so mlm_acc is not trivially 0),
    and no label's logit lies within `margin` of the best other logit, so an fp32
    implementation cannot flip the accuracy."""
    rows, K = logits.shape
    labels = np.zeros(rows, dtype=np.int64)
    for i in range(rows):
        order = np.argsort(-logits[i])
        top, second = logits[i, order[0]], logits[i, order[1]]
        want_hit = rng.random() < 0.5 or (i == 0)
        if i == 1:
            want_hit = False
        if want_hit and top - second > margin:
            labels[i] = order[0]
        else:
            far = np.nonzero(logits[i] < top - margin)[0]
            labels[i] = rng.choice(far)
    return labels


def reference_step(cfg, weights, batch, latent_target=None):
    """Float64 forward + backward. Returns (outputs dict of tensors, grads dict)."""
    model = build_model(cfg, weights)
    samples, mask, labels = to_torch(batch)
    out = model(samples, mask, labels, latent_target=latent_target)
    out["loss"].backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads


def make_fixture(cfg, seed):
    """Return (weights, batch, expected) numpy dicts."""
    rng = np.random.default_rng(seed)
    weights = random_weights(cfg, rng)
    samples = rng.standard_normal((cfg.batch_size, 3, cfg.input_size, cfg.input_size))
    batch = {"samples": samples.astype(np.float32),
             "bool_masked_pos": random_mask(cfg, rng)}
    if not cfg.pixel_target:  # the pixel target comes from the samples: no labels
        batch["labels"] = np.zeros(cfg.batch_size * cfg.num_mask_patches, dtype=np.int64)
        # Logits do not depend on labels: run once to choose labels, then for real.
        with torch.no_grad():
            model = build_model(cfg, weights)
            s, m, lab = to_torch(batch)
            logits = model(s, m, lab)["logits"].numpy()
        batch["labels"] = pick_labels(cfg, logits, rng)

    # The reference runs in float64 on the fp32 weights and inputs (upcast), so
    # the stored fp32 targets are accurate to fp32 rounding, not to fp32 drift.
    out, grads = reference_step(cfg, weights, batch)
    expected = {}
    scalars = ("loss", "loss_main", "loss_align") + (() if cfg.pixel_target else ("mlm_acc",))
    for key in scalars:
        expected[key] = np.asarray(out[key].detach().numpy(), dtype=np.float32).reshape(())
    tensors = ("logits", "latent_predict")
    if cfg.align_loss_weight != 0:  # without the term our step does not compute the target
        tensors += ("latent_target",)
    if cfg.pixel_target:
        tensors += ("pixel_target",)  # [B*M, 3*P*P], for diagnosis; not an output
    for key in tensors:
        expected[key] = out[key].detach().numpy().astype(np.float32)
    for name, g in grads.items():
        expected["grad/" + name] = g.numpy().astype(np.float32)
    return weights, batch, expected


def metadata(cfg, name, seed, kind):
    md = {"format": "cae-cl-fixture", "version": FORMAT_VERSION, "name": name,
          "kind": kind, "seed": str(seed), "args": args_line(cfg),
          "reference": "float64 PyTorch (tools/reference/cae_reference.py), stored float32",
          "loss_align": "weighted: align_loss_weight * MSE, as the official engine logs it"}
    for k, v in cfg.as_dict().items():
        if k in ("discrete_vae_type", "norm_pix_loss"):
            continue  # below, and only for a pixel target (dall-e metadata unchanged)
        md[k] = fmt_flag(v)
    if cfg.pixel_target:
        md["discrete_vae_type"] = cfg.discrete_vae_type
        md["norm_pix_loss"] = "1" if cfg.norm_pix_loss else "0"
        md["loss_main"] = ("MSE over the masked patches' pixels (channel, y, x)%s; no labels, "
                           "no mlm_acc" % (", each patch normalized (biased variance, eps 1e-6)"
                                           if cfg.norm_pix_loss else ""))
    return md


def write_fixture(out_dir, name, cfg, seed):
    weights, batch, expected = make_fixture(cfg, seed)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    files = {"weights.safetensors": (weights, "weights"),
             "batch.safetensors": (batch, "batch"),
             "expected.safetensors": (expected, "expected")}
    for fname, (tensors, kind) in files.items():
        path = os.path.join(d, fname)
        safetensors_io.save(path, tensors, metadata(cfg, name, seed, kind))
        back, _ = safetensors_io.load(path)
        check(set(back) == set(tensors), "%s: round trip lost keys" % path)
        for k in tensors:
            check(np.array_equal(back[k], tensors[k]), "%s: round trip changed %s" % (path, k))
    with open(os.path.join(d, "args.txt"), "w") as f:
        f.write(args_line(cfg) + "\n")
    sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    for f, size in sizes.items():
        check(size < MAX_FILE_BYTES, "%s/%s is %d bytes" % (d, f, size))
    print("wrote %s: %s" % (d, ", ".join("%s %d B" % kv for kv in sizes.items())))
    acc = "pixel target" if cfg.pixel_target else "mlm_acc %.4f" % expected["mlm_acc"]
    print("  loss %.6f  loss_main %.6f  loss_align %.6f  %s  (%d grads)" % (
        expected["loss"], expected["loss_main"], expected["loss_align"], acc,
        sum(1 for k in expected if k.startswith("grad/"))))
    return weights, batch, expected


# ---------------------------------------------------------------- self-checks

def check_norm1k_bias(cfg, weights, batch):
    """(i) Keys carry no bias, so a shared shift of all keys cancels in the
    softmax: every regressor norm1_k.bias gradient is analytically zero."""
    _, grads = reference_step(cfg, weights, batch)
    for i in range(cfg.regressor_depth):
        pre = "regresser.regressor_blocks.%d.norm1_k." % i
        gb = grads[pre + "bias"].norm().item()
        gw = grads[pre + "weight"].norm().item()
        check(gw > 0, pre + "weight gradient is zero")
        check(gb <= 1e-10 * gw, "%sbias grad %.3e vs weight grad %.3e" % (pre, gb, gw))
        print("  (i) %sbias |g| = %.2e, weight |g| = %.2e" % (pre, gb, gw))


def check_finite_differences(cfg, weights, batch, names, seed=7):
    """(ii) torch.autograd.gradcheck on whole parameter tensors (float64).

    The alignment target is gradient-free by definition (stop-gradient), so it
    is held at its unperturbed value while the encoder weights move."""
    model = build_model(cfg, weights)
    samples, mask, labels = to_torch(batch)
    target = model.alignment_target(samples, mask)
    params = dict(model.named_parameters())
    rng = np.random.default_rng(seed)
    for name in names:
        base = params[name].detach().clone()

        def loss_of(t, name=name):
            return functional_call(model, {name: t}, (samples, mask, labels),
                                   {"latent_target": target})["loss"]

        if base.numel() <= 300:
            t = base.clone().requires_grad_(True)
            ok = torch.autograd.gradcheck(loss_of, (t,), eps=1e-6, atol=1e-8, rtol=1e-6)
            check(ok, "gradcheck failed for " + name)
            print("  (ii) gradcheck %s (%d elements) ok" % (name, base.numel()))
            continue
        # large tensors: central differences on a random subset of elements
        t = base.clone().requires_grad_(True)
        g = torch.autograd.grad(loss_of(t), t)[0].reshape(-1)
        worst = 0.0
        for idx in rng.choice(base.numel(), size=12, replace=False):
            h = 1e-6
            tp, tm = base.clone().reshape(-1), base.clone().reshape(-1)
            tp[idx] += h
            tm[idx] -= h
            with torch.no_grad():
                fd = (loss_of(tp.reshape(base.shape)) - loss_of(tm.reshape(base.shape))).item() / (2 * h)
            err = abs(fd - g[idx].item())
            check(err <= 1e-8 + 1e-6 * abs(fd), "%s[%d]: fd %.10e autograd %.10e" % (
                name, idx, fd, g[idx].item()))
            worst = max(worst, err)
        print("  (ii) central differences %s (12 of %d elements) ok, worst abs err %.1e" % (
            name, base.numel(), worst))


def plain_table(grid, width):
    """Position table written out element by element, independent of sincos_table."""
    f = width // 4
    t = np.zeros((grid * grid + 1, width))
    for n in range(grid * grid):
        r, c = divmod(n, grid)
        for j in range(f):
            w = 10000.0 ** (-j / f)
            t[1 + n, j] = math.sin(r * w)
            t[1 + n, f + j] = math.cos(r * w)
            t[1 + n, 2 * f + j] = math.sin(c * w)
            t[1 + n, 3 * f + j] = math.cos(c * w)
    return t


def plain_forward(cfg, weights, batch):
    """(iii) A second forward with plain tensor ops, no nn.Module reuse."""
    W = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in weights.items()}
    x_img = torch.from_numpy(batch["samples"].astype(np.float64))
    mask = batch["bool_masked_pos"].astype(bool)
    labels = batch.get("labels")
    B, G, P = cfg.batch_size, cfg.grid, cfg.patch_size
    N, D, Dd = cfg.num_patches, cfg.embed_dim, cfg.decoder_embed_dim

    for key, width in (("encoder.pos_embed", D), ("rd_pos_embed", Dd)):
        diff = np.abs(W[key][0].numpy() - plain_table(G, width)).max()
        check(diff < 1e-6, "%s differs from the element-wise table by %.2e" % (key, diff))

    def ln(x, pre):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + LN_EPS) * W[pre + ".weight"] + W[pre + ".bias"]

    def gelu(x):
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))

    def lin(x, w, b=None):
        y = x @ w.t()
        return y if b is None else y + b

    def mha(q, k, v, heads):
        # q [Tq,C], k/v [Tk,C]; per-head loop
        C = q.shape[1]
        dh = C // heads
        outs = []
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            s = (q[:, sl] / math.sqrt(dh)) @ k[:, sl].t()
            e = torch.exp(s - s.max(-1, keepdim=True).values)
            outs.append((e / e.sum(-1, keepdim=True)) @ v[:, sl])
        return torch.cat(outs, dim=1)

    def self_block(x, pre, heads, has_gamma):
        h = ln(x, pre + ".norm1")
        wq, wk, wv = W[pre + ".attn.qkv.weight"].split(x.shape[1], dim=0)
        a = mha(lin(h, wq, W[pre + ".attn.q_bias"]), lin(h, wk),
                lin(h, wv, W[pre + ".attn.v_bias"]), heads)
        a = lin(a, W[pre + ".attn.proj.weight"], W[pre + ".attn.proj.bias"])
        x = x + (W[pre + ".gamma_1"] * a if has_gamma else a)
        h = ln(x, pre + ".norm2")
        m = lin(gelu(lin(h, W[pre + ".mlp.fc1.weight"], W[pre + ".mlp.fc1.bias"])),
                W[pre + ".mlp.fc2.weight"], W[pre + ".mlp.fc2.bias"])
        return x + (W[pre + ".gamma_2"] * m if has_gamma else m)

    def encode(b, idx):
        img = x_img[b]
        # patch n = (row, col) raster order, flattened (channel, y, x)
        pt = img.reshape(3, G, P, G, P).permute(1, 3, 0, 2, 4).reshape(N, 3 * P * P)
        emb = lin(pt, W["encoder.patch_embed.proj.weight"].reshape(D, -1),
                  W["encoder.patch_embed.proj.bias"])
        pos = W["encoder.pos_embed"][0]
        x = torch.cat([W["encoder.cls_token"][0] + pos[:1], emb[idx] + pos[1 + idx]], dim=0)
        for i in range(cfg.depth):
            x = self_block(x, "encoder.blocks.%d" % i, cfg.num_heads,
                           cfg.layer_scale_init_value > 0)
        x = ln(x, "encoder.norm")
        if Dd != D:
            x = ln(lin(x, W["encoder_to_regresser.weight"], W["encoder_to_regresser.bias"]),
                   "encoder_to_regresser_norm")
        return x[1:]

    preds, targets, logits = [], [], []
    for b in range(B):
        vis = torch.from_numpy(np.nonzero(~mask[b])[0])
        msk = torch.from_numpy(np.nonzero(mask[b])[0])
        z = encode(b, vis)
        targets.append(encode(b, msk))
        rpos = W["rd_pos_embed"][0]
        p_vis, p_mask = rpos[1 + vis], rpos[1 + msk]
        q = W["mask_token"][0].expand(len(msk), Dd)
        for i in range(cfg.regressor_depth):
            pre = "regresser.regressor_blocks.%d" % i
            kv = torch.cat([z, q], dim=0)
            pk = torch.cat([p_vis, p_mask], dim=0)
            qq = lin(ln(q + p_mask, pre + ".norm1_q"), W[pre + ".cross_attn.q.weight"],
                     W[pre + ".cross_attn.q_bias"])
            kk = lin(ln(kv + pk, pre + ".norm1_k"), W[pre + ".cross_attn.k.weight"])
            vv = lin(ln(kv, pre + ".norm1_v"), W[pre + ".cross_attn.v.weight"],
                     W[pre + ".cross_attn.v_bias"])
            a = lin(mha(qq, kk, vv, cfg.decoder_num_heads),
                    W[pre + ".cross_attn.proj.weight"], W[pre + ".cross_attn.proj.bias"])
            x = ln(q + W[pre + ".gamma_1_cross"] * a, pre + ".norm2_cross")
            m = lin(gelu(lin(x, W[pre + ".mlp_cross.fc1.weight"], W[pre + ".mlp_cross.fc1.bias"])),
                    W[pre + ".mlp_cross.fc2.weight"], W[pre + ".mlp_cross.fc2.bias"])
            q = x + W[pre + ".gamma_2_cross"] * m
        pred = ln(q, "regresser.norm")
        preds.append(pred)
        x = pred + p_mask
        for i in range(cfg.decoder_depth):
            x = self_block(x, "decoder.decoder_blocks.%d" % i, cfg.decoder_num_heads,
                           cfg.decoder_layer_scale_init_value > 0)
        logits.append(lin(ln(x, "decoder.norm"), W["decoder.head.weight"], W["decoder.head.bias"]))

    logits = torch.cat(logits, dim=0)
    pred, target = torch.stack(preds), torch.stack(targets)
    out = {}
    if cfg.pixel_target:
        pix = plain_pixel_target(cfg, batch["samples"], mask)
        loss_main = ((logits - pix) ** 2).sum() / logits.numel()
        out["pixel_target"] = pix
    else:
        lab = torch.from_numpy(labels)
        mx = logits.max(-1, keepdim=True).values
        lse = (mx + torch.log(torch.exp(logits - mx).sum(-1, keepdim=True)))[:, 0]
        loss_main = (lse - logits[torch.arange(len(lab)), lab]).mean()
    loss_align = cfg.align_loss_weight * ((pred - target) ** 2).mean()
    out.update({"loss": loss_main + loss_align, "loss_main": loss_main, "loss_align": loss_align,
                "logits": logits, "latent_predict": pred, "latent_target": target})
    return out


def plain_pixel_target(cfg, samples, mask):
    """The pixel target element by element: for each sample, each masked patch
    n = (row, col) in raster order, value (c, y, x) at column (c*P + y)*P + x."""
    P, G = cfg.patch_size, cfg.grid
    rows = []
    for b in range(cfg.batch_size):
        for n in np.nonzero(mask[b])[0]:
            r, c0 = divmod(int(n), G)
            t = np.zeros(3 * P * P)
            for ch in range(3):
                for y in range(P):
                    for x in range(P):
                        t[(ch * P + y) * P + x] = samples[b, ch, r * P + y, c0 * P + x]
            if cfg.norm_pix_loss:
                mu = math.fsum(t) / len(t)
                var = math.fsum((v - mu) ** 2 for v in t) / len(t)   # biased
                t = (t - mu) / math.sqrt(var + LN_EPS)
            rows.append(t)
    return torch.from_numpy(np.stack(rows))


def check_plain_forward(cfg, weights, batch):
    model = build_model(cfg, weights)
    with torch.no_grad():
        ref = model(*to_torch(batch))
        alt = plain_forward(cfg, weights, batch)
    for key, val in alt.items():
        diff = (ref[key] - val).abs().max().item()
        scale = max(1.0, val.abs().max().item())
        check(diff <= 1e-10 * scale, "plain forward %s differs by %.3e" % (key, diff))
    print("  (iii) plain forward agrees: loss %.15f vs %.15f (|d| %.1e)" % (
        ref["loss"].item(), alt["loss"].item(), abs(ref["loss"].item() - alt["loss"].item())))


def check_pixel_layout(cfg, batch, expected):
    """(v) Pixel target only: the target's (channel, y, x) flattening is the patch
    embedding's. A Conv2d of the patch embedding's shape whose output k has the
    one-hot kernel at flat index k reproduces the raw target rows exactly; with
    --norm_pix_loss every stored row has mean 0 and biased variance v / (v + eps),
    v the raw row's biased variance."""
    P, K = cfg.patch_size, cfg.pixel_dim
    samples, mask, _ = to_torch(batch)
    conv = nn.Conv2d(3, K, kernel_size=P, stride=P, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.eye(K, dtype=torch.float64).reshape(K, 3, P, P))
        raw = conv(samples).flatten(2).transpose(1, 2)[mask]        # [B*M, K]
    ref = pixel_target(samples, mask, P, False)
    check(torch.equal(raw, ref), "pixel target flattening differs from the patch embedding's")
    stored = torch.from_numpy(expected["pixel_target"].astype(np.float64))
    if cfg.norm_pix_loss:
        # mean 0 and biased variance v / (v + eps), v the raw row's biased variance
        # (1 up to the eps, which matters for nearly flat rows, e.g. at P = 1)
        mu, var = stored.mean(-1), stored.var(-1, unbiased=False)
        v = ref.var(-1, unbiased=False)
        want = v / (v + LN_EPS)
        check(mu.abs().max().item() < 1e-5, "normalized target rows: mean %.2e" % mu.abs().max())
        check(((var - want) / want).abs().max().item() < 1e-5,
              "normalized target rows: var off by %.2e" % ((var - want) / want).abs().max())
    else:
        check(torch.equal(stored, ref.float().double()), "stored pixel target is not the raw pixels")
    print("  (v) pixel target: %d rows of %d, (channel, y, x) as the patch embedding%s" % (
        raw.shape[0], K, ", normalized rows mean 0 var v/(v+eps)" if cfg.norm_pix_loss else ""))


def check_fp32_spread(cfg, weights, batch, expected):
    """(iv) The same step in float32 against the stored targets: shows the
    relative L2 error an fp32 implementation should expect per tensor."""
    model = build_model(cfg, weights, dtype=torch.float32)
    s, m, lab = to_torch(batch)
    out = model(s.float(), m, lab)
    out["loss"].backward()
    got = {k: out[k].detach() for k in expected if not k.startswith("grad/")}
    for n, p in model.named_parameters():
        if p.requires_grad:
            got["grad/" + n] = p.grad
    worst, worst_key = 0.0, None
    for k, ref in expected.items():
        if k.endswith("norm1_k.bias"):
            continue  # analytically zero: compare on the norm1_k.weight scale instead
        ref = torch.from_numpy(np.asarray(ref, dtype=np.float64))
        err = ((got[k].double() - ref).norm() / max(ref.norm().item(), 1e-30)).item()
        if err > worst:
            worst, worst_key = err, k
    check(worst < 1e-4, "fp32 rerun differs by rel L2 %.2e on %s" % (worst, worst_key))
    print("  (iv) fp32 rerun: worst rel L2 error %.1e (%s)" % (worst, worst_key))


def fd_names(cfg):
    names = ["encoder.patch_embed.proj.weight", "encoder.cls_token",
             "encoder.blocks.0.attn.qkv.weight", "encoder.blocks.0.attn.q_bias",
             "encoder.blocks.0.norm1.bias", "encoder.norm.weight", "mask_token",
             "regresser.regressor_blocks.0.cross_attn.k.weight",
             "regresser.regressor_blocks.0.norm1_k.weight",
             "regresser.regressor_blocks.0.norm1_v.bias",
             "regresser.regressor_blocks.0.cross_attn.v_bias",
             "regresser.regressor_blocks.0.mlp_cross.fc1.weight",
             "regresser.norm.bias",
             "decoder.decoder_blocks.0.attn.proj.weight", "decoder.head.bias"]
    if cfg.layer_scale_init_value > 0:
        names.append("encoder.blocks.0.gamma_2")
    if cfg.decoder_layer_scale_init_value > 0:
        names.append("regresser.regressor_blocks.0.gamma_1_cross")
    if cfg.embed_dim != cfg.decoder_embed_dim:
        names += ["encoder_to_regresser.weight", "encoder_to_regresser_norm.bias"]
    if cfg.pixel_target:
        # the MSE pixel loss reaches the head weight directly and, through it,
        # the decoder's final norm
        names += ["decoder.head.weight", "decoder.norm.weight"]
    present = set(trainable_names(CAE(cfg)))
    return [n for n in names if n in present]  # e.g. no decoder blocks at depth 0


def self_check(name, cfg, weights, batch, expected, finite_differences):
    print("self-check %s" % name)
    check_norm1k_bias(cfg, weights, batch)
    check_plain_forward(cfg, weights, batch)
    check_fp32_spread(cfg, weights, batch, expected)
    if cfg.pixel_target:
        check_pixel_layout(cfg, batch, expected)
    if finite_differences:
        check_finite_differences(cfg, weights, batch, fd_names(cfg))


# ---------------------------------------------------------------- CLI

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name")
    p.add_argument("--out")
    p.add_argument("--all", action="store_true", help="regenerate the committed fixtures")
    p.add_argument("--seed", type=int, default=0)
    defaults = CAEConfig()
    for field in FLAG_ORDER:
        value = getattr(defaults, field)
        p.add_argument("--" + field, type=type(value), default=value)
    p.add_argument("--discrete_vae_type", choices=("dall-e", "pixel"), default="dall-e",
                   help="target: DALL-E tokens (labels, cross-entropy) or the masked "
                        "patches' pixels (MSE; decoder_num_classes becomes 3*P*P)")
    p.add_argument("--norm_pix_loss", action="store_true",
                   help="pixel target: normalize each target patch (biased variance, eps 1e-6)")
    args = p.parse_args(argv)
    if not args.all and not (args.name and args.out):
        p.error("--name and --out are required unless --all")
    if args.norm_pix_loss and args.discrete_vae_type != "pixel":
        p.error("--norm_pix_loss needs --discrete_vae_type pixel")
    return args


def main(argv=None):
    torch.set_num_threads(1)  # deterministic float64 reductions
    args = parse_args(argv)
    try:
        if args.all:
            out = args.out or os.path.join(REPO_ROOT, "tests", "fixtures")
            for name, (seed, over) in COMMITTED.items():
                cfg = CAEConfig(**over)
                weights, batch, expected = write_fixture(out, name, cfg, seed)
                self_check(name, cfg, weights, batch, expected,
                           finite_differences=name in FD_FIXTURES)
        else:
            cfg = CAEConfig(discrete_vae_type=args.discrete_vae_type,
                            norm_pix_loss=args.norm_pix_loss,
                            **{f: getattr(args, f) for f in FLAG_ORDER})
            weights, batch, expected = write_fixture(args.out, args.name, cfg, args.seed)
            self_check(args.name, cfg, weights, batch, expected,
                       finite_differences=cfg.num_patches * cfg.embed_dim <= 4096)
    except CheckFailed as e:
        print("SELF-CHECK FAILED: %s" % e, file=sys.stderr)
        return 1
    print("all self-checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
