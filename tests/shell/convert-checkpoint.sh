#!/bin/sh
# convert-checkpoint.sh: cae-cl-convert-checkpoint, both ways, on the tiny
# fixture's weights.
#
#  1. to-pth: {'model': state_dict} that the PyTorch reference model (the
#     official keys) loads with strict=True once alignment_encoder.* is set
#     aside; alignment_encoder.* are exact copies of encoder.*; the sin-cos
#     tables equal the reference's; every weight is bit-identical.
#  2. An official-style .pth around it (optimizer, epoch, argparse args):
#     refused without --trust where torch cannot allow the Namespace, then
#     to-safetensors gives back exactly the fixture's trainable tensors
#     (alignment copies and tables dropped), which cae-cl-step runs to the
#     fixture's expected outputs.
#  3. to-pth again from that file reproduces the first .pth bit for bit;
#     our optimizer.* tensors are dropped; without any record of the input
#     size it asks for --input_size.
# Skips (77) when /usr/bin/python3 has no torch.
set -u
PY=/usr/bin/python3
top=${CAE_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${CAE_TOP_BUILDDIR:-$top}
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
    echo "SKIP: $PY has no torch/numpy"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cae-convert.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
tool="$build/cae-cl-convert-checkpoint"
fixture="$top/tests/fixtures/tiny"
fail() {
    echo "FAIL: $*"
    exit 1
}

"$PY" "$tool" to-pth "$fixture/weights.safetensors" "$tmp/ours.pth" || fail "to-pth"

"$PY" - "$top" "$fixture" "$tmp" <<'EOF' || fail "the .pth does not match the official layout"
import sys, argparse
top, fixture, tmp = sys.argv[1:4]
sys.path.insert(0, top + "/tools/reference")
import numpy as np, torch
import cae_reference, safetensors_io

words = open(fixture + "/args.txt").read().split()
fields = cae_reference.CAEConfig.__dataclass_fields__
kw = {}
for i in range(0, len(words), 2):
    name = words[i][2:]
    if name in fields:
        kw[name] = fields[name].type(words[i + 1])
cfg = cae_reference.CAEConfig(**kw)
ref = cae_reference.CAE(cfg)

ckpt = torch.load(tmp + "/ours.pth", map_location="cpu")
assert set(ckpt) == {"model"}, set(ckpt)
sd = ckpt["model"]
align = {k: v for k, v in sd.items() if k.startswith("alignment_encoder.")}
rest = {k: v for k, v in sd.items() if k not in align}
ref.load_state_dict(rest, strict=True)       # raises on a missing or extra key or a shape
enc = {k[len("encoder."):]: v for k, v in rest.items() if k.startswith("encoder.")}
assert {k[len("alignment_encoder."):] for k in align} == set(enc), "alignment keys"
for k, v in align.items():
    assert torch.equal(v, enc[k[len("alignment_encoder."):]]), k
for key, width in (("encoder.pos_embed", cfg.embed_dim), ("rd_pos_embed", cfg.decoder_embed_dim)):
    want = cae_reference.sincos_table(cfg.grid, width).float()
    assert sd[key].dtype == torch.float32 and sd[key].shape == want.shape, key
    assert (sd[key] - want).abs().max().item() <= 1e-6, key
weights, _ = safetensors_io.load(fixture + "/weights.safetensors")
for k, v in weights.items():
    assert np.array_equal(sd[k].numpy().view(np.uint32), v.astype(np.float32).view(np.uint32)), k

# what the official run_pretraining.py saves around the model
official = {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "epoch": 4,
            "scaler": {}, "args": argparse.Namespace(input_size=cfg.input_size, epochs=5)}
torch.save(official, tmp + "/official.pth")
torch.save(dict(sd), tmp + "/bare.pth")      # a bare state_dict, nothing but tensors
print("to-pth: %d tensors, strict load and alignment copies OK" % len(sd))
EOF

# The Namespace needs --trust unless this torch can allow it by name.
if "$PY" "$tool" to-safetensors "$tmp/official.pth" "$tmp/back.safetensors" 2>"$tmp/err"; then
    echo "to-safetensors: this torch unpickles argparse.Namespace without --trust"
else
    cat "$tmp/err"
    grep -q -- "--trust" "$tmp/err" || fail "refusal does not mention --trust"
    test ! -e "$tmp/back.safetensors" || fail "a refused conversion left a file"
    "$PY" "$tool" to-safetensors --trust "$tmp/official.pth" "$tmp/back.safetensors" ||
        fail "to-safetensors --trust"
fi
"$PY" "$tool" to-safetensors "$tmp/bare.pth" "$tmp/bare.safetensors" || fail "bare state_dict"

"$PY" - "$top" "$fixture" "$tmp" <<'EOF' || fail "to-safetensors lost or changed tensors"
import sys
top, fixture, tmp = sys.argv[1:4]
sys.path.insert(0, top + "/tools/reference")
import numpy as np, safetensors_io
want, _ = safetensors_io.load(fixture + "/weights.safetensors")
for k in ("encoder.pos_embed", "rd_pos_embed"):
    del want[k]
for name in ("back", "bare"):
    got, meta = safetensors_io.load("%s/%s.safetensors" % (tmp, name))
    assert set(got) == set(want), (name, set(got) ^ set(want))
    for k, v in want.items():
        assert got[k].dtype == np.float32 and got[k].shape == v.shape, k
        assert np.array_equal(got[k].view(np.uint32), v.view(np.uint32)), k
got, meta = safetensors_io.load(tmp + "/back.safetensors")
assert meta.get("official_epoch") == "4" and meta.get("input_size") == "8", meta
print("to-safetensors: %d tensors bit-identical to the fixture" % len(got))
EOF

# The converted official weights run the fixture's step to its expected outputs.
step="$build/cae-cl-step"
if test -x "$step"; then
    # shellcheck disable=SC2046
    "$step" $(cat "$fixture/args.txt") --weights="$tmp/back.safetensors" \
        --batch="$fixture/batch.safetensors" --check="$fixture/expected.safetensors" \
        >"$tmp/step.log" 2>&1 || { cat "$tmp/step.log"; fail "cae-cl-step on the converted weights"; }
    tail -n 1 "$tmp/step.log"
fi

# Back again: the same .pth, bit for bit (the input size now from metadata).
"$PY" "$tool" to-pth "$tmp/back.safetensors" "$tmp/again.pth" || fail "to-pth (second)"

"$PY" - "$top" "$fixture" "$tmp" "$tool" <<'EOF' || fail "second round trip"
import sys, subprocess
top, fixture, tmp, tool = sys.argv[1:5]
sys.path.insert(0, top + "/tools/reference")
import numpy as np, torch, safetensors_io
a = torch.load(tmp + "/ours.pth")["model"]
b = torch.load(tmp + "/again.pth")["model"]
assert list(a) == list(b), "key order"
for k in a:
    assert torch.equal(a[k].view(torch.int32), b[k].view(torch.int32)), k

# a training checkpoint: optimizer.* dropped; no input size recorded -> refused
w, _ = safetensors_io.load(fixture + "/weights.safetensors")
w = {k: v for k, v in w.items() if k not in ("encoder.pos_embed", "rd_pos_embed")}
ck = dict(w)
for k, v in w.items():
    ck["optimizer.exp_avg." + k] = np.zeros_like(v)
    ck["optimizer.exp_avg_sq." + k] = np.ones_like(v)
safetensors_io.save(tmp + "/ck.safetensors", ck, {"format": "cae-cl-checkpoint-1", "args": ""})
r = subprocess.run([sys.executable, tool, "to-pth", tmp + "/ck.safetensors", tmp + "/ck.pth"],
                   capture_output=True, text=True)
assert r.returncode == 1 and "--input_size" in r.stderr, (r.returncode, r.stderr)
subprocess.run([sys.executable, tool, "to-pth", "--input_size", "8", tmp + "/ck.safetensors",
                tmp + "/ck.pth"], check=True)
c = torch.load(tmp + "/ck.pth")["model"]
assert not any(k.startswith("optimizer.") for k in c), "optimizer tensors kept"
assert list(c) == list(a), "keys differ from the weights-file conversion"
for k in a:
    assert torch.equal(a[k], c[k]), k
print("round trip closed; optimizer state dropped; missing input size refused")
EOF
echo "PASS"
