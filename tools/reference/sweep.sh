#!/bin/sh
# Random-configuration sweep: cae-cl-step against the PyTorch reference.
#
#   tools/reference/sweep.sh [N [SEED]]      (defaults: 8 configurations, seed 1)
#
# Draws N random model/batch configurations from SEED, writes a reference
# fixture for each (make_fixtures.py, fresh fixture seed each) into a
# temporary folder, runs cae-cl-step --check with both GEMM back ends and
# prints one line per configuration and back end: PASS/FAIL, the worst
# relative L2 error and its tensor, and the args.  Fixtures that pass are
# deleted; failing ones (with the step's log, log.<gemm>) are kept and their
# folder is printed.  Exits 1 if anything failed.
#
# Environment: PYTHON (default /usr/bin/python3), CAE_CL_STEP (default
# cae-cl-step; copied first, so a rebuild during the sweep cannot
# disturb it), TMPDIR (where the fixture folder goes).
#
# Widths are capped at 48 so that every fixture file stays under
# make_fixtures.py's 1 MiB limit (the largest draw writes about 0.95 MiB).
#
# regressor_depth is drawn from 1..2, not 0..2: make_fixtures.py cannot write
# a regressor_depth 0 fixture (mask_token then gets no gradient and it stops).
set -u

n=${1:-8}
seed=${2:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-/usr/bin/python3}
step=${CAE_CL_STEP:-$root/cae-cl-step}
base=$(mktemp -d "${TMPDIR:-/tmp}/cae-sweep.XXXXXX") || exit 2
cp "$step" "$base/cae-cl-step" || exit 2
step=$base/cae-cl-step

# Draw the configurations: one line each, "<fixture seed> <flags>".
# Widths are multiples of 4 (sin-cos tables) and of their head count; the
# decoder width equals the encoder width about a third of the time.
"$py" -c '
import math, random, sys
n, r = int(sys.argv[1]), random.Random(int(sys.argv[2]))
lcm4 = lambda h: 4 * h // math.gcd(4, h)
width = lambda h: lcm4(h) * r.randint(1, 48 // lcm4(h))    # 4..48
for _ in range(n):
    grid, patch = r.randint(2, 6), r.randint(1, 6)
    heads = r.randint(1, 4)
    d = width(heads)
    if r.random() < 1 / 3:
        dd = d
        dheads = r.choice([h for h in range(1, 5) if d % h == 0])
    else:
        dheads = r.randint(1, 4)
        dd = width(dheads)
    k = r.randint(2, 300)
    while k % 64 == 0:
        k = r.randint(2, 300)
    flags = [("input_size", grid * patch), ("patch_size", patch), ("embed_dim", d),
             ("depth", r.randint(0, 2)), ("num_heads", heads),
             ("mlp_ratio", r.choice([1, 2, 3, 4])), ("decoder_embed_dim", dd),
             ("regressor_depth", r.randint(1, 2)), ("decoder_depth", r.randint(0, 2)),
             ("decoder_num_heads", dheads), ("decoder_num_classes", k),
             ("layer_scale_init_value", r.choice([0, 0.1, 0.05])),
             ("decoder_layer_scale_init_value", r.choice([0, 0.1, 0.05])),
             ("align_loss_weight", r.choice([0.5, 1, 2])),
             ("batch_size", r.randint(1, 4)),
             ("num_mask_patches", r.randint(1, grid * grid - 1))]
    print(r.randint(0, 2**31 - 1), " ".join("--%s %s" % kv for kv in flags))
' "$n" "$seed" >"$base/configs" || exit 2

i=0
failed=0
while read -r fseed flags; do
    i=$((i + 1))
    name=cfg$i
    dir=$base/$name
    # shellcheck disable=SC2086  # flags are meant to split
    if ! "$py" "$root/tools/reference/make_fixtures.py" --name "$name" --out "$base" \
        --seed "$fseed" $flags >"$base/$name.gen.log" 2>&1; then
        echo "$name gen     ERROR (make_fixtures.py; see $base/$name.gen.log) --seed $fseed $flags"
        failed=$((failed + 1))
        continue
    fi
    rm -f "$base/$name.gen.log"
    bad=0
    for gemm in host clblast; do
        # shellcheck disable=SC2046
        "$step" $(cat "$dir/args.txt") --weights "$dir/weights.safetensors" \
            --batch "$dir/batch.safetensors" --check "$dir/expected.safetensors" \
            --gemm "$gemm" >"$dir/log.$gemm" 2>&1
        rc=$?
        # Worst rel_l2 over the per-tensor lines "  NAME max_abs X rel_l2 Y ok|FAIL";
        # a non-numeric Y (inf, nan) counts as worst.
        worst=$(awk '$2 == "max_abs" && $4 == "rel_l2" {
                    if ($5 !~ /^[0-9.e+-]+$/) { if (!wbad) { ws = $5; wn = $1; wbad = 1 } }
                    else if (!wbad && (!seen || $5 + 0 > w)) { w = $5 + 0; ws = $5; wn = $1 }
                    seen = 1 }
                 END { if (seen) printf "%s (%s)", ws, wn; else print "-" }' "$dir/log.$gemm")
        if [ "$rc" -eq 0 ]; then
            verdict=PASS
        elif grep -q '^FAIL:' "$dir/log.$gemm"; then
            verdict=FAIL
        else
            verdict="ERROR rc=$rc"
        fi
        [ "$rc" -eq 0 ] || bad=1
        printf '%s %-7s %s worst %s | --seed %s %s\n' "$name" "$gemm" "$verdict" "$worst" "$fseed" "$flags"
    done
    if [ "$bad" -eq 0 ]; then
        rm -rf "$dir"
    else
        failed=$((failed + 1))
    fi
done <"$base/configs"

if [ "$failed" -eq 0 ]; then
    echo "sweep seed $seed: all $i configurations passed with both back ends"
    rm -rf "$base"
    exit 0
fi
echo "sweep seed $seed: $failed of $i configurations failed; fixtures kept in $base"
exit 1
