"""PyTorch reference of one CAE training step (src/model/DESIGN.md section 1).

Two targets for the decoder head: "dall-e" (default) classifies each masked
patch into a tokenizer vocabulary with cross-entropy against given labels;
"pixel" regresses each masked patch's pixels (taken from the normalized model
input, flattened (channel, y, x) like the patch embedding) with a head of
3*P*P outputs and MSE, optionally normalizing each target patch
(norm_pix_loss: LayerNorm without affine, biased variance, eps 1e-6).

Owns the model definition used to write conformance fixtures. Module and
parameter names reproduce the official state_dict keys exactly, so
`model.state_dict()` is the tensor table a checkpoint holds. No dropout, no
drop-path: the step is deterministic.
"""

from dataclasses import dataclass, asdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-6


@dataclass
class CAEConfig:
    input_size: int = 8
    patch_size: int = 4
    embed_dim: int = 16
    depth: int = 1
    num_heads: int = 2
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 16
    regressor_depth: int = 1
    decoder_depth: int = 1
    decoder_num_heads: int = 2
    decoder_num_classes: int = 24
    layer_scale_init_value: float = 0.1
    decoder_layer_scale_init_value: float = 0.1
    align_loss_weight: float = 2.0
    batch_size: int = 2
    num_mask_patches: int = 2
    discrete_vae_type: str = "dall-e"   # or "pixel"
    norm_pix_loss: bool = False          # pixel target only

    def __post_init__(self):
        # the pixel head predicts each masked patch's pixels: decoder_num_classes is ignored
        if self.pixel_target:
            self.decoder_num_classes = self.pixel_dim

    @property
    def pixel_target(self):
        return self.discrete_vae_type == "pixel"

    @property
    def pixel_dim(self):
        return 3 * self.patch_size * self.patch_size

    @property
    def grid(self):
        return self.input_size // self.patch_size

    @property
    def num_patches(self):
        return self.grid * self.grid

    def validate(self):
        assert self.input_size % self.patch_size == 0, "input_size % patch_size"
        assert self.embed_dim % 4 == 0 and self.decoder_embed_dim % 4 == 0, \
            "sin-cos tables need widths divisible by 4"
        assert self.embed_dim % self.num_heads == 0
        assert self.decoder_embed_dim % self.decoder_num_heads == 0
        assert 0 < self.num_mask_patches < self.num_patches
        assert self.discrete_vae_type in ("dall-e", "pixel"), self.discrete_vae_type
        assert not self.norm_pix_loss or self.pixel_target, "--norm_pix_loss needs pixel target"
        assert not self.pixel_target or self.decoder_num_classes == self.pixel_dim

    def as_dict(self):
        return asdict(self)


