"""Weight buffer and input activation buffer of the PE (paper Sec. 5, Fig. 2a).

Each entry stores a V-element vector together with its per-vector scale ("Each entry of the
weight buffer stores a weight vector along with corresponding per-vector scale factor"), so
the capacity in vectors is ``capacity_bits // (V * N + M)``: a 4/8/6/10 datapath fits more
weight vectors than 8/8/-/-, and the baseline stores no scales at all. Tiles arrive as
TLM WRITE transactions from the NoC; a tile that cannot fit answers ``BURST_ERROR``. The PE's
vector MAC units read vectors directly (counted); reads of a tile that is not resident are an
``ADDRESS_ERROR``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from .actions import ActionCounts, action
from .kernel.payload import Command, Payload, ResponseStatus
from .kernel.sockets import TargetSocket

if TYPE_CHECKING:
    import simpy

    from vsquant import QuantizedTensor

    from .transactions import TileKey


class VectorBuffer:
    """A buffer of vectors with per-vector scales, holding whole tiles keyed by tile id."""

    def __init__(self, env: simpy.Environment, name: str, capacity_bits: int, ports: int, vector_size: int,
                 value_bits: int, scale_bits: int, actions: ActionCounts) -> None:
        self.env = env
        self.name = name
        self.read_action, self.write_action = action(f"{name}.read"), action(f"{name}.write")  # declared ones
        self.capacity_bits = int(capacity_bits)
        self.ports = int(ports)
        self.vector_size = vector_size
        self.value_bits = value_bits
        self.scale_bits = scale_bits
        self.actions = actions
        self.tiles: OrderedDict[TileKey, tuple[QuantizedTensor | None, int]] = OrderedDict()   # key -> (data, vectors)
        self.used_vectors = 0
        self.reads = 0
        self.socket = TargetSocket(name, self.b_transport, max_bindings=None)

    @property
    def vector_bits(self) -> int:
        return self.vector_size * self.value_bits + self.scale_bits

    @property
    def capacity_vectors(self) -> int:
        return self.capacity_bits // self.vector_bits

    def holds(self, key: TileKey) -> bool:
        return key in self.tiles

    def b_transport(self, p: Payload, delay: float) -> float:
        """WRITE a tile: ``length`` vectors, ``data`` the tile's operand slice, extension ``key``."""
        if p.command is not Command.WRITE:
            p.response_status = ResponseStatus.COMMAND_ERROR
            return delay
        vectors = p.length
        if vectors < 1 or vectors > self.capacity_vectors:
            p.response_status = ResponseStatus.BURST_ERROR
            return delay
        key = p.get_extension("key")
        if key in self.tiles:
            self.tiles.move_to_end(key)
        else:
            while self.used_vectors + vectors > self.capacity_vectors:
                _, (_, old) = self.tiles.popitem(last=False)   # evict the oldest tile
                self.used_vectors -= old
            self.tiles[key] = (p.data, vectors)
            self.used_vectors += vectors
        self.actions.add(self.write_action, vectors, value_bits=self.value_bits,
                         scale_bits=self.scale_bits, vector_size=self.vector_size)
        p.response_status = ResponseStatus.OK
        return delay + -(-vectors // self.ports)

    def read(self, key: TileKey, vectors: int) -> QuantizedTensor | None:
        """The MAC units read ``vectors`` vectors of a resident tile; returns the tile's data.

        The reads are tallied and counted as actions by :meth:`flush_reads` (once per layer)."""
        tile = self.tiles.get(key)
        if tile is None:
            raise LookupError(f"{self.name}: tile {key} is not resident (ADDRESS_ERROR)")
        self.reads += vectors
        return tile[0]

    def flush_reads(self) -> None:
        self.actions.add(self.read_action, self.reads, value_bits=self.value_bits,
                         scale_bits=self.scale_bits, vector_size=self.vector_size)
        self.reads = 0


class WeightBuffer(VectorBuffer):
    """The PE's weight buffer: weight vectors with their per-vector weight scales sw."""


class ActivationBuffer(VectorBuffer):
    """The PE's input buffer: activation vectors with their per-vector activation scales sa."""
