"""Raw fx graph (onnx2torch's, or a traced torch module) → clean graph, checked for equivalence."""

from __future__ import annotations

import contextlib
import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from . import passes  # noqa: F401  (registers the rules)
from .errors import ConversionError, InvalidInputError
from .modules import OutputSoftmax
from .ops import RECURRENT, WEIGHTED
from .passes.core import BATCHES, PassContext, run_rules

# Relative to the output scale: what "exact" means for a float32 rewrite of the graph.
EQUIVALENCE_TOLERANCE = 1e-4
# A rewrite perturbs intermediate values by float32 rounding (~1e-7 relative per op); a model whose
# output moves by s when its input moves by PROBE_STEP (relative) may move that much under a
# rewrite too, so the check allows SENSITIVITY_FACTOR · s when that exceeds EQUIVALENCE_TOLERANCE.
PROBE_STEP = 1e-6
SENSITIVITY_FACTOR = 10.0
# ... but never more than this: a jump in the output (rounding, quantisation) must not excuse a wrong rewrite.
MAX_TOLERANCE = 1e-2


@dataclass
class BridgeInfo:
    """What the SNN side needs to know about where a clean graph came from."""

    source: str  # "keras", "onnx" or "torch"
    input_shape: tuple[int, ...]  # one sample, in the clean graph's (PyTorch) layout
    input_permutation: tuple[int, ...] | None = None  # original layout → clean layout (e.g. NHWC → NCHW)
    layers: dict[str, str] = field(default_factory=dict)  # node name → original layer / op name
    layer_classes: dict[str, str] = field(default_factory=dict)  # original layer name → its class (Keras)
    output_softmax: bool = False
    notes: list[str] = field(default_factory=list)

    def to_model_layout(self, x: torch.Tensor) -> torch.Tensor:
        """Turn a batch in the original model's layout into the clean graph's layout."""
        return x.permute(self.input_permutation).contiguous() if self.input_permutation else x

    def original_input_shape(self) -> tuple[int, ...]:
        """The sample shape in the original model's layout (``input_shape`` with the permutation undone)."""
        if not self.input_permutation:
            return self.input_shape
        full = (0,) + tuple(self.input_shape)
        inverse = [self.input_permutation.index(i) for i in range(len(full))]
        return tuple(full[i] for i in inverse)[1:]

    def as_dict(self) -> dict:
        """The info as a JSON-serialisable dict (read back by `from_dict`)."""
        return {
            "source": self.source,
            "input_shape": list(self.input_shape),
            "input_permutation": list(self.input_permutation) if self.input_permutation else None,
            "layers": self.layers,
            "layer_classes": self.layer_classes,
            "output_softmax": self.output_softmax,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> BridgeInfo:
        """A `BridgeInfo` rebuilt from the dict `as_dict` wrote."""
        return cls(
            source=d["source"],
            input_shape=tuple(d["input_shape"]),
            input_permutation=tuple(d["input_permutation"]) if d.get("input_permutation") else None,
            layers=dict(d.get("layers", {})),
            layer_classes=dict(d.get("layer_classes", {})),
            output_softmax=bool(d.get("output_softmax")),
            notes=list(d.get("notes", [])),
        )


def example_inputs(input_shape: tuple[int, ...], seed: int = 0) -> list[tuple[torch.Tensor]]:
    """Seeded standard-normal batches of ``input_shape`` samples, one 1-tuple per batch size in `BATCHES`."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn((b,) + tuple(input_shape), generator=gen),) for b in BATCHES]


def canonicalize(
    raw: fx.GraphModule,
    input_shape: tuple[int, ...],
    sources: dict[str, str] | None = None,
    check_inputs: torch.Tensor | None = None,
) -> tuple[fx.GraphModule, dict[str, str]]:
    """Rewrite a copy of ``raw`` with the registered rules; return it and its node → source map.

    The rules see random example inputs. The result is checked against ``raw`` on those and on
    ``check_inputs`` (a batch in the model's own range, e.g. calibration data) when given; raises
    `ConversionError` if an output differs by more than `EQUIVALENCE_TOLERANCE` of its scale, or
    by more than the model itself moves under a float32-sized input change (`PROBE_STEP`) times
    `SENSITIVITY_FACTOR` (a rule would be wrong: please report).
    """
    raw.eval()  # inference: dropout off, batch norms on their running statistics
    gm = copy.deepcopy(raw)
    inputs = example_inputs(input_shape)
    checks = list(inputs) + ([(check_inputs.float(),)] if check_inputs is not None else [])
    with _threads_for(input_shape), torch.no_grad():
        try:
            reference = [raw(*x) for x in checks]
        except Exception as exc:  # noqa: BLE001 - the imported model itself fails: say so, with its error
            raise InvalidInputError(
                f"the imported model fails on inputs of shape {tuple(checks[0][0].shape[1:])} "
                f"({type(exc).__name__}: {' '.join(str(exc).split())})"
            ) from exc
        tolerances = [_tolerance(raw, x, ref) for x, ref in zip(checks, reference)]
        ctx = PassContext(gm=gm, example_inputs=inputs, sources=dict(sources or {}))
        _split_shared_modules(gm, ctx.sources)
        for node in gm.graph.nodes:
            ctx.sources.setdefault(node.name, str(node.target) if node.op == "call_module" else node.name)
        run_rules(ctx)
        gm = _rename(gm, ctx.sources)
        for x, ref, tolerance in zip(checks, reference, tolerances):
            _check_close(gm(*x), ref, tolerance)
    return gm, gm.bridge_sources  # type: ignore[attr-defined]


def _tolerance(raw: fx.GraphModule, x: tuple[torch.Tensor, ...], reference: Any) -> float:
    """The equivalence tolerance on ``x``: `EQUIVALENCE_TOLERANCE`, or more (up to `MAX_TOLERANCE`)
    for a model whose output is that sensitive to a float32-sized change of its input."""
    again = max_relative_diff(raw(*x), reference)
    if again > EQUIVALENCE_TOLERANCE:
        raise InvalidInputError(
            f"the imported model gives outputs {again:.1e} (relative) apart on the same input: it is not "
            "deterministic at inference (a random op?), so no conversion can reproduce it"
        )
    gen = torch.Generator().manual_seed(1)
    probe = tuple(t + PROBE_STEP * float(t.abs().max()) * torch.randn(t.shape, generator=gen) for t in x)
    sensitive = SENSITIVITY_FACTOR * max_relative_diff(raw(*probe), reference)
    return min(MAX_TOLERANCE, max(EQUIVALENCE_TOLERANCE, sensitive))


def _split_shared_modules(gm: fx.GraphModule, sources: dict[str, str]) -> None:
    """Give every call site its own module: a module called at several places (torchvision's
    ResNets call one ReLU up to three times) becomes one copy per call — the first call keeps the
    layer's name, the k-th is ``<layer>#<k>`` — so that statistics, scales and rewrites are per call
    site and never shared."""
    calls: dict[str, int] = {}
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        target = str(node.target)
        calls[target] = calls.get(target, 0) + 1
        if calls[target] == 1:
            continue
        name = f"{_sanitize(target)}__call{calls[target]}"
        while hasattr(gm, name):
            name += "_"
        gm.add_submodule(name, copy.deepcopy(gm.get_submodule(target)))
        node.target = name
        sources.setdefault(node.name, f"{sources.get(target, target)}#{calls[target]}")
    gm.recompile()


# Samples up to this many elements are recorded single-threaded (see `_threads_for`).
SMALL_INPUT_ELEMENTS = 1 << 16


@contextlib.contextmanager
def _threads_for(input_shape: tuple[int, ...]):
    """Run the recordings of small models on one thread.

    The example batches have 2 and 3 samples: for small inputs every op is tiny and intra-op
    threads only add synchronisation. On a loaded machine (CI runners, two cores shared with
    other jobs) OpenMP's spin-waiting made canonicalising a 30-layer toy model take ~40 s
    instead of ~3 s. Large inputs (ImageNet-sized) keep the caller's thread count.
    """
    previous = torch.get_num_threads()
    small = math.prod(input_shape) <= SMALL_INPUT_ELEMENTS
    if small and previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small and previous > 1:
            torch.set_num_threads(previous)


def _flat(t: Any) -> list[torch.Tensor]:
    if isinstance(t, torch.Tensor):
        return [t]
    if isinstance(t, (list, tuple)):
        return [y for x in t for y in _flat(x)]
    return []


def max_relative_diff(a: Any, b: Any) -> float:
    """The largest elementwise |a − b| over the tensors of two (nested) outputs, each relative to its
    tensor's max |b| (floored at 1e-6)."""
    worst = 0.0
    for x, y in zip(_flat(a), _flat(b)):
        scale = max(float(y.abs().max()), 1e-6) if y.numel() else 1.0
        worst = max(worst, float((x.float() - y.float()).abs().max()) / scale if x.numel() else 0.0)
    return worst


def _check_close(out: Any, ref: Any, tolerance: float = EQUIVALENCE_TOLERANCE) -> None:
    if len(_flat(out)) != len(_flat(ref)):
        raise ConversionError(
            "internal error: canonicalisation changed the number of outputs; please report this model"
        )
    diff = max_relative_diff(out, ref)
    if diff > tolerance:
        if tolerance > EQUIVALENCE_TOLERANCE:
            raise ConversionError(
                f"internal error: the cleaned graph differs from the imported one by {diff:.2e} (relative; allowed "
                f"{tolerance:.1e}, as the model itself moves that much under a float32-sized input change); "
                "please report this model"
            )
        raise ConversionError(
            f"internal error: the cleaned graph differs from the imported one by {diff:.2e} (relative); "
            "please report this model"
        )


def _sanitize(name: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "node"
    return "n_" + name if name[0].isdigit() else name


def _rename(gm: fx.GraphModule, sources: dict[str, str]) -> fx.GraphModule:
    """Rebuild the graph so that modules and nodes carry the original layers' names."""
    root = torch.nn.Module()
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    new_sources: dict[str, str] = {}
    used: set[str] = set()
    module_sources: set[str] = set()
    primary = _primary_modules(gm, sources)

    def unique(base: str) -> str:
        name, i = base, 1
        while name in used:
            i += 1
            name = f"{base}_{i}"
        used.add(name)
        return name

    for node in gm.graph.nodes:
        args = fx.map_arg(node.args, lambda n: env[n])
        kwargs = fx.map_arg(node.kwargs, lambda n: env[n])
        source = sources.get(node.name, node.name)
        if node.op == "placeholder":
            new = graph.placeholder(unique(_sanitize(node.name)))
        elif node.op == "output":
            new = graph.output(args[0])
        elif node.op == "get_attr":
            name = unique(_sanitize(node.target))
            value = _get_attr(gm, node.target)
            if isinstance(value, torch.nn.Parameter):
                root.register_parameter(name, value)
            else:
                root.register_buffer(name, value)
            new = graph.get_attr(name)
        elif node.op == "call_module":
            module = gm.get_submodule(node.target)
            base = _sanitize(source)
            if primary.get(source, node) is not node:  # a layer that became several modules: conv, conv_relu
                base = f"{base}_{type(module).__name__.lower()}"
            module_sources.add(source)
            name = unique(base)
            root.add_module(name, module)
            new = graph.call_module(name, args, kwargs)
        else:
            suffix = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "fn")
            base = _sanitize(source) if source != node.name else _sanitize(str(suffix))
            new = graph.create_node(node.op, node.target, args, kwargs, name=unique(base))
        env[node] = new
        if node.op not in ("placeholder", "output"):
            new_sources[new.name] = source
    out = fx.GraphModule(root, graph)
    out.bridge_sources = new_sources
    return out


def _primary_modules(gm: fx.GraphModule, sources: dict[str, str]) -> dict[str, fx.Node]:
    """For every source layer, the module node that gets its bare name: its weighted layer if any."""
    primary: dict[str, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        source = sources.get(node.name, node.name)
        weighted = isinstance(gm.get_submodule(node.target), WEIGHTED + RECURRENT + (torch.nn.LSTM,))
        current = primary.get(source)
        if (
            current is None
            or weighted
            and not isinstance(gm.get_submodule(current.target), WEIGHTED + RECURRENT + (torch.nn.LSTM,))
        ):
            primary[source] = node
    return primary


def _get_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def has_output_softmax(gm: fx.GraphModule) -> bool:
    """Whether ``gm`` calls an `OutputSoftmax` (a softmax that ends the network)."""
    return any(n.op == "call_module" and isinstance(gm.get_submodule(n.target), OutputSoftmax) for n in gm.graph.nodes)
