"""Single-layer workloads: ``gemm:MxKxN`` and ``conv:BxCxHxW,KxRxS[,s=stride][,p=pad][,g=groups]``.

The tensors are seeded random data shaped like a trained layer's: weights N(0, 1/K) (Kaiming
-like), activations with a few large outliers per row (what per-vector scaling is for).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

GEMM_RE = re.compile(r"^gemm:(\d+)x(\d+)x(\d+)$")
CONV_RE = re.compile(r"^conv:(\d+)x(\d+)x(\d+)x(\d+),(\d+)x(\d+)x(\d+)((?:,[spgd]=\d+)*)$")
LAYER_FORMS = "gemm:MxKxN (e.g. gemm:384x768x3072) or conv:BxCxHxW,KxRxS[,s=S][,p=P][,d=D][,g=G] " \
              "(e.g. conv:1x64x56x56,64x3x3,p=1)"


@dataclass(frozen=True)
class LayerWorkload:
    name: str
    kind: str                      # "linear" | "conv2d"
    x_shape: tuple
    w_shape: tuple
    conv: dict = field(default_factory=dict)

    @property
    def macs(self) -> int:
        if self.kind == "linear":
            return self.x_shape[0] * self.x_shape[1] * self.w_shape[0]
        B, _, H, W = self.x_shape
        K, Cg, R, S = self.w_shape
        s, p, d = self.conv["stride"], self.conv["padding"], self.conv["dilation"]
        Ho = (H + 2 * p - d * (R - 1) - 1) // s + 1
        Wo = (W + 2 * p - d * (S - 1) - 1) // s + 1
        return B * Ho * Wo * K * Cg * R * S

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, K, N) of the layer's GEMM view (a conv: output positions x C/g*R*S x K, all groups together)."""
        if self.kind == "linear":
            return self.x_shape[0], self.x_shape[1], self.w_shape[0]
        K, Cg, R, S = self.w_shape
        M = self.macs // (K * Cg * R * S)
        return M, Cg * R * S * self.conv["groups"], K

    def numerics_bytes(self) -> int:
        """An estimate of the memory a real-numerics run of this layer needs: float64 input, weights and output,
        each held about three times over (float copy, quantized integers, per-vector scales and the TLM's
        assembled output; a conv's input as its im2col GEMM operand)."""
        M, K, N = self.gemm
        return 8 * 3 * (M * K + N * K + M * N)

    def tensors(self, seed: int = 0):
        """Seeded (x, weight, bias) float64 arrays."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape)
        outliers = rng.random(self.x_shape) < 0.01
        x = np.where(outliers, x * 10.0, x)
        fan_in = int(np.prod(self.w_shape[1:]))
        w = rng.standard_normal(self.w_shape) / np.sqrt(fan_in)
        b = rng.standard_normal(self.w_shape[0]) * 0.1
        return x, w, b


def parse_layer(text: str) -> LayerWorkload:
    """Parse a single-layer workload name; a malformed one raises ValueError with the allowed forms."""
    m = GEMM_RE.match(text)
    if m:
        M, K, N = (int(v) for v in m.groups())
        if min(M, K, N) < 1:
            raise ValueError(f"workload {text!r}: M, K, N must be positive")
        return LayerWorkload(text, "linear", (M, K), (N, K))
    m = CONV_RE.match(text)
    if m:
        B, C, H, W, K, R, S = (int(v) for v in m.groups()[:7])
        opts = dict(s=1, p=0, d=1, g=1)
        for kv in filter(None, m.group(8).split(",")):
            k, v = kv.split("=")
            opts[k] = int(v)
        if min(B, C, H, W, K, R, S, opts["s"], opts["d"], opts["g"]) < 1 or C % opts["g"] or K % opts["g"]:
            raise ValueError(f"workload {text!r}: sizes must be positive and groups must divide C and K")
        for side, size, k in (("H", H, R), ("W", W, S)):
            span = opts["d"] * (k - 1) + 1
            if size + 2 * opts["p"] < span:
                raise ValueError(f"workload {text!r}: the kernel spans {span} input {side} positions (size "
                                 f"{k}, dilation {opts['d']}) but the padded input has {size + 2 * opts['p']}")
        return LayerWorkload(text, "conv2d", (B, C, H, W), (K, C // opts["g"], R, S),
                             dict(stride=opts["s"], padding=opts["p"], dilation=opts["d"], groups=opts["g"]))
    raise ValueError(f"workload {text!r} is not a single-layer workload; use {LAYER_FORMS}")


def available_memory_bytes() -> int | None:
    """Memory the system can give this process now (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class LayerTooLarge(MemoryError):
    """A real-numerics run of a single layer that would not fit in the memory available."""


def check_numerics_memory(lw: LayerWorkload) -> None:
    """Refuse, before anything is allocated, a real-numerics run of a layer that cannot fit in memory."""
    need, have = lw.numerics_bytes(), available_memory_bytes()
    if have is not None and need > have:
        raise LayerTooLarge(f"workload {lw.name!r}: a run with real tensors needs about {need / 2**30:,.1f} GiB "
                          f"(input, weights and output in float64 and their quantized copies) but "
                          f"{have / 2**30:,.1f} GiB are available; use --timing-only (no tensors) or a smaller layer")
