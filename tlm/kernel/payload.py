"""The generic payload: the transaction object passed through blocking transport.

Mirrors ``tlm::tlm_generic_payload`` (IEEE 1666-2011 TLM-2.0 §14) with the parts a
transaction-level model of the accelerator needs: command, address, length, data,
response status and extensions. Byte enables, streaming width and the DMI hint are
left out.

Units. ``address`` and ``length`` count *elements* of the data, not bytes: a target
that owns a NumPy array is word-addressed by array index (plus its base address), and
``length`` is the number of elements moved (``data.size`` for an array). For a payload
whose data is a dict of arrays (e.g. ``{"values": ..., "scales": ...}``) the target
defines which array ``length`` counts; the convention is the ``"values"`` array, the
scales riding along beside their vectors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Command", "ResponseStatus", "Payload", "TransportError"]


class Command(enum.Enum):
    """``tlm_command`` (IEEE 1666-2011 TLM-2.0 §14.7)."""

    READ = 0
    WRITE = 1
    IGNORE = 2


class ResponseStatus(enum.Enum):
    """``tlm_response_status`` (IEEE 1666-2011 TLM-2.0 §14.17).

    Values are the standard's: ``OK`` is positive, ``INCOMPLETE`` zero (the initiator's
    default before transport; a target that does not understand the transaction leaves
    it), and the errors negative.
    """

    OK = 1
    INCOMPLETE = 0
    GENERIC_ERROR = -1
    ADDRESS_ERROR = -2
    COMMAND_ERROR = -3
    BURST_ERROR = -4  # the length (or data size) is wrong for this target

    @property
    def is_error(self) -> bool:
        """True for the error statuses (``INCOMPLETE`` is not one: nobody answered)."""
        return self.value < 0


class TransportError(RuntimeError):
    """A transaction came back with a status other than ``OK``.

    Raised by :meth:`Payload.raise_for_status`; the payload is kept in ``.payload``.
    """

    def __init__(self, payload: "Payload"):
        self.payload = payload
        command = getattr(payload.command, "name", repr(payload.command))
        super().__init__(
            f"{payload.response_status.name}: {command} at address "
            f"{_format_address(payload.address)} length {payload.length}"
        )


def _format_address(address: Any) -> str:
    if isinstance(address, (int, np.integer)):
        return f"{int(address):#x}"
    return repr(address)


def element_count(data: Any) -> int:
    """Number of elements in ``data``: an array's size; a dict's ``"values"`` size."""
    if isinstance(data, dict):
        if "values" not in data:
            raise ValueError("a dict payload needs a 'values' entry, or pass length=")
        data = data["values"]
    return int(np.size(data))


@dataclass(eq=False)
class Payload:
    """A generic payload (IEEE 1666-2011 TLM-2.0 §14).

    ``length`` is in elements of ``data`` (see the module docstring); ``data`` is
    usually a NumPy array or a dict of arrays such as ``{"values": v, "scales": s}``.
    A target sets ``response_status``; an initiator checks it with
    :meth:`is_response_ok` or :meth:`raise_for_status`. Extensions
    (``tlm_extension``, §14.21) are a dict keyed by name.

    Payloads compare by identity, as a transaction object does in SystemC.
    """

    command: Command
    address: int
    length: int
    data: Any = None
    response_status: ResponseStatus = ResponseStatus.INCOMPLETE
    extensions: dict[str, object] = field(default_factory=dict)

    # -- constructors -----------------------------------------------------------------

    @classmethod
    def read(cls, address: int, length: int, data: Any = None) -> "Payload":
        """A READ of ``length`` elements; ``data`` may be a buffer for the target to fill."""
        return cls(Command.READ, address, length, data)

    @classmethod
    def write(cls, address: int, data: Any, length: int | None = None) -> "Payload":
        """A WRITE of ``data``; ``length`` defaults to :func:`element_count` of it."""
        if length is None:
            length = element_count(data)
        return cls(Command.WRITE, address, length, data)

    # -- extensions (§14.21) ------------------------------------------------------------

    def set_extension(self, name: str, value: object) -> object:
        """Attach ``value`` under ``name``; returns the previous value or None."""
        previous = self.extensions.get(name)
        self.extensions[name] = value
        return previous

    def get_extension(self, name: str, default: Any = None) -> Any:
        """The extension called ``name``, or ``default`` when absent."""
        return self.extensions.get(name, default)

    def clear_extension(self, name: str) -> None:
        """Remove the extension called ``name`` if present."""
        self.extensions.pop(name, None)

    # -- response (§14.17) --------------------------------------------------------------

    def is_response_ok(self) -> bool:
        return self.response_status is ResponseStatus.OK

    def is_response_error(self) -> bool:
        return self.response_status is not ResponseStatus.OK

    def raise_for_status(self) -> "Payload":
        """Raise :class:`TransportError` unless the status is ``OK``; return self."""
        if self.response_status is not ResponseStatus.OK:
            raise TransportError(self)
        return self

    check = raise_for_status
