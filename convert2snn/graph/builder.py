"""Clean ANN graph → multi-step SNN graph, node by node, by a scheme's conversion rules.

A rule (`convert2snn.schemes.base.Rule`) receives the builder, the ANN node and its already
converted inputs, and returns the SNN node that stands for the ANN node's value. The scheme
has checked every node before (`Scheme.check`), so every node has a rule. The SNN graph takes
[T, B, ...] input currents and returns the readout's [T, B, C] running estimate of the ANN's
output.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn

from bridges import ops

from ..errors import UnsupportedLayerError
from ..report import ConversionReport
from ..sequence import SeqModule

if TYPE_CHECKING:  # the schemes import this module; the builder only calls the scheme it is given
    from ..schemes.base import Scheme


class SNNBuilder:
    """Builds the SNN fx graph node by node, keeping the ANN's layer names.

    ``state`` is free for the scheme's rules to keep what they learn on the way (e.g. in which
    oscillation cycle each value is carried).
    """

    def __init__(
        self,
        ann: fx.GraphModule,
        scheme: Scheme,
        scales: dict[str, torch.Tensor],
        report: ConversionReport,
        layer_names: dict[str, str],
    ):
        self.ann = ann
        self.scheme = scheme
        self.options = scheme.options
        self.scales = scales
        self.report = report
        self.layer_names = layer_names
        self.state: dict[str, Any] = {}
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.sources: dict[str, str] = {}  # SNN module name → ANN node name
        self._used: set[str] = set()

    def layer(self, node: fx.Node) -> str:
        """The user's name for an ANN node (the Keras layer when known)."""
        return self.layer_names.get(node.name, node.name)

    def ann_module(self, node: fx.Node) -> nn.Module:
        """A copy of the ANN node's module (the user's model is never modified)."""
        return copy.deepcopy(self.ann.get_submodule(node.target))

    def call(self, module: nn.Module, args: tuple, name: str, source: fx.Node | None = None) -> fx.Node:
        """Add ``module`` under a unique name derived from ``name`` and call it on ``args``."""
        base = re.sub(r"\W", "_", name) or "m"
        target, i = base, 1
        while target in self._used:
            i += 1
            target = f"{base}_{i}"
        self._used.add(target)
        self.root.add_module(target, module)
        if source is not None:
            self.sources[target] = source.name
        return self.graph.call_module(target, tuple(args))

    def stateless(self, node: fx.Node, args: tuple, module: nn.Module | None = None) -> fx.Node:
        """The ANN node's module (or ``module``) applied to every time step."""
        return self.call(SeqModule(module if module is not None else self.ann_module(node)), args, node.name, node)

    def refuse(self, node: fx.Node, what: str, hint: str) -> UnsupportedLayerError:
        """The error for a node that cannot be built, naming the layer and the op."""
        op = ops.op_name(self.ann.get_submodule(node.target) if node.op == "call_module" else node.target)
        layer = self.layer(node)
        return UnsupportedLayerError(
            f"layer '{layer}' ({op}): {what} in a {self.scheme.name}-coded SNN. {hint}", layer=layer, op=op
        )


def build_snn(
    ann: fx.GraphModule,
    scheme: Scheme,
    scales: dict[str, torch.Tensor],
    report: ConversionReport,
    layer_names: dict[str, str],
) -> fx.GraphModule:
    """Convert every node of ``ann`` with ``scheme``'s rules; the result carries ``snn_sources``
    (SNN module name → the ANN node it stands for)."""
    b = SNNBuilder(ann, scheme, scales, report, layer_names)
    env: dict[fx.Node, fx.Node] = {}
    for node in ann.graph.nodes:
        if node.op == "placeholder":
            env[node] = b.graph.placeholder("x_seq")
            continue
        if node.op == "get_attr":
            raise b.refuse(node, "a free-standing constant tensor cannot be represented", "Fold it into a layer.")
        if node.op == "output":
            value = node.args[0]
            if not isinstance(value, fx.Node):
                raise UnsupportedLayerError(
                    "models with several outputs are not supported (convert one output at a time)"
                )
            out = b.call(scheme.readout(b, env[value]), (env[value],), "readout")
            b.graph.output(out)
            continue
        args = fx.map_arg(node.args, lambda n: env[n])
        if any(isinstance(a, (list, tuple)) for a in args):
            args = tuple(x for a in args for x in (a if isinstance(a, (list, tuple)) else [a]))
        rule = scheme.rule_for(ann, node)
        if rule is None:
            raise b.refuse(node, "no conversion rule", "This layer type is not supported.")
        env[node] = rule.build(b, node, tuple(a for a in args if isinstance(a, fx.Node)))
    gm = fx.GraphModule(b.root, b.graph)
    gm.snn_sources = b.sources
    return gm
