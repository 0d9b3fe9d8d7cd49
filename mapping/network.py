"""Whole networks through the transaction-level accelerator (DESIGN.md, "How data flows").

``nn.Module + inputs -> capture -> lower -> schedule(arch) -> tlm.Accelerator.run_layer`` per
MAC layer, layers one after another (each starts with empty buffers; network cycles are the
sum of the layers' cycles).

- :func:`simulate_timing` (in :mod:`mapping.timing`, which imports no torch): no tensors; each distinct
  MAC layer is simulated once and reused.
- :func:`simulate_numerics`: the captured graph runs in :class:`~mapping.interpret.QuantInterpreter`
  with every MAC layer on the TLM (:func:`mapping.backends.tlm_backend`), real quantized tensors in every
  transaction; non-MAC ops run on the host in float64.
"""
from __future__ import annotations

from tlm.hardware import HardwareSpec
from vsquant import QuantConfig

from .backends import tlm_backend
from .capture import CapturedGraph
from .interpret import QuantInterpreter
from .lower import LoweredModel
from .timing import NetworkRun, simulate_timing, timing_task

__all__ = ["NetworkRun", "simulate_timing", "timing_task", "simulate_numerics"]


def simulate_numerics(captured: CapturedGraph, cfg: QuantConfig | str, hw: HardwareSpec, *, inputs=None,
                      on_unknown: str = "error", lowered: LoweredModel | None = None,
                      planes: int | None = None, midpoint: bool = False) -> NetworkRun:
    """Run the network with real tensors through the TLM; outputs and per-layer runs (``planes``: a bit-serial
    datapath's run-time weight precision)."""
    cfg = QuantConfig.parse(cfg)
    record: list = []
    interp = QuantInterpreter(captured, tlm_backend(cfg, hw, record, planes, midpoint), on_unknown=on_unknown,
                              lowered=lowered)
    output = interp.forward(inputs)
    return NetworkRun(cfg, hw, record, output, dict(interp.layer_outputs), interp.lowered)
