"""vsqsim's transaction-level model: a SystemC TLM-2.0-style kernel on SimPy.

Kernel (IEEE 1666-2011 TLM-2.0): the generic payload (§14), sockets with blocking
transport (§11.1.1), the quantum keeper (§16.2) and a memory target.
"""

# -- kernel ---------------------------------------------------------------------------
from .payload import Command, Payload, ResponseStatus, TransportError
from .sockets import BindingError, InitiatorSocket, TargetSocket
from .quantum import QuantumKeeper
from .memory import Memory, occupy

# -- hardware -------------------------------------------------------------------------

__all__ = [
    # kernel
    "Command",
    "Payload",
    "ResponseStatus",
    "TransportError",
    "BindingError",
    "InitiatorSocket",
    "TargetSocket",
    "QuantumKeeper",
    "Memory",
    "occupy",
    # hardware
]
