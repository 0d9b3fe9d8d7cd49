"""Initiator and target sockets with blocking transport.

Mirrors ``tlm_initiator_socket`` / ``tlm_target_socket`` and the blocking transport
interface ``b_transport(trans, delay)`` (IEEE 1666-2011 TLM-2.0 §11.1.1, loosely timed
coding style §10.3.2), in SimPy.

Blocking transport is a generator. Inside a SimPy process::

    delay = yield from initiator_socket.b_transport(payload, delay)

The call is forwarded to the function the target registered. That function has the
signature ``fn(payload, delay) -> generator returning delay``: it adds its latency to
the annotated ``delay`` (loosely timed: the caller is ahead of ``env.now`` by ``delay``
cycles) and may itself yield SimPy events, e.g. to hold a ``simpy.Resource`` for
contention. A plain function returning the delay (no SimPy events) is accepted as well.
Delays are numbers of cycles (int or float), never SimPy events.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable, Generator, Optional, TypeVar

import simpy

from .payload import Payload

__all__ = ["BindingError", "InitiatorSocket", "TargetSocket", "BTransport", "ProcessGen"]

#: ``fn(payload, delay) -> generator returning delay`` (or a plain function returning it)
BTransport = Callable[[Payload, float], Any]

_T = TypeVar("_T")
#: a SimPy process body (or a generator ``yield from``-ed inside one): yields SimPy events, returns a ``_T``
ProcessGen = Generator[simpy.Event, Any, _T]


class BindingError(RuntimeError):
    """A socket was bound twice, bound to the wrong kind, or used unbound."""


def _check_delay(delay: Any, where: str) -> float:
    if isinstance(delay, bool) or not isinstance(delay, numbers.Real):
        raise TypeError(
            f"{where}: a delay is a number of cycles, got {delay!r}"
            + (" (did b_transport forget to return the delay?)" if delay is None else "")
        )
    if delay < 0:
        raise ValueError(f"{where}: negative delay {delay!r}")
    return float(delay)


class TargetSocket:
    """The target side of a binding (``tlm_target_socket``, IEEE 1666-2011 TLM-2.0 §13).

    The owning module registers its blocking transport function, either at
    construction (``TargetSocket(name, b_transport=fn)``) or with
    :meth:`register_b_transport` (like ``simple_target_socket``, §16.1.2).

    ``max_bindings`` is how many initiators may bind: 1 as for ``tlm_target_socket``
    (N=1), ``None`` for any number, as for ``multi_passthrough_target_socket`` - then
    the initiators share the target and contention is the target's resources.
    """

    def __init__(
        self,
        name: str,
        b_transport: Optional[BTransport] = None,
        max_bindings: Optional[int] = 1,
    ):
        self.name = name
        self.max_bindings = max_bindings
        self._initiators: list[InitiatorSocket] = []
        self._b_transport: Optional[BTransport] = None
        if b_transport is not None:
            self.register_b_transport(b_transport)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @property
    def initiators(self) -> tuple["InitiatorSocket", ...]:
        return tuple(self._initiators)

    @property
    def is_bound(self) -> bool:
        return bool(self._initiators)

    def register_b_transport(self, fn: BTransport) -> None:
        """Register the target's blocking transport function (once)."""
        if not callable(fn):
            raise TypeError(f"target socket {self.name!r}: b_transport must be callable")
        if self._b_transport is not None:
            raise BindingError(f"target socket {self.name!r} already has a b_transport")
        self._b_transport = fn

    def bind(self, other: "InitiatorSocket") -> None:
        """Symmetric to :meth:`InitiatorSocket.bind`."""
        if not isinstance(other, InitiatorSocket):
            raise BindingError(
                f"target socket {self.name!r} can only bind an InitiatorSocket, "
                f"got {other!r}"
            )
        other.bind(self)

    # hook called by InitiatorSocket.bind
    def _accept(self, initiator: "InitiatorSocket") -> None:
        if self.max_bindings is not None and len(self._initiators) >= self.max_bindings:
            bound = ", ".join(repr(i.name) for i in self._initiators)
            raise BindingError(
                f"target socket {self.name!r} is already bound to {bound} "
                f"(max_bindings={self.max_bindings}); cannot bind {initiator.name!r}"
            )
        self._initiators.append(initiator)

    def b_transport(self, payload: Payload, delay: float = 0) -> Generator[Any, Any, float]:
        """Run the registered function; a generator returning the new delay."""
        fn = self._b_transport
        if fn is None:
            raise BindingError(f"target socket {self.name!r} has no b_transport registered")
        delay = _check_delay(delay, f"b_transport into {self.name!r}")
        result = fn(payload, delay)
        if inspect.isgenerator(result):
            result = yield from result
        return _check_delay(result, f"b_transport of {self.name!r}")


class InitiatorSocket:
    """The initiator side of a binding (``tlm_initiator_socket``, IEEE 1666-2011 TLM-2.0 §13).

    Binds to exactly one :class:`TargetSocket`; ``b_transport`` forwards to it.
    """

    def __init__(self, name: str):
        self.name = name
        self._target: Optional[TargetSocket] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @property
    def is_bound(self) -> bool:
        return self._target is not None

    @property
    def target(self) -> TargetSocket:
        if self._target is None:
            raise BindingError(f"initiator socket {self.name!r} is not bound")
        return self._target

    def bind(self, target: TargetSocket) -> None:
        """Bind to ``target`` (``socket.bind(other)`` in SystemC); once only."""
        if not isinstance(target, TargetSocket):
            raise BindingError(
                f"initiator socket {self.name!r} can only bind a TargetSocket, "
                f"got {target!r}"
            )
        if self._target is not None:
            raise BindingError(
                f"initiator socket {self.name!r} is already bound to {self._target.name!r}; "
                f"cannot bind {target.name!r}"
            )
        target._accept(self)
        self._target = target

    def b_transport(self, payload: Payload, delay: float = 0) -> Generator[Any, Any, float]:
        """Blocking transport (§11.1.1): ``delay = yield from sock.b_transport(p, delay)``.

        Returns the target's generator itself (no extra delegation layer, which every SimPy
        resumption would pass through); an unbound socket raises at the call.
        """
        return self.target.b_transport(payload, delay)  # raises BindingError when unbound
