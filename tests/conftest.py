"""Test-suite setup that must happen before any import of Triton (SpikingJelly imports it).

Without a GPU, Triton kernels run in Triton's interpreter on CPU tensors, so the kernel tests
(`tests/convert2snn/neurons/test_kernels.py`) check them against the torch reference everywhere.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
