"""Lowering a captured op graph: MAC layers for the vector MAC units, the rest to the PPU or host.

The second step of DESIGN.md's "How data flows" (``op graph --mapping.lower--> MAC layers
(GEMM view: M x K . K x N, K cut in vectors of V)``). Every node of a
:class:`~mapping.capture.CapturedGraph` is classified by ONE dispatch table on its op kind,
:data:`DISPATCH` (as ``torch.fx.Interpreter`` dispatches on ``node.op``):

``mac``     multiply-accumulate ops, run on the vector MAC units (paper Sec. 4-5, Fig. 2):
            ``linear``, ``conv2d``, ``matmul``/``bmm``/``mm``/``@``, ``addmm``, ``baddbmm``, and
            ``scaled_dot_product_attention`` (two MAC layers, QK^T and AV). A matmul whose
            right operand is static (a parameter) is a ``linear`` with that weight; with both
            operands activations (attention's QK^T and AV) it is a ``matmul`` whose operands are
            both quantized dynamically (vsquant.layers.matmul).
``ppu``     elementwise work on one layer's output that the post-processing unit does on the fly
            (Sec. 5, Fig. 2c: "scaling, bias addition, activation"): activations (relu, gelu,
            tanh...), bias add, scaling/division by a constant, residual add, and eval-mode batch
            norm (a per-channel affine that folds into the PPU's scale and bias). An elementwise
            op whose output is not floating (index and mask arithmetic) goes to the host.
``host``    work the accelerator does not do: softmax, layer norm, pooling, embedding lookup,
            reductions, comparisons, mask and position construction (a causal mask's ``triu``, rotary
            embeddings' ``cos``/``sin`` of the positions), dtype casts.
``layout``  free data movement: view/reshape/permute/transpose, getitem/select/slice, cat,
            contiguous, eval-mode dropout and identity.
``io``      graph inputs, parameters/constants (``get_attr``) and the output.

An op kind not in the table raises :class:`UnsupportedOpError` naming the node and the op;
``on_unknown="host"`` runs such ops on the host instead.

GEMM view of each MAC layer (:class:`MacLayer`), the one :mod:`mapping.tasks` and the
``vsquant`` reference layers use: activations (M, K) times weights (K, N), K the reduction
axis that the hardware cuts into vectors of V.

- linear: M = product of the leading input axes, K = in_features, N = out_features.
- conv2d: M = B*Ho*Wo, K = Cin/groups*R*S, N = Cout; ``groups`` GEMMs of (M, K, Cout/groups).
- matmul: (..., M, K) @ (..., K, N): one GEMM per matrix of the broadcast batch shape.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from .capture import CapturedGraph
from .layers import LoweredModel, MacLayer

__all__ = ["MacLayer", "LoweredModel", "UnsupportedOpError", "lower", "DISPATCH", "MAC", "PPU", "HOST",
           "LAYOUT", "IO"]

MAC, PPU, HOST, LAYOUT, IO = "mac", "ppu", "host", "layout", "io"
ON_UNKNOWN = ("error", "host")


class UnsupportedOpError(NotImplementedError):
    """An op the mapper does not know (or a MAC op in a form it cannot lower)."""

    def __init__(self, node: str, op: str, target: str, reason: str = ""):
        self.node, self.op, self.target = node, op, target
        why = f": {reason}" if reason else " is not known to the mapper"
        super().__init__(
            f"node {node!r}: op {op!r} (target {target}){why}. Pass on_unknown='host' to lower() / "
            f"QuantInterpreter to run unsupported ops on the host instead.")


# --- MAC handlers: node -> MAC layers (GEMM view) ------------------------------------------------

def _arg(node, i: int, name: str, default=None):
    """Argument ``i`` of a call node, by position or keyword."""
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _shape(cap: CapturedGraph, v):
    return cap.node(v.name)["shape"] if isinstance(v, torch.fx.Node) else None


def _unsupported(node, cap, reason):
    return UnsupportedOpError(node.name, cap.node(node.name)["op"], cap.node(node.name)["target"], reason)


def _pair(v, name, node, cap) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(e, int) for e in t):
        raise _unsupported(node, cap, f"conv2d {name} {v!r} is not an int or a pair of ints")
    return t


def _conv_padding(padding, kernel, dilation, node, cap) -> tuple[int, int]:
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if any(t % 2 for t in total):
            raise _unsupported(node, cap, "padding='same' with an even effective kernel pads asymmetrically")
        return tuple(t // 2 for t in total)
    return _pair(padding, "padding", node, cap)


def _linear(node, cap) -> list[MacLayer]:
    xs = _shape(cap, _arg(node, 0, "input"))
    if node.op == "call_module":
        mod = cap.gm.get_submodule(node.target)
        ws, has_bias = tuple(mod.weight.shape), mod.bias is not None
    else:
        ws, has_bias = _shape(cap, _arg(node, 1, "weight")), _arg(node, 2, "bias") is not None
    if not ws or len(ws) != 2 or not xs:
        raise _unsupported(node, cap, f"linear needs a 2-D weight and a tensor input, got {ws} and {xs}")
    N, K = ws
    M = math.prod(xs[:-1])
    return [MacLayer(_name(node, cap), node.name, "linear", M, K, N, ((M, K, N),), M * K * N, "linear",
                     cap.node(node.name)["module"], xs, ws, _shape(cap, node), has_bias=has_bias)]


def _conv2d(node, cap) -> list[MacLayer]:
    xs, out = _shape(cap, _arg(node, 0, "input")), _shape(cap, node)
    if node.op == "call_module":
        mod = cap.gm.get_submodule(node.target)
        if mod.padding_mode != "zeros":
            raise _unsupported(node, cap, f"conv2d padding_mode={mod.padding_mode!r} (only zero padding)")
        ws, has_bias = tuple(mod.weight.shape), mod.bias is not None
        stride, padding, dilation, groups = mod.stride, mod.padding, mod.dilation, mod.groups
    else:
        ws, has_bias = _shape(cap, _arg(node, 1, "weight")), _arg(node, 2, "bias") is not None
        stride, padding = _arg(node, 3, "stride", 1), _arg(node, 4, "padding", 0)
        dilation, groups = _arg(node, 5, "dilation", 1), _arg(node, 6, "groups", 1)
    if not xs or len(xs) != 4:
        raise _unsupported(node, cap, f"conv2d input must be batched (B, C, H, W), got shape {xs}")
    stride, dilation = _pair(stride, "stride", node, cap), _pair(dilation, "dilation", node, cap)
    padding = _conv_padding(padding, ws[2:], dilation, node, cap)
    B, Ho, Wo, Cout = xs[0], out[2], out[3], ws[0]
    M, K = B * Ho * Wo, ws[1] * ws[2] * ws[3]
    return [MacLayer(_name(node, cap), node.name, "conv2d", M, K, Cout, ((M, K, Cout // groups),) * groups,
                     M * K * Cout, "conv2d", cap.node(node.name)["module"], xs, ws, out, stride, padding, dilation,
                     groups, has_bias=has_bias)]


def _gemm(node, cap, a, b, op, has_bias=False, name=None) -> MacLayer:
    """a @ b as a MAC layer: ``linear`` if b is a static 2-D weight, else ``matmul`` (both activations)."""
    as_, bs = _shape(cap, a), _shape(cap, b)
    if not as_ or not bs or len(as_) < 2 or len(bs) < 2:
        raise _unsupported(node, cap, f"matmul with a 1-D or non-tensor operand ({as_} @ {bs})")
    name = name or _name(node, cap)
    module, out = cap.node(node.name)["module"], _shape(cap, node)
    if cap.node(b.name)["static"] and len(bs) == 2 and not cap.node(a.name)["static"]:
        K, N = bs
        M = math.prod(as_[:-1])
        return MacLayer(name, node.name, "linear", M, K, N, ((M, K, N),), M * K * N, op, module, as_, (N, K), out,
                        has_bias=has_bias)
    batch = tuple(np.broadcast_shapes(as_[:-2], bs[:-2]))
    (M, K), N = as_[-2:], bs[-1]
    count = math.prod(batch)
    return MacLayer(name, node.name, "matmul", M, K, N, ((M, K, N),) * count, count * M * K * N, op, module,
                    as_, None, out, batch=batch, has_bias=has_bias)


def _matmul(node, cap) -> list[MacLayer]:
    return [_gemm(node, cap, _arg(node, 0, "input"), _arg(node, 1, "other", _arg(node, 1, "mat2")), "matmul")]


def _addmm(node, cap) -> list[MacLayer]:
    """beta*input + alpha*(a @ b): the product on the MAC units, the add in the PPU (as a bias)."""
    a, b = _arg(node, 1, "mat1", node.kwargs.get("batch1")), _arg(node, 2, "mat2", node.kwargs.get("batch2"))
    return [_gemm(node, cap, a, b, cap.node(node.name)["op"], has_bias=True)]


def _sdpa(node, cap) -> list[MacLayer]:
    """Fused attention softmax(Q K^T * scale + mask) V: two MAC layers (QK^T, AV), softmax on the host."""
    q, k, v = (_shape(cap, _arg(node, i, n)) for i, n in enumerate(("query", "key", "value")))
    if not (q and k and v) or min(len(q), len(k), len(v)) < 2:
        raise _unsupported(node, cap, f"attention operands must be (..., L, E) tensors, got {q}, {k}, {v}")
    batch = tuple(q[:-2])
    (L, E), S, Ev = q[-2:], k[-2], v[-1]
    count, base, module = math.prod(batch), _name(node, cap), cap.node(node.name)["module"]
    return [MacLayer(f"{base}.qk", node.name, "matmul", L, E, S, ((L, E, S),) * count, count * L * E * S,
                     "sdpa.qk", module, q, None, batch + (L, S), batch=batch),
            MacLayer(f"{base}.av", node.name, "matmul", L, S, Ev, ((L, S, Ev),) * count, count * L * S * Ev,
                     "sdpa.av", module, batch + (L, S), None, _shape(cap, node), batch=batch)]


def _name(node, cap) -> str:
    """A MAC layer's name: the module path for nn.Linear/nn.Conv2d, else '<module>.<fx node name>'."""
    attrs = cap.node(node.name)
    module, mtype = attrs["module"], attrs["module_type"]
    if node.op == "call_module" or (module and mtype.endswith((".Linear", ".Conv2d"))):
        return module
    return f"{module}.{node.name}" if module else node.name


