"""Interpreter backends: what computes each MAC layer of a captured model (DESIGN.md, "How data flows").

:class:`mapping.interpret.QuantInterpreter` runs a captured graph on the host and hands every MAC layer
:mod:`mapping.lower` found to a backend, ``backend(layer, args)``. A backend is a :class:`Backend`: its
``__call__`` is the one dispatch on the layer kind (as torch.fx's ``Interpreter.run_node`` dispatches on
the node's op), to one method per kind, each returning the layer's float output in the op's own layout
(a torch tensor; a NumPy array is accepted). ``args`` holds NumPy float64 arrays:

- :meth:`Backend.linear`: ``input`` (..., K), ``weight`` (N, K), ``bias`` (N,) or None, ``weight_key``;
- :meth:`Backend.conv2d`: ``input`` (B, C, H, W), ``weight`` (Cout, C/groups, R, S), ``bias``,
  ``weight_key`` and the ints ``stride``, ``padding``, ``dilation`` (pairs) and ``groups``;
- :meth:`Backend.matmul`: ``a`` (..., M, K) and ``b`` (..., K, N), both activations.

``weight_key`` identifies the weight tensor (its storage, version and shape), so a backend quantizes each
weight once, offline (paper Sec. 4.3), in its :class:`WeightCache`; an in-place update of the weight
(an optimizer step) makes a new key.

The backends, all here:

- :data:`float_backend` (:class:`FloatBackend`): float64 PyTorch, reproduces the model;
- :func:`reference_backend`: the ``vsquant`` NumPy reference layers, the golden model (output = the PPU's
  float output; the next MAC layer quantizes its input again, as the PPU's dynamic per-vector
  requantization does);
- :func:`fakequant_backend`: the batched torch twin of the reference (:mod:`vsquant.fakequant`), equal to
  it bit for bit, optionally with statically calibrated scales (the PTQ study's Table 2);
- :func:`tlm_backend`: every MAC layer on the transaction-level accelerator with its real tensors;
- :func:`fast_backend`: the fake-quant backend (every config), the sweeps' accuracy path;
- :class:`RecordingBackend`: wraps another backend and keeps every layer's input operands.

Every quantizing backend uses the same operand policy (:func:`vsquant.unsigned_policy`: unsigned
activations only for non-negative inputs), so all of them compute the same integers.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from tlm.accelerator import Accelerator
from tlm.hardware import HardwareSpec
from vsquant import QuantConfig, fakequant, unsigned_policy
from vsquant import layers as vsq
from vsquant.bitserial import truncate_weight

from .lower import MacLayer
from .tasks import conv2d_task, linear_task, matmul_task

__all__ = ["MAC_KINDS", "Backend", "FakeQuantBackend", "FloatBackend", "RecordingBackend", "ReferenceBackend",
           "TLMBackend", "WeightCache", "fakequant_backend", "fast_backend", "float_backend", "reference_backend",
           "tlm_backend", "weight_key"]

MAC_KINDS = ("linear", "conv2d", "matmul")   # MacLayer.kind: one method of Backend each

Args = dict[str, Any]
T = TypeVar("T")


def _t(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def weight_key(w: object, transpose: bool = False) -> tuple | None:
    """The identity of a weight tensor for :class:`WeightCache` (None for a non-tensor: not cached)."""
    if not isinstance(w, torch.Tensor):
        return None
    return (w.untyped_storage().data_ptr(), w.storage_offset(), w._version, tuple(w.shape), transpose)


class WeightCache:
    """Quantized weights by tensor identity (``args["weight_key"]``): each quantized once, offline."""

    def __init__(self) -> None:
        self._q: dict[tuple, Any] = {}

    def get(self, args: Args, quantize: Callable[[], T]) -> T:
        """The cached quantization of ``args``' weight, computed by ``quantize()`` on a miss."""
        key = args.get("weight_key")
        if key is None:
            return quantize()
        if key not in self._q:
            self._q[key] = quantize()
        return self._q[key]


