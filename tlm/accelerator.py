"""The accelerator top (paper Sec. 5, Fig. 2; MAGNet/Simba-style PE array): runs layers.

``Accelerator(hw, cfg).run_layer(task)`` builds the PE array, the NoC, global buffer and DRAM
as SimPy processes and resources, runs every PE's tile schedule, and returns a
:class:`LayerRun`: cycles (and the analytic ideal they are compared with), per-PE compute and
stall cycles, which resource limited the layer, the action counts the cost model prices, and,
with real numerics, the layer's output and its dynamic per-vector requantization.

The requantization of the outputs needs the layer-wide maximum for the per-layer gamma
(Eq. 7e-7f) or the per-layer scale of the baseline: the PPUs' vector maxima are reduced over
the NoC, then every PE quantizes its blocks (one more pass over its outputs).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from vsquant import BASELINE as BASELINE  # re-exported by tlm
from vsquant import QuantConfig
from vsquant.bitserial import check_bit_serial
from vsquant.quantize import num_vectors

from .accumulation_collector import AccumulationCollector
from .actions import ActionCounts, action
from .interconnect import MemorySystem
from .pe import PE
from .ppu import PPU
from .transactions import LayerTask
from .vector_mac_unit import PIPELINE_DEPTH, mac_numerics

# the actions this component counts (tlm.actions.ACTIONS declares them; a misspelling fails at import)
ACCUMULATOR_ADD = action("accumulator.add")
ACCUMULATOR_GATED = action("accumulator.gated")
PPU_QUANTIZE = action("ppu.quantize")
PPU_RECIPROCAL = action("ppu.reciprocal")


if TYPE_CHECKING:
    from .hardware import HardwareSpec


def datapath_config(arch: str | QuantConfig, hw: HardwareSpec, *,
                    scale_product: int | str | None = None) -> QuantConfig:
    """The datapath ``arch`` on hardware ``hw``: its vector size is the hardware's unless the arch string sets
    ``,V=`` (which must then equal it). A :class:`QuantConfig` is taken as given and checked the same way."""
    cfg = QuantConfig.parse(arch, scale_product=scale_product)
    explicit = not isinstance(arch, str) or any(o.strip().upper().startswith("V=") for o in arch.split(",")[1:])
    if not explicit:
        return cfg.with_(vector_size=hw.vector_size)
    if cfg.vector_size != hw.vector_size:
        raise ValueError(f"config {cfg} has V={cfg.vector_size} but hardware {hw.name} has V={hw.vector_size}; "
                         f"leave ,V= out to take the hardware's, or give hardware with vector_size: {cfg.vector_size}")
    return cfg


def baseline_config(hw: HardwareSpec) -> QuantConfig:
    """The 8/8/-/- datapath every design point is normalized to, at the hardware's own vector size."""
    return datapath_config(BASELINE, hw)


@dataclass(eq=False, kw_only=True)
class LayerRun:
    """What one MAC layer did on the accelerator (keyword fields): cycles and their parts, the bottleneck,
    busy cycles per resource, action counts, and with tensors the output and its gating count."""

    name: str
    cycles: int
    ideal_cycles: int
    compute_cycles: list[int]
    stall_cycles: list[float]
    requant_cycles: int
    fill_cycles: int            # start-up load + pipeline depth + PPU drain + requantization, critical PE
    bottleneck: str
    busy: dict[str, int]
    actions: ActionCounts
    macs: int
    output: np.ndarray | None = None
    output_q: object | None = None
    gated: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def utilization(self) -> float:
        """Useful MACs over the MAC slots the array had during the layer's cycles."""
        return self.ideal_cycles / self.cycles if self.cycles else 0.0


