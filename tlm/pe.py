"""A processing element (paper Sec. 5, Fig. 2a): buffers, vector MAC units, collector, PPU.

The PE runs its list of tiles as three SimPy processes: two prefetchers that bring the
weight tiles and the activation tiles over the NoC into their buffers, and the datapath that
computes. Each buffer has two slots (double buffering): the next weight tile loads while the
current one is in use, however many row tiles that takes, and likewise for activations, so a
PE stalls only when a load takes longer than the computation it overlaps; the stall is counted.
When a tile completes an output block, the PPU (its own unit, overlapping the next tile)
post-processes it and writes it back through the NoC.

Data reuse as in Sec. 5: (i) each activation vector is broadcast to the ``lanes`` vector MAC
units, (ii) a weight vector stays in its unit's weight collector across the rows of a tile,
(iii) partial sums stay in the accumulation collector across the tile's vectors. A bit-serial PE
(``pe.datapath``) keeps an activation vector broadcast while its lanes pass over their weight vectors' bit
planes (:mod:`tlm.vector_mac_unit`), so a tile computes ``planes`` times as long.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import simpy

from vsquant.vector_mac import scaled_operand

from .accumulation_collector import AccumulationCollector
from .buffers import ActivationBuffer, WeightBuffer
from .kernel.payload import Command, Payload
from .kernel.sockets import InitiatorSocket
from .ppu import PPU
from .vector_mac_unit import PIPELINE_DEPTH, VectorMACUnits

if TYPE_CHECKING:
    import numpy as np

    from vsquant import QuantConfig, QuantizedTensor

    from .actions import ActionCounts
    from .buffers import VectorBuffer
    from .hardware import HardwareSpec
    from .kernel.sockets import ProcessGen
    from .transactions import GemmTile, LayerTask, TileKey

    #: loads of one operand: (tile key, first tile, index of the last tile)
    Run = tuple[TileKey, GemmTile, int]

PPU_OUTPUT_BURST_BITS = 4 * 8192  # the PPU's output staging buffer (4 KB): a modelling choice


class PE:
    def __init__(self, env: simpy.Environment, index: int, hw: HardwareSpec, cfg: QuantConfig, actions: ActionCounts,
                 passes: int = 1, planes: int = 0, midpoint: bool = False) -> None:
        self.env = env
        self.index = index
        self.hw = hw
        self.cfg = cfg
        self.actions = actions
        pe = hw.pe
        V = hw.vector_size
        self.weight_buffer = WeightBuffer(env, "weight_buffer", pe.weight_buffer_bits, pe.weight_buffer_ports, V,
                                          cfg.weight_bits, cfg.weight_scale_vector_bits, actions)
        self.act_buffer = ActivationBuffer(env, "activation_buffer", pe.activation_buffer_bits,
                                           pe.activation_buffer_ports, V, cfg.act_bits,
                                           cfg.act_scale_vector_bits, actions)
        self.macs = VectorMACUnits(env, "vector_mac", pe.lanes, V, cfg, actions, passes, planes, midpoint)
        self.collector = AccumulationCollector("accumulation_collector", pe, cfg, actions)
        self.ppu = PPU("ppu", pe.ppu_elements_per_cycle, cfg, actions)
        self.noc = InitiatorSocket(f"pe{index}.noc")
        self.wbuf = InitiatorSocket(f"pe{index}.weights")
        self.abuf = InitiatorSocket(f"pe{index}.activations")
        self.wbuf.bind(self.weight_buffer.socket)
        self.abuf.bind(self.act_buffer.socket)
        self.reset_stats()

    def reset_stats(self) -> None:
        self.compute_cycles = 0
        self.stall_cycles: float = 0
        self.finish: float = 0
        self.start_wait: float = 0
        self.out_elements = 0
        self.last_compute_end: float = 0
        self.done = False
        self.stall_by: dict[str, float] = {}     # stall cycles attributed to the channels the awaited loads used
        self.fill_by: dict[str, float] = {}      # the first tile's wait, attributed likewise
        self._stages: dict[TileKey, dict[str, float]] = {}
        # (tile, y block or None, layer-local vector max)
        self.blocks: list[tuple[GemmTile, np.ndarray, float | None]] = []

    # -- loader -----------------------------------------------------------------------------
    def _load(self, buf_socket: InitiatorSocket, buffer: VectorBuffer, key: TileKey, bits: int, vectors: int,
              group: int) -> ProcessGen[None]:
        p = Payload(Command.READ, 0, vectors)
        p.set_extension("key", key)
        p.set_extension("bits", bits)
        p.set_extension("group", group)
        delay = yield from self.noc.b_transport(p, 0)
        p.raise_for_status()
        self._stages[key] = p.get_extension("stage_cycles", {})
        w = Payload(Command.WRITE, 0, vectors, data=p.data)
        w.set_extension("key", key)
        delay = yield from buf_socket.b_transport(w, delay)
        if w.is_response_error():
            raise ValueError(f"PE {self.index}: a tile of {vectors} vectors does not fit the {buffer.name} "
                             f"({buffer.capacity_vectors} vectors of {buffer.vector_bits} bits)")
        if delay:
            yield self.env.timeout(delay)

    def _stream(self, task: LayerTask, runs: list[Run], buf_socket: InitiatorSocket, buffer: VectorBuffer,
                slots: simpy.Container, loaded: list[simpy.Event], weights: bool) -> ProcessGen[None]:
        """Prefetch one operand's tiles in order, each as soon as a buffer slot is free."""
        vec_bits = buffer.vector_bits
        for r, (key, t, _) in enumerate(runs):
            yield slots.get(1)
            if weights:
                vec, group = t.cols * t.nvec, task.tilings[t.gemm].pm
            else:
                vec, group = t.rows * t.nvec, task.tilings[t.gemm].pn
            yield from self._load(buf_socket, buffer, key, vec * vec_bits, vec, group)
            loaded[r].succeed()

    @staticmethod
    def _runs(tiles: Sequence[GemmTile], attr: str) -> tuple[list[Run], list[int]]:
        """Loads of one operand: runs of consecutive tiles sharing a tile of it, as
        (key, first tile, last tile index), and the run each tile belongs to."""
        runs: list[Run] = []
        of_tile: list[int] = []
        for i, t in enumerate(tiles):
            k = getattr(t, attr)
            if runs and runs[-1][0] == k:
                runs[-1] = (k, runs[-1][1], i)
            else:
                runs.append((k, t, i))
            of_tile.append(len(runs) - 1)
        return runs, of_tile

    # -- datapath ---------------------------------------------------------------------------
    def run(self, task: LayerTask, tiles: Sequence[GemmTile]) -> ProcessGen[None]:
        """The PE's process for one layer: returns when its last block left the PPU.

        Weights and activations stream in as two prefetchers with two buffer slots each
        (double buffering); the datapath waits only for the tiles it needs next.
        """
        env = self.env
        w_runs, w_of = self._runs(tiles, "weight_key")
        a_runs, a_of = self._runs(tiles, "act_key")
        w_loaded = [env.event() for _ in w_runs]
        a_loaded = [env.event() for _ in a_runs]
        w_slots = simpy.Container(env, capacity=2, init=2)
        a_slots = simpy.Container(env, capacity=2, init=2)
        env.process(self._stream(task, w_runs, self.wbuf, self.weight_buffer, w_slots, w_loaded, True))
        env.process(self._stream(task, a_runs, self.abuf, self.act_buffer, a_slots, a_loaded, False))
        n_blocks = sum(1 for t in tiles if t.last)
        self._ppu_start(task, n_blocks)
        n_dot = 0         # dot products (and accumulations) of the tiles, counted once at the end
        n_broadcast = 0   # activation vectors broadcast to the lanes
        # finished output blocks whose values are not evaluated yet
        pending: list[tuple[GemmTile, QuantizedTensor | None]] = []
        pipeline_filled = False
        for i, t in enumerate(tiles):
            wr, ar = w_of[i], a_of[i]
            wk, ak = t.weight_key, t.act_key
            if not (w_loaded[wr].processed and a_loaded[ar].processed):
                t0 = env.now
                yield simpy.AllOf(env, [w_loaded[wr], a_loaded[ar]])
                if i == 0:
                    self.start_wait = env.now - t0      # fill: the first tile's load
                    self._attribute(self.fill_by, env.now - t0, [wk, ak])
                else:
                    self.stall_cycles += env.now - t0
                    self._attribute(self.stall_by, env.now - t0, [wk, ak])
            w = self.weight_buffer.read(wk, t.cols * t.nvec)
            broadcasts = t.rows * t.nvec * -(-t.cols // self.macs.lanes)
            self.act_buffer.read(ak, broadcasts)
            n_broadcast += broadcasts
            if t.first:
                self.collector.start(t.rows, t.cols)
            n_dot += t.rows * t.cols * t.nvec
            cycles = self.macs.cycles(t.rows, t.cols, t.nvec)
            if not pipeline_filled:
                cycles += PIPELINE_DEPTH
                pipeline_filled = True
            self.compute_cycles += cycles
            yield env.timeout(cycles)
            self.last_compute_end = env.now
            if t.last:
                self.collector.drain(t.rows, t.cols)
                pending.append((t, w))
                self._ppu_block(task, t)
            if w_runs[wr][2] == i:
                w_slots.put(1)
                self._evaluate(task, pending)
            if a_runs[ar][2] == i:
                a_slots.put(1)
        self.macs.count(n_dot)
        self.macs.count_activation_sums(n_broadcast)
        self.collector.accumulate(n_dot)
        self.weight_buffer.flush_reads()
        self.act_buffer.flush_reads()
        self.ppu.count_blocks(self.out_elements, self._ppu_vectors, self._has_bias, task.activation)
        self._evaluate(task, pending)
        if self._ppu_free > env.now:
            yield env.timeout(self._ppu_free - env.now)
        if self._writes:
            yield simpy.AllOf(env, self._writes)
        self.finish = env.now
        self.done = True

    def _evaluate(self, task: LayerTask, pending: list[tuple[GemmTile, QuantizedTensor | None]]) -> None:
        """Numerics of the finished output blocks of a weight run: one vector-MAC evaluation per run of
        adjacent row blocks, then the PPU's post-processing (see :mod:`tlm.vector_mac_unit`)."""
        if task.operands is None or not pending:
            pending.clear()
            return
        # [weight tile data, [blocks]]: adjacent row blocks of one output-channel tile
        groups: list[tuple[QuantizedTensor, list[GemmTile]]] = []
        for t, w in pending:
            if groups:
                b = groups[-1][1][-1]
                if b.gemm == t.gemm and (b.n0, b.n1) == (t.n0, t.n1) and b.m1 == t.m0:
                    groups[-1][1].append(t)
                    continue
            assert w is not None   # task.operands is set, so the NoC delivered the tile's data
            groups.append((w, [t]))
        for w, blocks in groups:
            first, last = blocks[0], blocks[-1]
            ops = task.operands[first.gemm]
            if self.cfg.separable:  # scale the layer's activations once; every group takes its rows
                scaled_operand(ops.a, 0, ops.a.num_vectors)
            a = ops.a.take_rows(first.m0, last.m1)
            res = self.macs.evaluate(a, w, 0, a.num_vectors)
            self.collector.settle(res.acc, res.gated)
            y = self.ppu.post_process(res.acc, a, w, first.n0, first.n1, ops.bias, task.activation)
            amax = self.ppu.vector_max(y, task.out_unsigned)   # for the layer max: once per group
            for k, t in enumerate(blocks):
                self.blocks.append((t, y[t.m0 - first.m0:t.m1 - first.m0], amax if k == 0 else None))
        pending.clear()

    def _attribute(self, into: dict[str, float], cycles: float, keys: Iterable[TileKey]) -> None:
        """Split a wait over the channels (dram, global_buffer, noc) its loads spent time in."""
        stages: dict[str, float] = {}
        for k in keys:
            for name, c in self._stages.get(k, {}).items():
                stages[name] = stages.get(name, 0) + c
        total = sum(stages.values())
        if not total:
            into["latency"] = into.get("latency", 0) + cycles
            return
        for name, c in stages.items():
            into[name] = into.get(name, 0) + cycles * c / total

    # -- PPU ------------------------------------------------------------------------------------
    def _ppu_start(self, task: LayerTask, n_blocks: int) -> None:
        self._ppu_free: float = 0   # when the PPU finishes the blocks it has been given
        self._ppu_vectors = 0
        self._ppu_left = n_blocks
        self._staged = 0.0
        self._writes: list[simpy.Process] = []
        self._has_bias = (task.operands[0].bias is not None) if task.operands is not None else task.has_bias
        self._out_bits = self.cfg.act_storage_bits

    def _ppu_block(self, task: LayerTask, t: GemmTile) -> None:
        """The PPU post-processes finished blocks in order, one at a time: a FIFO server with known
        service times, so its start and finish are computed, not simulated. Outputs collect in a
        staging buffer of ``PPU_OUTPUT_BURST_BITS`` written back over the NoC to the global buffer as
        posted bursts (processes: they contend with tile loads); only the last write is waited for."""
        n = t.rows * t.cols
        self.out_elements += n
        self._ppu_vectors += t.rows * -(-t.cols // self.hw.vector_size)
        self._ppu_free = max(self.env.now, self._ppu_free) + self.ppu.cycles(n)
        self._staged += n * self._out_bits
        self._ppu_left -= 1
        final = self._ppu_left == 0
        if self._staged >= PPU_OUTPUT_BURST_BITS or final:
            self._writes.append(self.env.process(self._write_back(int(-(-self._staged // 1)), self._ppu_free, final)))
            self._staged = 0.0

    def _write_back(self, bits: int, at: float, final: bool) -> ProcessGen[None]:
        env = self.env
        p = Payload(Command.WRITE, 0, bits)
        p.set_extension("bits", bits)
        delay = yield from self.noc.b_transport(p, at - env.now)
        p.raise_for_status()
        if final and delay:
            yield env.timeout(delay)
