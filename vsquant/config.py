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

``,clip=octav`` (default ``,clip=max``, not written) sets each weight vector's per-vector scale (Eq. 7b, fp or
the fp scale before its two-level quantization) from the vector's OCTAV clip (Sakr et al., ICML 2022; the
MSE-optimal clip of ``vsquant.calibration.octav_clip`` per vector) instead of its max. Weights only: they are
quantized once, offline; an activation's per-vector scales stay the PPU's dynamic vector max (Eq. 7a), which
a fixed-iteration-count recursion per vector would replace with a loop no datapath in the paper has.

Examples: ``8/8/-/-``, ``6/8/6/-``, ``6/3/-/4``, ``4/4U/4/6``, ``4/8/fp16/fp16``,
``4/4/4/4,R=4``, ``6/8/6/-,V=32``, ``4/8/6/10,clip=octav``.

The block-scaled formats of :mod:`vsquant.formats` (OCP MX, NVFP4) are configs too: one name for both operands
(``nvfp4``, ``mxfp8_e4m3``), or ``weights/activations`` where each side is a block format name or a VS-Quant bit
width with per-channel/per-layer scaling (``mxfp4/mxfp8_e4m3``, ``mxfp4/8``, ``8/mxint8``). Each operand's number
format is :attr:`QuantConfig.weight_format` / :attr:`QuantConfig.act_format`; the widths the TLM, the cost model
and the fake-quant path need are derived from them here, once.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

from .formats import (
    BLOCK_FORMATS,
    COARSE,
    FLOAT_SCALE_FORMATS,
    MAX_SCALE_BITS,
    MIN_SCALE_BITS,
    ElementFormat,
    NumberFormat,
    ScaleFormat,
    int_element,
)

__all__ = ["BASELINE", "COARSE", "FLOAT_SCALE_FORMATS", "MAX_BITS", "MAX_SCALE_BITS", "MIN_BITS", "MIN_SCALE_BITS",
           "QuantConfig", "ScaleFormat", "VECTOR_SIZES", "WEIGHT_CLIPS", "check_vector_size", "parse_config", "qmax"]

MIN_BITS, MAX_BITS = 2, 16
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


