#!/usr/bin/python3
"""Write the AdamW and schedule fixtures (tests/fixtures/adamw/).

    adamw_reference.py [--out DIR]

adamw.safetensors: a small fake model (2-D and 4-D weights, a 3-D token,
biases, norms, a layer scale) under torch.optim.AdamW with two parameter
groups (weight_decay 0 for 1-D tensors and biases, the official rule),
after torch.nn.utils.clip_grad_norm_, over three steps with lr and weight
decay from the official cosine_scheduler. Tensors:
  param/<name>                      initial parameters (F32)
  grad/<k>/<name>                   gradients fed at step k (before clipping)
  lr, weight_decay                  F64 [3], the schedule values used
  <run>/grad_norm                   F32 [3], clip_grad_norm_'s total norm
  <run>/<k>/{param,exp_avg,exp_avg_sq,grad}/<name>
                                    state after step k; grad is the gradient
                                    as the step left it (clipped in place)
Runs: "clip" (clip_grad below the norm at steps 0 and 2, above it at step
1; betas 0.9/0.999, eps 1e-8) and "noclip" (no clipping; betas 0.85/0.98,
eps 1e-6; only its last step is stored). Metadata: params (names in model
order), the hyperparameters, the schedules' arguments.

schedules.safetensors: schedule/<case> F64 arrays from cosine_scheduler,
with metadata schedule/<case> = "base final epochs niter_per_ep
warmup_epochs warmup_steps start_warmup_value".

Deterministic (fixed seed, one thread). Self-check: an independent float64
numpy AdamW + clipping agrees with torch within 1e-5 (relative L2).
"""

import argparse
import math
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_FILE_BYTES = 1 << 20

# model order; sizes keep every tensor under 1024 elements so a 4 KiB chunk
# limit splits the arena into several buffers
MODEL = [
    ("cls_token", (1, 1, 16)),
    ("patch_embed.proj.weight", (16, 3, 2, 2)),
    ("patch_embed.proj.bias", (16,)),
    ("blocks.0.norm1.weight", (16,)),
    ("blocks.0.norm1.bias", (16,)),
    ("blocks.0.attn.qkv.weight", (48, 16)),
    ("blocks.0.attn.q_bias", (16,)),
    ("blocks.0.attn.v_bias", (16,)),
    ("blocks.0.attn.proj.weight", (16, 16)),
    ("blocks.0.attn.proj.bias", (16,)),
    ("blocks.0.gamma_1", (16,)),
    ("blocks.0.mlp.fc1.weight", (37, 16)),
    ("blocks.0.mlp.fc1.bias", (37,)),
    ("blocks.0.mlp.fc2.weight", (16, 37)),
    ("blocks.0.mlp.fc2.bias", (16,)),
    ("mask_token", (1, 1, 16)),
    ("norm.weight", (16,)),
    ("norm.bias", (16,)),
    ("head.weight", (23, 16)),
    ("head.bias", (23,)),
]

STEPS = 3
CLIP = 1.0
GRAD_SCALE = [0.05, 0.005, 0.03]  # norms ~3, ~0.3, ~2: clipping on, off, on
LR_ARGS = (1e-2, 1e-3, 2, 2, 1, -1, 1e-3)  # warmup linspace(1e-3, 1e-2, 2)
WD_ARGS = (0.3, 0.1, 2, 2, 0, -1, 0.0)
RUNS = {
    "clip": dict(clip=CLIP, betas=(0.9, 0.999), eps=1e-8),
    "noclip": dict(clip=None, betas=(0.85, 0.98), eps=1e-6),
}

SCHEDULES = {
    # the default CAE lr: warmup from 0 over whole epochs
    "lr": (1.5e-3, 1e-5, 3, 7, 1, -1, 0.0),
    # warmup_steps overrides warmup_epochs; increasing, like weight decay
    "steps": (0.05, 0.2, 4, 5, 1, 3, 1e-6),
    "const": (0.05, 0.05, 2, 9, 0, -1, 0.0),
    # one warmup step: numpy's linspace of one sample is the start value
    "one": (1e-3, 1e-4, 2, 3, 1, 1, 5e-4),
    # start == base: a zero linspace step
    "flat_warmup": (2e-3, 1e-6, 3, 4, 2, -1, 2e-3),
    "long": (1.5e-3, 1e-5, 300, 5, 20, -1, 0.0),
}


