"""Running a captured model with every MAC layer on a pluggable backend (the accelerator's datapath).

Executes the graph of :mod:`mapping.capture` as ``torch.fx.Interpreter`` does, except that the
nodes :mod:`mapping.lower` classified as MAC layers call ``backend(layer, args)``: the vector
MAC units plus PPU of DESIGN.md ("The numerics contract"). Every other node (the PPU's
elementwise ops, host ops, layout) runs in float64 PyTorch on the host. This is how the
accuracy answer of DESIGN.md's data flow ("workloads metric -> accuracy vs the fp32 model") is
measured with the quantization arithmetic really executed.

The backends (float, the ``vsquant`` reference, the fake-quant twin, the TLM) and their protocol, one
dispatch on the layer kind, are in :mod:`mapping.backends`; the interpreter gathers each MAC node's
operands as NumPy float64 (the ``args`` that module describes) and puts the backend's output back in
the graph.

An ``addmm``/``baddbmm`` adds ``beta * input`` to the backend's product on the host (as the PPU's
bias); a fused ``scaled_dot_product_attention`` calls the backend twice (QK^T and AV) with the
scale, mask and softmax on the host in between.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .backends import Backend, float_backend, weight_key
from .capture import CapturedGraph
from .lower import LoweredModel, MacLayer, lower

__all__ = ["QuantInterpreter", "attention"]


def _np(t) -> np.ndarray | None:
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def _get(args, kwargs, i: int, name: str, default=None):
    return args[i] if len(args) > i else kwargs.get(name, default)


class QuantInterpreter(torch.fx.Interpreter):
    """Runs a captured graph in float64 with its MAC layers on ``backend`` (a :class:`mapping.backends.Backend`).

    The graph is re-captured from a float64 copy of the model if it is not float64 already
    (:meth:`CapturedGraph.to_float64`; the user's model is untouched). After a run,
    ``layer_outputs[name]`` holds every MAC layer's backend output, so two runs (e.g. float and
    ``reference_backend("4/8/4/-")`` of :mod:`mapping.backends`) compare layer by layer. ``lowered``: a
    :class:`~mapping.lower.LoweredModel` of the same (float64) graph, reused instead of lowering again.

    >>> interp = QuantInterpreter(capture(model, inputs), reference_backend("8/8/-/-"))
    >>> out = interp.forward()            # the captured example inputs; or interp.forward(other_inputs)
    """

    def __init__(self, captured: CapturedGraph, backend: Backend = float_backend, *, on_unknown: str = "error",
                 lowered: LoweredModel | None = None):
        self.captured = captured.to_float64()
        super().__init__(self.captured.gm)
        self.backend = backend
        if lowered is None or lowered.captured is not self.captured:   # a lowering of this very graph is reused
            lowered = lower(self.captured, on_unknown=on_unknown)
        self.lowered: LoweredModel = lowered
        self.mac_layers: dict[str, list[MacLayer]] = {}
        for layer in self.lowered.layers:
            self.mac_layers.setdefault(layer.node, []).append(layer)
        self.layer_outputs: dict[str, torch.Tensor] = {}

    def forward(self, example_inputs=None):
        """Run on the captured inputs (or ``example_inputs`` of the same structure); float inputs are
        cast to float64. Returns the output in the model's own structure."""
        inputs = self.captured.inputs if example_inputs is None else self.captured.flatten_inputs(example_inputs)
        inputs = [t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs]
        self.layer_outputs = {}
        with torch.no_grad():
            return self.run(*inputs)  # fx's codegen restores the model's output structure

    def run_node(self, n: torch.fx.Node):
        layers = self.mac_layers.get(n.name)
        if layers is None:
            return super().run_node(n)
        with self._set_current_node(n):
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            if layers[0].op.startswith("sdpa"):
                return self._attention(layers, args, kwargs)
            return self._mac(n, layers[0], args, kwargs)

    def _call(self, layer: MacLayer, args: dict) -> torch.Tensor:
        y = self.backend(layer, args)
        y = torch.as_tensor(y, dtype=torch.float64)
        self.layer_outputs[layer.name] = y
        return y

    def _mac(self, n, layer: MacLayer, args, kwargs) -> torch.Tensor:
        """Gather one MAC node's operands as NumPy float64, call the backend, apply an addmm's bias."""
        if layer.op in ("linear", "conv2d"):
            if n.op == "call_module":
                mod = self.fetch_attr(n.target)
                w, b = mod.weight, mod.bias
            else:
                w, b = _get(args, kwargs, 1, "weight"), _get(args, kwargs, 2, "bias")
            ops = dict(input=_np(args[0] if args else kwargs["input"]), weight=_np(w), bias=_np(b),
                       weight_key=weight_key(w))
            if layer.kind == "conv2d":
                ops.update(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
            return self._call(layer, ops)
        first = 1 if layer.op in ("addmm", "baddbmm") else 0   # addmm(input, mat1, mat2, *, beta, alpha)
        operands = list(args) + [kwargs[k] for k in ("input", "mat1", "batch1", "other", "mat2", "batch2")
                                 if k in kwargs]
        a, b = operands[first:first + 2]
        if layer.kind == "linear":   # a @ W with W a parameter: the weight is W^T (N, K)
            y = self._call(layer, dict(input=_np(a), weight=_np(b).T, bias=None, weight_key=weight_key(b, True)))
        else:
            y = self._call(layer, dict(a=_np(a), b=_np(b)))
        if first:   # the bias add of addmm/baddbmm, on the host (the PPU's bias)
            y = kwargs.get("beta", 1) * operands[0].double() + kwargs.get("alpha", 1) * y
        return y

    def _attention(self, layers, args, kwargs) -> torch.Tensor:
        """softmax(Q K^T * scale + mask) V with QK^T and AV on the backend (F.scaled_dot_product_attention)."""
        qk, av = layers
        q, k, v = (_get(args, kwargs, i, n).double() for i, n in enumerate(("query", "key", "value")))
        if kwargs.get("enable_gqa") and k.shape[-3] != q.shape[-3]:
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
            v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
        products = iter((qk, av))
        return attention(q, k, v, _get(args, kwargs, 3, "attn_mask"), _get(args, kwargs, 5, "is_causal", False),
                         kwargs.get("scale"), lambda a, b: self._call(next(products), dict(a=_np(a), b=_np(b))))


def attention(q, k, v, mask, causal: bool, scale, matmul) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with its two products on ``matmul(a, b)``: softmax(Q K^T * scale
    + mask) V. The one decomposition of the fused op, for the interpreter and the fake-quant path."""
    s = matmul(q, k.transpose(-2, -1)) * (scale or 1.0 / math.sqrt(q.shape[-1]))
    L, S = s.shape[-2:]
    if causal:
        s = s.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    return matmul(torch.softmax(s, -1), v)
