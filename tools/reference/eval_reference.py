#!/usr/bin/python3
"""Write the evaluation heads' fixtures (tests/fixtures/eval/).

    eval_reference.py [--out DIR]

Inputs are float32; every expected value is computed by torch in float64
from those inputs and stored as float32.

bn.safetensors: BatchNorm1d(affine=False) in training mode, one step from
running statistics (0, 1) with momentum 0.1, for eps 1e-6 (the linear
probe's, MAE's run_linear.py) and 1e-5 (the attentive probe's LP_BatchNorm):
  x, dy [12, 7]; <eps>/y, <eps>/dx, <eps>/running_mean, <eps>/running_var,
  <eps>/y_eval (evaluation mode with the updated running statistics).

lars.safetensors: two steps of the official LARS (MAE/CAE util/lars.py,
re-typed below) with weight decay 0.05, lr 0.3 then 0.2, momentum 0.9,
trust 0.001 on a 2-D weight and a 1-D bias (1-D: no decay, no trust ratio):
  param/<name>, grad/<k>/<name>, after/<k>/{param,mu}/<name>.

sgd.safetensors: three steps of torch.optim.SGD with momentum 0.9 and the
official parameter groups (weight decay 0.05 on tensors with 2+ dims whose
name does not end in .bias, 0 on the rest), lr 0.5, 0.3, 0.1; runs
"nesterov" (--opt sgd) and "plain" (--opt momentum):
  param/<name>, grad/<k>/<name>, <run>/<k>/{param,buf}/<name>.

attentive.safetensors: the official attentive probe's trainable part (CAE
models/modeling_finetune.py: AttentiveBlock + CrossAttention with pos 0,
LP_BatchNorm(affine=False) in training mode, head) on tokens x [5, 7, 12],
3 heads, 4 classes, mean cross-entropy against labels:
  x, labels (I32), param/<official key>; loss [1], logits [5, 4],
  grad/<official key>, running_mean, running_var, logits_eval (evaluation
  mode with the updated running statistics).
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def rand(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def d64(a):
    return torch.tensor(np.asarray(a, dtype=np.float32), dtype=torch.float64)


def batchnorm(rng):
    out = {}
    x = rand(rng, 12, 7, lo=-2, hi=3) * np.linspace(0.5, 3, 7, dtype=np.float32)
    dy = rand(rng, 12, 7)
    out["x"], out["dy"] = x, dy
    for name, eps in (("eps6", 1e-6), ("eps5", 1e-5)):
        xt = d64(x).requires_grad_(True)
        rm = torch.zeros(7, dtype=torch.float64)
        rv = torch.ones(7, dtype=torch.float64)
        y = F.batch_norm(xt, rm, rv, None, None, True, 0.1, eps)
        y.backward(d64(dy))
        out[name + "/y"] = f32(y)
        out[name + "/dx"] = f32(xt.grad)
        out[name + "/running_mean"] = f32(rm)
        out[name + "/running_var"] = f32(rv)
        out[name + "/y_eval"] = f32(F.batch_norm(d64(x), rm, rv, None, None, False, 0.1, eps))
    return out


class LARS(torch.optim.Optimizer):
    """MAE's util/lars.py (CAE ships the same), re-typed."""

    def __init__(self, params, lr=0, weight_decay=0, momentum=0.9, trust_coefficient=0.001):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                        trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim > 1:  # if not normalization gamma/beta or bias
                    dp = dp.add(p, alpha=g["weight_decay"])
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.,
                                    torch.where(update_norm > 0,
                                                (g["trust_coefficient"] * param_norm / update_norm),
                                                one), one)
                    dp = dp.mul(q)
                param_state = self.state[p]
                if "mu" not in param_state:
                    param_state["mu"] = torch.zeros_like(p)
                mu = param_state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


def lars(rng):
    out = {}
    shapes = {"head.weight": (5, 8), "head.bias": (5,)}
    params = {}
    for name, shape in shapes.items():
        out["param/" + name] = rand(rng, *shape, lo=-0.5, hi=0.5)
        params[name] = d64(out["param/" + name]).requires_grad_(True)
    opt = LARS(list(params.values()), lr=0.3, weight_decay=0.05)
    for k, lr in enumerate((0.3, 0.2)):
        for g in opt.param_groups:
            g["lr"] = lr
        for name, shape in shapes.items():
            grad = rand(rng, *shape, lo=-0.2, hi=0.2)
            out["grad/%d/%s" % (k, name)] = grad
            params[name].grad = d64(grad)
        opt.step()
        for name, p in params.items():
            out["after/%d/param/%s" % (k, name)] = f32(p)
            out["after/%d/mu/%s" % (k, name)] = f32(opt.state[p]["mu"])
    return out


SGD_SHAPES = {"query_token": (1, 1, 6), "cross_attn.q.weight": (6, 6),
              "cross_attn.q_bias": (6,), "head.bias": (3,)}