def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0,
                     start_warmup_value=0, warmup_steps=-1):
    """The official utils.cosine_scheduler (BEiT/CAE), same arithmetic."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_steps > 0:
        warmup_iters = warmup_steps
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = np.array(
        [final_value + 0.5 * (base_value - final_value) * (1 + math.cos(math.pi * i / (len(iters))))
         for i in iters])
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


def schedule_of(args):
    base, final, epochs, niter, warm_ep, warm_steps, start = args
    return cosine_scheduler(base, final, epochs, niter, warmup_epochs=warm_ep,
                            start_warmup_value=start, warmup_steps=warm_steps)


def decays(name, shape):
    """The official rule: no weight decay for 1-D tensors and biases."""
    return len(shape) >= 2 and not name.endswith(".bias")


def make_inputs():
    gen = torch.Generator().manual_seed(1234)
    params, grads = {}, [dict() for _ in range(STEPS)]
    for i, (name, shape) in enumerate(MODEL):
        if name.endswith("norm1.weight") or name == "norm.weight":
            p = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            p = 0.5 * torch.randn(shape, generator=gen)
        params[name] = p.float()
        for k in range(STEPS):
            # per-tensor scales spread over a decade, some tensors noisier
            scale = GRAD_SCALE[k] * (0.3 + (i % 5) * 0.4)
            grads[k][name] = (scale * torch.randn(shape, generator=gen)).float()
    return params, grads


def run_torch(params0, grads, lrs, wds, clip, betas, eps):
    params = {n: torch.nn.Parameter(params0[n].clone()) for n, _ in MODEL}
    decay = [params[n] for n, s in MODEL if decays(n, s)]
    no_decay = [params[n] for n, s in MODEL if not decays(n, s)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wds[0]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lrs[0], betas=betas, eps=eps, foreach=False)
    out = []
    for k in range(STEPS):
        for n, _ in MODEL:
            params[n].grad = grads[k][n].clone()
        plist = [params[n] for n, _ in MODEL]
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(plist, clip)
        else:  # the official engine still measures it (get_grad_norm_)
            norm = torch.norm(torch.stack([torch.norm(p.grad.detach(), 2.0) for p in plist]), 2.0)
        for g in opt.param_groups:  # as the official engine sets them per step
            g["lr"] = lrs[k]
            if g["weight_decay"] > 0:
                g["weight_decay"] = wds[k]
        opt.step()
        state = {"grad_norm": float(norm)}
        for n, _ in MODEL:
            p = params[n]
            st = opt.state[p]
            state["param/" + n] = p.detach().clone().numpy()
            state["exp_avg/" + n] = st["exp_avg"].clone().numpy()
            state["exp_avg_sq/" + n] = st["exp_avg_sq"].clone().numpy()
            state["grad/" + n] = p.grad.detach().clone().numpy()
        out.append(state)
    return out


def run_numpy(params0, grads, lrs, wds, clip, betas, eps):
    """Independent float64 AdamW with clipping, for the self-check."""
    p = {n: params0[n].double().numpy().copy() for n, _ in MODEL}
    m = {n: np.zeros_like(p[n]) for n in p}
    v = {n: np.zeros_like(p[n]) for n in p}
    b1, b2 = betas
    out = []
    for k in range(STEPS):
        g = {n: grads[k][n].double().numpy().copy() for n, _ in MODEL}
        total = math.sqrt(sum(float((g[n] ** 2).sum()) for n in g))
        if clip is not None:
            coef = clip / (total + 1e-6)
            if coef < 1:
                g = {n: g[n] * coef for n in g}
        t = k + 1
        for n, shape in MODEL:
            wd = wds[k] if decays(n, shape) else 0.0
            p[n] *= 1 - lrs[k] * wd
            m[n] = b1 * m[n] + (1 - b1) * g[n]
            v[n] = b2 * v[n] + (1 - b2) * g[n] ** 2
            mhat = m[n] / (1 - b1 ** t)
            denom = np.sqrt(v[n]) / math.sqrt(1 - b2 ** t) + eps
            p[n] -= lrs[k] * mhat / denom
        state = {"grad_norm": total}
        for n, _ in MODEL:
            state["param/" + n] = p[n].copy()
            state["exp_avg/" + n] = m[n].copy()
            state["exp_avg_sq/" + n] = v[n].copy()
        out.append(state)
    return out


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def self_check(torch_states, numpy_states, run):
    worst = 0.0
    for k, (ts, ns) in enumerate(zip(torch_states, numpy_states)):
        for key, want in ns.items():
            err = rel_l2(ts[key], want)
            worst = max(worst, err)
            if err > 1e-5:
                sys.exit("self-check failed: %s step %d %s: relative L2 %.3g" % (run, k, key, err))
    print("%s: torch vs float64 numpy, worst relative L2 %.2e" % (run, worst))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "adamw"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    lrs = [float(x) for x in schedule_of(LR_ARGS)[:STEPS]]
    wds = [float(x) for x in schedule_of(WD_ARGS)[:STEPS]]
    params0, grads = make_inputs()
    tensors = {"lr": np.array(lrs, dtype=np.float64),
               "weight_decay": np.array(wds, dtype=np.float64)}
    for n, _ in MODEL:
        tensors["param/" + n] = params0[n].numpy()
        for k in range(STEPS):
            tensors["grad/%d/%s" % (k, n)] = grads[k][n].numpy()
    meta = {
        "params": ",".join(n for n, _ in MODEL),
        "steps": str(STEPS),
        "lr_schedule": " ".join(repr(x) for x in LR_ARGS),
        "wd_schedule": " ".join(repr(x) for x in WD_ARGS),
    }
    for run, h in RUNS.items():
        states = run_torch(params0, grads, lrs, wds, h["clip"], h["betas"], h["eps"])
        self_check(states, run_numpy(params0, grads, lrs, wds, h["clip"], h["betas"], h["eps"]), run)
        norms = [s["grad_norm"] for s in states]
        if run == "clip":  # the fixture must exercise both branches
            active = [CLIP / (x + 1e-6) < 1 for x in norms]
            if active != [True, False, True]:
                sys.exit("clipping pattern %s, want active, inactive, active" % active)
        print("%s: grad norms %s" % (run, " ".join("%.4f" % x for x in norms)))
        tensors[run + "/grad_norm"] = np.array(norms, dtype=np.float32)
        kept = range(STEPS) if run == "clip" else [STEPS - 1]
        for k in kept:
            for key, val in states[k].items():
                if key != "grad_norm":
                    tensors["%s/%d/%s" % (run, k, key)] = np.asarray(val, dtype=np.float32)
        meta[run] = "clip %s betas %r %r eps %r" % (
            repr(h["clip"]) if h["clip"] is not None else "0", h["betas"][0], h["betas"][1], h["eps"])
    path = os.path.join(args.out, "adamw.safetensors")
    safetensors_io.save(path, tensors, meta)

    sched, smeta = {}, {}
    for case, sargs in SCHEDULES.items():
        sched["schedule/" + case] = schedule_of(sargs).astype(np.float64)
        smeta["schedule/" + case] = " ".join(repr(x) for x in sargs)
    spath = os.path.join(args.out, "schedules.safetensors")
    safetensors_io.save(spath, sched, smeta)

    for p in (path, spath):
        size = os.path.getsize(p)
        if size > MAX_FILE_BYTES:
            sys.exit("%s is %d bytes, over the fixture limit" % (p, size))
        print("wrote %s (%d bytes)" % (p, size))


if __name__ == "__main__":
    main()
