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

__all__ = ["BLOCK_FORMATS", "ELEMENT_FORMATS", "BlockFormat", "BlockQuantized", "ElementFormat", "block_format",
           "quantize_block"]


def _floor_log2(a: np.ndarray) -> np.ndarray:
    """floor(log2 a) exactly, as int64, for a > 0 (a = m 2^p with m in [0.5, 1): p - 1); 0 where a == 0."""
    _, p = np.frexp(np.where(a > 0, a, 1.0))
    out: np.ndarray = p.astype(np.int64) - 1
    return out


@dataclass(frozen=True)
class ElementFormat:
    """An element format: a sign-magnitude float with ``exp_bits``/``man_bits`` and ``bias`` (subnormals
    included; OCP FP8/FP6/FP4 have no infinities or NaN in the values used here), or the MX INT8 fixed point
    (``kind="int"``: sign, ``int_bits`` integer and ``man_bits`` fraction bits, k / 2^man_bits with
    |k| <= 2^(bits-1) - 1)."""

    name: str
    kind: str            # "fp" or "int"
    exp_bits: int
    man_bits: int
    bias: int
    max_normal: float    # the largest finite magnitude (the saturation value)
    int_bits: int = 0    # integer bits of a fixed-point element (MX INT8: 1, a 1.6 fixed point)

    def __post_init__(self) -> None:
        if self.kind not in ("fp", "int"):
            raise ValueError(f"element format {self.name!r}: kind {self.kind!r}; kinds: fp, int")

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.int_bits + self.man_bits

    @property
    def emax(self) -> int:
        """The exponent of the largest normal, floor(log2(max_normal)) (MX's emax_elem)."""
        return math.floor(math.log2(self.max_normal))

    @property
    def emin(self) -> int:
        """The exponent of the smallest normal (1 - bias); below it the spacing stays 2^(emin - man_bits)."""
        return 1 - self.bias

    def quantize(self, x: npt.ArrayLike) -> np.ndarray:
        """``x`` rounded to the nearest value of the format (ties to even), saturating at ``max_normal``."""
        v = np.asarray(x, dtype=np.float64)
        if self.kind == "int":
            q = 2.0 ** -self.man_bits
            return np.clip(np.round(v / q), -(2 ** (self.bits - 1) - 1), 2 ** (self.bits - 1) - 1) * q
        a = np.abs(v)
        e = np.maximum(_floor_log2(a), self.emin)
        quantum = np.ldexp(1.0, e - self.man_bits)
        r = np.round(a / quantum) * quantum           # a / quantum is exact: quantum is a power of two
        out: np.ndarray = np.copysign(np.minimum(r, self.max_normal), v)
        return out


#: the element formats (OCP MX v1.0 Sec. 5.3, Table 1-2; E4M3 is the OCP "FN" variant, largest normal 448)
ELEMENT_FORMATS: dict[str, ElementFormat] = {f.name: f for f in (
    ElementFormat("e4m3", "fp", 4, 3, 7, 448.0),
    ElementFormat("e5m2", "fp", 5, 2, 15, 57344.0),
    ElementFormat("e2m3", "fp", 2, 3, 1, 7.5),
    ElementFormat("e3m2", "fp", 3, 2, 3, 28.0),
    ElementFormat("e2m1", "fp", 2, 1, 1, 6.0),
    ElementFormat("int8", "int", 0, 6, 0, 127 / 64, int_bits=1),
)}


@dataclass(frozen=True)
class BlockFormat:
    """A block-scaled format: ``element`` values in blocks of ``block_size`` along the reduction axis, one
    scale per block (``scale``: ``"e8m0"``, MX's power of two, or ``"e4m3"``, NVFP4's FP8 scale under an fp32
    per-tensor scale)."""

    name: str
    element: ElementFormat
    block_size: int
    scale: str

    def __post_init__(self) -> None:
        if self.scale not in ("e8m0", "e4m3"):
            raise ValueError(f"block format {self.name!r}: scale kind {self.scale!r}; kinds: e8m0, e4m3")
        if self.block_size < 1:
            raise ValueError(f"block format {self.name!r}: block size must be >= 1, got {self.block_size}")

    @property
    def scale_bits(self) -> int:
        """Bits of the stored per-block scale (E8M0 and E4M3 are both 8)."""
        return 8

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


#: the block formats (OCP MX v1.0 Table 1; NVFP4)
BLOCK_FORMATS: dict[str, BlockFormat] = {f.name: f for f in (
    BlockFormat("mxfp8_e4m3", ELEMENT_FORMATS["e4m3"], 32, "e8m0"),
    BlockFormat("mxfp8_e5m2", ELEMENT_FORMATS["e5m2"], 32, "e8m0"),
    BlockFormat("mxfp6_e2m3", ELEMENT_FORMATS["e2m3"], 32, "e8m0"),
    BlockFormat("mxfp6_e3m2", ELEMENT_FORMATS["e3m2"], 32, "e8m0"),
    BlockFormat("mxfp4", ELEMENT_FORMATS["e2m1"], 32, "e8m0"),
    BlockFormat("mxint8", ELEMENT_FORMATS["int8"], 32, "e8m0"),
    BlockFormat("nvfp4", ELEMENT_FORMATS["e2m1"], 16, "e4m3"),
)}


def block_format(fmt: str | BlockFormat) -> BlockFormat:
    """The block format ``fmt`` names; an unknown name raises naming the known ones."""
    if isinstance(fmt, BlockFormat):
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
    fmt: BlockFormat

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
    n = -(-L // k)
    pad = n * k - L
    if pad:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,))], axis=-1)
    return x.reshape(x.shape[:-1] + (n, k))


def quantize_block(x: npt.ArrayLike, fmt: str | BlockFormat) -> BlockQuantized:
    """``x`` in the block format ``fmt`` (a name of :data:`BLOCK_FORMATS` or a :class:`BlockFormat`), blocks
    along the last axis, by the rules of the module docstring."""
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
    if f.scale == "e8m0":
        exp = np.where(amax > 0, _floor_log2(amax) - f.emax_elem, -127)
        scales = np.ldexp(1.0, np.clip(exp, -127, 127))
        elems = f.element.quantize(b / scales[..., None])
        tensor_scale = 1.0
    elif f.scale == "e4m3":
        t = float(np.abs(v).max())
        e4m3 = ELEMENT_FORMATS["e4m3"]
        tensor_scale = t / (f.element.max_normal * e4m3.max_normal) if t > 0 else 1.0
        scales = e4m3.quantize(amax / f.element.max_normal / tensor_scale)
        denom = scales * tensor_scale
        safe = np.where(denom > 0, denom, 1.0)
        elems = np.where(denom[..., None] > 0, f.element.quantize(b / safe[..., None]), 0.0)
    else:   # pragma: no cover - BlockFormat.__post_init__ admits only the two kinds
        raise ValueError(f"block format {f.name}: unknown scale kind {f.scale!r}; kinds: e8m0, e4m3")
    values = elems.reshape(elems.shape[:-2] + (-1,))[..., :L]
    return BlockQuantized(values, scales, tensor_scale, f)
