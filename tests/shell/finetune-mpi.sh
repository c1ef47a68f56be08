#!/bin/sh
# finetune-mpi.sh: cae-cl-finetune under mpirun with 2 ranks against 1 rank
# with the same global batch (32 = 2 x 16) on the synthetic ImageFolder of
# tests/shell/make-probe-data.py --hard (overlapping classes, so the accuracy is
# not pinned at 100%). Every sample's augmentation comes from its
# place in the global batch, and the gradients are averaged over the ranks
# before the update, so with drop path and mixup off (they draw per rank,
# as DDP does) the runs must agree: the same lr line, train losses equal to
# 4 digits, the same top-1 every epoch. Also: one writer (rank 0's log and
# checkpoints), and --dist_eval counts every val image once.
set -eu
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
cae_need_mpirun 600 # a rank stuck in a collective must not hang make check
cae_workdir finetune-mpi
/usr/bin/python3 "$top_srcdir/tests/shell/make-probe-data.py" "$work/data" --hard
tiny="--data_path $work/data --finetune random --input_size 32 --patch_size 8 --embed_dim 32
      --depth 2 --num_heads 2 --epochs 3 --warmup_epochs 1 --lr 1e-2 --layer_decay 0.75
      --drop_path 0 --smoothing 0.1 --mixup 0 --cutmix 0 --reprob 0.25
      --aa rand-m9-mstd0.5-inc1 --seed 1 --num_workers 1"

# shellcheck disable=SC2086
"$top/cae-cl-finetune" $tiny --batch_size 32 --output_dir "$work/one" > "$work/one.log" 2>&1 ||
    { cat "$work/one.log"; exit 1; }
# shellcheck disable=SC2086
$limit mpirun --allow-run-as-root --oversubscribe -np 2 "$top/cae-cl-finetune" $tiny \
    --batch_size 16 --dist_eval --output_dir "$work/two" > "$work/two.log" 2>&1 ||
    { cat "$work/two.log"; exit 1; }
cat "$work/two.log"
l1=$(grep '^LR = ' "$work/one.log")
l2=$(grep '^LR = ' "$work/two.log")
test "$l1" = "$l2" || { echo "'$l1' vs '$l2'"; exit 1; }
# one writer: one log line per epoch, every val image counted once
test "$(grep -c '"test_acc1"' "$work/two/log.txt")" -eq 3
test "$(grep -c '^epoch .* on 900 images' "$work/two.log")" -eq 3
test -f "$work/two/checkpoint-3.safetensors"
row() { sed -n 's/.*"train_loss": \([0-9.e+-]*\),.*"test_acc1": \([0-9.]*\),.*"epoch": \([0-9]*\),.*/\3 \2 \1/p' "$1" |
    awk '{ printf "%s %s %.4f\n", $1, $2, $3 }'; }
r1=$(row "$work/one/log.txt")
r2=$(row "$work/two/log.txt")
echo "epoch, top-1, train loss; 1 rank: $(echo $r1) | 2 ranks: $(echo $r2)"
test -n "$r1" && test "$r1" = "$r2"
echo "finetune-mpi: ok"