def sgd(rng):
    out = {}
    for name, shape in SGD_SHAPES.items():
        out["param/" + name] = rand(rng, *shape, lo=-0.5, hi=0.5)
    grads = [{name: rand(rng, *shape, lo=-0.3, hi=0.3) for name, shape in SGD_SHAPES.items()}
             for _ in range(3)]
    for k, g in enumerate(grads):
        for name, v in g.items():
            out["grad/%d/%s" % (k, name)] = v
    for run, nesterov in (("nesterov", True), ("plain", False)):
        params = {n: d64(out["param/" + n]).requires_grad_(True) for n in SGD_SHAPES}
        # the official get_parameter_groups
        decay = [p for n, p in params.items() if not (p.ndim == 1 or n.endswith(".bias"))]
        no_decay = [p for n, p in params.items() if p.ndim == 1 or n.endswith(".bias")]
        opt = torch.optim.SGD([{"params": decay, "weight_decay": 0.05},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=0.5, momentum=0.9, nesterov=nesterov)
        for k, lr in enumerate((0.5, 0.3, 0.1)):
            for grp in opt.param_groups:
                grp["lr"] = lr
            for n, p in params.items():
                p.grad = d64(grads[k][n])
            opt.step()
            for n, p in params.items():
                out["%s/%d/param/%s" % (run, k, n)] = f32(p)
                out["%s/%d/buf/%s" % (run, k, n)] = f32(opt.state[p]["momentum_buffer"])
    return out


def cross_attention(x, k, v, P, H):
    """CAE's CrossAttention.forward with qkv_bias (keys: zeros)."""
    B, N, C = x.shape
    q = F.linear(x, P["cross_attn.q.weight"], P["cross_attn.q_bias"])
    q = q.reshape(B, N, 1, H, -1).permute(2, 0, 3, 1, 4).squeeze(0)
    kk = F.linear(k, P["cross_attn.k.weight"], torch.zeros_like(P["cross_attn.v_bias"]))
    kk = kk.reshape(B, k.shape[1], 1, H, -1).permute(2, 0, 3, 1, 4).squeeze(0)
    vv = F.linear(v, P["cross_attn.v.weight"], P["cross_attn.v_bias"])
    vv = vv.reshape(B, v.shape[1], 1, H, -1).permute(2, 0, 3, 1, 4).squeeze(0)
    q = q * (C // H) ** -0.5
    attn = (q @ kk.transpose(-2, -1)).softmax(dim=-1)
    out = (attn @ vv).transpose(1, 2).reshape(B, N, -1)
    return F.linear(out, P["cross_attn.proj.weight"], P["cross_attn.proj.bias"])


def attentive_block(x_q, x_kv, pos_q, pos_k, P, H):
    """CAE's AttentiveBlock.forward (no residual, no MLP)."""
    C = x_q.shape[-1]
    x_q = F.layer_norm(x_q + pos_q, (C,), P["norm1_q.weight"], P["norm1_q.bias"], 1e-6)
    x_k = F.layer_norm(x_kv + pos_k, (C,), P["norm1_k.weight"], P["norm1_k.bias"], 1e-6)
    x_v = F.layer_norm(x_kv, (C,), P["norm1_v.weight"], P["norm1_v.bias"], 1e-6)
    return cross_attention(x_q, x_k, x_v, P, H)


def attentive(rng):
    B, T, D, H, K = 5, 7, 12, 3, 4
    out = {}
    x = rand(rng, B, T, D, lo=-2, hi=2)
    labels = np.array([1, 3, 0, 3, 2], dtype=np.int32)
    out["x"], out["labels"] = x, labels
    shapes = {"query_token": (1, 1, D), "head.weight": (K, D), "head.bias": (K,)}
    blk = "attentive_blocks.0."
    for n in ("norm1_q", "norm1_k", "norm1_v"):
        shapes[blk + n + ".weight"] = (D,)
        shapes[blk + n + ".bias"] = (D,)
    for n in ("q", "k", "v", "proj"):
        shapes[blk + "cross_attn.%s.weight" % n] = (D, D)
    for n in ("cross_attn.q_bias", "cross_attn.v_bias", "cross_attn.proj.bias"):
        shapes[blk + n] = (D,)
    params = {}
    for name, shape in shapes.items():
        if name.endswith("norm1_q.weight") or name.endswith("norm1_k.weight") or \
                name.endswith("norm1_v.weight"):
            v = 1.0 + rand(rng, *shape, lo=-0.3, hi=0.3)
        elif len(shape) == 2 and name != "head.weight":
            v = rand(rng, *shape, lo=-0.4, hi=0.4)
        else:
            v = rand(rng, *shape, lo=-0.5, hi=0.5)
        out["param/" + name] = v
        params[name] = d64(v).requires_grad_(True)
    P = {n[len(blk):]: p for n, p in params.items() if n.startswith(blk)}
    xt = d64(x)
    rm = torch.zeros(D, dtype=torch.float64)
    rv = torch.ones(D, dtype=torch.float64)

    def forward(training):
        query = params["query_token"].expand(B, -1, -1)
        q = attentive_block(query, xt, 0, 0, P, H)
        f = q[:, 0, :]
        y = F.batch_norm(f, rm, rv, None, None, training, 0.1, 1e-5)
        return F.linear(y, params["head.weight"], params["head.bias"])

    logits = forward(True)
    loss = F.cross_entropy(logits, torch.tensor(labels, dtype=torch.long))
    loss.backward()
    out["loss"] = f32(loss.reshape(1))
    out["logits"] = f32(logits)
    for name, p in params.items():
        out["grad/" + name] = f32(p.grad)
    out["running_mean"] = f32(rm)
    out["running_var"] = f32(rv)
    with torch.no_grad():
        out["logits_eval"] = f32(forward(False))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "eval"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20260529)
    for name, make in (("bn", batchnorm), ("lars", lars), ("sgd", sgd), ("attentive", attentive)):
        path = os.path.join(args.out, name + ".safetensors")
        safetensors_io.save(path, make(rng), {"generator": "tools/reference/eval_reference.py"})
        print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
