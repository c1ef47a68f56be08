"""PyTorch reference of one CAE fine-tuning step -> tests/fixtures/finetune/.

The model is the official modeling_finetune.VisionTransformer with
use_mean_pooling and fixed sin-cos positions: patch embedding, cls token,
the blocks of cae_reference (layer scale, q/v biases), the mean of the patch
tokens (cls excluded), fc_norm (LayerNorm eps 1e-6) and the head. Drop path
is off. The loss is timm's SoftTargetCrossEntropy against soft targets that
mix two label-smoothed one-hots (what mixup with --smoothing produces).

The parameter groups are built as the official optim_factory
get_parameter_groups with LayerDecayValueAssigner (run_class_finetuning.py),
and one torch.optim.AdamW step over those groups (lr = base * lr_scale) is
taken from the float32 weights with the float32 gradients.

Written (step.safetensors): input.images [B,3,S,S], input.targets [B,K],
param.<name> (float32 weights), out.logits, out.loss, grad.<name> (computed
in float64, stored float32), lr_scale.<name>, decay.<name> (1 or 0) and
adamw.<name> (the weights after the step); the sizes and hyperparameters in
the metadata. Run: /usr/bin/python3 tools/reference/finetune_reference.py
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cae_reference import Block, PatchEmbed, layer_norm, sincos_table  # noqa: E402
import safetensors_io  # noqa: E402

CFG = dict(input_size=12, patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=4.0,
           layer_scale_init_value=0.1, nb_classes=5, batch_size=3, smoothing=0.1)
OPT = dict(lr=1e-3, layer_decay=0.75, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8)


class VisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, grid = c["embed_dim"], c["input_size"] // c["patch_size"]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        # fixed (sin_pos_emb): not a parameter, no group
        self.register_buffer("pos_embed", sincos_table(grid, D).float())
        self.patch_embed = PatchEmbed(c["patch_size"], D)
        self.blocks = nn.ModuleList([Block(D, c["num_heads"], c["mlp_ratio"],
                                           c["layer_scale_init_value"])
                                     for _ in range(c["depth"])])
        self.fc_norm = layer_norm(D)
        self.head = nn.Linear(D, c["nb_classes"])

    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}

    def get_num_layers(self):
        return len(self.blocks)

    def forward(self, x):
        x = self.patch_embed(x)
        B, N, D = x.shape
        x = x + self.pos_embed[:, 1:].to(x.dtype)
        cls = (self.cls_token + self.pos_embed[:, :1].to(x.dtype)).expand(B, 1, D)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.fc_norm(x[:, 1:].mean(1)))


# ---- the official parameter groups (optim_factory.py) ----

def get_num_layer_for_vit(var_name, num_max_layer):
    if var_name in ("cls_token", "mask_token", "pos_embed"):
        return 0
    elif var_name.startswith("patch_embed"):
        return 0
    elif var_name.startswith("rel_pos_bias"):
        return num_max_layer - 1
    elif var_name.startswith("blocks"):
        layer_id = int(var_name.split('.')[1])
        return layer_id + 1
    else:
        return num_max_layer - 1


class LayerDecayValueAssigner(object):
    def __init__(self, values):
        self.values = values

    def get_scale(self, layer_id):
        return self.values[layer_id]

    def get_layer_id(self, var_name):
        return get_num_layer_for_vit(var_name, len(self.values))


def get_parameter_groups(model, weight_decay, skip_list, get_num_layer, get_layer_scale):
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if len(param.shape) == 1 or name.endswith(".bias") or name in skip_list:
            group_name, this_wd = "no_decay", 0.
        else:
            group_name, this_wd = "decay", weight_decay
        layer_id = get_num_layer(name)
        group_name = "layer_%d_%s" % (layer_id, group_name)
        if group_name not in groups:
            groups[group_name] = {"weight_decay": this_wd, "params": [], "names": [],
                                  "lr_scale": get_layer_scale(layer_id)}
        groups[group_name]["params"].append(param)
        groups[group_name]["names"].append(name)
    return list(groups.values())


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "finetune")
    os.makedirs(out_dir, exist_ok=True)
    c = CFG
    rng = np.random.default_rng(20261129)
    torch.manual_seed(0)
    B, K, S = c["batch_size"], c["nb_classes"], c["input_size"]

    model32 = VisionTransformer(c)
    # random weights everywhere (biases, gammas and norms too, so every
    # gradient path is exercised), float32-representable
    weights = {}
    for name, p in model32.named_parameters():
        scale = 0.3 if p.dim() >= 2 else 0.2
        w = rng.standard_normal(p.shape) * scale
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "fc_norm.weight":
            w = 1.0 + w
        weights[name] = w.astype(np.float32)
    with torch.no_grad():
        for name, p in model32.named_parameters():
            p.copy_(torch.from_numpy(weights[name]))

    images = rng.standard_normal((B, 3, S, S)).astype(np.float32)
    y1 = rng.integers(0, K, B)
    y2 = rng.integers(0, K, B)
    lam = 0.7
    off = c["smoothing"] / K
    on = 1.0 - c["smoothing"] + off
    t1 = np.full((B, K), off)
    t1[np.arange(B), y1] = on
    t2 = np.full((B, K), off)
    t2[np.arange(B), y2] = on
    targets = (lam * t1 + (1 - lam) * t2).astype(np.float32)

    # the step in float64
    model64 = VisionTransformer(c).double()
    model64.load_state_dict(model32.state_dict())
    logits = model64(torch.from_numpy(images).double())
    loss = torch.sum(-torch.from_numpy(targets).double() * F.log_softmax(logits, dim=-1),
                     dim=-1).mean()
    loss.backward()
    grads = {n: p.grad.detach().numpy() for n, p in model64.named_parameters()}

    # finite-difference spot check of the reference itself
    name = "blocks.0.attn.q_bias"
    p = dict(model64.named_parameters())[name]
    h = 1e-6
    with torch.no_grad():
        p[1] += h
        lp = torch.sum(-torch.from_numpy(targets).double() *
                       F.log_softmax(model64(torch.from_numpy(images).double()), -1), -1).mean()
        p[1] -= 2 * h
        lm = torch.sum(-torch.from_numpy(targets).double() *
                       F.log_softmax(model64(torch.from_numpy(images).double()), -1), -1).mean()
        p[1] += h
    fd = (lp - lm).item() / (2 * h)
    assert abs(fd - grads[name][1]) <= 1e-6 * max(1.0, abs(fd)), (fd, grads[name][1])

    # the official parameter groups and one AdamW step (float32)
    num_layers = model32.get_num_layers()
    assigner = LayerDecayValueAssigner(
        list(OPT["layer_decay"] ** (num_layers + 1 - i) for i in range(num_layers + 2)))
    groups = get_parameter_groups(model32, OPT["weight_decay"], model32.no_weight_decay(),
                                  assigner.get_layer_id, assigner.get_scale)
    lr_scale, decay = {}, {}
    for g in groups:
        for n in g["names"]:
            lr_scale[n] = g["lr_scale"]
            decay[n] = 1.0 if g["weight_decay"] > 0 else 0.0
    for n, p in model32.named_parameters():
        p.grad = torch.from_numpy(grads[n].astype(np.float32))
    opt = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"],
                              "lr": OPT["lr"] * g["lr_scale"]} for g in groups],
                            lr=OPT["lr"], betas=OPT["betas"], eps=OPT["eps"])
    opt.step()

    out = {"input.images": images, "input.targets": targets,
           "out.logits": logits.detach().numpy().astype(np.float32),
           "out.loss": np.array([loss.item()], dtype=np.float64)}
    for n, p in model32.named_parameters():
        out["param." + n] = weights[n]
        out["grad." + n] = grads[n].astype(np.float64)
        out["lr_scale." + n] = np.array([lr_scale[n]], dtype=np.float64)
        out["decay." + n] = np.array([decay[n]], dtype=np.float64)
        out["adamw." + n] = p.detach().numpy().astype(np.float32)
    meta = {k: str(v) for k, v in c.items()}
    meta.update({"opt_" + k: str(v) for k, v in OPT.items() if k != "betas"})
    meta["n_params"] = str(len(list(model32.parameters())))
    safetensors_io.save(os.path.join(out_dir, "step.safetensors"), out, meta)
    print("wrote %s: loss %.6f, %d tensors" % (out_dir, loss.item(), len(weights)))


if __name__ == "__main__":
    main()
