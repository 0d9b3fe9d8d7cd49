"""The datapath configuration ``W/A/ws/as`` of the VS-Quant paper (Sec. 5-6, Fig. 3, Table 8).

``W``  weight bits, ``A`` activation bits (``4U``: unsigned activations), ``ws``/``as`` the
per-vector scale of weights/activations:

- ``-``      no per-vector scale: per-channel scaling of weights, per-layer of activations
             (the paper's "Dashes indicate per-channel/per-layer scaling", Fig. 3 caption);
- ``M``      an M-bit unsigned integer per-vector scale with an fp coarse scale (two-level, Eq. 7);
- ``fp16``/``fp32`` a single-level floating-point per-vector scale (Table 3, Tables 5-7 "S=fp16").

Beyond the four fields a config carries the vector size V (default 16, Table 8) and the
rounding of the scale product ``sw*sa`` to R bits (Fig. 3's 4- and 6-bit bars; full width
unless set). The string form appends them as ``,R=4`` and ``,V=32``; ``str()`` round-trips.

Two variants of Eq. 7 are flags (see ``vsquant.quantize``): ``,requantize`` and ``,nonzero``.

Examples: ``8/8/-/-``, ``6/8/6/-``, ``6/3/-/4``, ``4/4U/4/6``, ``4/8/fp16/fp16``,
``4/4/4/4,R=4``, ``6/8/6/-,V=32``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

MIN_BITS, MAX_BITS = 2, 16
MIN_SCALE_BITS, MAX_SCALE_BITS = 1, 16
#: Vector sizes a datapath can have: V multipliers feed a binary adder tree of log2 V levels (Sec. 5), so V is a
#: power of two; Table 4 of the paper spans 1..64, larger V up to 256 are allowed for studies.
VECTOR_SIZES = tuple(1 << k for k in range(9))
#: the per-channel 8-bit datapath every design point is normalized to (the paper's and MAGNet's baseline)
BASELINE = "8/8/-/-"


def check_vector_size(v: object) -> int:
    """V as an int from :data:`VECTOR_SIZES`, else a ValueError that lists them."""
    if isinstance(v, bool) or not isinstance(v, int) or v not in VECTOR_SIZES:
        raise ValueError(f"vector size V={v!r} is not one the datapath can have: V must be a power of two in "
                         f"[1, {VECTOR_SIZES[-1]}] ({', '.join(map(str, VECTOR_SIZES))})")
    return v
FLOAT_SCALE_FORMATS = ("fp16", "fp32")


def qmax(bits: int, unsigned: bool = False) -> int:
    """Largest integer of the symmetric N-bit range: 2^(N-1)-1, or 2^N-1 unsigned (Eq. 1-2)."""
    if not isinstance(bits, numbers.Integral) or isinstance(bits, bool) or bits < (1 if unsigned else 2):
        kind = "an unsigned" if unsigned else "a signed"
        raise ValueError(f"bits must be an int >= {1 if unsigned else 2} for {kind} quantizer, got {bits!r}")
    return (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1


@dataclass(frozen=True)
class ScaleFormat:
    """How one operand's per-vector scale is stored: ``coarse`` (none: '-'), ``int`` (M bits) or ``fp``."""

    kind: str  # "coarse" | "int" | "fp"
    bits: int = 0  # M for "int", 16 or 32 for "fp", 0 for "coarse"

    def __post_init__(self) -> None:
        if self.kind not in ("coarse", "int", "fp"):
            raise ValueError(f"scale kind {self.kind!r} is not one of 'coarse', 'int', 'fp'")

    @property
    def per_vector(self) -> bool:
        return self.kind != "coarse"

    @property
    def integer_bits(self) -> int:
        """Bits this scale contributes to the integer scale product (0 unless ``int``)."""
        return self.bits if self.kind == "int" else 0

    @property
    def storage_bits(self) -> int:
        """Bits stored beside every vector in a buffer (Sec. 4.4: overhead M/(V*N))."""
        return 0 if self.kind == "coarse" else self.bits

    def __str__(self) -> str:
        return {"coarse": "-", "int": str(self.bits), "fp": f"fp{self.bits}"}[self.kind]

    @classmethod
    def parse(cls, text: str, field: str) -> "ScaleFormat":
        t = text.strip().lower()
        if t == "-":
            return cls("coarse")
        if t in FLOAT_SCALE_FORMATS:
            return cls("fp", int(t[2:]))
        if t.isdigit():
            m = int(t)
            if MIN_SCALE_BITS <= m <= MAX_SCALE_BITS:
                return cls("int", m)
            raise ValueError(
                f"{field} scale {text!r}: integer scale bits must be in "
                f"[{MIN_SCALE_BITS}, {MAX_SCALE_BITS}]")
        raise ValueError(
            f"{field} scale {text!r} is not allowed: use '-' (per-channel/per-layer), an integer "
            f"bit width M in [{MIN_SCALE_BITS}, {MAX_SCALE_BITS}] (two-level), or one of "
            f"{', '.join(FLOAT_SCALE_FORMATS)} (single-level float)")