_ELEMENTWISE_PPU = ("relu", "relu6", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "hardtanh", "hardswish",
                    "elu", "add", "sub", "rsub", "mul", "div", "neg", "clamp", "clamp_min", "clamp_max",
                    "batch_norm")
_HOST = ("softmax", "log_softmax", "layer_norm", "group_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
         "adaptive_max_pool2d", "mean", "sum", "amax", "amin", "max", "min", "argmax", "norm", "var", "std",
         "embedding", "arange", "zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like",
         "empty_like", "new_ones", "new_zeros", "new_full", "new_empty", "scalar_tensor", "tensor",
         "lift_fresh_copy", "where", "masked_fill", "gather", "index", "index_select", "cumsum", "eq", "ne",
         "lt", "le", "gt", "ge", "and", "or", "not", "invert", "bitwise_and", "bitwise_or", "bitwise_not",
         "logical_and", "logical_or", "logical_not", "log", "exp", "sqrt", "rsqrt", "pow", "abs", "erf",
         "floordiv", "mod", "remainder", "floor", "ceil", "round", "sign", "cos", "sin", "triu", "tril",
         "type_as", "to", "float", "double", "half", "long", "int", "bool", "type", "assert", "assert_async",
         "assert_scalar", "assert_tensor_metadata", "guards", "sym_size", "size", "dim", "getattr", "item",
         "interpolate")
