"""The declarative hardware description: frozen value types and YAML presets.

Like Timeloop's architecture specs (typed attributes, YAML files) and tinygrad's frozen
dataclass value types: a :class:`HardwareSpec` says how many PEs, how wide a vector,
how big each buffer is, how fast the global buffer, NoC and DRAM move bits, and at what
clock. It describes hardware; it does not say anything about precision. The datapath
precision ``W/A/ws/as`` is a separate :class:`vsquant.QuantConfig`, and the two meet in
the derived quantities (e.g. :meth:`HardwareSpec.weight_buffer_vectors`).

The PE follows Sec. 5 of the VS-Quant paper (Dai et al., MLSys 2021, Fig. 2a): ``lanes``
vector MAC units, each a ``V``-wide dot product, share one broadcast input-activation
vector per cycle; a weight buffer and an input-activation buffer store each vector
*with its per-vector scale factor*, so their capacity is given in bits and the number of
vectors they hold depends on the precision; an accumulation collector holds partial sums;
a PPU post-processes them.

Presets live in ``tlm/presets/<name>.yaml`` (package data); every number in a preset
carries its source in the file's ``sources`` mapping and in YAML comments.

Typical use::

    hw = load_hardware("magnet16")          # a preset, or a path to a user's YAML
    hw.macs_per_cycle                       # 16 PEs * 16 lanes * V=16 = 4096
    hw.weight_buffer_vectors(4, 6)          # vectors of 4-bit weights + 6-bit scale
    hw.with_(num_pes=32).replace_pe(lanes=8)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union, cast

import yaml

from vsquant.config import VECTOR_SIZES  # the vector sizes a PE's vector MAC units can have

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = [
    "PESpec",
    "HardwareSpec",
    "load_hardware",
    "list_presets",
    "DEFAULT_PRESET",
    "DATAPATHS",
]

#: The vector MAC units' datapaths: bit-parallel W x A multipliers, or bit-serial passes over the weight's bit
#: planes (PrecisionBatching, Lam et al., arXiv:2003.00822; :mod:`vsquant.bitserial`)
DATAPATHS = ("parallel", "bit-serial")

#: The preset used when nothing else is asked for: MAGNet's 8-bit baseline in 16 nm.
DEFAULT_PRESET = "magnet16"

_PRESET_PACKAGE = "tlm"
_PRESET_DIR = "presets"
_YAML_SUFFIXES = (".yaml", ".yml")

# -- validation helpers ------------------------------------------------------------------

# Every field is declared once, in its dataclass, with ``spec(kind, minimum, doc)``: validation,
# from_dict/YAML keys, to_dict and the allowed-key messages are all driven from that declaration
# (:func:`_declared`). Kinds: "int" (not bool), "number" (int or float, not bool), "bool", "str",
# "vector" (V), "pe" (a PESpec), "sources". The minimum is inclusive; None means no lower bound.
def spec(kind: str, minimum: Any, doc: str, **kw: Any) -> Any:
    """A dataclass field with its kind, lower bound and meaning as metadata (the one declaration)."""
    return field(metadata={"kind": kind, "minimum": minimum, "doc": doc}, **kw)


def _declared(cls: type) -> dict[str, tuple[str, Any, str]]:
    """``{field name: (kind, minimum, doc)}`` of a spec class, in declaration order."""
    return {f.name: (f.metadata["kind"], f.metadata["minimum"], f.metadata["doc"]) for f in dataclasses.fields(cls)}


_MAX_HEADROOM_BITS = 32


def _range_text(kind: str, minimum: Any) -> str:
    if kind == "vector":
        return f"a power of two in [1, {VECTOR_SIZES[-1]}] ({', '.join(map(str, VECTOR_SIZES))})"
    if kind == "int":
        return f"an integer >= {minimum}"
    if kind == "number":
        return "a number > 0"
    if kind == "bool":
        return "true or false"
    if kind == "str":
        return "a non-empty string"
    return kind


def _check_value(owner: str, name: str, value: Any, kind: str, minimum: Any) -> None:
    where = f"{owner}.{name}"
    if kind == "vector":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) not in VECTOR_SIZES:
            raise ValueError(f"{where} must be {_range_text(kind, minimum)}, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(
                f"{where} must be {_range_text(kind, minimum)}, got {value!r} "
                f"({type(value).__name__})"
            )
        if minimum is not None and value < minimum:
            raise ValueError(f"{where} must be {_range_text(kind, minimum)}, got {value}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"{where} must be {_range_text(kind, minimum)}, got {value!r} "
                f"({type(value).__name__})"
            )
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{where} must be {_range_text(kind, minimum)}, got {value}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(
                f"{where} must be {_range_text(kind, minimum)}, got {value!r} "
                f"({type(value).__name__})"
            )
    elif kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where} must be {_range_text(kind, minimum)}, got {value!r}")


def _check_keys(owner: str, given: Mapping[str, Any], allowed: Mapping[str, Any],
                required: tuple[str, ...]) -> None:
    unknown = [k for k in given if k not in allowed]
    if unknown:
        raise ValueError(
            f"unknown key(s) in {owner}: {', '.join(map(repr, unknown))}; "
            f"allowed keys are: {', '.join(allowed)}"
        )
    missing = [k for k in required if k not in given]
    if missing:
        raise ValueError(
            f"missing key(s) in {owner}: {', '.join(missing)}; "
            f"required keys are: {', '.join(required)}"
        )


def _source_keys() -> tuple[str, ...]:
    return tuple(_HW_FIELDS) + tuple(_PE_FIELDS) + tuple(f"pe.{k}" for k in _PE_FIELDS)


# -- the value types ---------------------------------------------------------------------


@dataclass(frozen=True)
class PESpec:
    """One processing element (VS-Quant paper, Sec. 5, Fig. 2a).

    ``lanes`` vector MAC units, each a V-wide integer dot product, consume the same
    broadcast input-activation vector every cycle (input reuse across lanes); each lane
    has its own weight vector. The buffers' capacities are in bits because an entry is a
    vector *plus its per-vector scale*: lower precision fits more vectors (see
    :meth:`HardwareSpec.weight_buffer_vectors`). ``accumulation_collector_entries``
    partial sums are held per PE; each is ``accumulator_headroom_bits`` wider than a
    partial sum (2N + log2 V + 2M bits, Sec. 5), i.e. up to ``2**headroom`` partial sums
    accumulate without overflow. ``*_ports`` are the concurrent accesses a buffer serves
    (the capacity of its contention resource).
    """

    lanes: int = spec("int", 1, "vector MAC units per PE sharing one broadcast activation vector")
    weight_buffer_bits: int = spec("int", 1, "weight buffer capacity in bits (vectors + scales)")
    activation_buffer_bits: int = spec("int", 1, "input-activation buffer capacity in bits")
    weight_buffer_ports: int = spec("int", 1, "concurrent accesses the weight buffer serves")
    activation_buffer_ports: int = spec("int", 1, "concurrent accesses the activation buffer serves")
    accumulation_collector_entries: int = spec("int", 1, "partial sums held per PE")
    ppu_elements_per_cycle: int = spec("int", 1, "partial-sum elements the PPU takes per cycle")
    accumulator_headroom_bits: int = spec("int", 0, "bits above a partial sum's width", default=8)
    datapath: str = spec("str", None, "the vector MAC units' datapath: parallel (W x A multipliers) or bit-serial "
                         "(one weight bit plane per pass; lanes then counts the bit-serial lanes)",
                         default="parallel")
    bit_serial_lanes: int = spec("int", 0, "lanes of this PE built bit-serial in the same area (0: not stated); "
                                 "HardwareSpec.with_datapath('bit-serial') takes them", default=0)

    def __post_init__(self) -> None:
        for name, (kind, minimum, _) in _PE_FIELDS.items():
            _check_value("pe", name, getattr(self, name), kind, minimum)
        if self.accumulator_headroom_bits > _MAX_HEADROOM_BITS:
            raise ValueError(
                f"pe.accumulator_headroom_bits must be an integer in [0, {_MAX_HEADROOM_BITS}], "
                f"got {self.accumulator_headroom_bits}"
            )
        if self.datapath not in DATAPATHS:
            raise ValueError(f"pe.datapath must be one of {', '.join(DATAPATHS)}, got {self.datapath!r}")
        # Normalise NumPy integers and the like to plain ints (stable YAML/JSON, hashing).
        for name, (kind, _, _) in _PE_FIELDS.items():
            if kind == "int":
                object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def bit_serial(self) -> bool:
        """Whether the vector MAC units are bit-serial (:mod:`vsquant.bitserial`): a W-bit weight takes W passes."""
        return self.datapath == "bit-serial"

    @property
    def max_accumulated_partial_sums(self) -> int:
        """Partial sums an accumulation-collector entry can add without overflow: 2**headroom."""
        return 1 << self.accumulator_headroom_bits

    def accumulator_bits(self, partial_sum_bits: int) -> int:
        """Width of an accumulation-collector entry for partial sums of the given width."""
        _check_value("accumulator_bits", "partial_sum_bits", partial_sum_bits, "int", 1)
        return int(partial_sum_bits) + self.accumulator_headroom_bits

    def to_dict(self) -> dict[str, int | str]:
        """Plain mapping of the fields (YAML/JSON ready); the datapath fields only where they are not the
        defaults (a parallel PE's mapping, and its hash, are as before they existed)."""
        return {name: getattr(self, name) for name in _PE_FIELDS
                if name not in _OPTIONAL_PE_FIELDS or getattr(self, name) != _OPTIONAL_PE_FIELDS[name]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PESpec":
        """Build from a mapping; unknown keys raise ``ValueError`` listing the allowed ones."""
        if not isinstance(data, Mapping):
            raise ValueError(f"pe must be a mapping of PE fields, got {type(data).__name__}")
        required = tuple(k for k in _PE_FIELDS if k not in ("accumulator_headroom_bits", *_OPTIONAL_PE_FIELDS))
        _check_keys("pe", data, _PE_FIELDS, required)
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "PESpec":
        """A copy with some fields changed (validated)."""
        _check_keys("pe", changes, _PE_FIELDS, ())
        return dataclasses.replace(self, **changes)


_PE_FIELDS = _declared(PESpec)
#: PE fields left out of ``to_dict`` at these defaults
_OPTIONAL_PE_FIELDS: dict[str, int | str] = {"datapath": "parallel", "bit_serial_lanes": 0}


@dataclass(frozen=True)
class HardwareSpec:
    """The accelerator: PEs on a NoC, a global buffer, DRAM, a clock (DESIGN.md, ``tlm/``).

    Bandwidths are bits per clock cycle (``noc_bits_per_cycle`` per link); latencies are
    cycles. ``sources`` maps field names (``"num_pes"``, ``"pe.lanes"`` or just
    ``"lanes"``) to what each number is modeled on, so a report can say which numbers are
    published and which are modeling choices.
    """

    name: str = spec("str", None, "a name for reports")
    num_pes: int = spec("int", 1, "processing elements")
    vector_size: int = spec("vector", 1, "V, elements per vector along the reduction axis: a power of two in [1, 256]")
    pe: PESpec = spec("pe", None, "the PE (a mapping of PE fields)")
    global_buffer_bits: int = spec("int", 1, "global buffer capacity in bits")
    global_buffer_bits_per_cycle: int = spec("int", 1, "global buffer bandwidth")
    noc_bits_per_cycle: int = spec("int", 1, "NoC bandwidth per link")
    noc_multicast: bool = spec("bool", None, "whether the NoC multicasts one packet to many PEs")
    noc_hop_latency: int = spec("int", 0, "cycles per NoC hop")
    dram_bits_per_cycle: int = spec("int", 1, "DRAM bandwidth")
    dram_latency: int = spec("int", 0, "cycles from DRAM request to first data")
    clock_hz: float = spec("number", None, "clock frequency in Hz (> 0)")
    technology_nm: float = spec("number", None, "process node in nm (> 0)")
    sources: dict[str, str] = spec("sources", None, "what each number is modeled on", default_factory=dict,
                                   hash=False)

    def __post_init__(self) -> None:
        for name, (kind, minimum, _) in _HW_FIELDS.items():
            if kind in ("int", "vector", "number", "bool", "str"):
                _check_value("hardware", name, getattr(self, name), kind, minimum)
        if not isinstance(self.pe, PESpec):
            raise ValueError(
                f"hardware.pe must be a PESpec (or, in from_dict/YAML, a mapping of PE "
                f"fields), got {type(self.pe).__name__}"
            )
        self._check_sources()
        for name, (kind, _, _) in _HW_FIELDS.items():
            if kind in ("int", "vector"):
                object.__setattr__(self, name, int(getattr(self, name)))
            elif kind == "number":
                object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "sources", dict(self.sources))

    def _check_sources(self) -> None:
        if not isinstance(self.sources, Mapping):
            raise ValueError(
                f"hardware.sources must be a mapping of field name -> text, "
                f"got {type(self.sources).__name__}"
            )
        allowed = _source_keys()
        unknown = [k for k in self.sources if k not in allowed]
        if unknown:
            raise ValueError(
                f"unknown key(s) in hardware.sources: {', '.join(map(repr, unknown))}; "
                f"allowed keys are field names: {', '.join(allowed)}"
            )
        bad = [k for k, v in self.sources.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"hardware.sources values must be strings; not for: {', '.join(bad)}")

    # -- derived quantities ------------------------------------------------------------

    @property
    def pe_macs_per_cycle(self) -> int:
        """Multiply-accumulates per cycle in one PE: lanes * V (a bit-serial lane's V slots take one weight bit
        plane each per cycle: W-bit weights run at 1/W of it)."""
        return self.pe.lanes * self.vector_size

    @property
    def macs_per_cycle(self) -> int:
        """Multiply-accumulates per cycle in the accelerator: num_pes * lanes * V."""
        return self.num_pes * self.pe_macs_per_cycle

    @property
    def peak_ops_per_s(self) -> float:
        """Peak operations per second, counting a MAC as 2 ops (multiply and add)."""
        return 2.0 * self.macs_per_cycle * self.clock_hz

    @property
    def peak_tops(self) -> float:
        """``peak_ops_per_s`` in tera-operations per second."""
        return self.peak_ops_per_s / 1e12

    @property
    def cycle_s(self) -> float:
        """Seconds per clock cycle."""
        return 1.0 / self.clock_hz

    def vector_entry_bits(self, element_bits: int, scale_bits: int = 0) -> int:
        """Bits of one stored vector: V elements of ``element_bits`` plus its scale (Sec. 5)."""
        _check_value("vector_entry_bits", "element_bits", element_bits, "int", 1)
        _check_value("vector_entry_bits", "scale_bits", scale_bits, "int", 0)
        return self.vector_size * int(element_bits) + int(scale_bits)

    def weight_buffer_vectors(self, weight_bits: int, scale_bits: int = 0) -> int:
        """Weight vectors one PE's weight buffer holds: floor(bits / (V*W + ws)).

        ``scale_bits`` is the per-vector weight scale width (0 for per-channel scaling,
        whose scales live in the PPU, not beside every vector).
        """
        return self.pe.weight_buffer_bits // self.vector_entry_bits(weight_bits, scale_bits)

    def activation_buffer_vectors(self, act_bits: int, scale_bits: int = 0) -> int:
        """Activation vectors one PE's input buffer holds: floor(bits / (V*A + as))."""
        return self.pe.activation_buffer_bits // self.vector_entry_bits(act_bits, scale_bits)

    def global_buffer_vectors(self, element_bits: int, scale_bits: int = 0) -> int:
        """Vectors (with their scales) the global buffer holds."""
        return self.global_buffer_bits // self.vector_entry_bits(element_bits, scale_bits)

    # -- conversion and modification ---------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain nested mapping (``pe`` and ``sources`` as dicts), the YAML preset layout.

        ``HardwareSpec.from_dict(spec.to_dict()) == spec``.
        """
        out: dict[str, Any] = {}
        for name in _HW_FIELDS:
            value = getattr(self, name)
            if name == "pe":
                value = value.to_dict()
            elif name == "sources":
                value = dict(value)
            out[name] = value
        return out

    def content_hash(self) -> str:
        """A hash of everything but the name and the sources' citations: two specs that simulate alike
        hash alike, and an edited YAML file hashes differently (results stores key points by it)."""
        import hashlib
        import json
        d = {k: v for k, v in self.to_dict().items() if k not in ("name", "sources")}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The spec as YAML text that :func:`load_hardware` reads back."""
        return cast(str, yaml.safe_dump(self.to_dict(), sort_keys=False))  # PyYAML is untyped

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, default_name: str | None = None) -> "HardwareSpec":
        """Build from a mapping (the YAML layout); unknown keys raise ``ValueError``.

        ``pe`` may be a mapping or a :class:`PESpec`; ``sources`` is optional. ``name``
        may be omitted when ``default_name`` is given (the loader uses the file's stem).
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"a hardware description must be a mapping of fields, got {type(data).__name__}"
            )
        data = dict(data)
        if "name" not in data and default_name is not None:
            data["name"] = default_name
        required = tuple(k for k in _HW_FIELDS if k != "sources")
        _check_keys("hardware", data, _HW_FIELDS, required)
        for name, (kind, _, _) in _HW_FIELDS.items():
            # PyYAML (YAML 1.1) reads ``1e9`` as a string; accept it for float fields.
            if kind == "number" and isinstance(data[name], str):
                try:
                    data[name] = float(data[name])
                except ValueError:
                    pass  # validation names the field and the allowed range
        pe = data["pe"]
        data["pe"] = pe if isinstance(pe, PESpec) else PESpec.from_dict(pe)
        if data.get("sources") is None:
            data["sources"] = {}
        return cls(**data)

    def with_(self, **changes: Any) -> "HardwareSpec":
        """A copy with fields changed and validated, e.g. ``hw.with_(num_pes=32)``.

        PE fields may be given directly (``hw.with_(lanes=8)``) or as ``pe=PESpec(...)``
        / ``pe={...}`` (a mapping of PE changes). Unknown names raise ``ValueError``.
        """
        allowed = {**_HW_FIELDS, **_PE_FIELDS}
        _check_keys("with_()", changes, allowed, ())
        pe_changes = {k: changes.pop(k) for k in list(changes) if k in _PE_FIELDS}
        if "pe" in changes and isinstance(changes["pe"], Mapping):
            pe_changes = {**dict(changes.pop("pe")), **pe_changes}
        spec = dataclasses.replace(self, **changes) if changes else self
        return spec.replace_pe(**pe_changes) if pe_changes else spec

    def with_datapath(self, datapath: str) -> "HardwareSpec":
        """This hardware with its PEs built ``datapath`` (:data:`DATAPATHS`). Bit-serial: the preset's
        ``bit_serial_lanes`` lanes (in the parallel array's area, :func:`costmodels.area.equal_area_bit_serial_lanes`)
        replace its ``lanes``, every other number (buffers, collector entries, NoC) as it is. Asking for the
        datapath it has returns it unchanged; a bit-serial spec cannot be turned back (its parallel lanes are gone)."""
        if datapath not in DATAPATHS:
            raise ValueError(f"datapath must be one of {', '.join(DATAPATHS)}, got {datapath!r}")
        if datapath == self.pe.datapath:
            return self
        if datapath == "parallel":
            raise ValueError(f"hardware {self.name} is bit-serial; load its parallel preset instead")
        if not self.pe.bit_serial_lanes:
            raise ValueError(f"hardware {self.name} states no pe.bit_serial_lanes: say how many bit-serial lanes a "
                             "PE has (costmodels.area.equal_area_bit_serial_lanes computes the equal-area count)")
        return dataclasses.replace(self, name=f"{self.name}-bit-serial",
                                   pe=self.pe.replace(datapath="bit-serial", lanes=self.pe.bit_serial_lanes))

    def replace_pe(self, **changes: Any) -> "HardwareSpec":
        """A copy whose PE has some fields changed, e.g. ``hw.replace_pe(lanes=8)``."""
        return dataclasses.replace(self, pe=self.pe.replace(**changes))

    def summary(self) -> str:
        """One line for reports."""
        if self.pe.bit_serial:
            return (f"{self.name}: {self.num_pes} PEs x {self.pe.lanes} bit-serial lanes x V={self.vector_size} "
                    f"= {self.macs_per_cycle} weight-bit MAC/cycle (a W-bit MAC takes W), "
                    f"{self.clock_hz / 1e9:g} GHz, {self.technology_nm:g} nm")
        return (
            f"{self.name}: {self.num_pes} PEs x {self.pe.lanes} lanes x V={self.vector_size} "
            f"= {self.macs_per_cycle} MAC/cycle, {self.clock_hz / 1e9:g} GHz, "
            f"{self.peak_tops:.3g} peak TOPS, {self.technology_nm:g} nm"
        )


# -- loading -----------------------------------------------------------------------------


_HW_FIELDS = _declared(HardwareSpec)


def _preset_root() -> Traversable:
    return resources.files(_PRESET_PACKAGE).joinpath(_PRESET_DIR)


def list_presets() -> list[str]:
    """Names of the bundled presets (``tlm/presets/*.yaml``), sorted."""
    root = _preset_root()
    if not root.is_dir():  # installed without package data
        return []
    names = []
    for entry in root.iterdir():
        for suffix in _YAML_SUFFIXES:
            if entry.name.endswith(suffix) and entry.is_file():
                names.append(entry.name[: -len(suffix)])
    return sorted(names)


def _read_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{origin}: not valid YAML: {exc}") from exc


def _from_text(text: str, origin: str, default_name: str) -> HardwareSpec:
    data = _read_yaml(text, origin)
    if data is None:
        raise ValueError(f"{origin}: empty hardware description")
    try:
        return HardwareSpec.from_dict(data, default_name=default_name)
    except ValueError as exc:
        raise ValueError(f"{origin}: {exc}") from exc


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or text.lower().endswith(_YAML_SUFFIXES)
    )


def load_hardware(name_or_path: Union[str, os.PathLike[str], HardwareSpec, None] = None) -> HardwareSpec:
    """A :class:`HardwareSpec` from a preset name or a path to a YAML file.

    ``None`` gives the default preset (``magnet16``); a ``HardwareSpec`` is returned as
    is. A bare name (no path separator, no ``.yaml`` suffix) is looked up among the
    presets first, then as a file; anything else is a file path. When neither exists the
    ``ValueError`` lists the known presets.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_PRESET
    if isinstance(name_or_path, HardwareSpec):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"load_hardware takes a preset name or a path, got {type(name_or_path).__name__}"
        )
    is_path_obj = isinstance(name_or_path, os.PathLike)
    text = os.fspath(name_or_path)
    if not text:
        raise ValueError(f"empty hardware name; known presets: {', '.join(list_presets())}")

    if not is_path_obj and not _looks_like_path(text):
        preset = _preset_root().joinpath(f"{text}.yaml")
        if preset.is_file():
            return _from_text(preset.read_text(encoding="utf-8"), f"preset {text!r}", text)

    path = Path(text).expanduser()
    if path.is_file():
        return _from_text(path.read_text(encoding="utf-8"), str(path), path.stem)

    raise ValueError(
        f"unknown hardware {text!r}: not a preset and no such file. "
        f"Known presets: {', '.join(list_presets())} (or give a path to a YAML file)"
    )
