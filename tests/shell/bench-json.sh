#!/bin/sh
# cae-cl-bench --synthetic on a tiny configuration, 2 steps: the JSON has the
# required keys with sane values (no timing threshold: a benchmark never fails
# on speed).
set -e
out=tests/bench-json.out.json
rm -f "$out"
./cae-cl-bench --synthetic --input_size 16 --patch_size 4 --embed_dim 32 --depth 2 \
    --num_heads 2 --decoder_embed_dim 32 --regressor_depth 1 --decoder_depth 1 \
    --decoder_num_heads 2 --decoder_num_classes 64 --num_mask_patches 6 \
    --min_mask_patches_per_block 2 --batch_size 2 --warmup_steps_bench 1 --bench_steps 2 \
    --json "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for k in ("images_per_s", "ms_per_step", "flops_per_step", "mfu", "peak_device_bytes", "ops"):
    assert k in r, "missing key " + k
assert r["flops_per_step"] > 0, r["flops_per_step"]
assert r["mfu"] > 0, r["mfu"]
assert r["images_per_s"] > 0, r["images_per_s"]
assert r["ms_per_step"] > 0, r["ms_per_step"]
assert r["peak_device_bytes"] > 0, r["peak_device_bytes"]
assert len(r["ops"]) > 0 and all(o["launches_per_step"] > 0 for o in r["ops"]), r["ops"]
print("bench JSON ok:", {k: r[k] for k in ("images_per_s", "ms_per_step", "flops_per_step", "mfu")})
PY
rm -f "$out"
