#!/bin/sh
# cae-cl-tune on a tiny configuration with two CLBlast candidates writes a
# valid tuning file; cae-cl-step --gemm clblast picks it up (one line says
# so) and still matches the conformance fixture; a corrupt file gives one
# warning line naming it and the step still runs and matches.
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
/usr/bin/python3 - "$CAE_CL_TUNE_FILE" <<'PY' || fail "tuning file is not what it should be"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["format"] == "cae-cl-tune 1", t["format"]
x = t["clblast"]["Xgemm"]
assert len(x) == 16 and all(isinstance(v, int) for v in x.values()), x
assert x["MWG"] % (x["MDIMC"] * x["VWM"]) == 0 and x["NWG"] % (x["NDIMC"] * x["VWN"]) == 0, x
assert "XGEMM_MIN_INDIRECT_SIZE" in t["clblast"]["GemmRoutine"]
assert t["kernels"]["work_group_1d"] >= 1
assert t["measured"]["clblast_tuned"]["step_gemm_ms"] > 0
PY

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
t["clblast"]["Xgemm"]["MWG"] = 3
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
