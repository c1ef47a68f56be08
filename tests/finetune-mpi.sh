#!/bin/sh
# finetune-mpi.sh: cae-cl-finetune under mpirun with 2 ranks against 1 rank
# with the same global batch (32 = 2 x 16) on the synthetic ImageFolder of
# tests/make-probe-data.py --hard (overlapping classes, so the accuracy is
# not pinned at 100%). Every sample's augmentation comes from its
# place in the global batch, and the gradients are averaged over the ranks
# before the update, so with drop path and mixup off (they draw per rank,
# as DDP does) the runs must agree: the same lr line, train losses equal to
# 4 digits, the same top-1 every epoch. Also: one writer (rank 0's log and
# checkpoints), and --dist_eval counts every val image once.
set -eu
top_srcdir=${CAE_TOP_SRCDIR:-.}
top=${CAE_TOP_BUILDDIR:-.}
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: mpirun not found"
    exit 77
fi
limit=""
if command -v timeout >/dev/null 2>&1; then
    limit="timeout 600" # a rank stuck in a collective must not hang make check
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$top_srcdir/tests/make-probe-data.py" "$tmp/data" --hard
tiny="--data_path $tmp/data --finetune random --input_size 32 --patch_size 8 --embed_dim 32
      --depth 2 --num_heads 2 --epochs 3 --warmup_epochs 1 --lr 1e-2 --layer_decay 0.75
      --drop_path 0 --smoothing 0.1 --mixup 0 --cutmix 0 --reprob 0.25
      --aa rand-m9-mstd0.5-inc1 --seed 1 --num_workers 1"

# shellcheck disable=SC2086
"$top/cae-cl-finetune" $tiny --batch_size 32 --output_dir "$tmp/one" > "$tmp/one.log" 2>&1 ||
    { cat "$tmp/one.log"; exit 1; }
# shellcheck disable=SC2086
$limit mpirun --allow-run-as-root --oversubscribe -np 2 "$top/cae-cl-finetune" $tiny \
    --batch_size 16 --dist_eval --output_dir "$tmp/two" > "$tmp/two.log" 2>&1 ||
    { cat "$tmp/two.log"; exit 1; }
cat "$tmp/two.log"
l1=$(grep '^LR = ' "$tmp/one.log")
l2=$(grep '^LR = ' "$tmp/two.log")
test "$l1" = "$l2" || { echo "'$l1' vs '$l2'"; exit 1; }
# one writer: one log line per epoch, every val image counted once
test "$(grep -c '"test_acc1"' "$tmp/two/log.txt")" -eq 3
test "$(grep -c '^epoch .* on 900 images' "$tmp/two.log")" -eq 3
test -f "$tmp/two/checkpoint-3.safetensors"
row() { sed -n 's/.*"train_loss": \([0-9.e+-]*\),.*"test_acc1": \([0-9.]*\),.*"epoch": \([0-9]*\),.*/\3 \2 \1/p' "$1" |
    awk '{ printf "%s %s %.4f\n", $1, $2, $3 }'; }
r1=$(row "$tmp/one/log.txt")
r2=$(row "$tmp/two/log.txt")
echo "epoch, top-1, train loss; 1 rank: $(echo $r1) | 2 ranks: $(echo $r2)"
test -n "$r1" && test "$r1" = "$r2"
echo "finetune-mpi: ok"