class Backend:
    """The backend protocol: ``backend(layer, args)`` dispatches once on ``layer.kind``."""

    name = "backend"
    cfg: QuantConfig | None = None

    def __call__(self, layer: MacLayer, args: Args) -> torch.Tensor:
        if layer.kind not in MAC_KINDS:
            raise ValueError(f"layer {layer.name}: kind {layer.kind!r} is not a MAC layer kind; "
                             f"backends compute {', '.join(MAC_KINDS)}")
        return getattr(self, layer.kind)(layer, args)

    @property
    def __name__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name

    def linear(self, layer: MacLayer, args: Args) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not compute linear layers")

    def conv2d(self, layer: MacLayer, args: Args) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not compute conv2d layers")

    def matmul(self, layer: MacLayer, args: Args) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not compute matmul layers")


class FloatBackend(Backend):
    """Plain float64 math (the same PyTorch ops the model calls): the unquantized reference."""

    name = "float_backend"

    def linear(self, layer: MacLayer, args: Args) -> torch.Tensor:
        return F.linear(_t(args["input"]), _t(args["weight"]), _t(args.get("bias")))

    def conv2d(self, layer: MacLayer, args: Args) -> torch.Tensor:
        return F.conv2d(_t(args["input"]), _t(args["weight"]), _t(args.get("bias")), args["stride"],
                        args["padding"], args["dilation"], args["groups"])

    def matmul(self, layer: MacLayer, args: Args) -> torch.Tensor:
        return torch.matmul(_t(args["a"]), _t(args["b"]))


float_backend = FloatBackend()


class ReferenceBackend(Backend):
    """Every MAC layer through the ``vsquant`` reference (Eq. 1-7, Sec. 5): linear ->
    :func:`vsquant.linear`, conv2d -> :func:`vsquant.conv2d`, matmul (QK^T, AV) -> :func:`vsquant.matmul`;
    returns ``LayerResult.output``, the PPU's float output. Weights are quantized per output channel/vector,
    activations dynamically; ``planes``: the weights' top bit planes only (:func:`vsquant.bitserial.truncate_weight`,
    a bit-serial datapath's run-time precision; ``midpoint``: plus the dropped planes' mean)."""

    def __init__(self, cfg: QuantConfig | str, planes: int | None = None, midpoint: bool = False):
        self.cfg = QuantConfig.parse(cfg)
        self.planes, self.midpoint = planes, midpoint
        self.name = f"reference_backend({self.cfg}{_planes_text(planes, midpoint)})"
        self.weights = WeightCache()

    def _weight(self, layer: MacLayer, args: Args) -> Any:
        cfg, k, mid = self.cfg, self.planes, self.midpoint
        if layer.kind == "conv2d":
            return self.weights.get(args, lambda: truncate_weight(vsq.quantize_conv_weight(args["weight"], cfg), k,
                                                                  mid))
        return self.weights.get(args, lambda: truncate_weight(vsq.quantize_weight(args["weight"], cfg), k, mid))

    def linear(self, layer: MacLayer, args: Args) -> torch.Tensor:
        x, cfg = args["input"], self.cfg
        r = vsq.linear(x, self._weight(layer, args), args.get("bias"), cfg, unsigned_input=unsigned_policy(cfg, x),
                       requantize_output=False)
        return torch.from_numpy(np.asarray(r.output, np.float64))

    def conv2d(self, layer: MacLayer, args: Args) -> torch.Tensor:
        x, cfg = args["input"], self.cfg
        r = vsq.conv2d(x, args["weight"], args.get("bias"), cfg, args["stride"], args["padding"], args["dilation"],
                       args["groups"], unsigned_input=unsigned_policy(cfg, x), requantize_output=False,
                       weight_q=self._weight(layer, args))
        return torch.from_numpy(np.asarray(r.output, np.float64))

    def matmul(self, layer: MacLayer, args: Args) -> torch.Tensor:
        a, b, cfg = args["a"], args["b"], self.cfg
        r = vsq.matmul(a, b, cfg, a_unsigned=unsigned_policy(cfg, a), b_unsigned=unsigned_policy(cfg, b),
                       requantize_output=False)
        return torch.from_numpy(np.asarray(r.output, np.float64))


