"""onnx2torch converters for ops it lacks, registered with its own `add_converter` decorator.

Importing this package registers them (one file per op, as in onnx2torch's
``node_converters``). onnx2torch's source is never edited.
"""

from . import average_pool, conv_transpose, gelu, global_max_pool, lstm, newer_opsets  # noqa: F401  (registration side effects)
