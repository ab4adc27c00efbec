"""Canonicalisation rules, one small file per family; importing the package registers them."""

from . import affine, layers, recurrent, shapes, slicing, unit_axes, upsampling  # noqa: F401
from .core import PassContext, rule, run_rules

__all__ = ["PassContext", "rule", "run_rules"]
