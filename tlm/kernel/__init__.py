"""The SystemC TLM-2.0-style kernel on SimPy (DESIGN.md, "Transaction-level conventions"): the generic payload
(:mod:`.payload`), initiator and target sockets with blocking transport (:mod:`.sockets`), the quantum keeper of
loosely timed initiators (:mod:`.quantum`) and a memory target with port contention (:mod:`.memory`). It knows
nothing of the accelerator: the components in :mod:`tlm` are built on it."""
from .memory import Memory, occupy
from .payload import Command, Payload, ResponseStatus, TransportError
from .quantum import QuantumKeeper
from .sockets import BindingError, InitiatorSocket, TargetSocket

__all__ = ["Memory", "occupy", "Command", "Payload", "ResponseStatus", "TransportError", "QuantumKeeper",
           "BindingError", "InitiatorSocket", "TargetSocket"]
