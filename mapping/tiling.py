"""Tiling a GEMM onto the PE array and scheduling its tiles (DESIGN.md: mapping.schedule).

The PE array is split ``pm x pn``: PEs along N get different output channels (each with its
own weights; activations multicast), PEs along M get different output rows (weights
multicast). The split minimizes the busiest PE's cycles, which keeps utilization high on
layers with few output channels (ResNet50's first conv, attention heads). Within a PE,
tiles respect the capacities that depend on the bit widths: half the weight buffer and half
the activation buffer each (double buffering; a vector costs V*N + M bits with its scale)
and the accumulation collector's entries. Among the tile sizes that fit, the choice minimizes
compute cycles (lane padding), then NoC traffic (weights stay resident across row tiles when
a PE's whole reduction fits), then the number of tiles (transactions). Output-channel tiles are whole vectors of V so the
PPU's per-vector requantization of the outputs stays inside a block.

Loop order per PE: output-channel tiles, then row tiles, then vector tiles (ascending, so the
accumulation order is the reference's).
"""
from __future__ import annotations

import functools

from vsquant import QuantConfig
from tlm.transactions import GemmShape, GemmTile, Tiling


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _splits(extent: int, parts: int, align: int) -> list[tuple[int, int]]:
    """Cut [0, extent) into at most ``parts`` contiguous chunks, sizes multiples of ``align``."""
    units = _ceil(extent, align)
    per = _ceil(units, parts)
    out = []
    for u0 in range(0, units, per):
        out.append((u0 * align, min((u0 + per) * align, extent)))
    return out


def pe_cycles(shape: GemmShape, pm: int, pn: int, hw, V: int) -> int:
    """Compute cycles of the busiest PE under a pm x pn split."""
    lanes = hw.pe.lanes
    rows = _ceil(shape.M, pm)
    cols = _splits(shape.N, pn, V)[0]
    return rows * shape.vectors(V) * _ceil(cols[1] - cols[0], lanes)


def choose_tiling(shape: GemmShape, cfg: QuantConfig, hw) -> Tiling:
    V = hw.vector_size
    if cfg.vector_size != V:
        raise ValueError(f"the config's vector size V={cfg.vector_size} differs from the hardware's V={V}")
    P = hw.num_pes
    best = None
    for pn in range(1, P + 1):
        if P % pn:
            continue
        pm = P // pn
        if pn > _ceil(shape.N, V) or pm > shape.M:
            continue
        c = pe_cycles(shape, pm, pn, hw, V)
        key = (c, -pn)
        if best is None or key < best[0]:
            best = (key, pm, pn)
    if best is None:  # tiny layer: fewer PEs than the array has
        pm, pn = 1, 1
    else:
        _, pm, pn = best
    rows = _ceil(shape.M, pm)
    n0, n1 = _splits(shape.N, pn, V)[0]
    cols = n1 - n0
    J = shape.vectors(V)
    w_cap = hw.weight_buffer_vectors(cfg.weight_bits, cfg.weight_scale.storage_bits) // 2
    a_cap = hw.activation_buffer_vectors(cfg.act_bits, cfg.act_scale.storage_bits) // 2
    acc_cap = hw.pe.accumulation_collector_entries
    if w_cap < 1 or a_cap < 1 or acc_cap < 1:
        raise ValueError(f"hardware {hw.name}: buffers too small for one vector at {cfg} "
                         f"(weight {w_cap}, activation {a_cap} vectors per half buffer)")
    wv_bits = V * cfg.weight_bits + cfg.weight_scale.storage_bits
    av_bits = V * cfg.act_bits + cfg.act_scale.storage_bits
    lanes = hw.pe.lanes
    best = None
    # candidate output-channel tiles: whole vectors of V (or all of a narrow layer's channels)
    cands = sorted({min(cols, n) for n in range(V, cols + V, V)} | {cols})
    for n_tile in cands:
        if n_tile > acc_cap:
            break
        if n_tile > w_cap:
            continue
        j_tile = max(1, min(J, w_cap // n_tile))
        m_tile = max(1, min(rows, acc_cap // n_tile, a_cap // j_tile))
        resident = j_tile == J
        m_tiles = _ceil(rows, m_tile)
        n_tiles = _ceil(cols, n_tile)
        w_loads = cols * J * (1 if resident else m_tiles)
        a_loads = rows * J * n_tiles
        traffic = w_loads * wv_bits + a_loads * av_bits
        compute = rows * J * n_tiles * _ceil(n_tile, lanes)
        tiles = m_tiles * n_tiles * _ceil(J, j_tile)
        key = (compute, traffic, tiles)
        if best is None or key < best[0]:
            best = (key, n_tile, j_tile, m_tile, resident)
    if best is None:
        n_tile = max(1, min(cols, w_cap, acc_cap))
        j_tile = max(1, min(J, w_cap // n_tile))
        m_tile = max(1, min(rows, acc_cap // n_tile, a_cap // j_tile))
        return Tiling(pm, pn, m_tile, n_tile, j_tile, j_tile == J)
    _, n_tile, j_tile, m_tile, resident = best
    return Tiling(pm, pn, m_tile, n_tile, j_tile, resident)


def schedule_gemm(g: int, shape: GemmShape, tiling: Tiling, hw, V: int) -> list[list[GemmTile]]:
    """Per-PE tile lists for GEMM ``g`` (PE index = im * pn + in)."""
    J = shape.vectors(V)
    row_parts = _splits(shape.M, tiling.pm, 1)
    col_parts = _splits(shape.N, tiling.pn, V)
    per_pe = [[] for _ in range(hw.num_pes)]
    for im, (r0, r1) in enumerate(row_parts):
        for jn, (c0, c1) in enumerate(col_parts):
            tiles = per_pe[im * tiling.pn + jn]
            for n0 in range(c0, c1, tiling.n_tile):
                n1 = min(n0 + tiling.n_tile, c1)
                for m0 in range(r0, r1, tiling.m_tile):
                    m1 = min(m0 + tiling.m_tile, r1)
                    for j0 in range(0, J, tiling.j_tile):
                        j1 = min(j0 + tiling.j_tile, J)
                        tiles.append(GemmTile(g, m0, m1, n0, n1, j0, j1, j0 == 0, j1 == J))
    return per_pe


def schedule_layer(shapes: list[GemmShape], cfg: QuantConfig, hw):
    """Tilings and the per-PE schedule of a layer's GEMMs (groups/batch matrices run one after another).

    Memoized on (shapes, config, hardware), all frozen values: the returned lists are shared and
    must not be modified."""
    return _schedule_layer(tuple(shapes), cfg, hw)


@functools.lru_cache(maxsize=512)
def _schedule_layer(shapes: tuple, cfg: QuantConfig, hw):
    V = hw.vector_size
    tilings = [choose_tiling(s, cfg, hw) for s in shapes]
    schedule = [[] for _ in range(hw.num_pes)]
    for g, (s, t) in enumerate(zip(shapes, tilings)):
        for pe, tiles in enumerate(schedule_gemm(g, s, t, hw, V)):
            schedule[pe].extend(tiles)
    return tilings, schedule
