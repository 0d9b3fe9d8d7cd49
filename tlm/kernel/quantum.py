"""Temporal decoupling with a quantum keeper.

Mirrors ``tlm_utils::tlm_quantumkeeper`` (IEEE 1666-2011 TLM-2.0 §16.2) on SimPy.
"""

from __future__ import annotations

import numbers
from typing import Any, Generator

import simpy

__all__ = ["QuantumKeeper"]


def _cycles(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} is a number of cycles, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return float(value)


class QuantumKeeper:
    """A process's local time ahead of ``env.now`` (IEEE 1666-2011 TLM-2.0 §16.2).

    A loosely-timed initiator runs ahead of simulated time, accumulating its delays in
    a local time offset (:meth:`inc`, :meth:`set`), and yields to the kernel only when
    the offset reaches the next quantum boundary::

        qk = QuantumKeeper(env, global_quantum=1000)
        while work:
            delay = yield from socket.b_transport(payload, qk.get_local_time())
            qk.set(delay)
            if qk.need_sync():
                yield from qk.sync()

    As in SystemC, sync points are aligned to multiples of the global quantum: after a
    :meth:`reset` at time ``t`` the next sync point is the next multiple of the
    quantum after ``t`` (:meth:`compute_local_quantum`). A quantum of 0 means sync
    after every increment.

    In SystemC the global quantum is a process-wide singleton (``tlm_global_quantum``).
    Here there are no globals: every keeper holds its own ``env`` and its own global
    quantum; give every keeper of a model the same value.
    """

    def __init__(self, env: simpy.Environment, global_quantum: float = 0):
        self.env = env
        self._global_quantum = _cycles(global_quantum, "global quantum")
        self._local_time: float = 0
        self._next_sync_point: float = 0
        self.reset()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} now={self.env.now} local={self._local_time} "
            f"quantum={self._global_quantum}>"
        )

    # -- the quantum ----------------------------------------------------------------

    def set_global_quantum(self, quantum: float) -> None:
        """Set the quantum (cycles) and recompute the next sync point."""
        self._global_quantum = _cycles(quantum, "global quantum")
        self._next_sync_point = self.env.now + self.compute_local_quantum()

    def get_global_quantum(self) -> float:
        return self._global_quantum

    global_quantum = property(get_global_quantum, set_global_quantum)

    def compute_local_quantum(self) -> float:
        """Cycles from ``env.now`` to the next multiple of the global quantum."""
        quantum = self._global_quantum
        if quantum == 0:
            return 0
        return quantum - (self.env.now % quantum)

    # -- local time -----------------------------------------------------------------

    def inc(self, delay: float) -> None:
        """Add ``delay`` cycles to the local time offset."""
        self._local_time += _cycles(delay, "delay")

    def set(self, local_time: float) -> None:
        """Set the local time offset (e.g. to the delay ``b_transport`` returned)."""
        self._local_time = _cycles(local_time, "local time")

    def get_local_time(self) -> float:
        return self._local_time

    def get_current_time(self) -> float:
        """``env.now`` plus the local time offset: this process's notion of now."""
        return self.env.now + self._local_time

    def need_sync(self) -> bool:
        """True once the local time has reached the next quantum boundary."""
        return self.env.now + self._local_time >= self._next_sync_point

    def sync(self) -> Generator[Any, Any, None]:
        """Wait out the local time and reset: ``yield from qk.sync()``."""
        yield self.env.timeout(self._local_time)
        self.reset()

    def set_and_sync(self, local_time: float) -> Generator[Any, Any, None]:
        """:meth:`set`, then :meth:`sync` if :meth:`need_sync`."""
        self.set(local_time)
        if self.need_sync():
            yield from self.sync()

    def reset(self) -> None:
        """Zero the local time and compute the next sync point from ``env.now``."""
        self._local_time = 0
        self._next_sync_point = self.env.now + self.compute_local_quantum()
