"""Graph capture: an ``nn.Module`` and example inputs in, an op graph with shapes out.

The first step of DESIGN.md's "How data flows" (``nn.Module + inputs --mapping.capture-->
op graph (networkx, shapes)``). The graph is then lowered by :mod:`mapping.lower` (MAC layers
to the vector MAC units, the rest to the PPU or the host) and executed by
:mod:`mapping.interpret`.

Two capture methods, tried in this order by ``method="auto"``:

``"fx"``  ``torch.fx.symbolic_trace`` (with ``concrete_args`` if given). Leaf ``torch.nn``
          modules stay ``call_module`` nodes, so ``nn.Linear``/``nn.Conv2d`` keep their qualified
          names. Works for plain PyTorch models: the ResNets of :mod:`workloads.models` and most
          user modules without data-dependent control flow.
``"export"`` ``torch.export.export(strict=False)``, then ``ExportedProgram.module()`` (an fx
          ``GraphModule`` of ATen ops at the pre-dispatch level: ``aten.linear``, ``aten.conv2d``,
          ``aten.matmul``, ``aten.softmax``, ...; parameters become ``get_attr`` nodes and
          ``nn_module_stack`` metadata gives every node its module). Works for the Hugging Face
          models: ``BertModel`` (bert-base, bert-large, the MiniLM-L6 checkpoint) and
          ``MPNetModel``. With transformers 5.x, ``transformers.utils.fx`` no longer exists, and
          plain ``torch.fx.symbolic_trace`` fails on these models (``'Proxy' object does not
          support item assignment`` in the attention-mask code), so ``auto`` falls back to export
          and records why in :attr:`CapturedGraph.fallback_reason`. Export also captures
          ``nn.TransformerEncoderLayer`` (fx fails on it), its attention as one fused
          ``scaled_dot_product_attention`` node that mapping.lower splits into QK^T and AV.

Both methods are followed by ``torch.fx.passes.shape_prop.ShapeProp`` on the example inputs (a
real forward pass), so every node carries its output shape and dtype.

The op graph is a ``networkx.DiGraph`` with one node per fx node (keyed by the fx node name)
and an edge for every data dependence. Node attributes:

- ``op``: the normalized op kind (one name for ``nn.Linear``, ``F.linear`` and ``aten.linear``:
  ``"linear"``; in-place and dunder spellings folded: ``add_``/``__add__``/``iadd`` -> ``add``);
  see :func:`op_kind`. :mod:`mapping.lower` dispatches on it.
- ``fx_op`` (placeholder/get_attr/call_function/call_module/call_method/output), ``target``;
- ``shape`` (a tuple, a tuple of tuples for multi-output ops, ``None`` for non-tensors),
  ``dtype``;
- ``module``: the qualified module name (the module itself for ``call_module``, else the
  innermost module whose ``forward`` produced the node), ``module_type``;
- ``static``: True when the value depends on parameters and constants only (a weight, a
  precomputable index), not on the inputs.
"""
from __future__ import annotations

import copy
import inspect
import json
import pathlib
import warnings
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
import torch.fx
from torch import nn
from torch.fx.node import _get_qualified_name
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata
from torch.utils import _pytree as pytree

__all__ = ["CapturedGraph", "CaptureError", "capture", "export_graph", "op_kind", "MODULE_KINDS", "CAPTURE_METHODS"]

CAPTURE_METHODS = ("auto", "fx", "export")

# Leaf torch.nn modules (fx keeps these as call_module) -> the op kind of their functional form.
MODULE_KINDS: dict[type, str] = {
    nn.Linear: "linear", nn.Conv2d: "conv2d", nn.Conv1d: "conv1d", nn.Conv3d: "conv3d",
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.GELU: "gelu", nn.SiLU: "silu", nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid", nn.LeakyReLU: "leaky_relu", nn.Hardtanh: "hardtanh", nn.Hardswish: "hardswish",
    nn.ELU: "elu", nn.BatchNorm1d: "batch_norm", nn.BatchNorm2d: "batch_norm", nn.LayerNorm: "layer_norm",
    nn.GroupNorm: "group_norm", nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax", nn.MaxPool2d: "max_pool2d",
    nn.AvgPool2d: "avg_pool2d", nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d",
    nn.AdaptiveMaxPool2d: "adaptive_max_pool2d", nn.Dropout: "dropout", nn.Identity: "identity",
    nn.Flatten: "flatten", nn.Embedding: "embedding",
}