def sincos_table(grid, width):
    """Fixed 2-D sin-cos table [1, grid*grid + 1, width], float64, cls row zeros.

    Row r = n // grid fills the first half, column c = n % grid the second.
    """
    f = width // 4
    omega = 1.0 / np.power(10000.0, np.arange(f, dtype=np.float64) / f)
    n = np.arange(grid * grid)
    rows = (n // grid).astype(np.float64)[:, None] * omega[None, :]
    cols = (n % grid).astype(np.float64)[:, None] * omega[None, :]
    table = np.concatenate([np.sin(rows), np.cos(rows), np.sin(cols), np.cos(cols)], axis=1)
    table = np.concatenate([np.zeros((1, width)), table], axis=0)
    return torch.from_numpy(table[None])


def patchify(samples, patch):
    """[B,3,S,S] -> [B,N,3*P*P]: patches in raster order, each flattened
    (channel, y, x) exactly as the patch embedding's Conv2d weight is."""
    B, C, S, _ = samples.shape
    G = S // patch
    x = samples.reshape(B, C, G, patch, G, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, G * G, C * patch * patch)


def pixel_target(samples, mask, patch, norm_pix_loss):
    """Target rows [B*M, 3*P*P] of the masked patches (raster order per sample)."""
    t = patchify(samples, patch)[mask]
    if norm_pix_loss:
        mean = t.mean(dim=-1, keepdim=True)
        var = t.var(dim=-1, unbiased=False, keepdim=True)   # biased, as LayerNorm
        t = (t - mean) / torch.sqrt(var + LN_EPS)
    return t


def layer_norm(dim):
    return nn.LayerNorm(dim, eps=LN_EPS)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        # approximate='none' is the exact erf GELU
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Self-attention: qkv linear without bias, plus [q_bias, 0, v_bias]."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        dh = C // self.heads
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(B, T, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                 # [B, H, T, dh]
        att = torch.softmax((q * dh ** -0.5) @ k.transpose(-2, -1), dim=-1)
        out = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm transformer block; gammas exist only when init value > 0."""

    def __init__(self, dim, heads, mlp_ratio, ls_init):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if ls_init > 0:
            self.gamma_1 = nn.Parameter(ls_init * torch.ones(dim))
            self.gamma_2 = nn.Parameter(ls_init * torch.ones(dim))
        else:
            self.gamma_1 = None
            self.gamma_2 = None

    def forward(self, x):
        a = self.attn(self.norm1(x))
        if self.gamma_1 is not None:
            a = self.gamma_1 * a
        x = x + a
        m = self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            m = self.gamma_2 * m
        return x + m


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        # [B,3,S,S] -> [B,N,D], patches in raster order
        return self.proj(x).flatten(2).transpose(1, 2)


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.register_buffer("pos_embed", sincos_table(cfg.grid, D).float())
        self.patch_embed = PatchEmbed(cfg.patch_size, D)
        self.blocks = nn.ModuleList(
            [Block(D, cfg.num_heads, cfg.mlp_ratio, cfg.layer_scale_init_value)
             for _ in range(cfg.depth)])
        self.norm = layer_norm(D)

    def forward(self, samples, select):
        """Run on [cls, patches where select is True] -> [B, 1 + count, D]."""
        x = self.patch_embed(samples)
        B, N, D = x.shape
        pos = self.pos_embed[:, 1:].expand(B, N, D)
        x = (x[select] + pos[select]).reshape(B, -1, D)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(B, 1, D)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class CrossAttention(nn.Module):
    """q, k, v linears without bias; q gets q_bias, v gets v_bias, k nothing."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, xq, xk, xv):
        B, Tq, C = xq.shape
        Tk = xk.shape[1]
        dh = C // self.heads
        q = F.linear(xq, self.q.weight, self.q_bias).reshape(B, Tq, self.heads, dh).transpose(1, 2)
        k = F.linear(xk, self.k.weight).reshape(B, Tk, self.heads, dh).transpose(1, 2)
        v = F.linear(xv, self.v.weight, self.v_bias).reshape(B, Tk, self.heads, dh).transpose(1, 2)
        att = torch.softmax((q * dh ** -0.5) @ k.transpose(-2, -1), dim=-1)
        out = (att @ v).transpose(1, 2).reshape(B, Tq, C)
        return self.proj(out)


class RegressorBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, ls_init):
        super().__init__()
        self.norm1_q = layer_norm(dim)
        self.norm1_k = layer_norm(dim)
        self.norm1_v = layer_norm(dim)
        self.norm2_cross = layer_norm(dim)
        self.cross_attn = CrossAttention(dim, heads)
        self.mlp_cross = Mlp(dim, int(dim * mlp_ratio))
        if ls_init > 0:
            self.gamma_1_cross = nn.Parameter(ls_init * torch.ones(dim))
            self.gamma_2_cross = nn.Parameter(ls_init * torch.ones(dim))
        else:
            # kept in the state_dict as frozen ones, as the official model does
            self.gamma_1_cross = nn.Parameter(torch.ones(dim), requires_grad=False)
            self.gamma_2_cross = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, q, z, p_mask, p_vis):
        kv = torch.cat([z, q], dim=1)          # keys/values: visible then current queries
        pk = torch.cat([p_vis, p_mask], dim=1)
        a = self.cross_attn(self.norm1_q(q + p_mask), self.norm1_k(kv + pk), self.norm1_v(kv))
        x = self.norm2_cross(q + self.gamma_1_cross * a)
        return x + self.gamma_2_cross * self.mlp_cross(x)