def reference_backend(cfg: QuantConfig | str, planes: int | None = None, midpoint: bool = False) -> ReferenceBackend:
    """A :class:`ReferenceBackend` at ``cfg`` (with ``planes``: the weights' top bit planes)."""
    return ReferenceBackend(cfg, planes, midpoint)


def _planes_text(planes: int | None, midpoint: bool) -> str:
    return f", planes={planes}{', midpoint' if midpoint else ''}" if planes else ""


# (unsigned, amax) of one activation operand of a layer: a static calibration of the fake-quant path
ActCalibration = Callable[[MacLayer, str, np.ndarray], "tuple[bool, float]"]
WeightCalibration = Callable[[MacLayer, Args], Any]


class FakeQuantBackend(Backend):
    """Every MAC layer on the batched torch twin of the reference (:mod:`vsquant.fakequant`), equal to
    :class:`ReferenceBackend` bit for bit at every config.

    By default weights are quantized from their max and activations dynamically. A static calibration
    (per-channel configs, the PTQ study's Table 2) passes ``weight_amax(layer, args)`` (per-channel
    maxima of the weight, or None for its max) and ``act_calibration(layer, operand, x)`` ->
    ``(unsigned, amax)`` for each activation operand (``"input"``, or ``"a"`` and ``"b"`` of a matmul).
    ``planes``: the weights' top bit planes only (a bit-serial datapath's run-time precision; ``midpoint``: plus
    the dropped planes' mean; equal to :class:`ReferenceBackend` with the same ``planes`` and ``midpoint``).
    """

    def __init__(self, cfg: QuantConfig | str, *, weight_amax: WeightCalibration | None = None,
                 act_calibration: ActCalibration | None = None, name: str | None = None,
                 planes: int | None = None, midpoint: bool = False):
        self.cfg = QuantConfig.parse(cfg)
        self.planes, self.midpoint = planes, midpoint
        self.name = name or f"fakequant_backend({self.cfg}{_planes_text(planes, midpoint)})"
        self.weight_amax, self.act_calibration = weight_amax, act_calibration
        self.weights = WeightCache()

    def _weight(self, layer: MacLayer, args: Args) -> Any:
        def quantize() -> Any:
            amax = self.weight_amax(layer, args) if self.weight_amax is not None else None
            w = torch.from_numpy(args["weight"])
            if layer.kind == "conv2d":
                return fakequant.quantized_conv_weight(w, self.cfg, amax, self.planes, self.midpoint)
            return fakequant.quantized_weight(w, self.cfg, amax, self.planes, self.midpoint)
        return self.weights.get(args, quantize)

    def _act(self, layer: MacLayer, operand: str, x: np.ndarray) -> tuple[bool | None, float | None]:
        if self.act_calibration is None:
            return None, None          # the unsigned policy, dynamic scales
        return self.act_calibration(layer, operand, x)

    def linear(self, layer: MacLayer, args: Args) -> torch.Tensor:
        u, amax = self._act(layer, "input", args["input"])
        return fakequant.fake_linear(_t(args["input"]), None, _t(args.get("bias")), self.cfg, self._weight(layer, args),
                                   unsigned=u, act_amax=amax)

    def conv2d(self, layer: MacLayer, args: Args) -> torch.Tensor:
        u, amax = self._act(layer, "input", args["input"])
        return fakequant.fake_conv2d(_t(args["input"]), None, _t(args.get("bias")), self.cfg, args["stride"],
                                   args["padding"], args["dilation"], args["groups"], self._weight(layer, args),
                                   unsigned=u, act_amax=amax)

    def matmul(self, layer: MacLayer, args: Args) -> torch.Tensor:
        (ua, aa), (ub, ab) = self._act(layer, "a", args["a"]), self._act(layer, "b", args["b"])
        return fakequant.fake_matmul(_t(args["a"]), _t(args["b"]), self.cfg, a_unsigned=ua, b_unsigned=ub,
                                   a_amax=aa, b_amax=ab)


