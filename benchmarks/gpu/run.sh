#!/usr/bin/env bash
# The GPU run, as the device tool calls it (carry [".whl"]; see README.md beside this file):
#     bash benchmarks/gpu/run.sh            # everything: ~7 minutes on an H200, start excluded
#     bash benchmarks/gpu/run.sh --quick    # every stage in seconds
# Writes $OUT/gpu.json, $OUT/speed.json and $OUT/gpu.log.
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the carried wheels failed"; exit 2; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
    echo "no .whl/ carried: using the installed packages"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python3 benchmarks/gpu/gpu_check.py --device "${DEVICE:-cuda}" --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu.log"
exit "${PIPESTATUS[0]}"
