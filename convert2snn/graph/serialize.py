"""A safe, code-free description of a clean fx graph: JSON structure + a tensor state dict.

Only the clean-graph vocabulary (`bridges.ops`) can appear; loading never unpickles code.
Constructor arguments are read from each module's attributes of the same name (torch's layers
keep them), adjusted where an op declares how (`OpSpec.arguments` / `OpSpec.construct`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import fx, nn

from bridges import ops

from ..errors import InvalidInputError


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        return v.tolist()
    return v


def _module_spec(module: nn.Module) -> dict:
    cls = type(module)
    spec = ops.spec(module, exact=True)
    if spec is None:
        raise InvalidInputError(f"cannot save a graph containing {cls.__name__}")
    kwargs = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "device", "dtype") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if hasattr(module, name):
            kwargs[name] = _jsonable(getattr(module, name))
    if spec.arguments is not None:
        spec.arguments(module, kwargs)
    return {"class": spec.name, "kwargs": kwargs}


def _build_module(saved: dict) -> nn.Module:
    cls = ops.module_classes().get(saved["class"])
    if cls is None:
        raise InvalidInputError(f"the file names an unknown layer class {saved['class']!r}")
    kwargs = dict(saved["kwargs"])
    construct = ops.spec(cls).construct
    if construct is not None:
        return construct(kwargs)
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
        entry = {
            "name": node.name,
            "op": node.op,
            "args": _encode_arg(list(node.args)),
            "kwargs": {k: _encode_arg(v) for k, v in node.kwargs.items()},
        }
        if node.op == "call_module":
            modules[node.target] = _module_spec(gm.get_submodule(node.target))
            entry["target"] = node.target
        elif node.op == "call_function":
            spec = ops.spec(node.target)
            if spec is None:
                raise InvalidInputError(f"cannot save a graph calling {node.target}")
            entry["target"] = spec.name
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
            function = ops.function_named(entry["target"])
            if function is None:
                raise InvalidInputError(f"the file names an unknown function {entry['target']!r}")
            node = graph.create_node(op, function, args, kwargs, name=entry["name"])
        else:
            raise InvalidInputError(f"the file has a graph node of unknown kind {op!r}")
        env[entry["name"]] = node
    gm = fx.GraphModule(root, graph)
    gm.load_state_dict(state, strict=True)
    return gm
