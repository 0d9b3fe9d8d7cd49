"""DRAM, global buffer and NoC: the memory hierarchy above the PEs (MAGNet/Simba style, Sec. 5).

Each is a TLM target with a bandwidth in bits per cycle, modelled as a ``simpy.Resource``
held for ``ceil(bits / bandwidth)`` cycles (contention: the stall a PE sees is its queueing
time), and counts its actions in bits. The NoC delivers a tile from the global buffer to a
PE's buffer; with multicast, PEs that need the same tile (the same weights on PEs split along
M, the same activations on PEs split along N) get it from one global-buffer read. Weights
come from DRAM the first time a layer touches them; activations live in the global buffer
when the layer's input fits it, otherwise they stream from DRAM too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import simpy

from .actions import ActionCounts, action
from .kernel.payload import Command, Payload, ResponseStatus
from .kernel.sockets import TargetSocket

# the actions this component counts (tlm.actions.ACTIONS declares them; a misspelling fails at import)
NOC_DELIVER = action("noc.deliver")


if TYPE_CHECKING:
    from vsquant import GemmOperands, QuantizedTensor

    from .hardware import HardwareSpec
    from .kernel.sockets import ProcessGen
    from .transactions import TileKey


def _cycles(bits: float, per_cycle: float) -> int:
    return int(-(-bits // per_cycle))


class BandwidthPort:
    """A shared channel of ``bits_per_cycle``; records its busy cycles to name the bottleneck."""

    def __init__(self, env: simpy.Environment, name: str, bits_per_cycle: float, latency: int, actions: ActionCounts,
                 verb: str) -> None:
        self.env = env
        self.name = name
        self.action = action(f"{name}.{verb}")   # a declared action (tlm.actions.ACTIONS)
        self.bits_per_cycle = bits_per_cycle
        self.latency = latency
        self.actions = actions
        self.verb = verb
        self.resource = simpy.Resource(env, capacity=1)
        self.busy = 0

    def transfer(self, bits: int, delay: float = 0, stages: dict[str, float] | None = None) -> ProcessGen[int]:
        """Move ``bits`` through the channel; a generator returning the annotated delay.

        Loosely timed: the incoming ``delay`` is synced before queueing (contention needs the true
        time), the channel is held for ``ceil(bits / bits_per_cycle)`` cycles, and its latency is
        returned as the delay annotation rather than waited here. ``stages`` accumulates the cycles
        spent here (queueing, transfer, latency) by channel name.
        """
        occ = _cycles(bits, self.bits_per_cycle)
        self.busy += occ
        self.actions.add(self.action, bits)
        env = self.env
        if delay:
            yield env.timeout(delay)          # sync: queue at the true simulated time
        t0 = env.now
        with self.resource.request() as req:  # the contention idiom of tlm.kernel.memory.occupy, inlined
            yield req
            yield env.timeout(occ)
        if stages is not None:
            stages[self.name] = stages.get(self.name, 0) + self.env.now - t0 + self.latency
        return self.latency


class MemorySystem:
    """DRAM -> global buffer -> NoC -> PE buffers, with multicast and first-touch DRAM reads."""

    def __init__(self, env: simpy.Environment, hw: HardwareSpec, actions: ActionCounts) -> None:
        self.env = env
        self.hw = hw
        self.actions = actions
        self.dram = BandwidthPort(env, "dram", hw.dram_bits_per_cycle, hw.dram_latency, actions, "read")
        self.gb_read = BandwidthPort(env, "global_buffer", hw.global_buffer_bits_per_cycle, 0, actions, "read")
        self.gb_write = BandwidthPort(env, "global_buffer", hw.global_buffer_bits_per_cycle, 0, actions, "write")
        self.noc = BandwidthPort(env, "noc", hw.noc_bits_per_cycle, hw.noc_hop_latency, actions, "transfer")
        self.inflight: dict[TileKey, tuple[simpy.Event, dict[str, float]]] = {}
        self.in_gb: set[TileKey] = set()
        self.acts_in_dram = False
        self.operands: list[GemmOperands] | None = None  # the layer's GemmOperands, as the global buffer holds them
        self.socket = TargetSocket("noc", self.b_transport, max_bindings=None)

    def reset_layer(self, input_bits: int, operands: list[GemmOperands] | None = None) -> None:
        self.inflight.clear()
        self.in_gb.clear()
        self.acts_in_dram = input_bits > self.hw.global_buffer_bits
        self.operands = operands

    def b_transport(self, p: Payload, delay: float) -> ProcessGen[float]:
        """READ a tile (extensions ``key``, ``bits``, ``group``) or WRITE an output block (``bits``)."""
        bits = p.get_extension("bits")
        if bits is None or bits <= 0:
            p.response_status = ResponseStatus.BURST_ERROR
            return delay
        if delay:
            yield self.env.timeout(delay)
        if p.command is Command.READ:
            key = p.get_extension("key")
            stages: dict[str, float] = {}
            yield from self.fetch(key, bits, p.get_extension("group", 1), stages)
            p.set_extension("stage_cycles", stages)
            p.data = self._tile_data(key)
        elif p.command is Command.WRITE:
            p.response_status = ResponseStatus.OK
            return (yield from self.write_output(bits))
        else:
            p.response_status = ResponseStatus.COMMAND_ERROR
            return 0
        p.response_status = ResponseStatus.OK
        return 0

    def _tile_data(self, key: TileKey) -> QuantizedTensor | None:
        """The operand slice a tile carries: weight rows [n0, n1) or activation rows [m0, m1)."""
        if self.operands is None:
            return None
        kind, g, r0, r1 = key[:4]
        ops = self.operands[g]
        return (ops.w if kind == "w" else ops.a).take_rows(r0, r1)

    def fetch(self, key: TileKey, bits: int, group_size: int,
              stages: dict[str, float] | None = None) -> ProcessGen[None]:
        """Deliver a tile to a PE: multicast to ``group_size`` PEs shares one read. A generator.

        ``stages`` collects the cycles the delivery spent in each channel (for stall attribution).
        """
        if self.hw.noc_multicast and group_size > 1 and key in self.inflight:
            done, first_stages = self.inflight[key]
            t0 = self.env.now
            yield done                        # another PE of the group fetched it: multicast
            if stages is not None and self.env.now > t0:
                total = sum(first_stages.values()) or 1
                for name, c in first_stages.items():
                    stages[name] = stages.get(name, 0) + (self.env.now - t0) * c / total
            self.actions.add(NOC_DELIVER, bits)
            return
        done = self.env.event()
        mine = {} if stages is None else stages
        if self.hw.noc_multicast and group_size > 1:
            self.inflight[key] = (done, mine)
        delay = 0
        from_dram = key[0] == "w" or self.acts_in_dram
        if from_dram and key not in self.in_gb:
            delay = yield from self.dram.transfer(bits, delay, mine)
            delay = yield from self.gb_write.transfer(bits, delay, mine)
            self.in_gb.add(key)
        delay = yield from self.gb_read.transfer(bits, delay, mine)
        delay = yield from self.noc.transfer(bits, delay, mine)
        if delay:
            yield self.env.timeout(delay)
        self.actions.add(NOC_DELIVER, bits)
        done.succeed()

    def write_output(self, bits: int) -> ProcessGen[int]:
        """A PE's PPU writes an output block back to the global buffer through the NoC; returns the delay."""
        delay = yield from self.noc.transfer(bits)
        delay = yield from self.gb_write.transfer(bits, delay)
        return delay

    def busy(self) -> dict[str, int]:
        return {"dram": self.dram.busy, "global_buffer": self.gb_read.busy + self.gb_write.busy,
                "noc": self.noc.busy}
