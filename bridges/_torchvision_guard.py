"""Import onnx2torch safely in a process that already imported TensorFlow.

Loading torchvision's compiled ops after TensorFlow crashes the interpreter (a segfault, seen
with TensorFlow 2.21 + torchvision 0.29; the other import order is fine). onnx2torch imports
torchvision only for its NonMaxSuppression and RoiAlign converters, which no network we convert
uses. So when TensorFlow is already loaded and torchvision is not, onnx2torch is imported
against a stand-in whose two functions raise a clear error; the stand-in is removed from
`sys.modules` right after, so it never shadows a later ``import torchvision`` of the user's.
"""

from __future__ import annotations

import sys
import types


def _unavailable(*args, **kwargs):
    raise RuntimeError(
        "torchvision ops (NonMaxSuppression, RoiAlign) are unavailable: torchvision cannot be "
        "loaded into a process that imported TensorFlow first; import bridges (or torchvision) before TensorFlow"
    )


def import_onnx2torch() -> None:
    if "onnx2torch" in sys.modules or "torchvision" in sys.modules or "tensorflow" not in sys.modules:
        import onnx2torch  # noqa: F401, PLC0415  (the import this module exists to order)

        return
    stand_in = types.ModuleType("torchvision")
    stand_in.ops = types.ModuleType("torchvision.ops")
    stand_in.ops.nms = stand_in.ops.roi_align = _unavailable
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stand_in, stand_in.ops
    try:
        import onnx2torch  # noqa: F401, PLC0415  (against the stand-in)
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.ops"]
