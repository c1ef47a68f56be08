#!/bin/sh
# finetune.sh: cae-cl-finetune end to end on a small separable synthetic
# ImageFolder (tests/shell/make-probe-data.py): fine-tuning a tiny random encoder
# must reach at least 90% top-1 on the val split with the official log
# fields; a run stopped mid-epoch (--stop_after_steps) and auto-resumed must
# evaluate exactly as the uninterrupted run every epoch (RandAugment, random
# erasing, mixup and cutmix on, all drawn from the seed; other --num_workers); --eval of the last
# checkpoint must give the last epoch's accuracy and loss again; bad flags
# are refused with one line.
set -eu
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
cae_workdir finetune

/usr/bin/python3 "$top_srcdir/tests/shell/make-probe-data.py" "$work/data"

ft() {
    "$top/cae-cl-finetune" --data_path "$work/data" --finetune random \
        --input_size 32 --patch_size 8 --embed_dim 32 --depth 2 --num_heads 2 \
        --batch_size 32 --epochs 4 --warmup_epochs 1 --lr 1e-2 --layer_decay 0.75 \
        --drop_path 0.1 --smoothing 0.1 --mixup 0.8 --cutmix 1.0 --reprob 0.25 \
        --aa rand-m9-mstd0.5-inc1 --seed 1 "$@"
}

ft --output_dir "$work/a" --num_workers 1 > "$work/a.txt" 2>&1 || { cat "$work/a.txt"; exit 1; }
cat "$work/a.txt"
for f in train_lr train_loss test_loss test_acc1 test_acc5 epoch n_parameters; do
    grep -q "\"$f\"" "$work/a/log.txt" || { echo "log.txt lacks $f"; exit 1; }
done
grep -q 'aa rand-m9-mstd0.5-inc1, --reprob 0.25; mixup 0.8, cutmix 1' "$work/a.txt"
test "$(grep -c test_acc1 "$work/a/metrics.jsonl")" -eq 4
best=$(sed -n 's/.*"max_accuracy": \([0-9.]*\).*/\1/p' "$work/a/log.txt")
echo "best top-1: $best"
awk -v b="$best" 'BEGIN { exit !(b >= 90) }' || { echo "fine-tuning reached only $best%"; exit 1; }
# the loss goes down
first=$(sed -n 's/.*"train_loss": \([0-9.e+-]*\),.*"epoch": 0,.*/\1/p' "$work/a/log.txt")
last=$(sed -n 's/.*"train_loss": \([0-9.e+-]*\),.*"epoch": 3,.*/\1/p' "$work/a/log.txt")
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f) }' || { echo "train loss $first -> $last"; exit 1; }

# stopped mid-epoch 1 (6 steps per epoch) and resumed, with other loader
# thread counts: the same evaluations
ft --output_dir "$work/b" --num_workers 3 --stop_after_steps 9 > "$work/b1.txt" 2>&1 || { cat "$work/b1.txt"; exit 1; }
grep -q 'stopped after step 9' "$work/b1.txt"
ft --output_dir "$work/b" --num_workers 2 > "$work/b2.txt" 2>&1 || { cat "$work/b2.txt"; exit 1; }
grep -q 'Resume checkpoint .*checkpoint-1.safetensors: epoch 1 done, step 9' "$work/b2.txt"
sed -n 's/.*\("test_loss".*"epoch": [0-9]*\).*/\1/p' "$work/a/log.txt" > "$work/a.eval"
sed -n 's/.*\("test_loss".*"epoch": [0-9]*\).*/\1/p' "$work/b/log.txt" > "$work/b.eval"
test "$(wc -l < "$work/a.eval")" -eq 4
cmp "$work/a.eval" "$work/b.eval" || { echo "resumed run differs"; diff "$work/a.eval" "$work/b.eval"; exit 1; }
grep -q '"max_accuracy"' "$work/b/log.txt"

# --eval of the last checkpoint
ft --output_dir "$work/e" --eval --resume "$work/a/checkpoint-4.safetensors" > "$work/e.txt" 2>&1 ||
    { cat "$work/e.txt"; exit 1; }
want=$(grep '"epoch": 3' "$work/a/log.txt" | sed 's/.*\("test_loss": [^,]*, "test_acc1": [^,]*\),.*/\1/')
got=$(sed 's/.*\("test_loss": [^,]*, "test_acc1": [^,]*\),.*/\1/' "$work/e/log.txt")
echo "last epoch: $want; --eval: $got"
test -n "$want" && test "$want" = "$got"

# refused with one line naming the flag
if "$top/cae-cl-finetune" --data_path "$work/data" --output_dir "$work/x" > "$work/err" 2>&1; then
    echo "missing --finetune accepted"; exit 1
fi
grep -q -- '--finetune' "$work/err"
if ft --output_dir "$work/x" --layer_decay 1.5 > "$work/err" 2>&1; then
    echo "--layer_decay 1.5 accepted"; exit 1
fi
grep -q -- '--layer_decay' "$work/err"
if ft --output_dir "$work/x" --aa rand-m9-foo > "$work/err" 2>&1; then
    echo "--aa rand-m9-foo accepted"; exit 1
fi
grep -q -- '--aa' "$work/err"
test ! -e "$work/x/checkpoint-1.safetensors"
echo "finetune: ok"
