#!/bin/sh
# crash-safety.sh: SIGKILL at random moments loses nothing.
# A run is killed again and again (sometimes while it writes a checkpoint)
# and restarted with --auto_resume each time; then it runs to the end. Every
# restart must take the newest whole checkpoint (never a partial file: they
# are written to a temporary name and renamed), and the last logged loss of
# every step must equal an uninterrupted run's.
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
train="$top/cae-cl-train"
cae_workdir crash
fail() {
    echo "FAIL: $*"
    exit 1
}
# 14 images, batch 2: 7 steps an epoch, a checkpoint every epoch
common="--data_path $top_srcdir/tests/data/images/folder --input_size 16 --patch_size 4
 --embed_dim 32 --depth 1 --num_heads 2 --decoder_embed_dim 24 --regressor_depth 1
 --decoder_depth 1 --decoder_num_heads 2 --num_mask_patches 8 --min_mask_patches_per_block 2
 --batch_size 2 --epochs 40 --save_ckpt_freq 1 --num_workers 1 --seed 11 --warmup_epochs 1
 --lr 1e-3 --drop_path 0.1"

"$train" $common --output_dir "$work/a" > "$work/a.log" 2>&1 || fail "uninterrupted run: $(tail -3 "$work/a.log")"

# Kills inside a checkpoint write, made certain by pausing the writer halfway
# through the tensor data (CAE_CL_FAULT_WRITE_PAUSE_MS): the partial file
# stays a temporary, the newest whole checkpoint is untouched, and the next
# start resumes from it.
newest() {
    ls "$work/b"/checkpoint-*.safetensors 2> /dev/null | sed -E 's/.*checkpoint-([0-9]+).*/\1 &/' |
        sort -n | tail -1 | cut -d' ' -f2
}
# first two whole checkpoints, then a kill
"$train" $common --output_dir "$work/b" > "$work/w0.log" 2>&1 &
pid=$!
n=0
while [ $n -lt 1200 ] && [ ! -e "$work/b/checkpoint-1.safetensors" ]; do
    sleep 0.05
    n=$((n + 1))
done
kill -KILL $pid 2> /dev/null
wait $pid 2> /dev/null
[ -e "$work/b/checkpoint-1.safetensors" ] || fail "no checkpoint-1 within 60 s ($(tail -2 "$work/w0.log"))"
in_write=0
for i in 1 2 3; do
    CAE_CL_FAULT_WRITE_PAUSE_MS=5000 "$train" $common --output_dir "$work/b" > "$work/w$i.log" 2>&1 &
    pid=$!
    n=0
    while [ $n -lt 1200 ] && ! ls "$work/b"/checkpoint-*.safetensors.tmp.$pid > /dev/null 2>&1; do
        sleep 0.05
        n=$((n + 1))
    done
    partial=$(ls "$work/b"/checkpoint-*.safetensors.tmp.$pid 2> /dev/null)
    whole=$(newest)
    sum_before=$([ -n "$whole" ] && cksum < "$whole")
    kill -KILL $pid 2> /dev/null
    wait $pid 2> /dev/null
    [ -n "$partial" ] || fail "write-kill $i: no checkpoint write seen within 60 s ($(tail -2 "$work/w$i.log"))"
    [ -e "$partial" ] || fail "write-kill $i: $partial vanished"
    in_write=$((in_write + 1))
    [ "$(cksum < "$whole")" = "$sum_before" ] || fail "write-kill $i: $whole changed"
    grep -q "cae-cl:" "$work/w$i.log" && ! grep -q "resumed from\|warning" "$work/w$i.log" &&
        fail "write-kill $i: $(grep cae-cl: "$work/w$i.log" | head -3)"
    grep -q "resumed from $whole" "$work/w$i.log" || fail "write-kill $i: did not resume from $whole"
done
kills=$((in_write + 1))
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    delay=$(awk -v s="$i$$" 'BEGIN { srand(s); printf "%.2f", 0.05 + rand() * 0.6 }')
    "$train" $common --output_dir "$work/b" > "$work/b$i.log" 2>&1 &
    pid=$!
    sleep "$delay"
    if kill -KILL $pid 2> /dev/null; then
        kills=$((kills + 1))
    fi
    wait $pid 2> /dev/null
    # a partial checkpoint never carries the checkpoint name
    for f in "$work/b"/checkpoint-*; do
        [ -e "$f" ] || continue
        case "$f" in
        *.safetensors) ;;
        *) [ -n "${f##*.tmp.*}" ] && fail "unexpected file $f" ;;
        esac
    done
    if grep -q "cae-cl:" "$work/b$i.log" && ! grep -q "resumed from\|warning" "$work/b$i.log"; then
        fail "restart $i reported an error: $(grep cae-cl: "$work/b$i.log" | head -3)"
    fi
done

rm -f "$work/b"/*.tmp.*
"$train" $common --output_dir "$work/b" > "$work/final.log" 2>&1 || fail "final run: $(tail -3 "$work/final.log")"

# the last record of each step, in step order
last_losses() {
    sed -E 's/.*"step": ([0-9]+),.*"loss": ([^,]+),.*/\1 \2/' "$1" |
        awk '{ loss[$1] = $2; if ($1 > max) max = $1 } END { for (s = 0; s <= max; s++) print s, loss[s] }'
}
last_losses "$work/a/metrics.jsonl" > "$work/a.loss"
last_losses "$work/b/metrics.jsonl" > "$work/b.loss"
cmp -s "$work/a.loss" "$work/b.loss" || {
    diff "$work/a.loss" "$work/b.loss" | head
    fail "losses after $kills kills differ from the uninterrupted run"
}
resumes=$(grep -h "resumed from" "$work"/b*.log | sed -E 's/.*step ([0-9]+).*/\1/' | tr '\n' ' ')
echo "ok: $kills kills ($in_write inside a checkpoint write), resumed at steps: $resumes; every step equals the uninterrupted run ($(wc -l < "$work/a.loss") steps)"
