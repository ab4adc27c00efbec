"""A safe, code-free description of a clean fx graph: JSON structure + a tensor state dict.

Only whitelisted module classes and functions can appear; loading never unpickles code.
Constructor arguments are read from each module's attributes of the same name (torch's
layers keep them), with small per-class adjustments registered in `_ARGUMENT_FIXES`.
"""
from __future__ import annotations

import inspect
import operator
from typing import Any, Callable

import torch
from torch import fx, nn

from bridges.converters.lstm import LSTM
from bridges.modules import Affine, OutputSoftmax, Pad, Permute, Reshape

from .errors import InvalidInputError

_MODULE_CLASSES: dict[str, type] = {
    cls.__name__: cls for cls in (
        nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
        nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.Softmax, OutputSoftmax,
        nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
        nn.AdaptiveMaxPool3d, nn.Flatten, nn.Unflatten, nn.Upsample, nn.Identity, Reshape, Permute, Pad, Affine, LSTM,
    )
}
_FUNCTIONS: dict[str, Callable] = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "cat": torch.cat,
                                  "getitem": operator.getitem}  # getitem: picks one of an LSTM's outputs
_FUNCTION_NAMES = {v: k for k, v in _FUNCTIONS.items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        return v.tolist()
    return v


def _fix_bias(module: nn.Module, kwargs: dict) -> None:
    kwargs["bias"] = module.bias is not None


def _fix_affine(module: Affine, kwargs: dict) -> None:
    kwargs["scale"] = None if module.scale is None else list(module.scale.shape)
    kwargs["bias"] = None if module.bias is None else list(module.bias.shape)


def _fix_lstm(module: LSTM, kwargs: dict) -> None:
    kwargs.update(W=list(module.weight_ih.shape), R=list(module.weight_hh.shape), B=None,
                  P=None if module.peephole is None else list(module.peephole.shape),
                  activations=[type(module.input_gate).__name__, type(module.cell_gate).__name__,
                               type(module.cell_activation).__name__])


_ARGUMENT_FIXES: dict[type, Callable[[nn.Module, dict], None]] = {
    nn.Conv1d: _fix_bias, nn.Conv2d: _fix_bias, nn.Conv3d: _fix_bias, nn.ConvTranspose1d: _fix_bias,
    nn.ConvTranspose2d: _fix_bias, nn.ConvTranspose3d: _fix_bias, nn.Linear: _fix_bias, Affine: _fix_affine,
    LSTM: _fix_lstm,
}


def _module_spec(module: nn.Module) -> dict:
    cls = type(module)
    if cls.__name__ not in _MODULE_CLASSES or _MODULE_CLASSES[cls.__name__] is not cls:
        raise InvalidInputError(f"cannot save a graph containing {cls.__name__}")
    kwargs = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "device", "dtype") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if hasattr(module, name):
            kwargs[name] = _jsonable(getattr(module, name))
    if cls in _ARGUMENT_FIXES:
        _ARGUMENT_FIXES[cls](module, kwargs)
    return {"class": cls.__name__, "kwargs": kwargs}


def _build_module(spec: dict) -> nn.Module:
    cls = _MODULE_CLASSES.get(spec["class"])
    if cls is None:
        raise InvalidInputError(f"the file names an unknown layer class {spec['class']!r}")
    kwargs = dict(spec["kwargs"])
    if cls is Affine:
        return Affine(None if kwargs["scale"] is None else torch.zeros(kwargs["scale"]),
                      None if kwargs["bias"] is None else torch.zeros(kwargs["bias"]))
    if cls is LSTM:
        p = kwargs["P"]
        return LSTM(torch.zeros(kwargs["W"]), torch.zeros(kwargs["R"]), None, None if p is None else torch.zeros(p),
                    direction=kwargs["direction"], layout=kwargs["layout"], activations=tuple(kwargs["activations"]))
    for key, value in kwargs.items():
        if isinstance(value, list):
            kwargs[key] = tuple(value)
    return cls(**kwargs)


def _encode_arg(a: Any) -> Any:
    if isinstance(a, fx.Node):
        return {"node": a.name}
    if isinstance(a, (list, tuple)):
        return {"list": [_encode_arg(x) for x in a]}
    if a is None or isinstance(a, (int, float, str, bool)):
        return a
    raise InvalidInputError(f"cannot save a graph argument of type {type(a).__name__}")


def _decode_arg(a: Any, env: dict[str, fx.Node]) -> Any:
    if isinstance(a, dict) and "node" in a:
        return env[a["node"]]
    if isinstance(a, dict) and "list" in a:
        return [_decode_arg(x, env) for x in a["list"]]
    return a


def graph_to_spec(gm: fx.GraphModule) -> dict:
    """The structure of a clean graph as JSON-able data (weights go in its state dict)."""
    nodes = []
    modules = {}
    for node in gm.graph.nodes:
        entry = {"name": node.name, "op": node.op, "args": _encode_arg(list(node.args)),
                 "kwargs": {k: _encode_arg(v) for k, v in node.kwargs.items()}}
        if node.op == "call_module":
            modules[node.target] = _module_spec(gm.get_submodule(node.target))
            entry["target"] = node.target
        elif node.op == "call_function":
            if node.target not in _FUNCTION_NAMES:
                raise InvalidInputError(f"cannot save a graph calling {node.target}")
            entry["target"] = _FUNCTION_NAMES[node.target]
        elif node.op in ("placeholder",):
            entry["target"] = node.target
        elif node.op != "output":
            raise InvalidInputError(f"cannot save graph node {node.name} ({node.op})")
        nodes.append(entry)
    return {"nodes": nodes, "modules": modules}


def graph_from_spec(spec: dict, state: dict[str, torch.Tensor]) -> fx.GraphModule:
    """Rebuild the graph of `graph_to_spec` and load its weights (strictly)."""
    root = nn.Module()
    for name, mspec in spec["modules"].items():
        root.add_module(name, _build_module(mspec))
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    for entry in spec["nodes"]:
        args = tuple(_decode_arg(entry["args"], env))
        kwargs = {k: _decode_arg(v, env) for k, v in entry["kwargs"].items()}
        op = entry["op"]
        if op == "output":
            node = graph.output(args[0])
        elif op in ("placeholder", "call_module"):
            node = graph.create_node(op, entry["target"], args, kwargs, name=entry["name"])
        elif op == "call_function":
            if entry["target"] not in _FUNCTIONS:
                raise InvalidInputError(f"the file names an unknown function {entry['target']!r}")
            node = graph.create_node(op, _FUNCTIONS[entry["target"]], args, kwargs, name=entry["name"])
        else:
            raise InvalidInputError(f"the file has a graph node of unknown kind {op!r}")
        env[entry["name"]] = node
    gm = fx.GraphModule(root, graph)
    gm.load_state_dict(state, strict=True)
    return gm
