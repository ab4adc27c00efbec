"""Clean ANN graph → multi-step SNN graph, by per-op conversion rules.

Each conversion type registers one small rule per op (`@conversion_rule("rate", nn.ReLU)`);
a rule receives the builder, the ANN node and its already-converted inputs and returns the
SNN node that stands for the ANN node's value. Ops without a rule of their own fall back to
the type's default (stateless layers run per time step), or are refused with an error
naming the layer. The SNN graph takes [T, B, ...] input currents and returns the readout's
[T, B, C] running estimate of the ANN's output.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import fx, nn

from bridges.modules import OutputSoftmax

from .errors import UnsupportedLayerError
from .nodes import MembraneReadout
from .sequence import SeqModule

Rule = Callable[["SNNBuilder", fx.Node, tuple], fx.Node]
# Besides module classes and functions, a type may register "default" (ops without a rule) and
# "readout" (called as fn(builder, snn_output_node) → the readout module; MembraneReadout if absent).
_RULES: dict[tuple[str, Any], Rule] = {}


def conversion_rule(conversion_type: str, *keys: Any) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the rule for ``keys`` (module classes or functions) in a conversion type."""

    def deco(fn: Rule) -> Rule:
        for key in keys:
            _RULES[(conversion_type, key)] = fn
        return fn

    return deco


def find_rule(conversion_type: str, ann: fx.GraphModule, node: fx.Node) -> Rule | None:
    if node.op == "call_module":
        for cls in type(ann.get_submodule(node.target)).__mro__:
            if (conversion_type, cls) in _RULES:
                return _RULES[(conversion_type, cls)]
        return None
    try:
        return _RULES.get((conversion_type, node.target))
    except TypeError:
        return None


@dataclass
class ConversionReport:
    """What a conversion did: scales, approximations (each also logged), dropped layers."""

    conversion_type: str
    options: dict[str, Any]
    scales: dict[str, dict[str, float]] = field(default_factory=dict)  # layer → {"lambda" | "min"/"max"/"mean"}
    approximations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"conversion_type": self.conversion_type, "options": self.options, "scales": self.scales,
                "approximations": self.approximations, "notes": self.notes}

    def __str__(self) -> str:
        lines = [f"conversion: {self.conversion_type}"]
        for layer, s in self.scales.items():
            lines.append(f"  λ[{layer}] = " + ", ".join(f"{k}={v:.4g}" for k, v in s.items()))
        lines += [f"  approximation: {a}" for a in self.approximations]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class SNNBuilder:
    """Builds the SNN fx graph node by node, keeping the ANN's layer names."""

    def __init__(self, ann: fx.GraphModule, conversion_type: str, report: ConversionReport, layer_names: dict[str, str]):
        self.ann = ann
        self.conversion_type = conversion_type
        self.report = report
        self.layer_names = layer_names
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.sources: dict[str, str] = {}  # SNN module name → ANN node name
        self._used: set[str] = set()

    def layer(self, node: fx.Node) -> str:
        """The user's name for an ANN node (the Keras layer when known)."""
        return self.layer_names.get(node.name, node.name)

    def ann_module(self, node: fx.Node) -> nn.Module:
        return copy.deepcopy(self.ann.get_submodule(node.target))

    def call(self, module: nn.Module, args: tuple, name: str, source: fx.Node | None = None) -> fx.Node:
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
        return self.call(SeqModule(module if module is not None else self.ann_module(node)), args, node.name, node)

    def refuse(self, node: fx.Node, what: str, hint: str) -> UnsupportedLayerError:
        op = type(self.ann.get_submodule(node.target)).__name__ if node.op == "call_module" else getattr(node.target, "__name__", str(node.target))
        layer = self.layer(node)
        return UnsupportedLayerError(
            f"layer '{layer}' ({op}): {what} in a {self.conversion_type}-coded SNN. {hint}", layer=layer, op=op
        )


def build_snn(ann: fx.GraphModule, conversion_type: str, report: ConversionReport, layer_names: dict[str, str],
              context: Any = None) -> fx.GraphModule:
    """Convert every node of ``ann`` with the registered rules of ``conversion_type``."""
    b = SNNBuilder(ann, conversion_type, report, layer_names)
    b.context = context
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
                raise UnsupportedLayerError("models with several outputs are not supported (convert one output at a time)")
            make_readout = _RULES.get((conversion_type, "readout"))
            readout = make_readout(b, env[value]) if make_readout is not None else MembraneReadout()
            out = b.call(readout, (env[value],), "readout")
            b.graph.output(out)
            continue
        args = fx.map_arg(node.args, lambda n: env[n])
        if any(isinstance(a, (list, tuple)) for a in args):
            args = tuple(x for a in args for x in (a if isinstance(a, (list, tuple)) else [a]))
        rule = find_rule(conversion_type, ann, node)
        if rule is None:
            rule = _RULES.get((conversion_type, "default"))
        if rule is None:
            raise b.refuse(node, "no conversion rule", "This layer type is not supported.")
        env[node] = rule(b, node, tuple(a for a in args if isinstance(a, fx.Node)))
    gm = fx.GraphModule(b.root, b.graph)
    gm.snn_sources = b.sources
    return gm


@conversion_rule("rate", OutputSoftmax)
def drop_output_softmax(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    b.report.notes.append(f"the final softmax '{b.layer(node)}' was dropped: the readout reports logits "
                          "(the argmax, i.e. the prediction, is unchanged)")
    return args[0]
