"""The rule registry and the driver that rewrites a raw graph into a clean one.

A *rule* is a small function ``rule(ctx, node) -> bool`` registered for the op keys it
handles (a module class, a function, or a method name) with `@rule(...)`. It rewrites the
graph around ``node`` and returns True when it changed something. The driver records every
node's value on example inputs of two batch sizes (so a rule can tell a batch dimension from
a fixed one), visits the nodes in order, and repeats until no rule fires. Coverage grows by
adding a rule in a new file of this package, never by editing a switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ..errors import ConversionError

RuleFn = Callable[["PassContext", fx.Node], bool]
RoundPass = Callable[["PassContext"], int]
_RULES: dict[Any, list[tuple[int, RuleFn]]] = {}
_ROUND_PASSES: list[RoundPass] = []

# Batch sizes of the two recording runs: distinct and > 1 so that batch and fixed dims differ.
BATCHES = (2, 3)


def rule(*keys: Any, priority: int = 0) -> Callable[[RuleFn], RuleFn]:
    """Register ``fn`` for nodes whose op key is one of ``keys`` (lower priority runs first): a module
    class, a function, a method name, or a function's "module.qualname" (for a package that must
    not be imported here)."""

    def deco(fn: RuleFn) -> RuleFn:
        for key in keys:
            _RULES.setdefault(key, []).append((priority, fn))
            _RULES[key].sort(key=lambda item: item[0])
        return fn

    return deco


def round_pass(fn: RoundPass) -> RoundPass:
    """Register ``fn(ctx) -> rewrites`` to run over the whole graph at the start of every round
    (before the per-node rules), e.g. constant folding."""
    _ROUND_PASSES.append(fn)
    return fn


def op_key(gm: fx.GraphModule, node: fx.Node) -> Any:
    """The registry key of a node: module class, function, or method name."""
    if node.op == "call_module":
        return type(gm.get_submodule(node.target))
    if node.op in ("call_function", "call_method"):
        return node.target
    return node.op


def rules_for(key: Any) -> list[RuleFn]:
    """The rules registered for ``key`` in run order (for a class: its own and its bases'; for a function
    of an unimported package: those under its "module.qualname")."""
    if isinstance(key, type):
        found = []
        for cls in key.__mro__:
            found.extend(_RULES.get(cls, []))
        return [fn for _, fn in sorted(found, key=lambda item: item[0])]
    try:
        found = _RULES.get(key, [])
    except TypeError:  # unhashable target
        return []
    if not found and callable(key):
        # a function of a package bridges must not import (torchvision: see _torchvision_guard) by its name
        found = _RULES.get(f"{getattr(key, '__module__', '')}.{getattr(key, '__qualname__', '')}", [])
    return [fn for _, fn in found]


@dataclass
class PassContext:
    """What rules may read and update while they rewrite ``gm``."""

    gm: fx.GraphModule
    example_inputs: list[tuple[torch.Tensor, ...]]
    values: list[dict[fx.Node, Any]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # node name -> original op / layer name
    notes: list[str] = field(default_factory=list)
    _counter: int = 0

    # -- recorded values -------------------------------------------------------------
    def record(self) -> None:
        """Run the graph on every example input, keeping each node's value, and note the constant nodes."""
        self.values = [_record_values(self.gm, inputs) for inputs in self.example_inputs]
        self._constants = _constant_nodes(self.gm.graph)

    def value(self, node: fx.Node, run: int = 0) -> Any:
        """The value ``node`` had in recording run ``run`` (None if it was not recorded)."""
        return self.values[run].get(node)

    def has_values(self, node: fx.Node) -> bool:
        """Whether ``node`` was recorded in every run (False for nodes created since the last `record`)."""
        return all(node in v for v in self.values)

    def shape(self, node: fx.Node, run: int = 0) -> tuple[int, ...] | None:
        """The recorded shape of ``node`` in run ``run`` (batch axis included); None for a non-tensor."""
        v = self.value(node, run)
        return tuple(v.shape) if isinstance(v, torch.Tensor) else None

    def is_constant(self, node: fx.Node) -> bool:
        """True for a value that does not depend on the graph inputs at all."""
        return node in self.constants

    @property
    def constants(self) -> set[fx.Node]:
        """The nodes whose values do not depend on the graph inputs (as of the last `record`)."""
        return getattr(self, "_constants", None) or _constant_nodes(self.gm.graph)

    def constant_value(self, node: Any) -> torch.Tensor | None:
        """A constant operand as a tensor: a constant node's recorded value, or a Python number; else None."""
        if isinstance(node, fx.Node):
            if not self.is_constant(node):
                return None
            v = self.value(node)
            return v if isinstance(v, torch.Tensor) else None
        if isinstance(node, (int, float)):
            return torch.tensor(float(node))
        return None

    # -- editing ---------------------------------------------------------------------
    def module(self, node: fx.Node) -> nn.Module:
        """The submodule a ``call_module`` node calls."""
        return self.gm.get_submodule(node.target)

    def fresh_name(self, base: str) -> str:
        """An unused attribute name on ``gm`` made from ``base`` (sanitised, numbered if taken)."""
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in base).strip("_") or "m"
        if base[0].isdigit():
            base = "m_" + base
        name = base
        while hasattr(self.gm, name):
            self._counter += 1
            name = f"{base}_{self._counter}"
        return name

    def source_of(self, node: fx.Node) -> str:
        """The original op / layer name ``node`` comes from."""
        return self.sources.get(node.name, str(node.target) if node.op == "call_module" else node.name)

    def insert_module(
        self,
        anchor: fx.Node,
        module: nn.Module,
        args: tuple,
        name: str | None = None,
        source_from: fx.Node | None = None,
    ) -> fx.Node:
        """Add ``module`` and a call to it right after ``anchor``; return the new node."""
        src = source_from if source_from is not None else anchor
        target = self.fresh_name(name or type(module).__name__.lower())
        self.gm.add_submodule(target, module)
        with self.gm.graph.inserting_after(anchor):
            new = self.gm.graph.call_module(target, args)
        self.sources[new.name] = self.source_of(src)
        return new

    def insert_function(
        self, anchor: fx.Node, fn: Callable, args: tuple, kwargs: dict | None = None, source_from: fx.Node | None = None
    ) -> fx.Node:
        """Add a call ``fn(*args, **kwargs)`` right after ``anchor``; return the new node."""
        src = source_from if source_from is not None else anchor
        with self.gm.graph.inserting_after(anchor):
            new = self.gm.graph.call_function(fn, args, kwargs or {})
        self.sources[new.name] = self.source_of(src)
        return new

    def replace(self, old: fx.Node, new: fx.Node | None) -> None:
        """Route every use of ``old`` to ``new`` (None: ``old`` was an identity of its first input)."""
        if new is None:
            new = old.args[0]
        old.replace_all_uses_with(new)
        self.gm.graph.erase_node(old)

    def replace_with_module(self, old: fx.Node, module: nn.Module, args: tuple, name: str | None = None) -> fx.Node:
        """Replace ``old`` by a call to ``module`` on ``args`` (keeping ``old``'s source); return the new node."""
        new = self.insert_module(old, module, args, name=name, source_from=old)
        self.replace(old, new)
        return new