def fakequant_backend(cfg: QuantConfig | str) -> FakeQuantBackend:
    """A :class:`FakeQuantBackend` at ``cfg`` (dynamic scales): the fast accuracy path of sweeps."""
    return FakeQuantBackend(cfg)


def fast_backend(cfg: QuantConfig | str) -> Backend:
    """The fastest bit-exact backend for ``cfg``: :func:`fakequant_backend`, which covers every config (integer,
    fp16/fp32 and block per-vector scales, rounded scale products, the Eq. 7 variants) and equals the
    ``vsquant`` reference bit for bit."""
    return fakequant_backend(cfg)


class TLMBackend(Backend):
    """Every MAC layer on the transaction-level accelerator (:class:`tlm.accelerator.Accelerator`) with its
    real tensors; ``record`` collects ``(MacLayer, LayerRun)`` pairs in execution order; ``planes``: on a
    bit-serial datapath, the stored weights run with their top ``planes`` bit planes (``midpoint``: and the dropped
    planes' mean)."""

    def __init__(self, cfg: QuantConfig | str, hw: HardwareSpec, record: list | None = None,
                 planes: int | None = None, midpoint: bool = False):
        self.cfg = QuantConfig.parse(cfg)
        self.hw, self.record = hw, record
        self.name = f"tlm_backend({self.cfg}{_planes_text(planes, midpoint)})"
        self.accelerator = Accelerator(hw, self.cfg, planes=planes, midpoint=midpoint)
        self.weights = WeightCache()

    def _run(self, layer: MacLayer, task: Any) -> torch.Tensor:
        run = self.accelerator.run_layer(task)
        if self.record is not None:
            self.record.append((layer, run))
        return torch.from_numpy(np.asarray(run.output, np.float64))

    def linear(self, layer: MacLayer, args: Args) -> torch.Tensor:
        x, cfg = args["input"], self.cfg
        w = self.weights.get(args, lambda: vsq.quantize_weight(args["weight"], cfg))
        return self._run(layer, linear_task(x, w, args.get("bias"), cfg, self.hw, name=layer.name,
                                            unsigned_input=unsigned_policy(cfg, x)))

    def conv2d(self, layer: MacLayer, args: Args) -> torch.Tensor:
        x, cfg = args["input"], self.cfg
        w = self.weights.get(args, lambda: vsq.quantize_conv_weight(args["weight"], cfg))
        return self._run(layer, conv2d_task(x, args["weight"], args.get("bias"), cfg, self.hw, args["stride"],
                                            args["padding"], args["dilation"], args["groups"], name=layer.name,
                                            unsigned_input=unsigned_policy(cfg, x), weight_q=w))

    def matmul(self, layer: MacLayer, args: Args) -> torch.Tensor:
        a, b, cfg = args["a"], args["b"], self.cfg
        return self._run(layer, matmul_task(a, b, cfg, self.hw, a_unsigned=unsigned_policy(cfg, a),
                                            b_unsigned=unsigned_policy(cfg, b), name=layer.name))


def tlm_backend(cfg: QuantConfig | str, hw: HardwareSpec, record: list | None = None,
                planes: int | None = None, midpoint: bool = False) -> TLMBackend:
    """A :class:`TLMBackend` at ``cfg`` on hardware ``hw`` (``planes``: a bit-serial run-time precision)."""
    return TLMBackend(cfg, hw, record, planes, midpoint)


class RecordingBackend(Backend):
    """Runs ``inner`` and keeps every MAC layer's input operands: ``inputs[layer.name]`` is ``{"input": x}``
    (linear, conv2d) or ``{"a": a, "b": b}`` (matmul), NumPy float64."""

    def __init__(self, inner: Backend = float_backend):
        self.inner, self.cfg = inner, inner.cfg
        self.name = f"recording({inner.name})"
        self.inputs: dict[str, dict[str, np.ndarray]] = {}

    def __call__(self, layer: MacLayer, args: Args) -> torch.Tensor:
        self.inputs[layer.name] = {k: args[k] for k in ("input", "a", "b") if k in args}
        return self.inner(layer, args)