COARSE = ScaleFormat("coarse")
_FLAGS = {"requantize": "requantize", "nonzero": "nonzero_scales"}


def _parse_bits(text: str, field: str, allow_unsigned: bool) -> tuple[int, bool]:
    t = text.strip()
    unsigned = False
    if allow_unsigned and t[-1:] in ("U", "u"):
        unsigned, t = True, t[:-1]
    if not t.isdigit() or not MIN_BITS <= int(t) <= MAX_BITS:
        suffix = " with an optional 'U' for unsigned (e.g. 4U)" if allow_unsigned else ""
        raise ValueError(
            f"{field} bits {text!r} is not allowed: use an integer in [{MIN_BITS}, {MAX_BITS}]{suffix}")
    return int(t), unsigned


@dataclass(frozen=True)
class QuantConfig:
    """One datapath design point, ``W/A/ws/as`` plus vector size and scale-product rounding."""

    weight_bits: int = 8
    act_bits: int = 8
    weight_scale: ScaleFormat = COARSE
    act_scale: ScaleFormat = COARSE
    act_unsigned: bool = False
    vector_size: int = 16
    scale_product_bits: int | None = None  # None: full width (no rounding)
    requantize: bool = False       # Eq. 7 variant: values from the two-level scale, not Eq. 7c
    nonzero_scales: bool = False   # Eq. 7g variant: a non-zero vector's scale never rounds to 0

    def __post_init__(self) -> None:
        for name, b in (("weight", self.weight_bits), ("activation", self.act_bits)):
            if isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS:
                raise ValueError(f"{name} bits {b!r} must be an integer in [{MIN_BITS}, {MAX_BITS}]")
        check_vector_size(self.vector_size)
        kinds = {self.weight_scale.kind, self.act_scale.kind}
        if kinds == {"int", "fp"}:
            raise ValueError(
                f"scales {self.weight_scale}/{self.act_scale} mix an integer and a float per-vector "
                "scale; use both integer, both float, or '-' on one side")
        r = self.scale_product_bits
        if r is not None:
            if isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise ValueError(f"scale-product rounding R={r!r} must be a positive integer (or 'full')")
            if "int" not in kinds:
                raise ValueError(
                    f"scale-product rounding R={r} needs an integer per-vector scale; "
                    f"{self.weight_scale}/{self.act_scale} has none")
            full = self.full_scale_product_bits
            if r > full:
                raise ValueError(
                    f"scale-product rounding R={r} is wider than the {full}-bit scale product of "
                    f"{self.weight_scale}/{self.act_scale} (ws + as); use R in [1, {full}] or 'full'")

    # ---- parsing -----------------------------------------------------------------------
    @classmethod
    def parse(cls, text: "str | QuantConfig", *, scale_product: int | str | None = None,
              vector_size: int | None = None) -> "QuantConfig":
        """Parse ``W/A/ws/as[,R=r][,V=v]``; keyword arguments override the suffixes."""
        cfg: QuantConfig
        if isinstance(text, QuantConfig):
            cfg = text
        else:
            if not isinstance(text, str):
                raise ValueError(f"arch must be a string like '4/8/6/10', got {type(text).__name__}")
            head, *opts = [p.strip() for p in text.split(",")]
            fields = head.split("/")
            if len(fields) != 4:
                raise ValueError(
                    f"arch {text!r} must have four fields W/A/ws/as (e.g. 8/8/-/-, 4/8/6/10, "
                    f"4/4U/4/6, 4/8/fp16/fp16); got {len(fields)}")
            w, w_unsigned = _parse_bits(fields[0], "weight (W)", allow_unsigned=False)
            a, a_unsigned = _parse_bits(fields[1], "activation (A)", allow_unsigned=True)
            ws = ScaleFormat.parse(fields[2], "weight (ws)")
            as_ = ScaleFormat.parse(fields[3], "activation (as)")
            kw: dict[str, Any] = {}
            for opt in opts:
                key, eq, val = opt.partition("=")
                key = key.strip().upper()
                if not eq and key.lower() in _FLAGS:
                    kw[_FLAGS[key.lower()]] = True
                    continue
                if not eq or key not in ("R", "V"):
                    raise ValueError(
                        f"option {opt!r} in {text!r} is not allowed: use R=<bits>|full "
                        "(scale-product rounding), V=<vector size>, 'requantize' or 'nonzero'")
                if key == "R":
                    kw["scale_product_bits"] = _parse_rounding(val)
                else:
                    if not val.strip().isdigit():
                        raise ValueError(f"vector size {opt!r} must be V=<power of two in [1, {VECTOR_SIZES[-1]}]>")
                    kw["vector_size"] = check_vector_size(int(val))
            cfg = cls(w, a, ws, as_, a_unsigned, **kw)
        over: dict[str, Any] = {}
        if scale_product is not None:
            over["scale_product_bits"] = _parse_rounding(scale_product)
        if vector_size is not None:
            over["vector_size"] = vector_size
        return replace(cfg, **over) if over else cfg

    def __str__(self) -> str:
        a = f"{self.act_bits}{'U' if self.act_unsigned else ''}"
        s = f"{self.weight_bits}/{a}/{self.weight_scale}/{self.act_scale}"
        if self.scale_product_bits is not None:
            s += f",R={self.scale_product_bits}"
        if self.vector_size != 16:
            s += f",V={self.vector_size}"
        for flag, field in _FLAGS.items():
            if getattr(self, field):
                s += f",{flag}"
        return s

    def with_(self, **changes: Any) -> "QuantConfig":
        return replace(self, **changes)

    def for_activation_operands(self) -> "QuantConfig":
        """The arithmetic of a matmul whose two operands are activations (attention's QK^T, AV):
        both take the activation bits and scale format, so the dot product is A x A bits and the
        scale product as + as bits (R rounding applies only with integer scales)."""
        r = self.scale_product_bits if self.act_scale.kind == "int" else None
        return replace(self, weight_bits=self.act_bits, weight_scale=self.act_scale, scale_product_bits=r)

    def for_layer(self, kind: str) -> "QuantConfig":
        """The arithmetic of a MAC layer of ``kind`` (``linear``, ``conv2d``: this config; ``matmul``, a product
        of two activations: :meth:`for_activation_operands`). The one rule the mapper and the TLM share."""
        if kind == "matmul":
            return self.for_activation_operands()
        if kind in ("linear", "conv2d"):
            return self
        raise ValueError(f"layer kind {kind!r} is not a MAC layer kind; kinds: linear, conv2d, matmul")

    # ---- derived quantities of Sec. 4.4 and Sec. 5 ---------------------------------------
    @property
    def is_baseline(self) -> bool:
        """No per-vector hardware: no scale multipliers and no scale storage (Sec. 5)."""
        return not (self.weight_scale.per_vector or self.act_scale.per_vector)

    @property
    def integer_scales(self) -> bool:
        return "int" in (self.weight_scale.kind, self.act_scale.kind)

    @property
    def float_scales(self) -> bool:
        return "fp" in (self.weight_scale.kind, self.act_scale.kind)

    @property
    def weight_vector_bits(self) -> int:
        """Bits a stored weight vector takes with its per-vector scale: V*N + M (Sec. 4, overhead M/(V*N))."""
        return self.vector_size * self.weight_bits + self.weight_scale.storage_bits

    @property
    def act_vector_bits(self) -> int:
        """Bits a stored activation vector takes with its per-vector scale: V*A + M."""
        return self.vector_size * self.act_bits + self.act_scale.storage_bits

    @property
    def act_qmax(self) -> int:
        return qmax(self.act_bits, self.act_unsigned)

    @property
    def weight_qmax(self) -> int:
        return qmax(self.weight_bits)

    @property
    def full_scale_product_bits(self) -> int:
        """Width of the integer ``sw*sa`` product: ws + as (2M in the paper)."""
        return self.weight_scale.integer_bits + self.act_scale.integer_bits

    @property
    def rounded_scale_product_bits(self) -> int:
        """Width of the scale product after optional rounding to R bits."""
        full = self.full_scale_product_bits
        r = self.scale_product_bits
        return full if r is None else min(r, full)

    @property
    def scale_product_shift(self) -> int:
        """Right shift that rounds the scale product to R bits (0 at full width)."""
        return self.full_scale_product_bits - self.rounded_scale_product_bits

    @property
    def dot_product_bits(self) -> int:
        """Signed width of a V-element integer dot product: W + A + ceil(log2 V) (Sec. 5: 2N+log2 V)."""
        return self.weight_bits + self.act_bits + math.ceil(math.log2(self.vector_size))

    @property
    def partial_sum_bits(self) -> int:
        """Width of a scaled partial sum: dot product width + scale-product width (Sec. 5: +2M or +R)."""
        return self.dot_product_bits + self.rounded_scale_product_bits

    def accumulator_bits(self, num_vectors: int) -> int:
        """Collector width that cannot overflow when summing ``num_vectors`` partial sums."""
        return self.partial_sum_bits + math.ceil(math.log2(max(num_vectors, 1)))

    @property
    def weight_storage_bits(self) -> float:
        """Effective bits per weight including the per-vector scale: N + M/V (Sec. 4.4)."""
        return self.weight_bits + self.weight_scale.storage_bits / self.vector_size

    @property
    def act_storage_bits(self) -> float:
        return self.act_bits + self.act_scale.storage_bits / self.vector_size


def _parse_rounding(val: int | str | None) -> int | None:
    if val is None:
        return None
    if isinstance(val, bool):
        raise ValueError(f"scale-product rounding {val!r} must be 'full' or a positive number of bits R")
    if isinstance(val, int):
        return val
    t = str(val).strip().lower()
    if t in ("full", "none", ""):
        return None
    if t.isdigit() and int(t) >= 1:
        return int(t)
    raise ValueError(f"scale-product rounding {val!r} must be 'full' or a positive number of bits R")


def parse_config(text: str | QuantConfig) -> QuantConfig:
    """Shorthand for :meth:`QuantConfig.parse`."""
    return QuantConfig.parse(text)