def _constant_nodes(graph: fx.Graph) -> set[fx.Node]:
    const: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "get_attr":
            const.add(node)
        elif node.op in ("call_module", "call_function", "call_method"):
            inputs = node.all_input_nodes
            if inputs and all(i in const for i in inputs):
                const.add(node)
            elif not inputs and node.op == "call_module":
                const.add(node)
    return const


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n] = out
        return out


@torch.no_grad()
def _record_values(gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> dict[fx.Node, Any]:
    rec = _Recorder(gm)
    rec.run(*inputs)
    return rec.values


def single_user(node: fx.Node) -> fx.Node | None:
    """The only user of ``node``, or None when it has none or several."""
    us = list(node.users)
    return us[0] if len(us) == 1 else None


def is_output(node: fx.Node) -> bool:
    """Whether ``node`` feeds the graph's output node directly."""
    return any(u.op == "output" for u in node.users)


def run_rules(ctx: PassContext, *, max_rounds: int = 50) -> int:
    """Apply registered rules until none fires; returns the number of rewrites."""
    total = 0
    for _ in range(max_rounds):
        ctx.record()
        changed = sum(round_pass(ctx) for round_pass in _ROUND_PASSES)
        for node in list(ctx.gm.graph.nodes):
            if node.graph is None or getattr(node, "_erased", False) or node not in ctx.values[0]:
                continue  # erased or created during this round
            for fn in rules_for(op_key(ctx.gm, node)):
                try:
                    fired = fn(ctx, node)
                except MemoryError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a rule's bug: named, never a raw error
                    raise ConversionError(
                        f"internal error: the clean-up rule {fn.__name__} failed on node '{node.name}' "
                        f"({type(exc).__name__}: {exc}); please report this model"
                    ) from exc
                if fired:
                    changed += 1
                    break
        ctx.gm.graph.eliminate_dead_code()
        _drop_unused_modules(ctx.gm)
        ctx.gm.recompile()
        total += changed
        if not changed:
            return total
    raise ConversionError(
        "internal error: the graph clean-up did not converge (a rule keeps firing); please report this model"
    )


def _drop_unused_modules(gm: fx.GraphModule) -> None:
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    attrs = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    used = called | attrs
    for name in [n for n, _ in gm.named_children()]:
        if name in called:
            continue
        if not any(u == name or u.startswith(name + ".") for u in used):
            delattr(gm, name)
            continue
        # a container of constants (onnx2torch's `initializers`): drop the ones nobody reads
        child = gm.get_submodule(name)
        for attr in list(child._buffers) + list(child._parameters):
            if f"{name}.{attr}" not in attrs:
                delattr(child, attr)
