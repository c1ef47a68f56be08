#!/bin/sh
# cae-cl-convert-dall-e on synthetic pickled encoders; skipped (77) without
# a Python with torch.
top=${CAE_TOP_SRCDIR:-.}
build=${CAE_TOP_BUILDDIR:-$top}
python=${PYTHON:-/usr/bin/python3}
if ! "$python" -c 'import torch, numpy' >/dev/null 2>&1; then
    echo "convert-dall-e.sh: $python has no torch: skipped"
    exit 77
fi
exec "$python" "$top/tests/shell/convert_dall_e_check.py" "$top" "$build"
