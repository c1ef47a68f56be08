#!/bin/sh
# cae-cl-tune on a tiny configuration with two CLBlast candidates times the
# parameters in use and CLBlast's database and writes a valid tuning file
# whose CLBlast sets measured no slower than those in use; run again with
# no budget it finds nothing and writes the sets in use unchanged; with a
# DALL-E tokenizer its GEMMs count. cae-cl-step --gemm clblast picks the
# file up (one line says so) and still matches the conformance fixture; a
# corrupt file gives one warning line naming it and the step still runs and
# matches.
set -u
top=${CAE_TOP_SRCDIR:-.}
fx="$top/tests/fixtures/tiny"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CAE_CL_TUNE_FILE="$work/tune.json"
export CAE_CL_TUNE_FILE
fail() { echo "FAIL: $*"; exit 1; }

args=$(cat "$fx/args.txt")
# shellcheck disable=SC2086
./cae-cl-tune $args --budget_s 120 --max_candidates 2 >"$work/tune.out" 2>&1 ||
    { cat "$work/tune.out"; fail "cae-cl-tune exited non-zero"; }
cat "$work/tune.out"
test -s "$CAE_CL_TUNE_FILE" || fail "no tuning file written"
for what in "in use (the CPU defaults)" "CLBlast's database (no override)"; do
    grep -q "^  $what  *[0-9.]* ms$" "$work/tune.out" || fail "'$what' was not timed"
done
# the file's CLBlast sets: the best found only when faster than those in use
/usr/bin/python3 - "$CAE_CL_TUNE_FILE" <<'PY' || fail "tuning file is not what it should be"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["format"] == "cae-cl-tune 1", t["format"]
m = t["measured"]
used = m["clblast_in_use"]["step_gemm_ms"]
assert used > 0 and m["clblast_database"]["step_gemm_ms"] > 0, m
if m["written"] == "best found":
    assert m["clblast_tuned"]["step_gemm_ms"] < used, m
    x = t["clblast"]["Xgemm"]
    assert len(x) == 16 and all(isinstance(v, int) for v in x.values()), x
    assert x["MWG"] % (x["MDIMC"] * x["VWM"]) == 0 and x["NWG"] % (x["NDIMC"] * x["VWN"]) == 0, x
    assert "XGEMM_MIN_INDIRECT_SIZE" in t["clblast"]["GemmRoutine"]
else:
    assert m["written"] == "in use" and t["clblast"] == {}, (m["written"], t["clblast"])
assert t["kernels"]["work_group_1d"] >= 1
PY

# no budget to search: nothing found, the sets in use written unchanged
cp "$CAE_CL_TUNE_FILE" "$work/first.json"
# shellcheck disable=SC2086
./cae-cl-tune $args --budget_s 0.001 --max_candidates 1 >"$work/tune2.out" 2>&1 ||
    { cat "$work/tune2.out"; fail "cae-cl-tune without a budget exited non-zero"; }
grep -q "^no candidate beat the parameters in use (.* ms): writing them unchanged$" \
    "$work/tune2.out" || { cat "$work/tune2.out"; fail "no budget, yet not the sets in use"; }
/usr/bin/python3 - "$work/first.json" "$CAE_CL_TUNE_FILE" <<'PY' || fail "the sets in use changed"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["clblast"] == b["clblast"], (a["clblast"], b["clblast"])
PY

# the tokenizer's GEMMs (the small DALL-E fixture: grid 2, 16x16 images)
# shellcheck disable=SC2086
CAE_CL_TUNE_FILE="$work/tok.json" ./cae-cl-tune $args --budget_s 0.001 --max_candidates 1 \
    --discrete_vae_weight_path "$top/tests/fixtures/dalle-small/weights.safetensors" \
    --second_input_size 16 >"$work/tune3.out" 2>&1 ||
    { cat "$work/tune3.out"; fail "cae-cl-tune with the tokenizer exited non-zero"; }
for line in "^tokenizer: DALL-E .* at 16x16, [1-9][0-9]* GEMM shapes per step$" \
    " tokenizer .* step ms$"; do
    grep -q "$line" "$work/tune3.out" ||
        { cat "$work/tune3.out"; fail "the tokenizer's GEMM shapes are not in the score"; }
done

step() {
    # shellcheck disable=SC2086
    ./cae-cl-step $args --gemm clblast --weights "$fx/weights.safetensors" \
        --batch "$fx/batch.safetensors" --check "$fx/expected.safetensors" >"$work/step.out" 2>&1
}
step || { cat "$work/step.out"; fail "step with the tuning file does not match the fixture"; }
n=$(grep -c "tuned parameters from $CAE_CL_TUNE_FILE" "$work/step.out")
test "$n" = 1 || { cat "$work/step.out"; fail "expected one 'tuned parameters from' line, got $n"; }

# this device's file with an Xgemm set CLBlast cannot build: refused
cp "$CAE_CL_TUNE_FILE" "$work/good.json"
/usr/bin/python3 - "$work/good.json" "$CAE_CL_TUNE_FILE" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
names = "GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN".split()
t["clblast"]["Xgemm"] = dict(zip(names, [0, 1, 16, 1, 8, 8, 3, 4, 4, 64, 0, 0, 0, 0, 8, 4]))
json.dump(t, open(sys.argv[2], "w"))
PY
step || { cat "$work/step.out"; fail "step with an impossible Xgemm set failed"; }
grep -q "ignoring tuning file .*constraints" "$work/step.out" ||
    { cat "$work/step.out"; fail "an impossible Xgemm set was not refused"; }

printf '{"format": "cae-cl-tune 1", "clblast": {"Xgemm": ' >"$CAE_CL_TUNE_FILE"
step || { cat "$work/step.out"; fail "step with a corrupt tuning file failed"; }
n=$(grep -c "ignoring tuning file $CAE_CL_TUNE_FILE" "$work/step.out")
test "$n" = 1 || { cat "$work/step.out"; fail "expected one warning for the corrupt file, got $n"; }
grep -q "tuned parameters from" "$work/step.out" && fail "a corrupt file was applied"

# a file for another device: refused the same way
/usr/bin/python3 - "$work/tune.json" <<'PY'
import json, sys
json.dump({"format": "cae-cl-tune 1", "device": "some other device", "driver": "0",
           "device_version": "x", "platform": "y", "clblast": {}}, open(sys.argv[1], "w"))
PY
step || { cat "$work/step.out"; fail "step with another device's tuning file failed"; }
grep -q "ignoring tuning file .*another device" "$work/step.out" ||
    { cat "$work/step.out"; fail "another device's file was not refused"; }
echo "PASS"
