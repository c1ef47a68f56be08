#!/bin/sh
# bad-inputs.sh: cae-cl-train and cae-cl-step over the bad-input corpus
# (tests/data/bad/, made by tests/data/make-bad.py). For each input:
#  - the documented outcome: a non-zero exit with one "cae-cl: " line naming
#    the culprit, or (an unusable image in an otherwise good folder) the run
#    finishes and log.txt's train_skipped_images counts it (these folders
#    hold a few images, so --max_bad_image_share is raised to 0.5; past the
#    default 5% of an epoch's images a run stops, tested at the end);
#  - no crash: the exit status is below 128 (no signal);
#  - no sanitizer report in the output (when built with --enable-sanitizers);
#  - the files already in --output_dir (a checkpoint, log.txt, metrics.jsonl)
#    are not modified (cksum before and after).
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
train="$top/cae-cl-train"
step="$top/cae-cl-step"
bad="$top_srcdir/tests/data/bad"
cae_workdir bad
failures=0
tried=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
# a tiny model so each run takes well under a second
tiny="--input_size 16 --patch_size 4 --embed_dim 32 --depth 1 --num_heads 2
 --decoder_embed_dim 24 --regressor_depth 1 --decoder_depth 1 --decoder_num_heads 2
 --num_mask_patches 8 --min_mask_patches_per_block 2 --epochs 1 --num_workers 1 --seed 3
 --warmup_steps 2 --max_bad_image_share 0.5"

# the output folder whose files must survive every refused run
"$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" \
    --stop_after_steps 1 > "$work/kept.log" 2>&1 || {
    echo "FAIL: cannot make the reference output folder: $(tail -3 "$work/kept.log")"
    exit 1
}
ls "$work/kept"/checkpoint-*.safetensors > /dev/null 2>&1 || { echo "FAIL: no checkpoint in $work/kept"; exit 1; }
sums() { (cd "$work/kept" && cksum $(ls | sort)); }
kept_sums=$(sums)

# run NAME CULPRIT PROGRAM ARGS...: must exit 1..127 with a "cae-cl: " line
# naming CULPRIT, no sanitizer report, and leave $work/kept as it was
refused() {
    name=$1 culprit=$2
    shift 2
    tried=$((tried + 1))
    "$@" > "$work/$name.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        fail "$name: exit status 0, expected a refusal"
    elif [ $rc -ge 128 ]; then
        fail "$name: crashed (exit status $rc)"
    elif ! grep "^cae-cl: " "$work/$name.out" | grep -F -q -- "$culprit"; then
        fail "$name: no 'cae-cl: ' line naming '$culprit'"
    elif [ "$(grep -c "^cae-cl: " "$work/$name.out")" -ne 1 ]; then
        fail "$name: $(grep -c "^cae-cl: " "$work/$name.out") 'cae-cl: ' lines, expected one"
    fi
    if grep -E -q "Sanitizer|runtime error:" "$work/$name.out"; then
        fail "$name: sanitizer report"
    fi
    [ "$(sums)" = "$kept_sums" ] || fail "$name: the files in --output_dir changed"
    echo "refused ($rc): $name: $(grep "^cae-cl: " "$work/$name.out" | head -1)"
    [ -z "${VERBOSE:-}" ] || cat "$work/$name.out"
}

# a run that hangs (a FIFO opened for reading) fails instead of stalling make check
cae_time_limit "${CAE_HANG_LIMIT:-120}"

# good_folder NAME: $work/data-NAME/things holds the good images
good_folder() {
    mkdir -p "$work/data-$1/things"
    cp "$bad"/mixed/things/good* "$work/data-$1/things/"
}

# skipped NAME FILE N: a folder of good images plus FILE trains one epoch of
# one step (every image once) and log.txt counts N skipped images (0 for a
# file that must decode)
skipped() {
    good_folder "$1"
    cp "$2" "$work/data-$1/things/"
    trained_skipping "$@"
}

# trained_skipping NAME FILE N: the run and its checks on $work/data-NAME
trained_skipping() {
    name=$1 file=$2 want=$3
    tried=$((tried + 1))
    n=$(ls "$work/data-$name/things" | wc -l)
    $limit "$train" $tiny --batch_size "$n" --data_path "$work/data-$name" --output_dir "$work/out-$name" \
        > "$work/$name.out" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "$name: exit status $rc: $(tail -3 "$work/$name.out")"
        return
    fi
    if grep -E -q "Sanitizer|runtime error:" "$work/$name.out"; then
        fail "$name: sanitizer report"
    fi
    got=$(sed -n 's/.*"train_skipped_images": \([0-9]*\).*/\1/p' "$work/out-$name/log.txt" | tail -1)
    [ "$got" = "$want" ] || fail "$name: train_skipped_images $got, expected $want"
    if [ "$want" -gt 0 ]; then
        base=$(basename "$file")
        grep "^cae-cl: " "$work/$name.out" | grep -F -q "$base" ||
            fail "$name: no 'cae-cl: ' line naming $base"
    fi
    echo "trained, $got skipped: $name: $(grep "^cae-cl: " "$work/$name.out" | head -1)"
}

# ---- images in an otherwise good folder: skipped and counted ----
skipped truncated-jpeg "$bad/images/truncated.jpg" 1
skipped zero-byte "$bad/images/zero-bytes.jpg" 1
skipped bad-crc-png "$bad/images/badcrc.png" 1
skipped bomb-jpeg "$bad/images/bomb.jpg" 1
skipped bomb-png "$bad/images/bomb.png" 1
skipped text-as-jpeg "$bad/images/text.jpg" 1
# ---- images that are unusual but valid: decoded, nothing skipped ----
skipped cmyk-jpeg "$bad/images/cmyk.jpg" 0
skipped 1x1-png "$bad/images/tiny-1x1.png" 0
skipped 1x1-jpeg "$bad/images/tiny-1x1.jpg" 0
# a FIFO named like an image: never opened for a blocking read, skipped
good_folder fifo
if mkfifo "$work/data-fifo/things/fifo.jpg" 2>/dev/null; then
    trained_skipping fifo "$work/data-fifo/things/fifo.jpg" 1