def qmax(bits: int, unsigned: bool = False) -> int:
    """Largest integer of the symmetric N-bit range: 2^(N-1)-1, or 2^N-1 unsigned (Eq. 1-2)."""
    if not isinstance(bits, numbers.Integral) or isinstance(bits, bool) or bits < (1 if unsigned else 2):
        kind = "an unsigned" if unsigned else "a signed"
        raise ValueError(f"bits must be an int >= {1 if unsigned else 2} for {kind} quantizer, got {bits!r}")
    return (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1


_FLAGS = {"requantize": "requantize", "nonzero": "nonzero_scales"}
#: how the weights' per-vector scales are clipped (``,clip=``): each vector's max (Eq. 7a) or its OCTAV clip
WEIGHT_CLIPS = ("max", "octav")


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


#: the widest fixed-point dot product the datapath forms exactly: float64's significand
EXACT_DOT_BITS = 53


def _parse_operand(text: str) -> dict[str, Any] | None:
    """A block format name as one operand's fields, or None when ``text`` is not one."""
    f = BLOCK_FORMATS.get(text.strip().lower())
    if f is None:
        return None
    return {"bits": f.element.bits, "scale": f.scale, "element": f.element}


def _parse_head(head: str, text: str) -> dict[str, Any]:
    """The fields of a config string without its options: ``W/A/ws/as``, ``FMT`` or ``W_or_FMT/A_or_FMT``."""
    fields = head.split("/")
    names = ", ".join(BLOCK_FORMATS)
    if len(fields) in (1, 2) and any(f.strip().lower() in BLOCK_FORMATS for f in fields):
        if len(fields) == 1:
            fields = fields * 2
        out: dict[str, Any] = {}
        for side, f in zip(("weight", "act"), fields, strict=True):
            op = _parse_operand(f)
            if op is None:   # a VS-Quant side: bits with per-channel / per-layer scaling
                what = "weight (W)" if side == "weight" else "activation (A)"
                try:
                    bits, unsigned = _parse_bits(f, what, allow_unsigned=side == "act")
                except ValueError as e:
                    raise ValueError(f"{e}; or a block format: {names}") from None
                op = {"bits": bits, "scale": COARSE, "element": None}
                if unsigned:
                    out["act_unsigned"] = True
            out[f"{side}_bits"], out[f"{side}_scale"], out[f"{side}_element"] = op["bits"], op["scale"], op["element"]
        return out
    if len(fields) != 4:
        raise ValueError(
            f"arch {text!r} must have four fields W/A/ws/as (e.g. 8/8/-/-, 4/8/6/10, "
            f"4/4U/4/6, 4/8/fp16/fp16), or name block formats: FMT or W/A with FMT in {names} "
            f"(e.g. nvfp4, mxfp4/mxfp8_e4m3, mxfp4/8); got {len(fields)} field{'s' if len(fields) != 1 else ''}")
    for f in fields:
        if f.strip().lower() in BLOCK_FORMATS:
            raise ValueError(f"arch {text!r}: a block format ({f.strip()}) carries its own scales; write it as "
                             f"FMT or W/A (e.g. {f.strip()}/8), not in a four-field W/A/ws/as string")
    w, _ = _parse_bits(fields[0], "weight (W)", allow_unsigned=False)
    a, a_unsigned = _parse_bits(fields[1], "activation (A)", allow_unsigned=True)
    return {"weight_bits": w, "act_bits": a, "weight_scale": ScaleFormat.parse(fields[2], "weight (ws)"),
            "act_scale": ScaleFormat.parse(fields[3], "activation (as)"), "act_unsigned": a_unsigned}


@dataclass(frozen=True)
class QuantConfig:
    """One datapath design point, ``W/A/ws/as`` plus vector size and scale-product rounding; with
    ``weight_element``/``act_element`` set (a block format's elements) ``W``/``A`` are those elements' bits."""

    weight_bits: int = 8
    act_bits: int = 8
    weight_scale: ScaleFormat = COARSE
    act_scale: ScaleFormat = COARSE
    act_unsigned: bool = False
    vector_size: int = 16
    scale_product_bits: int | None = None  # None: full width (no rounding)
    requantize: bool = False       # Eq. 7 variant: values from the two-level scale, not Eq. 7c
    nonzero_scales: bool = False   # Eq. 7g variant: a non-zero vector's scale never rounds to 0
    weight_element: ElementFormat | None = None   # None: VS-Quant's W-bit integer
    act_element: ElementFormat | None = None      # None: VS-Quant's A-bit integer (unsigned with act_unsigned)
    weight_clip: str = "max"       # ,clip=octav: weight per-vector scales from each vector's OCTAV clip

    def __post_init__(self) -> None:
        for name, b in (("weight", self.weight_bits), ("activation", self.act_bits)):
            if isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS:
                raise ValueError(f"{name} bits {b!r} must be an integer in [{MIN_BITS}, {MAX_BITS}]")
        check_vector_size(self.vector_size)
        if not isinstance(self.weight_clip, str) or self.weight_clip not in WEIGHT_CLIPS:
            raise ValueError(f"weight clip clip={self.weight_clip!r} is not allowed: use clip=" + " or clip=".join(
                WEIGHT_CLIPS) + " (the clip that sets each weight vector's per-vector scale)")
        if self.weight_clip != "max" and self.weight_scale.kind not in ("int", "fp"):
            raise ValueError(
                f"clip={self.weight_clip} sets the weights' per-vector scales, and ws={self.weight_scale} has none: "
                "use an integer (e.g. 6) or fp16/fp32 ws; per-channel OCTAV weights are the PTQ calibration "
                "method 'octav'")
        for side, el, bits, sc in (("weight", self.weight_element, self.weight_bits, self.weight_scale),
                                   ("activation", self.act_element, self.act_bits, self.act_scale)):
            if el is not None and el.bits != bits:
                raise ValueError(f"{side} element {el.name} has {el.bits} bits, not the config's {bits}")
            if sc.is_block != (el is not None):
                raise ValueError(f"{side}: block scales ({sc}) go with a block format's elements, and those elements "
                                 "with block scales; name a block format instead: " + ", ".join(BLOCK_FORMATS))
            sc.check_vector_size(self.vector_size, f"{side} format {self._format_name(el, bits, sc)}")
        if self.act_unsigned and self.act_element is not None:
            raise ValueError(f"activations {self.act_element.name} of a block format are signed; 'U' applies to "
                             "VS-Quant integer activations only")
        fams = {s.family for s in (self.weight_scale, self.act_scale) if s.per_vector}
        if len(fams) > 1:
            words = {"int": "an integer", "fp": "a float", "block": "a block-format"}
            one, other = (words[f] for f in sorted(fams, key=lambda f: "int fp block".index(f)))
            raise ValueError(
                f"scales {self.weight_scale}/{self.act_scale} mix {one} and {other} per-vector scale; use one kind on "
                "both sides (both integer, both float, both block formats), or '-' on one side")
        kinds = {self.weight_scale.kind, self.act_scale.kind}
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
        if self.dot_product_bits > EXACT_DOT_BITS:
            raise ValueError(
                f"{self}: a {self.vector_size}-element dot product of {self.weight_format.element.name} x "
                f"{self.act_format.element.name} codes needs {self.dot_product_bits} bits in fixed point; the "
                f"simulated datapath forms dot products exactly in float64 ({EXACT_DOT_BITS} bits), so this pair is "
                "not supported (quantize_block still quantizes it); use narrower elements on one side")

    # ---- number formats ------------------------------------------------------------------
    @staticmethod
    def _format_name(element: ElementFormat | None, bits: int, scale: ScaleFormat, unsigned: bool = False) -> str:
        if element is not None:
            for name, f in BLOCK_FORMATS.items():
                if f.element == element and f.scale == scale:
                    return name
            return f"{element.name}/{scale}"
        return f"{bits}{'U' if unsigned else ''}"

    @property
    def weight_format(self) -> NumberFormat:
        """The weights' number format: elements and scale (a block format, or W-bit integers with ``ws``)."""
        el = self.weight_element or int_element(self.weight_bits)
        return NumberFormat(self._format_name(self.weight_element, self.weight_bits, self.weight_scale), el,
                            self.weight_scale)

    @property
    def act_format(self) -> NumberFormat:
        """The activations' number format (a block format, or A-bit integers, unsigned with 'U', with ``as``)."""
        el = self.act_element or int_element(self.act_bits, self.act_unsigned)
        return NumberFormat(self._format_name(self.act_element, self.act_bits, self.act_scale, self.act_unsigned),
                            el, self.act_scale)

    @property
    def block_formats(self) -> bool:
        """An operand is in a block format (MX, NVFP4)."""
        return self.weight_scale.is_block or self.act_scale.is_block

    # ---- parsing -----------------------------------------------------------------------
    @classmethod
    def parse(cls, text: "str | QuantConfig", *, scale_product: int | str | None = None,
              vector_size: int | None = None) -> "QuantConfig":
        """Parse ``W/A/ws/as[,R=r][,V=v]`` or a block-format form (module docstring); keyword arguments
        override the suffixes."""
        cfg: QuantConfig
        if isinstance(text, QuantConfig):
            cfg = text
        else:
            if not isinstance(text, str):
                raise ValueError(f"arch must be a string like '4/8/6/10', got {type(text).__name__}")
            head, *opts = [p.strip() for p in text.split(",")]
            kw = _parse_head(head, text)
            for opt in opts:
                key, eq, val = opt.partition("=")
                key = key.strip().upper()
                if not eq and key.lower() in _FLAGS:
                    kw[_FLAGS[key.lower()]] = True
                    continue
                if not eq or key not in ("R", "V", "CLIP"):
                    raise ValueError(
                        f"option {opt!r} in {text!r} is not allowed: use R=<bits>|full "
                        "(scale-product rounding), V=<vector size>, clip=" + "|".join(WEIGHT_CLIPS)
                        + " (weight per-vector clip), 'requantize' or 'nonzero'")
                if key == "CLIP":
                    kw["weight_clip"] = val.strip().lower()
                elif key == "R":
                    kw["scale_product_bits"] = _parse_rounding(val)
                else:
                    if not val.strip().isdigit():
                        raise ValueError(f"vector size {opt!r} must be V=<power of two in [1, {VECTOR_SIZES[-1]}]>")
                    kw["vector_size"] = check_vector_size(int(val))
            cfg = cls(**kw)
        over: dict[str, Any] = {}
        if scale_product is not None:
            over["scale_product_bits"] = _parse_rounding(scale_product)
        if vector_size is not None:
            over["vector_size"] = vector_size
        return replace(cfg, **over) if over else cfg

    def __str__(self) -> str:
        if self.block_formats:
            w, a = self.weight_format.name, self.act_format.name
            s = w if w == a else f"{w}/{a}"
        else:
            a = f"{self.act_bits}{'U' if self.act_unsigned else ''}"
            s = f"{self.weight_bits}/{a}/{self.weight_scale}/{self.act_scale}"
        if self.scale_product_bits is not None:
            s += f",R={self.scale_product_bits}"
        if self.vector_size != 16:
            s += f",V={self.vector_size}"
        for flag, field in _FLAGS.items():
            if getattr(self, field):
                s += f",{flag}"
        if self.weight_clip != "max":
            s += f",clip={self.weight_clip}"
        return s

    def with_(self, **changes: Any) -> "QuantConfig":
        return replace(self, **changes)

    def for_activation_operands(self) -> "QuantConfig":
        """The arithmetic of a matmul whose two operands are activations (attention's QK^T, AV):
        both take the activation bits and scale format, so the dot product is A x A bits and the
        scale product as + as bits (R rounding applies only with integer scales)."""
        r = self.scale_product_bits if self.act_scale.kind == "int" else None
        return replace(self, weight_bits=self.act_bits, weight_scale=self.act_scale, scale_product_bits=r,
                       weight_element=self.act_element, weight_clip="max")

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
    def separable(self) -> bool:
        """Full-width integer (or per-channel) scale products: Eq. 5 is one GEMM of the scaled operands,
        sum_j dot_j * sa_j * sw_j = (aq*sa) @ (wq*sw).T, exact in any order (the reference, the fake-quant path
        and the TLM's PE share this rule)."""
        return self.is_baseline or (self.scale_product_shift == 0 and not self.float_scales)

    @property
    def float_scales(self) -> bool:
        """A per-vector or block scale is floating point (fp16/fp32, E8M0, E4M3): the partial sums are fp."""
        return self.weight_scale.is_float or self.act_scale.is_float

    @property
    def weight_scale_vector_bits(self) -> int:
        """Weight-scale bits stored beside each V-element weight vector: M, or 8 V / k for a block scale."""
        return self.weight_scale.bits_per_vector(self.vector_size)

    @property
    def act_scale_vector_bits(self) -> int:
        """Activation-scale bits stored beside each V-element activation vector."""
        return self.act_scale.bits_per_vector(self.vector_size)

    @property
    def weight_vector_bits(self) -> int:
        """Bits a stored weight vector takes with its per-vector scale: V*N + M (Sec. 4, overhead M/(V*N))."""
        return self.vector_size * self.weight_bits + self.weight_scale_vector_bits

    @property
    def act_vector_bits(self) -> int:
        """Bits a stored activation vector takes with its per-vector scale: V*A + M."""
        return self.vector_size * self.act_bits + self.act_scale_vector_bits

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
    def product_bits(self) -> int:
        """Signed width of one element product in fixed point: W + A for integers (Sec. 5: 2N), the two codes'
        widths for fp elements (E2M1 x E2M1: 5 + 5; the codes are the elements in units of their ulp)."""
        return self.weight_format.element.code_bits + self.act_format.element.code_bits

    @property
    def dot_product_bits(self) -> int:
        """Signed width of a V-element fixed-point dot product: product width + ceil(log2 V) (Sec. 5: 2N+log2 V)."""
        return self.product_bits + math.ceil(math.log2(self.vector_size))

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
        return self.weight_bits + self.weight_scale_vector_bits / self.vector_size

    @property
    def act_storage_bits(self) -> float:
        """Effective bits per activation including its per-vector scale: A + M/V."""
        return self.act_bits + self.act_scale_vector_bits / self.vector_size


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
