"""Block-scaled number formats that descend from VS-Quant's per-vector scales: OCP MX and NVIDIA's NVFP4.

- OCP Microscaling Formats (MX) Specification v1.0 (2023), Sec. 5-6: a block of k = 32 elements shares one
  power-of-two scale X stored as E8M0; the elements are FP8 (E4M3, E5M2), FP6 (E2M3, E3M2), FP4 (E2M1) or
  INT8 (a two's-complement 1.6 fixed point, k/64). The shared exponent is floor(log2(amax)) - emax_elem,
  where emax_elem is the exponent of the element format's largest normal (Sec. 6.3).
- NVFP4 (NVIDIA Blackwell; "Introducing NVFP4", NVIDIA technical blog, 2025): blocks of 16 FP4 E2M1
  elements, an FP8 E4M3 scale per block and an fp32 scale per tensor: a two-level per-vector scale, like
  VS-Quant's Eq. 7, with fp instead of integer levels.

:func:`quantize_block` implements the rules exactly (every value is float64, every rounding is to nearest,
ties to even, saturating at the element format's largest normal):

- blocks along the last axis; a short last block is its own block;
- MX: block scale 2^(floor(log2(amax)) - emax_elem), the exponent clamped to [-127, 127]; an all-zero block
  gets 2^-127; elements are x / scale in the element format;
- NVFP4: tensor scale amax_tensor / (6 * 448) (1 for an all-zero tensor); block scale
  amax_block / 6 / tensor_scale rounded to E4M3; elements x / (block_scale * tensor_scale) in E2M1 (a zero
  block scale gives zero elements).

Pure NumPy, like the rest of :mod:`vsquant`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCK_FORMATS", "COARSE", "ELEMENT_FORMATS", "SCALE_KINDS", "BlockQuantized", "ElementFormat",
           "NumberFormat", "ScaleFormat", "block_format", "int_element", "quantize_block"]


def _floor_log2(a: np.ndarray) -> np.ndarray:
    """floor(log2 a) exactly, as int64, for a > 0 (a = m 2^p with m in [0.5, 1): p - 1); 0 where a == 0."""
    _, p = np.frexp(np.where(a > 0, a, 1.0))
    out: np.ndarray = p.astype(np.int64) - 1
    return out


ELEMENT_KINDS = ("fp", "int")
#: how an operand's scale is stored: none beside the vectors ('-': per-channel weights, per-layer activations),
#: an M-bit integer per vector under an fp per-row level (VS-Quant's two-level Eq. 7), an fp16/fp32 per vector
#: (single-level Eq. 7b), an E8M0 power of two per block (OCP MX), an E4M3 per block under an fp32 per-tensor
#: level (NVFP4)
SCALE_KINDS = ("coarse", "int", "fp", "e8m0", "e4m3")
FLOAT_SCALE_FORMATS = ("fp16", "fp32")
MIN_SCALE_BITS, MAX_SCALE_BITS = 1, 16


@dataclass(frozen=True)
class ElementFormat:
    """An element format: a sign-magnitude float with ``exp_bits``/``man_bits`` and ``bias`` (subnormals
    included; OCP FP8/FP6/FP4 have no infinities or NaN in the values used here), or a two's-complement
    integer (``kind="int"``: ``int_bits`` integer and ``man_bits`` fraction bits, k / 2^man_bits with
    |k| <= max_code; VS-Quant's N-bit integers have no fraction bits, MX INT8 is a 1.6 fixed point).

    Every value of a format is an integer *code* times the format's ``ulp`` (its smallest step, a power of
    two): the datapath multiplies and adds codes exactly, in fixed point, and folds the ulp into the scales.
    """

    name: str
    kind: str            # "fp" or "int"
    exp_bits: int
    man_bits: int
    bias: int
    max_normal: float    # the largest finite magnitude (the saturation value)
    int_bits: int = 0    # integer bits of a fixed-point element (MX INT8: 1, a 1.6 fixed point)
    unsigned: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ELEMENT_KINDS:
            raise ValueError(f"element format {self.name!r}: kind {self.kind!r}; kinds: {', '.join(ELEMENT_KINDS)}")
        if self.unsigned and self.kind != "int":
            raise ValueError(f"element format {self.name!r}: only integer elements can be unsigned")

    @property
    def bits(self) -> int:
        return (0 if self.unsigned else 1) + self.exp_bits + self.int_bits + self.man_bits

    @property
    def emax(self) -> int:
        """The exponent of the largest normal, floor(log2(max_normal)) (MX's emax_elem)."""
        return math.floor(math.log2(self.max_normal))

    @property
    def emin(self) -> int:
        """The exponent of the smallest normal (1 - bias); below it the spacing stays 2^(emin - man_bits)."""
        return 1 - self.bias

    @property
    def ulp(self) -> float:
        """The smallest step of the format, a power of two: 2^(emin - man_bits) (fp), 2^-man_bits (int)."""
        return math.ldexp(1.0, (self.emin if self.kind == "fp" else 0) - self.man_bits)

    @property
    def max_code(self) -> int:
        """The largest code, max_normal / ulp (E2M1: 12, E4M3: 229376, an N-bit integer: 2^(N-1) - 1)."""
        return int(self.max_normal / self.ulp)

    @property
    def code_bits(self) -> int:
        """Bits of a code in two's complement (the multiplier's operand width in fixed point): N for an N-bit
        integer (signed or unsigned), 1 + bits of max_code for a float."""
        return (0 if self.unsigned else 1) + self.max_code.bit_length()

    def quantize(self, x: npt.ArrayLike) -> np.ndarray:
        """``x`` rounded to the nearest value of the format (ties to even), saturating at ``max_normal``."""
        v = np.asarray(x, dtype=np.float64)
        if self.kind == "int":
            q = self.ulp
            return np.clip(np.round(v / q), 0 if self.unsigned else -self.max_code, self.max_code) * q
        a = np.abs(v)
        e = np.maximum(_floor_log2(a), self.emin)
        quantum = np.ldexp(1.0, e - self.man_bits)
        r = np.round(a / quantum) * quantum           # a / quantum is exact: quantum is a power of two
        out: np.ndarray = np.copysign(np.minimum(r, self.max_normal), v)
        return out


def int_element(bits: int, unsigned: bool = False) -> ElementFormat:
    """VS-Quant's N-bit integer element: [-(2^(N-1)-1), 2^(N-1)-1] (Eq. 2's symmetric range), or [0, 2^N-1]."""
    top = (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1
    return ElementFormat(f"{'u' if unsigned else 's'}{bits}", "int", 0, 0, 0, float(top),
                         int_bits=bits if unsigned else bits - 1, unsigned=unsigned)


#: the element formats of the block formats (OCP MX v1.0 Sec. 5.3, Table 1-2; E4M3 is the OCP "FN" variant,
#: largest normal 448)
ELEMENT_FORMATS: dict[str, ElementFormat] = {f.name: f for f in (
    ElementFormat("e4m3", "fp", 4, 3, 7, 448.0),
    ElementFormat("e5m2", "fp", 5, 2, 15, 57344.0),
    ElementFormat("e2m3", "fp", 2, 3, 1, 7.5),
    ElementFormat("e3m2", "fp", 3, 2, 3, 28.0),
    ElementFormat("e2m1", "fp", 2, 1, 1, 6.0),
    ElementFormat("int8", "int", 0, 6, 0, 127 / 64, int_bits=1),
)}


@dataclass(frozen=True)
class ScaleFormat:
    """How one operand's scale is stored (``kind`` of :data:`SCALE_KINDS`): ``coarse`` ('-', no per-vector
    scale), ``int`` (an M-bit integer per vector, two-level), ``fp`` (fp16/fp32 per vector), ``e8m0`` (an MX
    power of two per ``block`` elements) or ``e4m3`` (an NVFP4 FP8 scale per ``block`` elements, under an fp32
    per-tensor scale). ``bits`` is one stored scale's width; ``block`` the elements a block scale covers (0 for
    the per-vector kinds, whose scale covers one vector of the datapath)."""

    kind: str
    bits: int = 0   # M for "int", 16 or 32 for "fp", 8 for the block kinds, 0 for "coarse"
    block: int = 0  # elements per block scale (the block kinds)

    def __post_init__(self) -> None:
        if self.kind not in SCALE_KINDS:
            raise ValueError(f"scale kind {self.kind!r} is not one of {', '.join(map(repr, SCALE_KINDS))}")
        if self.is_block != (self.block > 0):
            raise ValueError(f"scale {self.kind!r}: a block size is given with, and only with, the block kinds "
                             f"e8m0/e4m3 (got block={self.block})")

    @property
    def per_vector(self) -> bool:
        return self.kind != "coarse"

    @property
    def integer_bits(self) -> int:
        """Bits this scale contributes to the integer scale product (0 unless ``int``)."""
        return self.bits if self.kind == "int" else 0

    @property
    def is_float(self) -> bool:
        """A floating-point scale per vector or block (fp16/fp32, E8M0, E4M3): the partial sums are fp."""
        return self.kind in ("fp", "e8m0", "e4m3")

    @property
    def is_block(self) -> bool:
        return self.kind in ("e8m0", "e4m3")

    @property
    def family(self) -> str:
        """Scales of one family can meet in a scale product: ``int``, ``fp`` or ``block`` ('-' meets any)."""
        return "block" if self.is_block else self.kind

    @property
    def significand_bits(self) -> int:
        """Fraction bits of a stored fp scale (fp16 10, fp32 23, E8M0 0, E4M3 3): its lsb lies that many binades
        below its msb, which bounds the exponent span of exact sums."""
        return {"fp": 10 if self.bits == 16 else 23, "e8m0": 0, "e4m3": 3}.get(self.kind, 0)

    @property
    def needs_layer_max(self) -> bool:
        """The PPU needs the layer's maximum before it quantizes: a per-layer scale ('-'), a per-layer gamma
        (two-level ``int``) or NVFP4's per-tensor fp32 scale (``e4m3``); fp16/fp32 and E8M0 are per vector."""
        return self.kind in ("coarse", "int", "e4m3")

    @property
    def storage_bits(self) -> int:
        """Bits of one stored scale (per vector for ``int``/``fp``, per block for the block kinds)."""
        return self.bits

    def bits_per_vector(self, vector_size: int) -> int:
        """Scale bits stored beside each V-element vector in a buffer (Sec. 4.4: overhead M/(V*N)); a block
        scale is stored once per block, so 8 V / block per vector."""
        if not self.is_block:
            return self.bits
        return self.bits * vector_size // self.block

    def check_vector_size(self, vector_size: int, fmt: str) -> None:
        """A block scale covers whole vectors of the datapath, and its bits split evenly over them."""
        if self.is_block and (self.block % vector_size or (self.bits * vector_size) % self.block):
            ok = [v for v in (1, 2, 4, 8, 16, 32, 64) if not self.block % v and not self.bits * v % self.block]
            raise ValueError(f"{fmt}: its block of {self.block} elements must be a whole number of the datapath's "
                             f"vectors (V={vector_size}), with V >= {self.block // self.bits} so its {self.bits}-bit "
                             f"scale splits into whole bits per vector; use V in "
                             f"{ok}")

    def __str__(self) -> str:
        return {"coarse": "-", "int": str(self.bits)}.get(self.kind, f"fp{self.bits}" if self.kind == "fp"
                                                           else self.kind)

    @classmethod
    def parse(cls, text: str, field: str) -> "ScaleFormat":
        """A scale field of a ``W/A/ws/as`` string: '-', an integer M, fp16 or fp32."""
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


@dataclass(frozen=True)
class NumberFormat:
    """The number format of one operand: its ``element`` format and its ``scale`` format. VS-Quant's
    ``N`` bits with scale ``ws`` is one (``QuantConfig.weight_format``); the block formats of
    :data:`BLOCK_FORMATS` are others. ``name`` is what config strings call it."""

    name: str
    element: ElementFormat
    scale: ScaleFormat

    @property
    def block_size(self) -> int:
        """Elements per block scale (0 unless a block format)."""
        return self.scale.block

    @property
    def scale_bits(self) -> int:
        """Bits of the stored per-block scale (E8M0 and E4M3 are both 8)."""
        return self.scale.bits

    @property
    def block_bits(self) -> int:
        """Bits stored per block: its elements and its scale (the buffers' entry, as V*N + M is VS-Quant's)."""
        return self.block_size * self.element.bits + self.scale_bits

    @property
    def bits_per_element(self) -> float:
        """Average stored bits per element, N + 8/k (MXFP4: 4.25, NVFP4: 4.5, plus NVFP4's one fp32 per
        tensor, not counted here)."""
        return self.block_bits / self.block_size

    @property
    def emax_elem(self) -> int:
        """MX's emax_elem: 0 for INT8 (its elements are below 2), else the element's emax."""
        return 0 if self.element.kind == "int" else self.element.emax

    def __str__(self) -> str:
        return self.name


def _block(name: str, element: str, block: int, scale: str) -> NumberFormat:
    return NumberFormat(name, ELEMENT_FORMATS[element], ScaleFormat(scale, 8, block))


#: the block formats (OCP MX v1.0 Table 1; NVFP4)
BLOCK_FORMATS: dict[str, NumberFormat] = {f.name: f for f in (
    _block("mxfp8_e4m3", "e4m3", 32, "e8m0"),
    _block("mxfp8_e5m2", "e5m2", 32, "e8m0"),
    _block("mxfp6_e2m3", "e2m3", 32, "e8m0"),
    _block("mxfp6_e3m2", "e3m2", 32, "e8m0"),
    _block("mxfp4", "e2m1", 32, "e8m0"),
    _block("mxint8", "int8", 32, "e8m0"),
    _block("nvfp4", "e2m1", 16, "e4m3"),
)}


def block_format(fmt: str | NumberFormat) -> NumberFormat:
    """The block format ``fmt`` names; an unknown name (or a format without block scales) raises naming the
    known ones."""
    if isinstance(fmt, NumberFormat):
        if not fmt.scale.is_block:
            raise ValueError(f"{fmt.name} has no block scale ({fmt.scale}); block formats: {', '.join(BLOCK_FORMATS)}")
        return fmt
    try:
        return BLOCK_FORMATS[str(fmt).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown block format {fmt!r}; formats: {', '.join(BLOCK_FORMATS)}") from None


@dataclass(frozen=True, eq=False)
class BlockQuantized:
    """The result of :func:`quantize_block`: decoded element ``values`` (the shape of the input), the per-block
    ``block_scales`` (shape ``(..., blocks)``), the per-tensor ``tensor_scale`` (1 for MX) and the format."""

    values: np.ndarray
    block_scales: np.ndarray
    tensor_scale: float
    fmt: NumberFormat

    def expanded_scales(self) -> np.ndarray:
        """Each element's block scale (the shape of ``values``)."""
        L = self.values.shape[-1]
        return np.repeat(self.block_scales, self.fmt.block_size, axis=-1)[..., :L]

    def dequantize(self) -> np.ndarray:
        """values x block scale x tensor scale, float64."""
        out: np.ndarray = self.values * self.expanded_scales() * self.tensor_scale
        return out


def _blocks(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` (..., L) as (..., ceil(L / k), k), the short last block padded with zeros (which change no amax
    and quantize to zero)."""
    L = x.shape[-1]
    if L < k:   # one short block: no padding
        return x.reshape(x.shape[:-1] + (1, L))
    n = -(-L // k)
    pad = n * k - L
    if pad:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,))], axis=-1)
    return x.reshape(x.shape[:-1] + (n, k))


def quantize_block(x: npt.ArrayLike, fmt: str | NumberFormat) -> BlockQuantized:
    """``x`` in the block format ``fmt`` (a name of :data:`BLOCK_FORMATS` or a :class:`NumberFormat` with a
    block scale), blocks along the last axis, by the rules of the module docstring."""
    f = block_format(fmt)
    v = np.asarray(x, dtype=np.float64)
    if v.ndim == 0 or v.shape[-1] == 0:
        raise ValueError(f"quantize_block needs a tensor with a non-empty last axis, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"quantize_block: the tensor has {int(np.size(v) - np.isfinite(v).sum())} non-finite "
                         "values (NaN or Inf); block formats quantize finite values only")
    L = v.shape[-1]
    b = _blocks(v, f.block_size)
    amax = np.abs(b).max(axis=-1)
    if f.scale.kind == "e8m0":
        exp = np.where(amax > 0, _floor_log2(amax) - f.emax_elem, -127)
        scales = np.ldexp(1.0, np.clip(exp, -127, 127))
        elems = f.element.quantize(b / scales[..., None])
        tensor_scale = 1.0
    elif f.scale.kind == "e4m3":
        t = float(np.abs(v).max())
        e4m3 = ELEMENT_FORMATS["e4m3"]
        tensor_scale = t / (f.element.max_normal * e4m3.max_normal) if t > 0 else 1.0
        scales = e4m3.quantize(amax / f.element.max_normal / tensor_scale)
        denom = scales * tensor_scale
        safe = np.where(denom > 0, denom, 1.0)
        elems = np.where(denom[..., None] > 0, f.element.quantize(b / safe[..., None]), 0.0)
    else:   # pragma: no cover - block_format admits only the two block kinds
        raise ValueError(f"block format {f.name}: unknown scale kind {f.scale!r}; kinds: e8m0, e4m3")
    values = elems.reshape(elems.shape[:-2] + (-1,))[..., :L]
    return BlockQuantized(values, scales, tensor_scale, f)