# Spellings of one op kind that differ only in name (Python operators, in-place forms, ATen names).
_ALIASES = {
    "truediv": "div", "iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "div", "and_": "and",
    "or_": "or", "not_": "not", "mm": "matmul", "bmm": "matmul", "scaled_dot_product_attention": "sdpa",
    "guardsfn": "guards", "to_copy": "to",
}


class CaptureError(ValueError, RuntimeError):
    """A model neither torch.fx nor torch.export can capture (an op or control flow they do not support)."""


@dataclass(eq=False)
class CapturedGraph:
    """A captured model: the fx ``GraphModule``, its op graph and the flat example inputs.

    ``inputs`` are the values of the graph's placeholders, in order (``gm``'s graph can be run
    with ``torch.fx.Interpreter(gm).run(*inputs)``, which returns the output in the model's own
    structure); ``example`` the ``(args, kwargs)`` as given.
    """

    gm: torch.fx.GraphModule
    graph: nx.DiGraph
    inputs: tuple
    method: str                          # "fx" | "export"
    model: nn.Module
    example: tuple                       # (args, kwargs)
    concrete_args: dict | None = None
    fallback_reason: str | None = None   # why "auto" did not use fx
    dtype: torch.dtype = torch.float32   # dtype of the model's floating parameters

    def node(self, name: str) -> dict:
        """The op-graph attributes of fx node ``name``."""
        return self.graph.nodes[name]

    def flatten_inputs(self, example_inputs) -> tuple:
        """Other inputs of the same structure as the example, as the graph's placeholder values."""
        args, kwargs = _split_inputs(example_inputs)
        kwargs = {**kwargs, **(self.concrete_args or {})}
        if self.method == "export":
            return _flatten_export(self.gm, args, kwargs)
        return _flatten_fx(self.model, args, kwargs, self.gm, self.concrete_args)

    def to_float64(self) -> "CapturedGraph":
        """This graph captured again from a float64 copy of the model (float inputs cast too).

        Float64 constants baked in at capture (attention-mask minima, dtype casts) then match the
        float64 run; the user's model is not modified. Returns ``self`` if already float64.
        """
        if self.dtype == torch.float64:
            return self
        model = copy.deepcopy(self.model).double()
        args, kwargs = _to_float64(self.example)
        return capture(model, (tuple(args), dict(kwargs)), concrete_args=self.concrete_args, method=self.method)


def _to_float64(tree):
    return pytree.tree_map(lambda t: t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t,
                           tree)


