"""Running a captured model with every MAC layer on a pluggable backend (the accelerator's datapath).

Executes the graph of :mod:`mapping.capture` as ``torch.fx.Interpreter`` does, except that the
nodes :mod:`mapping.lower` classified as MAC layers call ``backend(layer, args)``: the vector
MAC units plus PPU of DESIGN.md ("The numerics contract"). Every other node (the PPU's
elementwise ops, host ops, layout) runs in float64 PyTorch on the host. This is how the
accuracy answer of DESIGN.md's data flow ("workloads metric -> accuracy vs the fp32 model") is
measured with the quantization arithmetic really executed.

Backend contract: ``backend(layer: MacLayer, args: dict) -> torch.Tensor`` (a NumPy array is
accepted too) with the layer's float output in the op's own layout. ``args`` holds NumPy
float64 arrays:

- ``linear``:  ``input`` (..., K), ``weight`` (N, K), ``bias`` (N,) or None;
- ``conv2d``:  ``input`` (B, C, H, W), ``weight`` (Cout, C/groups, R, S), ``bias``, and the ints
  ``stride``, ``padding``, ``dilation`` (pairs) and ``groups``;
- ``matmul``:  ``a`` (..., M, K) and ``b`` (..., K, N), both activations.

Backends: :func:`float_backend` (float64 PyTorch, reproduces the model) and
:func:`reference_backend` (the ``vsquant`` reference layers: the golden model of the
quantized datapath, output = the PPU's float output; the next MAC layer quantizes its input
again, as the PPU's dynamic per-vector requantization does).

An ``addmm``/``baddbmm`` adds ``beta * input`` to the backend's product on the host (as the PPU's
bias); a fused ``scaled_dot_product_attention`` calls the backend twice (QK^T and AV) with the
scale, mask and softmax on the host in between.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vsquant import QuantConfig
from vsquant import layers as vsq

from .capture import CapturedGraph
from .lower import LoweredModel, MacLayer, lower

__all__ = ["QuantInterpreter", "attention", "float_backend", "reference_backend", "unsigned_policy"]


def _t(a) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _np(t) -> np.ndarray | None:
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def float_backend(layer: MacLayer, args: dict) -> torch.Tensor:
    """Plain float64 math (the same PyTorch ops the model calls): the unquantized reference."""
    if layer.kind == "linear":
        return F.linear(_t(args["input"]), _t(args["weight"]), _t(args.get("bias")))
    if layer.kind == "conv2d":
        return F.conv2d(_t(args["input"]), _t(args["weight"]), _t(args.get("bias")), args["stride"], args["padding"],
                        args["dilation"], args["groups"])
    return torch.matmul(_t(args["a"]), _t(args["b"]))


def unsigned_policy(cfg: QuantConfig, x) -> bool:
    """Unsigned activations (``4U``) only for non-negative inputs (after ReLU, softmax); else signed.
    ``x``: a NumPy array or a torch tensor (the fake-quant path uses the same policy)."""
    return bool(cfg.act_unsigned and math.prod(x.shape) and x.min() >= 0)


class WeightCache:
    """Quantized weights by tensor identity: weights are quantized once, offline (paper Sec. 4.3).

    Keyed by the parameter's storage, version counter and shape, so an in-place update (an
    optimizer step while fine-tuning) makes a new entry instead of reusing a stale one.
    """

    def __init__(self, cfg: QuantConfig):
        self.cfg = cfg
        self._q: dict = {}

    def get(self, layer: MacLayer, args: dict):
        key = args.get("weight_key")
        if key is not None and key in self._q:
            return self._q[key]
        w = args["weight"]
        q = vsq.quantize_conv_weight(w, self.cfg) if layer.kind == "conv2d" else vsq.quantize_weight(w, self.cfg)
        if key is not None:
            self._q[key] = q
        return q


def _weight_key(w, transpose: bool = False):
    if not isinstance(w, torch.Tensor):
        return None
    return (w.untyped_storage().data_ptr(), w.storage_offset(), w._version, tuple(w.shape), transpose)


def reference_backend(cfg: QuantConfig | str):
    """A backend running every MAC layer through the ``vsquant`` reference (Eq. 1-7, Sec. 5).

    linear -> :func:`vsquant.layers.linear`, conv2d -> :func:`vsquant.layers.conv2d`, matmul
    (QK^T, AV) -> :func:`vsquant.layers.matmul`; returns ``LayerResult.output``, the PPU's float
    output. Weights are quantized per output channel/vector, activations dynamically; with
    unsigned activations (``4U``) an input with negative values is quantized as signed.
    """
    cfg = QuantConfig.parse(cfg)
    weights = WeightCache(cfg)

    def backend(layer: MacLayer, args: dict) -> torch.Tensor:
        if layer.kind == "linear":
            x = args["input"]
            r = vsq.linear(x, weights.get(layer, args), args.get("bias"), cfg, unsigned_input=unsigned_policy(cfg, x),
                           requantize_output=False)
        elif layer.kind == "conv2d":
            x = args["input"]
            r = vsq.conv2d(x, args["weight"], args.get("bias"), cfg, args["stride"], args["padding"], args["dilation"],
                           args["groups"], unsigned_input=unsigned_policy(cfg, x), requantize_output=False,
                           weight_q=weights.get(layer, args))
        else:
            a, b = args["a"], args["b"]
            r = vsq.matmul(a, b, cfg, a_unsigned=unsigned_policy(cfg, a), b_unsigned=unsigned_policy(cfg, b),
                           requantize_output=False)
        return torch.from_numpy(np.asarray(r.output, np.float64))

    backend.cfg = cfg
    backend.__name__ = backend.__qualname__ = f"reference_backend({cfg})"
    return backend


def _get(args, kwargs, i: int, name: str, default=None):
    return args[i] if len(args) > i else kwargs.get(name, default)


class QuantInterpreter(torch.fx.Interpreter):
    """Runs a captured graph in float64 with its MAC layers on ``backend``.

    The graph is re-captured from a float64 copy of the model if it is not float64 already
    (:meth:`CapturedGraph.to_float64`; the user's model is untouched). After a run,
    ``layer_outputs[name]`` holds every MAC layer's backend output, so two runs (e.g. float and
    ``reference_backend("4/8/4/-")``) compare layer by layer.

    >>> interp = QuantInterpreter(capture(model, inputs), reference_backend("8/8/-/-"))
    >>> out = interp.forward()            # the captured example inputs; or interp.forward(other_inputs)
    """

    def __init__(self, captured: CapturedGraph, backend=float_backend, *, on_unknown: str = "error"):
        self.captured = captured.to_float64()
        super().__init__(self.captured.gm)
        self.backend = backend
        self.lowered: LoweredModel = lower(self.captured, on_unknown=on_unknown)
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
                       weight_key=_weight_key(w))
            if layer.kind == "conv2d":
                ops.update(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
            return self._call(layer, ops)
        first = 1 if layer.op in ("addmm", "baddbmm") else 0   # addmm(input, mat1, mat2, *, beta, alpha)
        operands = list(args) + [kwargs[k] for k in ("input", "mat1", "batch1", "other", "mat2", "batch2")
                                 if k in kwargs]
        a, b = operands[first:first + 2]
        if layer.kind == "linear":   # a @ W with W a parameter: the weight is W^T (N, K)
            y = self._call(layer, dict(input=_np(a), weight=_np(b).T, bias=None, weight_key=_weight_key(b, True)))
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
