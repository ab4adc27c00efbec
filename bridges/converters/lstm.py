"""ONNX LSTM (Keras LSTM) → `LSTM`, a torch module whose gate nonlinearities are submodules.

The gates are separate modules (``input_gate``, ``forget_gate``, ``cell_gate``,
``output_gate``, ``cell_activation``) so that the population conversion can swap them for
population-coded neurons without touching the recurrence.
"""

from __future__ import annotations

import torch
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import nn

_ACTIVATIONS = {"Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Relu": nn.ReLU}


class LSTM(nn.Module):
    """ONNX-semantics LSTM: gate order i, o, f, c; optional peepholes; forward/reverse/bidirectional.

    ``forward(x, sequence_lens=None, initial_h=None, initial_c=None)`` returns ``(Y, Y_h, Y_c)``
    with ONNX shapes: for ``layout=0`` Y is [T, dirs, B, H] and Y_h/Y_c are [dirs, B, H]; for
    ``layout=1`` Y is [B, T, dirs, H] and Y_h/Y_c are [B, dirs, H].
    """

    def __init__(
        self,
        W: torch.Tensor,
        R: torch.Tensor,
        B: torch.Tensor | None,
        P: torch.Tensor | None,
        direction: str = "forward",
        layout: int = 0,
        activations: tuple[str, str, str] = ("Sigmoid", "Tanh", "Tanh"),
    ):
        super().__init__()
        dirs, four_h, _ = W.shape
        self.hidden_size = four_h // 4
        self.direction = direction
        self.layout = layout
        self.weight_ih = nn.Parameter(W.clone().float())
        self.weight_hh = nn.Parameter(R.clone().float())
        bias = torch.zeros(dirs, 8 * self.hidden_size) if B is None else B.clone().float()
        self.bias = nn.Parameter(bias[:, : 4 * self.hidden_size] + bias[:, 4 * self.hidden_size :])
        self.peephole = None if P is None else nn.Parameter(P.clone().float())
        f, g, h = (_ACTIVATIONS[a] for a in activations)
        self.input_gate, self.forget_gate, self.output_gate = f(), f(), f()
        self.cell_gate = g()
        self.cell_activation = h()

    def _run(
        self, x: torch.Tensor, d: int, h: torch.Tensor, c: torch.Tensor, lens: torch.Tensor | None, reverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps = x.shape[0]
        gates_x = torch.matmul(x, self.weight_ih[d].t()) + self.bias[d]  # [T, B, 4H], input part once
        H = self.hidden_size
        ys = [None] * steps
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        for t in order:
            z = gates_x[t] + h @ self.weight_hh[d].t()
            zi, zo, zf, zc = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
            if self.peephole is not None:
                zi = zi + self.peephole[d, :H] * c
                zf = zf + self.peephole[d, 2 * H :] * c
            i = self.input_gate(zi)
            f = self.forget_gate(zf)
            c_new = f * c + i * self.cell_gate(zc)
            if self.peephole is not None:
                zo = zo + self.peephole[d, H : 2 * H] * c_new
            o = self.output_gate(zo)
            h_new = o * self.cell_activation(c_new)
            if lens is not None:
                alive = (t < lens).unsqueeze(1).to(x.dtype)
                h_new = alive * h_new + (1 - alive) * h
                c_new = alive * c_new + (1 - alive) * c
                ys[t] = alive * h_new
            else:
                ys[t] = h_new
            h, c = h_new, c_new
        return torch.stack(ys), h, c

    def forward(
        self,
        x: torch.Tensor,
        sequence_lens: torch.Tensor | None = None,
        initial_h: torch.Tensor | None = None,
        initial_c: torch.Tensor | None = None,
    ):
        """``(Y, Y_h, Y_c)``: the LSTM over ``x`` in every direction, in the ONNX shapes of ``layout`` (see class)."""
        if self.layout == 1:
            x = x.transpose(0, 1)
            initial_h = None if initial_h is None else initial_h.transpose(0, 1)
            initial_c = None if initial_c is None else initial_c.transpose(0, 1)
        batch = x.shape[1]
        dirs = self.weight_ih.shape[0]
        zeros = x.new_zeros(dirs, batch, self.hidden_size)
        h0 = zeros if initial_h is None else initial_h
        c0 = zeros if initial_c is None else initial_c
        lens = None
        if sequence_lens is not None and not bool((sequence_lens == x.shape[0]).all()):
            lens = sequence_lens.to(x.device)
        outs, hs, cs = [], [], []
        for d in range(dirs):
            reverse = self.direction == "reverse" or (self.direction == "bidirectional" and d == 1)
            y, h, c = self._run(x, d, h0[d], c0[d], lens, reverse)
            outs.append(y)
            hs.append(h)
            cs.append(c)
        y = torch.stack(outs, dim=1)  # [T, dirs, B, H]
        y_h, y_c = torch.stack(hs), torch.stack(cs)
        if self.layout == 1:
            return y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
        return y, y_h, y_c


@add_converter(operation_type="LSTM", version=1)
@add_converter(operation_type="LSTM", version=7)
@add_converter(operation_type="LSTM", version=14)
def lstm(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """ONNX LSTM with constant W, R, B, P → `LSTM`; clip, input_forget and other gate activations are refused."""
    attrs = node.attributes
    name = node.name
    if attrs.get("clip") is not None:
        raise NotImplementedError(f"LSTM node '{name}': the clip attribute is not supported")
    if attrs.get("input_forget", 0):
        raise NotImplementedError(f"LSTM node '{name}': input_forget=1 (coupled gates) is not supported")
    acts = [a if isinstance(a, str) else a.decode() for a in attrs.get("activations", ["Sigmoid", "Tanh", "Tanh"])]
    if len(acts) not in (3, 6) or any(a not in _ACTIVATIONS for a in acts) or (len(acts) == 6 and acts[:3] != acts[3:]):
        raise NotImplementedError(
            f"LSTM node '{name}': activations {acts} (supported: Sigmoid, Tanh, Relu, the same in both directions)"
        )
    inputs = list(node.input_values) + [""] * (8 - len(node.input_values))

    def const(i: int) -> torch.Tensor | None:
        value = inputs[i]
        if not value:
            return None
        if value not in graph.initializers:
            raise NotImplementedError(f"LSTM node '{name}': input {i} ('{value}') must be a constant")
        return graph.initializers[value].to_torch()

    module = LSTM(
        const(1),
        const(2),
        const(3),
        const(7),
        direction=attrs.get("direction", "forward"),
        layout=attrs.get("layout", 0),
        activations=tuple(acts[:3]),
    )
    dynamic = [inputs[0]] + [inputs[i] for i in (4, 5, 6)]
    while dynamic and not dynamic[-1]:
        dynamic.pop()
    return OperationConverterResult(
        torch_module=module, onnx_mapping=OnnxMapping(inputs=tuple(dynamic), outputs=node.output_values)
    )