def _split_inputs(example_inputs) -> tuple[tuple, dict]:
    """Example inputs as (args, kwargs): a tensor, a tuple/list of positional inputs, a dict of
    keyword inputs (e.g. a tokenizer's ``BatchEncoding``), or an explicit ``(args, kwargs)`` pair."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, dict) or hasattr(example_inputs, "keys"):
        return (), dict(example_inputs)
    if (isinstance(example_inputs, tuple) and len(example_inputs) == 2 and isinstance(example_inputs[0], tuple)
            and isinstance(example_inputs[1], dict)):
        return example_inputs[0], dict(example_inputs[1])
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    raise TypeError(f"example inputs must be a tensor, a tuple/list of tensors, a dict of keyword inputs or "
                    f"(args, kwargs); got {type(example_inputs).__name__}")


def _param_dtype(model: nn.Module) -> torch.dtype:
    for p in list(model.parameters()) + list(model.buffers()):
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _flatten_fx(model, args, kwargs, gm, concrete_args=None) -> tuple:
    """Placeholder values of an fx-traced graph: the inputs bound to ``forward``'s signature, in
    order (fx makes one placeholder per parameter; a concrete arg gets its concrete value)."""
    bound = inspect.signature(model.forward).bind(*args, **kwargs)
    bound.apply_defaults()
    values = tuple((concrete_args or {}).get(k, v) for k, v in bound.arguments.items())
    n = sum(1 for node in gm.graph.nodes if node.op == "placeholder")
    if len(values) != n:
        raise TypeError(f"the fx graph has {n} inputs but forward's signature binds {len(values)}")
    return values


def _flatten_export(gm, args, kwargs) -> tuple:
    from torch.fx import _pytree as fx_pytree

    return tuple(fx_pytree.tree_flatten_spec((args, kwargs), gm._in_spec))


def capture(model: nn.Module, example_inputs, *, concrete_args: dict | None = None,
            method: str = "auto") -> CapturedGraph:
    """Capture ``model`` on ``example_inputs`` into an fx graph and a networkx op graph with shapes.

    ``method``: ``"auto"`` (fx symbolic tracing, falling back to ``torch.export``), ``"fx"`` or
    ``"export"``; see the module docstring for which works for which model. ``concrete_args``
    are passed to ``torch.fx.symbolic_trace`` (and to ``torch.export`` as fixed keyword inputs).
    The model should be in eval mode.
    """
    if method not in CAPTURE_METHODS:
        raise ValueError(f"capture method {method!r} is not one of {', '.join(CAPTURE_METHODS)}")
    if model.training:
        warnings.warn(f"capturing {type(model).__name__} in training mode (dropout active, batch norm on batch "
                      "statistics); call model.eval() first", stacklevel=2)
    args, kwargs = _split_inputs(example_inputs)
    kwargs = {**kwargs, **(concrete_args or {})}
    fallback_reason = None
    gm = inputs = None
    if method in ("auto", "fx"):
        try:
            gm = torch.fx.symbolic_trace(model, concrete_args=concrete_args)
            inputs = _flatten_fx(model, args, kwargs, gm, concrete_args)
            ShapeProp(gm).propagate(*inputs)
            used = "fx"
        except Exception as e:  # noqa: BLE001 - any tracing failure means: try export
            if method == "fx":
                raise CaptureError(f"torch.fx.symbolic_trace could not capture {type(model).__name__}: "
                                   f"{type(e).__name__}: {e}; try method='export'") from e
            fallback_reason = f"torch.fx.symbolic_trace failed: {type(e).__name__}: {e}"
            gm = None
    if gm is None:
        try:
            gm = torch.export.export(model, args, kwargs=kwargs, strict=False).module()
            inputs = _flatten_export(gm, args, kwargs)
        except Exception as e:  # noqa: BLE001
            why = f" ({fallback_reason})" if fallback_reason else ""
            raise CaptureError(f"torch.export could not capture {type(model).__name__}: {type(e).__name__}: "
                               f"{e}{why}") from e
        ShapeProp(gm).propagate(*inputs)
        used = "export"
    return CapturedGraph(gm, _op_graph(gm), inputs, used, model, (args, kwargs), concrete_args,
                         fallback_reason, _param_dtype(model))


def op_kind(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    """The normalized op kind of an fx node: the one key :mod:`mapping.lower` dispatches on.

    ``call_module`` nodes take the kind of their module's functional form (:data:`MODULE_KINDS`;
    an unlisted module class gives ``"module:<ClassName>"``); ``call_function`` the name of the
    function or ATen op packet; ``call_method`` the method name. Leading/trailing underscores
    (in-place ``relu_``, dunders ``__and__``) are dropped and aliases folded (``bmm``/``mm`` ->
    ``matmul``, ``scaled_dot_product_attention`` -> ``sdpa``, ``truediv`` -> ``div``).
    """
    if node.op in ("placeholder", "get_attr", "output"):
        return node.op
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        kind = MODULE_KINDS.get(type(mod))
        if kind is not None:
            return kind
        name = type(mod).__name__.lower()
        return _ALIASES.get(name, f"module:{type(mod).__name__}")
    if node.op == "call_method":
        name = node.target
    else:
        t = node.target
        if isinstance(t, torch._ops.OpOverload):
            name = t.overloadpacket.__name__
        else:
            name = getattr(t, "__name__", str(t))
    if name not in _ALIASES:
        name = name.strip("_")
    return _ALIASES.get(name, name)


def _shape(meta) -> Any:
    if isinstance(meta, TensorMetadata):
        return tuple(int(d) for d in meta.shape)
    if isinstance(meta, (tuple, list)):
        return tuple(_shape(m) for m in meta)
    if isinstance(meta, dict):
        return tuple(_shape(m) for m in meta.values())
    return None


def _dtype(meta) -> str | None:
    if isinstance(meta, TensorMetadata):
        return str(meta.dtype).replace("torch.", "")
    if isinstance(meta, (tuple, list)) and meta:
        return _dtype(meta[0])
    return None


def _type_name(t) -> str:
    return t if isinstance(t, str) else f"{t.__module__}.{t.__qualname__}"


def _module_of(node: torch.fx.Node, gm) -> tuple[str, str]:
    """(qualified module name, module type) that produced the node."""
    if node.op == "call_module":
        return str(node.target), _type_name(type(gm.get_submodule(node.target)))
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, typ = list(stack.values())[-1]
    return str(path), _type_name(typ)


def _op_graph(gm: torch.fx.GraphModule) -> nx.DiGraph:
    g = nx.DiGraph(name=type(gm).__name__)
    static: dict[str, bool] = {}
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        module, module_type = _module_of(node, gm)
        preds = node.all_input_nodes
        static[node.name] = node.op == "get_attr" or (
            node.op not in ("placeholder", "output") and all(static[p.name] for p in preds))
        g.add_node(node.name, op=op_kind(node, gm), fx_op=node.op, target=_target_str(node.target),
                   shape=_shape(meta), dtype=_dtype(meta), module=module, module_type=module_type,
                   static=static[node.name])
        for p in preds:
            g.add_edge(p.name, node.name)
    return g


def _target_str(t) -> str:
    if isinstance(t, (str, torch._ops.OpOverload)):
        return str(t)
    try:
        return _get_qualified_name(t)   # torch.erfinv, operator.add, torch.nn.functional.relu
    except Exception:  # noqa: BLE001 - a callable without a stable qualified name
        return getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or str(t)


def _plain(v):
    """An attribute value GraphML can store: str/int/float/bool; shapes as '1x128x768'."""
    if v is None:
        return ""
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple) and all(isinstance(d, int) for d in v):
        return "x".join(str(d) for d in v) if v else "scalar"
    return str(v)


def export_graph(captured: CapturedGraph | nx.DiGraph, path, *, extra: dict[str, dict] | None = None) -> pathlib.Path:
    """Write the op graph to ``path``: GraphML for ``.graphml`` (opens in yEd, Gephi, Cytoscape),
    node-link JSON for ``.json``. Attribute values are stringified (shapes as ``1x128x768``).

    ``extra`` adds attributes per node name, e.g. ``{"linear": {"where": "mac"}}`` from
    :attr:`mapping.lower.LoweredModel.table`.
    """
    path = pathlib.Path(path)
    graph = captured.graph if isinstance(captured, CapturedGraph) else captured
    out = nx.DiGraph(name=str(graph.graph.get("name", "")))
    for n, attrs in graph.nodes(data=True):
        attrs = {**attrs, **(extra or {}).get(n, {})}
        out.add_node(n, **{k: _plain(v) for k, v in attrs.items()})
    out.add_edges_from(graph.edges())
    suffix = path.suffix.lower()
    if suffix == ".graphml":
        nx.write_graphml(out, path)
    elif suffix == ".json":
        path.write_text(json.dumps(nx.node_link_data(out, edges="edges"), indent=1))
    else:
        raise ValueError(f"export_graph writes .graphml or .json, not {path.suffix or 'a file without suffix'!r}")
    return path
