#!/usr/bin/python3
"""cae-cl-convert-dall-e on synthetic pickled encoders (run by tests/shell/convert-dall-e.sh).

    convert_dall_e_check.py TOP_SRCDIR

Builds a small encoder with tools/reference/dalle_reference.py, rebrands its
classes as dall_e.encoder.Encoder / EncoderBlock and dall_e.utils.Conv2d (the
official module paths, registered here as fake modules), pickles the whole
module with torch.save in the zip and the legacy format, converts each
without the fake modules (in a separate process) and checks every tensor
bit for bit against the state_dict. Also: a plain state_dict with a float16
tensor (cast to F32), a pickle with a foreign global (refused, nothing
written), a text file (a wget log) and a missing file (refused, path named).
Exits 0 on success, 1 on failure.
"""

import os
import subprocess
import sys
import tempfile
import types
import warnings

sys.dont_write_bytecode = True
TOP = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
BUILD = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else TOP)
sys.path.insert(0, os.path.join(TOP, "tools", "reference"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dalle_reference as ref  # noqa: E402
import safetensors_io  # noqa: E402

CONVERT = os.path.join(BUILD, "cae-cl-convert-dall-e")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, file=sys.stderr)


def fake_dall_e():
    """Register dall_e, dall_e.utils and dall_e.encoder with rebranded classes."""
    pkg = types.ModuleType("dall_e")
    utils = types.ModuleType("dall_e.utils")
    encoder = types.ModuleType("dall_e.encoder")
    pkg.utils, pkg.encoder = utils, encoder
    classes = {}
    for mod, base in ((utils, ref.Conv2d), (encoder, ref.EncoderBlock), (encoder, ref.Encoder)):
        cls = type(base.__name__, (base,), {"__module__": mod.__name__})
        cls.__qualname__ = base.__name__
        setattr(mod, base.__name__, cls)
        classes[base] = cls
    sys.modules.update({"dall_e": pkg, "dall_e.utils": utils, "dall_e.encoder": encoder})
    return classes


def synthetic_encoder():
    classes = fake_dall_e()
    enc = ref.Encoder(n_hid=8, vocab_size=24)
    ref.randomize(enc, 8.0, torch.Generator().manual_seed(3))
    for m in enc.modules():
        if type(m) in classes:
            m.__class__ = classes[type(m)]
    assert type(enc).__module__ == "dall_e.encoder"
    return enc


def run(args):
    p = subprocess.run([sys.executable, CONVERT] + args, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def expect_same(path, want, what):
    got, meta = safetensors_io.load(path)
    check(sorted(got) == sorted(want), "%s: keys differ: %s" % (
        what, sorted(set(got) ^ set(want))))
    for k, v in want.items():
        if k in got:
            check(got[k].dtype == np.float32 and got[k].shape == tuple(v.shape) and
                  np.array_equal(got[k], v.float().numpy()), "%s: tensor %s differs" % (what, k))
    check(meta.get("n_hid") == "8" and meta.get("vocab") == "24", "%s: metadata %s" % (what, meta))


def main():
    warnings.simplefilter("ignore")  # torch.save: no source for the rebranded classes
    enc = synthetic_encoder()
    sd = {k: v.detach().clone() for k, v in enc.state_dict().items()}
    check("blocks.group_2.block_1.id_path.w" in sd and "blocks.group_1.block_1.id_path.w" not in sd,
          "reference keys: id_path only where the widths differ")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, zip_format in (("zip", True), ("legacy", False)):
            pkl = os.path.join(tmp, "encoder-%s.pkl" % fmt)
            out = os.path.join(tmp, "encoder-%s.safetensors" % fmt)
            torch.save(enc, pkl, _use_new_zipfile_serialization=zip_format)
            with open(pkl, "rb") as f:
                raw = f.read()
            check(b"dall_e.encoder" in raw and b"dall_e.utils" in raw,
                  "%s pickle names dall_e.encoder and dall_e.utils" % fmt)
            rc, log = run([pkl, out])
            check(rc == 0, "%s pickle: convert-dall-e exited %d: %s" % (fmt, rc, log))
            if rc == 0:
                expect_same(out, sd, fmt + " pickle")

        # a plain state_dict, one tensor in float16
        half = dict(sd)
        half["blocks.input.b"] = sd["blocks.input.b"].half()
        pkl, out = os.path.join(tmp, "sd.pkl"), os.path.join(tmp, "sd.safetensors")
        torch.save(half, pkl)
        rc, log = run([pkl, out])
        check(rc == 0 and "1 cast to F32" in log, "state_dict pickle: %d %s" % (rc, log))
        if rc == 0:
            want = dict(sd)
            want["blocks.input.b"] = half["blocks.input.b"].float()
            expect_same(out, want, "state_dict pickle")

        # a foreign global must be refused before it runs
        class Evil:
            def __reduce__(self):
                return (os.getcwd, ())
        pkl, out = os.path.join(tmp, "evil.pkl"), os.path.join(tmp, "evil.safetensors")
        torch.save({"blocks.input.w": Evil()}, pkl)
        rc, log = run([pkl, out])
        check(rc == 1 and "refusing the global" in log and pkl in log and not os.path.exists(out),
              "foreign global: %d %s" % (rc, log))

        # a wget log and a missing file
        pkl = os.path.join(tmp, "log.pkl")
        with open(pkl, "w") as f:
            f.write("--2021-02-24 12:00:00--  https://cdn.openai.com/dall-e/encoder.pkl\n")
        rc, log = run([pkl, out])
        check(rc == 1 and "wget -O" in log and pkl in log, "wget log: %d %s" % (rc, log))
        pkl = os.path.join(tmp, "missing.pkl")
        rc, log = run([pkl, out])
        check(rc == 1 and pkl in log and "no such file" in log, "missing file: %d %s" % (rc, log))
        check(not os.path.exists(out), "nothing written on failure")
    print("convert-dall-e: %s" % ("%d failures" % len(failures) if failures else "all checks passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
