"""A memory target: a NumPy array behind a target socket, with latency and ports.

The simple memory of the TLM-2.0 examples (a target implementing ``b_transport`` and
setting the response status, IEEE 1666-2011 TLM-2.0 §11.1.1, §14.17), with contention
modelled by a ``simpy.Resource``.
"""

from __future__ import annotations

import collections
from typing import Any, Generator, Optional

import numpy as np
import simpy

from .payload import Command, Payload, ResponseStatus
from .sockets import TargetSocket

__all__ = ["Memory", "occupy"]


def occupy(
    env: simpy.Environment, resource: simpy.Resource, delay: float, occupancy: float
) -> Generator[Any, Any, float]:
    """Hold one unit of ``resource`` for ``occupancy`` cycles; a generator returning 0.

    The contention idiom for a loosely-timed target: a caller that arrives with an
    annotated ``delay`` is ``delay`` cycles ahead of ``env.now``. To queue at the right
    simulated time the target first syncs it (``yield env.timeout(delay)``, after which
    the remaining delay is 0), then requests the resource, holds it for its occupancy,
    releases it and returns the remaining delay, 0. The time waited in the queue is the
    stall. This trades the speed of pure temporal decoupling for correct arbitration, so
    use it only where contention is modelled (ports, links, bandwidth).
    """
    if delay:
        yield env.timeout(delay)
    with resource.request() as request:
        yield request
        if occupancy:
            yield env.timeout(occupancy)
    return 0