class Regresser(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        Dd = cfg.decoder_embed_dim
        self.regressor_blocks = nn.ModuleList(
            [RegressorBlock(Dd, cfg.decoder_num_heads, cfg.mlp_ratio,
                            cfg.decoder_layer_scale_init_value)
             for _ in range(cfg.regressor_depth)])
        self.norm = layer_norm(Dd)

    def forward(self, q, z, p_mask, p_vis):
        for blk in self.regressor_blocks:
            q = blk(q, z, p_mask, p_vis)
        return self.norm(q)


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        Dd = cfg.decoder_embed_dim
        self.decoder_blocks = nn.ModuleList(
            [Block(Dd, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.decoder_layer_scale_init_value)
             for _ in range(cfg.decoder_depth)])
        self.norm = layer_norm(Dd)
        self.head = nn.Linear(Dd, cfg.decoder_num_classes)

    def forward(self, latent_predict, p_mask):
        x = latent_predict + p_mask
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.head(self.norm(x))


class CAE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        D, Dd = cfg.embed_dim, cfg.decoder_embed_dim
        self.encoder = Encoder(cfg)
        if Dd != D:
            self.encoder_to_regresser = nn.Linear(D, Dd)
            self.encoder_to_regresser_norm = layer_norm(Dd)
        else:
            self.encoder_to_regresser = None
            self.encoder_to_regresser_norm = None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.register_buffer("rd_pos_embed", sincos_table(cfg.grid, Dd).float())
        self.regresser = Regresser(cfg)
        self.decoder = Decoder(cfg)

    def project(self, x):
        if self.encoder_to_regresser is None:
            return x
        return self.encoder_to_regresser_norm(self.encoder_to_regresser(x))

    def alignment_target(self, samples, mask):
        """Same encoder weights over the masked patches, cls dropped, no gradient."""
        with torch.no_grad():
            t = self.encoder(samples, mask)[:, 1:]
            return self.project(t).detach()

    def forward(self, samples, bool_masked_pos, labels=None, latent_target=None):
        """One step's forward. bool_masked_pos: [B,N] bool; labels: [B*M] int64
        (dall-e target; unused, may be None, for the pixel target).

        latent_target may be passed in to hold the (gradient-free) alignment
        target fixed, which finite-difference checks need.
        """
        cfg = self.cfg
        mask = bool_masked_pos.bool()
        B, N = mask.shape
        Dd = cfg.decoder_embed_dim

        latent = self.project(self.encoder(samples, ~mask))
        z = latent[:, 1:]                                   # cls latent dropped
        if latent_target is None:
            latent_target = self.alignment_target(samples, mask)

        pos = self.rd_pos_embed[:, 1:].expand(B, N, Dd)
        p_vis = pos[~mask].reshape(B, -1, Dd)
        p_mask = pos[mask].reshape(B, -1, Dd)
        M = p_mask.shape[1]
        q = self.mask_token.expand(B, M, Dd)

        latent_predict = self.regresser(q, z, p_mask, p_vis)
        logits = self.decoder(latent_predict, p_mask).reshape(B * M, -1)

        if cfg.pixel_target:
            with torch.no_grad():
                target = pixel_target(samples, mask, cfg.patch_size, cfg.norm_pix_loss)
            loss_main = F.mse_loss(logits, target)
        else:
            loss_main = F.cross_entropy(logits, labels)
        # loss_align is logged weighted, like the official engine does
        loss_align = cfg.align_loss_weight * F.mse_loss(latent_predict, latent_target)
        loss = loss_main + loss_align
        out = {
            "loss": loss,
            "loss_main": loss_main,
            "loss_align": loss_align,
            "logits": logits,
            "latent_predict": latent_predict,
            "latent_target": latent_target,
        }
        if cfg.pixel_target:
            out["pixel_target"] = target
        else:
            # no accuracy for a regression target
            out["mlm_acc"] = (logits.argmax(-1) == labels).to(logits.dtype).mean()
        return out


def trainable_names(model):
    return [n for n, p in model.named_parameters() if p.requires_grad]


def derived_names(model):
    """State-dict entries that are not trained: position tables, frozen gammas."""
    train = set(trainable_names(model))
    return [n for n in model.state_dict() if n not in train]


def num_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fan_in(name, shape):
    """Fan-in used to scale random test weights."""
    if len(shape) == 4:
        return shape[1] * shape[2] * shape[3]
    if len(shape) == 2:
        return shape[1]
    return 1


__all__ = ["CAEConfig", "CAE", "sincos_table", "patchify", "pixel_target", "trainable_names", "derived_names",
           "num_params", "fan_in", "LN_EPS"]