class Accelerator:
    """A PE array with its memory hierarchy, for one datapath config ``cfg``.

    ``planes``: on a bit-serial PE (``hw.pe.datapath``), run the stored W-bit weights with their top ``planes``
    bit planes (run-time precision, PrecisionBatching; None: all W); an attention matmul's activation operand
    always runs all its planes. ``midpoint``: add the dropped planes' mean (:mod:`vsquant.bitserial`)."""

    def __init__(self, hw: HardwareSpec, cfg: QuantConfig | str, *, replay: bool = True,
                 planes: int | None = None, midpoint: bool = False) -> None:
        self.hw = hw
        self.replay = replay
        self.timing_cache: dict[Hashable, LayerRun] = {}
        self.cfg = QuantConfig.parse(cfg)
        if self.cfg.vector_size != hw.vector_size:
            raise ValueError(f"config {self.cfg} has V={self.cfg.vector_size}; hardware {hw.name} has "
                             f"V={hw.vector_size}")
        if hw.pe.bit_serial:
            check_bit_serial(self.cfg)
        if planes is not None:
            if not hw.pe.bit_serial:
                raise ValueError(f"planes={planes}: running the top bit planes of the weights needs a bit-serial "
                                 f"datapath; hardware {hw.name} is {hw.pe.datapath}")
            if isinstance(planes, bool) or not isinstance(planes, int) or not 1 <= planes <= self.cfg.weight_bits:
                raise ValueError(f"planes must be an integer in [1, {self.cfg.weight_bits}] (the weights' bits), "
                                 f"got {planes!r}")
        self.planes = planes
        self.midpoint = midpoint

    def weight_planes(self, kind: str, cfg: QuantConfig) -> int:
        """Bit planes a bit-serial unit passes over per weight vector of a ``kind`` layer (0: bit-parallel): the
        run-time ``planes`` of the stored weights, all of an activation operand's (a matmul)."""
        if not self.hw.pe.bit_serial:
            return 0
        return cfg.weight_bits if kind == "matmul" or self.planes is None else self.planes

    def operand_config(self, task: LayerTask) -> QuantConfig:
        """The arithmetic a layer's operands need: the datapath's config, or for a matmul of two
        activations (attention) :meth:`QuantConfig.for_activation_operands`."""
        return self.cfg.for_layer(task.kind)

    def weight_port_passes(self, cfg: QuantConfig) -> int:
        """Passes of the W-bit weight port needed for an operand of ``cfg.weight_bits`` (bit slices)."""
        return -(-cfg.weight_bits // self.cfg.weight_bits)

    def run_layer(self, task: LayerTask) -> LayerRun:
        """Simulate one layer; a layer whose timing was simulated before is replayed (see below).

        The simulation is deterministic and each layer starts with empty buffers, so a layer with
        the same kind, GEMM shapes, bias and activation on this accelerator takes the same cycles
        and counts the same actions. With ``replay`` (default) the first such layer runs tile by
        tile with its data in the transactions; later ones reuse its timing and action counts and
        evaluate their numerics per GEMM with the same vector-MAC and PPU functions (bit-identical;
        the data-dependent gating is measured from their own data).
        """
        key = (task.kind, tuple((s.M, s.K, s.N) for s in task.shapes), task.has_bias, task.activation,
               task.requantize_output)
        cached = self.timing_cache.get(key) if self.replay else None
        if cached is not None:
            return self._replay(task, cached)
        run = self._simulate(task)
        if self.replay:
            self.timing_cache[key] = run
        return run

    def _replay(self, task: LayerTask, timed: LayerRun) -> LayerRun:
        actions = ActionCounts().merge(timed.actions)
        if timed.gated:   # the cached counts are for the data it ran with: undo its gating split
            actions.add(ACCUMULATOR_ADD, timed.gated)
            actions.add(ACCUMULATOR_GATED, -timed.gated)
        output = output_q = gated = None
        if task.operands is not None:
            cfg = self.operand_config(task)
            collector = AccumulationCollector("accumulation_collector", self.hw.pe, cfg, actions)
            ppu = PPU("ppu", self.hw.pe.ppu_elements_per_cycle, cfg, actions)
            ys, gated, layer_amax = [], 0, None
            planes = self.weight_planes(task.kind, cfg)
            for ops in task.operands:
                res = mac_numerics(ops.a, ops.w, cfg, planes, midpoint=self.midpoint)
                collector.settle(res.acc, res.gated)
                gated += res.gated
                y = ppu.post_process(res.acc, ops.a, ops.w, 0, ops.w.shape[0], ops.bias, task.activation)
                ys.append(y)
                m = ppu.vector_max(y, task.out_unsigned)
                layer_amax = m if layer_amax is None else max(layer_amax, m)
            output = self._assemble(task, ys)
            if task.requantize_output:
                output_q = ppu.quantize(self._output_layout(task, output), task.out_unsigned, layer_amax)
        return dataclasses.replace(timed, name=task.name, actions=actions, macs=task.macs, output=output,
                                   output_q=output_q, gated=gated, extra={**timed.extra, "replayed_from": timed.name})

    def _simulate(self, task: LayerTask) -> LayerRun:
        hw, cfg = self.hw, self.operand_config(task)
        passes = self.weight_port_passes(cfg)
        planes = self.weight_planes(task.kind, cfg)
        env = simpy.Environment()
        actions = ActionCounts()
        mem = MemorySystem(env, hw, actions)
        input_bits = sum(s.M * num_vectors(s.K, hw.vector_size) * cfg.act_vector_bits for s in task.shapes)
        mem.reset_layer(input_bits, task.operands)
        pes = []
        for i, tiles in enumerate(task.schedule):
            if not tiles:
                continue
            pe = PE(env, i, hw, cfg, actions, passes, planes, self.midpoint)
            pe.noc.bind(mem.socket)
            pes.append(pe)
            env.process(pe.run(task, tiles))
        env.run()
        stuck = [pe.index for pe in pes if not pe.done]
        if stuck:
            raise RuntimeError(f"layer {task.name}: PEs {stuck} did not finish their schedule (a deadlock in the "
                               "simulated hardware); this is a simulator bug, please report it with the layer")
        compute_end = env.now

        # dynamic requantization of the outputs: reduce the vector maxima, then quantize
        elements = sum(pe.out_elements for pe in pes)
        requant = 0
        output = output_q = None
        if task.requantize_output:
            per_pe = [pe.out_elements for pe in pes]
            reduce_cycles = math.ceil(math.log2(max(len(pes), 1))) * hw.noc_hop_latency * 2 if len(pes) > 1 else 0
            needs_pass = cfg.act_scale.needs_layer_max
            rate = hw.pe.ppu_elements_per_cycle
            requant = reduce_cycles + (max(-(-n // rate) for n in per_pe) if (needs_pass and per_pe) else 0)
        if task.operands is not None:
            ys = [np.empty((sh.M, sh.N)) for sh in task.shapes]
            for pe in pes:
                for t, y, _ in pe.blocks:
                    ys[t.gemm][t.m0:t.m1, t.n0:t.n1] = y
            output = self._assemble(task, ys)
        if task.requantize_output:
            layer_amax = max((m for pe in pes for _, _, m in pe.blocks if m is not None), default=None)
            if pes and output is not None:
                output_q = pes[0].ppu.quantize(self._output_layout(task, output), task.out_unsigned, layer_amax)
            actions.add(PPU_QUANTIZE, elements, out_bits=cfg.act_bits)
            sc = cfg.act_scale
            if sc.per_vector and sc.kind != "e8m0":   # an MX E8M0 scale is the max's exponent - emax: no divide
                n = _out_vectors(task, hw.vector_size)
                actions.add(PPU_RECIPROCAL, -(-n * hw.vector_size // sc.block) if sc.is_block else n)
        cycles = compute_end + requant

        comp = [pe.compute_cycles for pe in pes]
        stall = [pe.stall_cycles for pe in pes]
        busy = mem.busy()
        ideal = -(-sum(s.M * s.N * num_vectors(s.K, hw.vector_size) for s in task.shapes) * hw.vector_size
                  * (planes or 1) // hw.macs_per_cycle)     # a bit-serial lane takes a pass per weight plane
        stall_by: dict[str, float] = {}
        for pe in pes:
            for name, c in pe.stall_by.items():
                stall_by[name] = stall_by.get(name, 0) + c
        bottleneck, time_by = _bound(pes, requant)
        gated = None if task.operands is None else int(actions["accumulator.gated"])
        fill: float = 0
        if pes:
            crit = max(pes, key=lambda pe: pe.finish)
            fill = crit.start_wait + PIPELINE_DEPTH + (crit.finish - crit.last_compute_end) + requant
        return LayerRun(name=task.name, cycles=int(cycles), ideal_cycles=int(ideal), compute_cycles=comp,
                        stall_cycles=stall, requant_cycles=int(requant), fill_cycles=int(fill), bottleneck=bottleneck,
                        busy=busy, actions=actions, macs=task.macs, output=output, output_q=output_q, gated=gated,
                        extra={"tilings": [t.describe() for t in task.tilings],
                               "stall_by": {k: round(v) for k, v in stall_by.items()},
                               "time_by": {k: round(v) for k, v in time_by.items()}})

    # -- numerics assembly -------------------------------------------------------------------
    @staticmethod
    def _assemble(task: LayerTask, ys: list[np.ndarray]) -> np.ndarray:
        """The layer's float PPU output in its own layout, from each GEMM's (M, N) output."""
        kind = task.kind
        if kind == "linear":
            return ys[0].reshape(task.extra["out_shape"])
        if kind == "conv2d":
            B, Ho, Wo, K = task.extra["out_nhwc"]
            return np.concatenate(ys, axis=1).reshape(B, Ho, Wo, K).transpose(0, 3, 1, 2)
        if kind == "matmul":
            return np.stack(ys).reshape(task.extra["out_shape"])
        raise ValueError(f"layer kind {kind!r} is not a MAC layer (linear, conv2d, matmul)")

    @staticmethod
    def _output_layout(task: LayerTask, y: np.ndarray) -> np.ndarray:
        """Vectors of the output run along its channels: channels-last for conv."""
        return y.transpose(0, 2, 3, 1) if task.kind == "conv2d" else y


def _bound(pes: list[PE], requant: int) -> tuple[str, dict[str, float]]:
    """The resource that made a layer longer than its ideal, by measured PE time summed over the PEs:
    ``compute`` when the vector MAC units worked at least half the time the PEs were busy, else the largest
    wait: a channel a PE waited for (``dram``, ``global_buffer``, ``noc``; ``latency`` for waits no channel
    explains), for its first tiles as for later stalls, or ``ppu`` (post-processing and write-back after a
    PE's last tile, and the requantization pass). So a layer whose PEs mostly wait is named by what they
    waited for, even when their first load is all they wait for."""
    time_by: dict[str, float] = {"compute": 0.0}
    for pe in pes:
        time_by["compute"] += pe.compute_cycles
        for src in (pe.fill_by, pe.stall_by):
            for name, c in src.items():
                time_by[name] = time_by.get(name, 0.0) + c
        time_by["ppu"] = time_by.get("ppu", 0.0) + (pe.finish - pe.last_compute_end) + requant
    waits = {k: v for k, v in time_by.items() if k != "compute"}
    if not pes or not waits or time_by["compute"] >= sum(waits.values()):
        return "compute", time_by     # the PEs spent at least half their time computing
    return max(waits, key=lambda k: waits[k]), time_by   # else what they waited for the most


def _out_vectors(task: LayerTask, V: int) -> int:
    """Output vectors the PPU requantizes: along the output channels (all groups of a conv together)."""
    if task.kind == "conv2d":
        return task.shapes[0].M * num_vectors(sum(s.N for s in task.shapes), V)
    return sum(s.M * num_vectors(s.N, V) for s in task.shapes)