class Memory:
    """A word-addressed memory owning a NumPy array (a TLM-2.0 target, §11.1.1).

    Addresses and lengths count elements of ``array`` (see :mod:`tlm.kernel.payload`); the
    memory answers ``base_address <= address`` and ``address + length <= base_address
    + size``. The array is ``data`` (copied, flattened; its dtype unless ``dtype`` is
    given) or ``size`` zeros of ``dtype`` (float64 by default).

    Payload data for a WRITE is any array-like of ``length`` elements (its shape is
    flattened; it must cast to the memory's dtype without changing kind). A READ fills
    ``payload.data`` with a copy of the elements, or, if the initiator passed an array
    of ``length`` elements, copies into it (the TLM data pointer).

    Timing. An access occupies a port for ``latency + cycles_per_element * length``
    cycles. With ``ports`` an integer the ports are a ``simpy.Resource`` of that
    capacity and the access goes through :func:`occupy`: the annotated delay is synced
    with ``env.timeout`` first, the port acquired, held for the occupancy and released,
    and the returned delay is 0 (the time has been spent in ``env.now``). With
    ``ports=None`` there is no contention and the memory is purely loosely timed: it
    adds the occupancy to the annotated delay and returns without yielding. The data
    moves when the access completes.

    Errors set the response status and return the delay unchanged, without touching
    the array, taking time or counting actions, checked in this order:
    ``COMMAND_ERROR`` (not a :class:`Command`), ``BURST_ERROR`` (length not a positive
    integer, or not the size of the data), ``ADDRESS_ERROR`` (outside the memory),
    ``GENERIC_ERROR`` (write data that does not cast to the dtype). ``IGNORE`` is
    answered ``OK`` at no cost, as the standard allows (§14.7).

    Actions are counted in ``actions``: ``f"{name}.read"`` and ``f"{name}.write"`` by
    elements, ``f"{name}.access"`` by transactions.

    Subclasses override the small hooks: :meth:`_validate`, :meth:`_occupancy`,
    :meth:`_do_read`, :meth:`_do_write`.
    """

    def __init__(
        self,
        env: simpy.Environment,
        name: str = "memory",
        size: Optional[int] = None,
        *,
        data: Any = None,
        dtype: Any = None,
        base_address: int = 0,
        latency: float = 0,
        cycles_per_element: float = 0,
        ports: Optional[int] = 1,
    ):
        if data is not None:
            array = np.array(data, dtype=dtype).ravel()  # a copy, owned by the memory
            if size is not None and size != array.size:
                raise ValueError(f"memory {name!r}: size {size} != data size {array.size}")
        elif size is not None:
            array = np.zeros(int(size), dtype=np.float64 if dtype is None else dtype)
        else:
            raise ValueError(f"memory {name!r}: give a size or initial data")
        if latency < 0 or cycles_per_element < 0:
            raise ValueError(f"memory {name!r}: latencies must be >= 0")
        self.env = env
        self.name = name
        self.array = array
        self.base_address = int(base_address)
        self.latency = latency
        self.cycles_per_element = cycles_per_element
        self.ports = None if ports is None else simpy.Resource(env, capacity=ports)
        self.actions: collections.Counter[str] = collections.Counter()
        self.socket = TargetSocket(
            f"{name}.socket", b_transport=self.b_transport, max_bindings=None
        )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} [{self.base_address:#x}, "
            f"{self.base_address + self.size:#x}) {self.array.dtype}>"
        )

    @property
    def size(self) -> int:
        return int(self.array.size)

    # -- blocking transport (template) --------------------------------------------------

    def b_transport(self, payload: Payload, delay: float) -> Generator[Any, Any, float]:
        """The target's ``b_transport`` (§11.1.1); a generator returning the delay."""
        status = self._validate(payload)
        if status is not ResponseStatus.OK:
            payload.response_status = status
            return delay
        if payload.command is Command.IGNORE:
            payload.response_status = ResponseStatus.OK
            return delay
        occupancy = self._occupancy(payload)
        if self.ports is None:
            delay = delay + occupancy
        else:
            delay = yield from occupy(self.env, self.ports, delay, occupancy)
        offset = payload.address - self.base_address
        if payload.command is Command.READ:
            self._do_read(payload, offset)
        else:
            self._do_write(payload, offset)
        self.actions[f"{self.name}.access"] += 1
        payload.response_status = ResponseStatus.OK
        return delay

    # -- hooks --------------------------------------------------------------------------

    def _validate(self, payload: Payload) -> ResponseStatus:
        """The response status the payload would get; ``OK`` if it can be served."""
        if not isinstance(payload.command, Command):
            return ResponseStatus.COMMAND_ERROR
        if payload.command is Command.IGNORE:
            return ResponseStatus.OK
        length = payload.length
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length <= 0:
            return ResponseStatus.BURST_ERROR
        if payload.data is not None or payload.command is Command.WRITE:
            if int(np.size(payload.data)) != length:
                return ResponseStatus.BURST_ERROR
        address = payload.address
        if isinstance(address, bool) or not isinstance(address, (int, np.integer)):
            return ResponseStatus.ADDRESS_ERROR
        offset = address - self.base_address
        if offset < 0 or offset + length > self.size:
            return ResponseStatus.ADDRESS_ERROR
        if payload.command is Command.WRITE:
            if not np.can_cast(np.asarray(payload.data).dtype, self.array.dtype, "same_kind"):
                return ResponseStatus.GENERIC_ERROR
        elif payload.data is not None:
            if not isinstance(payload.data, np.ndarray) or not np.can_cast(
                self.array.dtype, payload.data.dtype, "same_kind"
            ):
                return ResponseStatus.GENERIC_ERROR
        return ResponseStatus.OK

    def _occupancy(self, payload: Payload) -> float:
        """Cycles a port is busy with this access."""
        return self.latency + self.cycles_per_element * payload.length

    def _do_read(self, payload: Payload, offset: int) -> None:
        words = self.array[offset : offset + payload.length]
        if payload.data is None:
            payload.data = words.copy()
        else:
            payload.data[...] = words.reshape(payload.data.shape)
        self.actions[f"{self.name}.read"] += payload.length

    def _do_write(self, payload: Payload, offset: int) -> None:
        self.array[offset : offset + payload.length] = np.asarray(payload.data).ravel()
        self.actions[f"{self.name}.write"] += payload.length