fi

# ---- data folders that cannot be used ----
refused empty-folder "$bad/empty" "$train" $tiny --batch_size 2 --data_path "$bad/empty" --output_dir "$work/kept"
refused missing-folder "$work/no-such-folder" "$train" $tiny --batch_size 2 --data_path "$work/no-such-folder" --output_dir "$work/kept"

# ---- safetensors files with corrupt headers: as --resume and as --weights ----
fixture="$top_srcdir/tests/fixtures/tiny"
for f in "$bad"/st-*.safetensors; do
    st=$(basename "$f" .safetensors)
    refused "resume-$st" "$(basename "$f")" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" \
        --output_dir "$work/kept" --resume "$f"
    refused "step-weights-$st" "$(basename "$f")" "$step" $(cat "$fixture/args.txt") \
        --weights "$f" --batch "$fixture/batch.safetensors"
    refused "step-batch-$st" "$(basename "$f")" "$step" $(cat "$fixture/args.txt") \
        --weights "$fixture/weights.safetensors" --batch "$f"
done

# ---- a checkpoint from a different model size ----
refused other-size-auto-resume "checkpoint-" "$train" $tiny --embed_dim 48 --batch_size 2 \
    --data_path "$bad/mixed" --output_dir "$work/kept"
refused other-size-resume "checkpoint-" "$train" $tiny --embed_dim 48 --batch_size 2 \
    --data_path "$bad/mixed" --output_dir "$work/kept" --resume "$(ls "$work/kept"/checkpoint-*.safetensors | head -1)"

# ---- unknown and malformed flags ----
refused unknown-flag "--no_such_flag" "$train" $tiny --output_dir "$work/kept" --no_such_flag 1
refused malformed-int "--batch_size" "$train" $tiny --output_dir "$work/kept" --batch_size abc
refused malformed-float "--lr" "$train" $tiny --output_dir "$work/kept" --lr 1e-3x
refused negative-epochs "--epochs" "$train" $tiny --output_dir "$work/kept" --epochs -4
# values outside a flag's domain: refused where they are parsed, before any step
refused lr-inf "--lr" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" --lr inf
refused lr-negative "--lr" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" --lr -1
refused lr-nan "--lr" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" --lr nan
refused min-lr-negative "--min_lr" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" --min_lr -1e-5
refused warmup-lr-inf "--warmup_lr" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" --warmup_lr=-inf
refused weight-decay-nan "--weight_decay" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" --weight_decay nan
refused clip-grad-negative "--clip_grad" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" --clip_grad -3
refused drop-path-over-1 "--drop_path" "$train" $tiny --batch_size 2 --data_path "$bad/mixed" --output_dir "$work/kept" --drop_path 1.5
refused zero-batch "--batch_size" "$train" $tiny --batch_size 0 --data_path "$bad/mixed" --output_dir "$work/kept"
refused missing-value "--data_path" "$train" $tiny --output_dir "$work/kept" --data_path
refused switch-with-value "--auto_resume" "$train" $tiny --output_dir "$work/kept" --auto_resume=1
refused positional "train" "$train" $tiny --output_dir "$work/kept" train
refused step-unknown-flag "--no_such_flag" "$step" --no_such_flag

# ---- many unusable images (a class folder emptied mid-run, say): past
#      --max_bad_image_share of the epoch the run stops with one line saying
#      how many, their share and the flag; below it, it trains and counts ----
/usr/bin/python3 "$top_srcdir/tests/shell/make-probe-data.py" "$work/probe"
share_run() { # NAME UNUSABLE: 192 good images plus UNUSABLE zero-byte ones
    mkdir -p "$work/data-$1"
    cp -r "$work/probe/train/class0" "$work/probe/train/class1" "$work/probe/train/class2" "$work/data-$1/"
    i=0
    while [ $i -lt "$2" ]; do
        : > "$work/data-$1/class1/empty$i.png"
        i=$((i + 1))
    done
    tried=$((tried + 1))
    $limit "$train" $tiny --batch_size 8 --max_bad_image_share 0.05 --data_path "$work/data-$1" \
        --output_dir "$work/out-$1" > "$work/$1.out" 2>&1
}
share_run bad-share-over 30
rc=$?
if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then
    fail "bad-share-over: exit status $rc: $(tail -3 "$work/bad-share-over.out")"
elif ! grep "^cae-cl: " "$work/bad-share-over.out" | grep -q "unusable images skipped so far, .*% of its 216, more than --max_bad_image_share 0.05"; then
    fail "bad-share-over: no line naming the count, share and flag: $(tail -3 "$work/bad-share-over.out")"
else
    echo "refused ($rc): bad-share-over: $(grep "max_bad_image_share" "$work/bad-share-over.out")"
fi
share_run bad-share-under 3
rc=$?
got=$(sed -n 's/.*"train_skipped_images": \([0-9]*\).*/\1/p' "$work/out-bad-share-under/log.txt" 2>/dev/null)
if [ $rc -ne 0 ]; then
    fail "bad-share-under: exit status $rc: $(tail -3 "$work/bad-share-under.out")"
elif [ "${got:-0}" -lt 1 ]; then
    fail "bad-share-under: train_skipped_images '$got', expected at least 1"
else
    echo "trained, $got skipped: bad-share-under"
fi

echo "$tried inputs tried, $failures failed"
[ $failures -eq 0 ]
