#!/usr/bin/env bash
# Fill .whl/ (git-ignored, at the repository root) with what the GPU machine lacks: SpikingJelly and
# onnx2torch at the versions CI uses, as pure-Python wheels for its Python 3.12. Everything else the
# run needs is on the machine (torch, triton, numpy, onnx, tqdm, matplotlib, pyyaml, pytest), and the
# project itself travels as the working tree. Run here, before calling the device with carry [".whl"].
set -euo pipefail
cd "$(dirname "$0")/../.."
pins=$(python3 - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if re.match(r"(spikingjelly|onnx2torch)==", d)))
PY
)
rm -rf .whl && mkdir -p .whl
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
ls -la .whl
du -sh .whl