_LAYOUT = ("view", "reshape", "view_as", "reshape_as", "permute", "transpose", "t", "contiguous", "flatten",
           "unflatten", "squeeze", "unsqueeze", "expand", "expand_as", "getitem", "select", "slice", "narrow",
           "split", "split_with_sizes", "chunk", "unbind", "tensor_split", "cat", "concat", "stack", "repeat",
           "movedim", "pad", "dropout", "identity", "clone", "detach", "alias")

# The one dispatch table: op kind -> where it runs, or a handler returning its MAC layers.
DISPATCH: dict[str, object] = {
    "linear": _linear, "conv2d": _conv2d, "matmul": _matmul, "addmm": _addmm, "baddbmm": _addmm, "sdpa": _sdpa,
    **dict.fromkeys(_ELEMENTWISE_PPU, PPU),
    **dict.fromkeys(_HOST, HOST),
    **dict.fromkeys(_LAYOUT, LAYOUT),
    "placeholder": IO, "get_attr": IO, "output": IO,
}


def lower(captured: CapturedGraph, *, on_unknown: str = "error") -> LoweredModel:
    """Classify every node of ``captured`` through :data:`DISPATCH`; MAC nodes become :class:`MacLayer`.

    ``on_unknown="error"`` (default) raises :class:`UnsupportedOpError` for an op kind not in
    the table; ``"host"`` runs it on the host (it appears in the table with where='host').
    """
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown={on_unknown!r} is not one of {', '.join(ON_UNKNOWN)}")
    nodes = {n.name: n for n in captured.gm.graph.nodes}
    layers, rows, names = [], [], set()
    for name, attrs in captured.graph.nodes(data=True):
        node, kind = nodes[name], attrs["op"]
        rule = DISPATCH.get(kind)
        new: list[MacLayer] = []
        try:
            if rule is None:
                raise UnsupportedOpError(name, kind, attrs["target"])
            if callable(rule):
                new, where = rule(node, captured), MAC
            else:
                where = rule
        except UnsupportedOpError:
            if on_unknown == "error":
                raise
            where = HOST
        if where == PPU and not (attrs["dtype"] or "").startswith(("float", "bfloat", "complex")):
            where = HOST  # index / mask arithmetic, not a layer output
        for i, layer in enumerate(new):
            if layer.name in names:  # two functional MAC ops in one module: disambiguate by fx node
                new[i] = layer = _renamed(layer, f"{layer.name}#{name}")
            names.add(layer.name)
        layers += new
        rows.append(dict(node=name, op=kind, where=where, target=attrs["target"], module=attrs["module"],
                         shape=attrs["shape"], dtype=attrs["dtype"], mac_layers=",".join(x.name for x in new),
                         macs=sum(x.macs for x in new)))
    return LoweredModel(layers, pd.DataFrame(rows), captured)


def _renamed(layer: MacLayer, name: str) -> MacLayer:
    return replace(layer, name=name)
