"""Tiling a GEMM onto the PE array and scheduling its tiles (DESIGN.md: mapping.schedule).

The PE array is split ``pm x pn``: PEs along N get different output channels (each with its
own weights; activations multicast), PEs along M get different output rows (weights
multicast). The split minimizes the busiest PE's cycles, which keeps utilization high on
layers with few output channels (ResNet50's first conv, attention heads). Within a PE,
tiles respect the capacities that depend on the bit widths: half the weight buffer and half
the activation buffer each (double buffering; a vector costs V*N + M bits with its scale)
and the accumulation collector's entries. Among the tile sizes that fit, the choice minimizes
compute cycles (lane padding), then NoC traffic (weights stay resident across row tiles when
a PE's whole reduction fits), then the number of tiles (transactions). Output-channel tiles are whole
vectors of V so the PPU's per-vector requantization of the outputs stays inside a block.

Loop order per PE: output-channel tiles, then row tiles, then vector tiles (ascending, so the
accumulation order is the reference's).
"""
from __future__ import annotations

import functools

from tlm.hardware import HardwareSpec
from tlm.transactions import GemmShape, GemmTile, Tiling
from vsquant import BASELINE, QuantConfig


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


def pe_cycles(shape: GemmShape, pm: int, pn: int, hw: HardwareSpec, V: int) -> int:
    """Compute cycles of the busiest PE under a pm x pn split."""
    lanes = hw.pe.lanes
    rows = _ceil(shape.M, pm)
    cols = _splits(shape.N, pn, V)[0]
    return rows * shape.vectors(V) * _ceil(cols[1] - cols[0], lanes)


def _pe_tiling(shape: GemmShape, cfg: QuantConfig, hw: HardwareSpec, pm: int, pn: int):
    """The best tile sizes inside a PE for a pm x pn split: ((compute, traffic, tiles), Tiling, (weight bits,
    activation bits) the busiest PE loads). Among the tile sizes that fit the buffers and the collector, the
    fewest compute cycles (lane padding), then the least NoC traffic, then the fewest tiles."""
    V = hw.vector_size
    rows = _ceil(shape.M, pm)
    n0, n1 = _splits(shape.N, pn, V)[0]
    cols = n1 - n0
    J = shape.vectors(V)
    w_cap = hw.weight_buffer_vectors(cfg.weight_bits, cfg.weight_scale_vector_bits) // 2
    a_cap = hw.activation_buffer_vectors(cfg.act_bits, cfg.act_scale_vector_bits) // 2
    acc_cap = hw.pe.accumulation_collector_entries
    wv_bits, av_bits = cfg.weight_vector_bits, cfg.act_vector_bits
    if w_cap < 1 or a_cap < 1:
        pe = hw.pe
        raise ValueError(
            f"hardware {hw.name}: the buffers are too small for {cfg}: double buffering needs room for 2 vectors "
            f"each, a weight vector is {wv_bits} bits and an activation vector {av_bits} bits (V={V}), but "
            f"weight_buffer_bits={pe.weight_buffer_bits} and activation_buffer_bits={pe.activation_buffer_bits}")
    lanes = hw.pe.lanes

    def option(n_tile: int):
        j_tile = max(1, min(J, w_cap // n_tile))
        m_tile = max(1, min(rows, acc_cap // n_tile, a_cap // j_tile))
        resident = j_tile == J
        m_tiles, n_tiles = _ceil(rows, m_tile), _ceil(cols, n_tile)
        w_bits = cols * J * (1 if resident else m_tiles) * wv_bits
        a_bits = rows * J * n_tiles * av_bits
        key = (rows * J * n_tiles * _ceil(n_tile, lanes), w_bits + a_bits, m_tiles * n_tiles * _ceil(J, j_tile))
        return key, Tiling(pm, pn, m_tile, n_tile, j_tile, resident), (w_bits, a_bits)

    # candidate output-channel tiles: whole vectors of V (or all of a narrow layer's channels) that fit
    cands = sorted({min(cols, n) for n in range(V, cols + V, V)} | {cols})
    fits = [option(n) for n in cands if n <= min(acc_cap, w_cap)]
    if not fits:   # the collector holds fewer outputs than a vector of channels: narrow tiles
        return option(max(1, min(cols, w_cap, acc_cap)))
    return min(fits, key=lambda o: o[0])


def _estimate(shape: GemmShape, cfg: QuantConfig, hw: HardwareSpec, tiling: Tiling, compute: int,
              pe_bits: tuple[int, int]) -> tuple[int, int]:
    """An estimate of a split's cycles (it orders the candidates the mapper simulates), following the TLM:
    the fill (each PE's first weight and activation tiles, store-and-forward, the ``pn`` and ``pm`` groups'
    first tiles queueing at the slowest channel), then the busiest PE's compute or, when longer, its loads
    (one tile of each operand prefetched ahead hides a load behind one tile of compute), then the PPU on
    the last block, its write-back and the requantization pass; never below what DRAM, the NoC and the
    global buffer need for every weight, operand tile and output."""
    from tlm.vector_mac_unit import PIPELINE_DEPTH
    V = hw.vector_size
    pm, pn = tiling.pm, tiling.pn
    wv, av = cfg.weight_vector_bits, cfg.act_vector_bits
    J = shape.vectors(V)
    w_bits, a_bits = shape.N * J * wv, shape.M * J * av
    acts_in_dram = a_bits > hw.global_buffer_bits
    fw, fa = tiling.n_tile * tiling.j_tile * wv, tiling.m_tile * tiling.j_tile * av
    dram, gb, noc = hw.dram_bits_per_cycle, hw.global_buffer_bits_per_cycle, hw.noc_bits_per_cycle
    pe = hw.pe

    def path(bits, vectors, ports, groups, from_dram):
        stages = [gb, noc] + ([dram, gb] if from_dram else [])
        t = sum(_ceil(bits, b) for b in stages) + _ceil(vectors, ports) + hw.noc_hop_latency
        return t + (hw.dram_latency if from_dram else 0) + (groups - 1) * _ceil(bits, min(stages))

    w_path = path(fw, tiling.n_tile * tiling.j_tile, pe.weight_buffer_ports, 1, True)
    a_path = path(fa, tiling.m_tile * tiling.j_tile, pe.activation_buffer_ports, 1, acts_in_dram)
    fill = max(path(fw, tiling.n_tile * tiling.j_tile, pe.weight_buffer_ports, pn, True),
               path(fa, tiling.m_tile * tiling.j_tile, pe.activation_buffer_ports, pm, acts_in_dram))
    rows, cols = _ceil(shape.M, pm), _splits(shape.N, pn, V)[0][1]
    w_loads, a_loads = pe_bits[0] // max(fw, 1), pe_bits[1] // max(fa, 1)
    stream = max(compute, (w_loads - 1) * w_path // 2, (a_loads - 1) * a_path // 2)
    out_bits = cfg.act_storage_bits
    block = tiling.m_tile * min(tiling.n_tile, cols)
    tail = (_ceil(block, pe.ppu_elements_per_cycle) + _ceil(int(block * out_bits), noc)
            + _ceil(rows * cols, pe.ppu_elements_per_cycle))
    w_pe, a_pe = pe_bits
    moved = pn * w_pe * (1 if hw.noc_multicast else pm) + pm * a_pe * (1 if hw.noc_multicast else pn)
    from_dram = w_bits + (a_bits if acts_in_dram else 0)
    written = int(shape.M * shape.N * out_bits)
    pipeline = fill + stream + PIPELINE_DEPTH + tail
    channels = max(hw.dram_latency + _ceil(from_dram, dram), _ceil(moved + written, noc), _ceil(moved, gb),
                   _ceil(written + from_dram, gb))
    # both terms order the candidates: when a channel bounds many splits alike, the one whose own pipeline is
    # shortest suffers least from the queueing the sum of the two misses
    return max(pipeline, channels), pipeline + channels


def _lower_bound(shape: GemmShape, cfg: QuantConfig, hw: HardwareSpec, tiling: Tiling, compute: int) -> int:
    """A lower bound on the TLM's cycles for a split, from what every run must do (:mod:`tlm.pe`,
    :mod:`tlm.interconnect`): the busiest PE (the first part of each cut) receives its first weight and
    activation tiles store-and-forward through every channel before it computes, computes, and (with a
    requantization pass) requantizes its outputs; DRAM moves every weight once (and the activations when
    they do not fit the global buffer), the NoC every operand and output bit once, the global buffer every
    operand it sends and every bit written into it."""
    from tlm.vector_mac_unit import PIPELINE_DEPTH
    V = hw.vector_size
    pe = hw.pe
    wv, av = cfg.weight_vector_bits, cfg.act_vector_bits
    J = shape.vectors(V)
    w_bits, a_bits = shape.N * J * wv, shape.M * J * av
    acts_in_dram = a_bits > hw.global_buffer_bits
    dram, gb, noc = hw.dram_bits_per_cycle, hw.global_buffer_bits_per_cycle, hw.noc_bits_per_cycle
    rows = _splits(shape.M, tiling.pm, 1)[0][1]
    cols = _splits(shape.N, tiling.pn, V)[0][1]
    jt = min(tiling.j_tile, J)

    def first(vectors, bits, ports, from_dram):
        t = _ceil(bits, gb) + _ceil(bits, noc) + hw.noc_hop_latency + _ceil(vectors, ports)
        return t + (hw.dram_latency + _ceil(bits, dram) + _ceil(bits, gb) if from_dram else 0)

    nw, na = min(tiling.n_tile, cols) * jt, min(tiling.m_tile, rows) * jt
    fill = max(first(nw, nw * wv, pe.weight_buffer_ports, True),
               first(na, na * av, pe.activation_buffer_ports, acts_in_dram))
    # a PE (or a multicast group) has at most two loads of an operand in flight (two buffer slots): the load
    # of its tile i+2 starts only after tile i arrived, so n loads take at least ceil(n/2) single-load latencies
    m_tiles, n_tiles, j_tiles = _ceil(rows, tiling.m_tile), _ceil(cols, tiling.n_tile), _ceil(J, tiling.j_tile)
    a_runs = m_tiles * n_tiles * j_tiles if m_tiles * j_tiles > 1 else 1
    w_runs = n_tiles if j_tiles == 1 else n_tiles * m_tiles * j_tiles
    stream = max(_ceil(a_runs, 2) * first(na, na * av, pe.activation_buffer_ports, acts_in_dram),
                 _ceil(w_runs, 2) * first(nw, nw * wv, pe.weight_buffer_ports, False))
    requant = _ceil(rows * cols, pe.ppu_elements_per_cycle) if cfg.act_scale.needs_layer_max else 0
    out_bits = int(shape.M * shape.N * cfg.act_storage_bits)
    from_dram = w_bits + (a_bits if acts_in_dram else 0)
    return max(fill + compute + PIPELINE_DEPTH + 1 + requant, stream + 1 + requant, _ceil(from_dram, dram),
               _ceil(w_bits + a_bits + out_bits, noc), _ceil(w_bits + a_bits, gb), _ceil(from_dram + out_bits, gb))


def choose_tiling(shape: GemmShape, cfg: QuantConfig, hw: HardwareSpec) -> Tiling:
    """The split of the PE array (and the tiles inside a PE) the TLM runs fastest at 8/8/-/- with the buffer
    depth ``hw`` has at ``cfg`` (:func:`timing_frame`), among the splits it simulates.

    Every split ``pm x pn`` with ``pm * pn <= num_pes`` is a candidate (PEs may stay idle; the last part of a
    cut may be shorter), so an array with more PEs has every option a smaller one has. The candidates are
    ordered by an estimate of their cycles (:func:`_estimate`); the first :data:`SIMULATION_BUDGET` whose lower
    bound (:func:`_lower_bound`) can beat the fastest so far are simulated (timing only,
    :func:`simulated_cycles`), and so are the exact cut of the whole array with the fewest compute cycles
    and the split chosen for the largest power of two below ``num_pes``
    (recursively): the fastest of them is kept, so doubling the PEs, or adding PEs to a power of two, never
    slows a layer down at 8/8/-/- (and at any datapath, where the split that is fastest there is). Ties go
    to the split with fewer PEs."""
    V = hw.vector_size
    if cfg.vector_size != V:
        raise ValueError(f"the config's vector size V={cfg.vector_size} differs from the hardware's V={V}")
    (_, _, tiles), *_ = _pe_tiling(shape, cfg, hw, 1, 1)   # the buffers hold the config's vectors (else one line)
    if tiles > MAX_TILE_TRANSACTIONS:
        raise ValueError(
            f"GEMM {shape.M}x{shape.K}x{shape.N} (M x K x N, {shape.M * shape.K * shape.N / 1e9:,.0f} GMAC) needs "
            f"about {tiles:,} tile transactions on {hw.name}{'' if str(cfg) in hw.name else f' at {cfg}'}, and "
            f"the TLM simulates each one (some 10^4 a second): more than the {MAX_TILE_TRANSACTIONS:,} it takes per "
            "GEMM. Simulate a smaller layer (the cycles of a GEMM grow about linearly in M and N) or hardware "
            "with larger buffers")
    ref, frame = timing_frame(cfg, hw)
    return _choose(shape, ref, frame)[-1]


def timing_frame(cfg: QuantConfig, hw: HardwareSpec):
    """(8/8/-/- at the hardware's V, ``hw`` with buffers holding as many of its vectors as ``hw`` holds of
    ``cfg``'s): the frame the mapper times candidate splits in. One layer on one hardware is mapped alike at
    every datapath of equal buffer depth (the iso-depth designs the paper compares,
    :func:`costmodels.iso_depth_hardware`), so a design point and its 8/8/-/- baseline price the same data
    flow and their energy ratio is the datapath's, not the mapper's."""
    ref = QuantConfig.parse(BASELINE).with_(vector_size=hw.vector_size)
    V = hw.vector_size
    wv, av = cfg.weight_vector_bits, cfg.act_vector_bits
    frame = hw.with_(name="mapping",
                     weight_buffer_bits=hw.pe.weight_buffer_bits // wv * (8 * V),
                     activation_buffer_bits=hw.pe.activation_buffer_bits // av * (8 * V),
                     global_buffer_bits=max(1, hw.global_buffer_bits * (8 * V) // av))
    return ref, frame


@functools.lru_cache(maxsize=4096)
def _choose(shape: GemmShape, cfg: QuantConfig, hw: HardwareSpec) -> tuple:
    P = hw.num_pes
    cands, seen = [], set()
    for parts in range(1, min(P, _ceil(shape.N, hw.vector_size)) + 1):
        pn = len(_splits(shape.N, parts, hw.vector_size))   # the parts a cut into ``parts`` really makes
        for pm in _row_parts(shape.M, P // pn):
            if (pm, pn) in seen:
                continue
            seen.add((pm, pn))
            (compute, traffic, tiles), tiling, pe_bits = _pe_tiling(shape, cfg, hw, pm, pn)
            cands.append((_estimate(shape, cfg, hw, tiling, compute, pe_bits), pm * pn, traffic, tiles, -pn,
                          _lower_bound(shape, cfg, hw, tiling, compute), tiling))
    cands.sort(key=lambda c: c[:5])
    # what half the array (rounded down to a power of two) runs: never worse than that
    best = _choose(shape, cfg, hw.with_(num_pes=1 << ((P - 1).bit_length() - 1))) if P > 1 else None
    # the split that uses the whole array with the fewest compute cycles (an exact cut, if one exists) is
    # always simulated: it is often the fastest where the estimate misjudges queueing
    whole = [c for c in cands if c[1] == P]
    first = [min(whole, key=lambda c: (pe_cycles(shape, c[-1].pm, c[-1].pn, hw, hw.vector_size),
                                       c[4]))] if whole else []
    sims = 0
    for c in first + cands:
        _, used, *_, bound, tiling = c
        if sims == SIMULATION_BUDGET + len(first):
            break
        if best is not None and bound >= best[0]:
            continue          # cannot beat the fastest split so far
        sims += 1
        key = (simulated_cycles(shape, cfg, hw, tiling), used, tiling.pm, tiling.pn)
        if best is None or key < best[:4]:
            best = (*key, tiling)
    return best


#: The most tile transactions one GEMM may take (its tiling on one PE): beyond it a simulation takes hours
MAX_TILE_TRANSACTIONS = 2_000_000

#: Splits the mapper simulates per GEMM and array size beyond the one chosen for half the array
SIMULATION_BUDGET = 2


def _row_parts(M: int, most: int) -> list[int]:
    """The distinct numbers of row parts a cut of M rows into at most ``most`` parts can make, largest first:
    one per distinct part size (rows per PE), so no two candidates differ only in idle PEs."""
    out, seen = [], set()
    for parts in range(min(M, most), 0, -1):
        rows = _ceil(M, parts)
        if rows in seen:
            continue
        seen.add(rows)
        out.append(len(_splits(M, parts, 1)))
    return out


def simulated_cycles(shape: GemmShape, cfg: QuantConfig, hw: HardwareSpec, tiling: Tiling) -> int:
    """Cycles of one GEMM under ``tiling`` on the TLM (timing only), on an array of exactly the PEs the split
    uses: a PE without tiles does nothing, so the cycles do not depend on how many more PEs the array has."""
    return _simulated(shape, cfg, hw.with_(num_pes=tiling.pm * tiling.pn, name="mapping"), tiling)


@functools.lru_cache(maxsize=8192)
def _simulated(shape: GemmShape, cfg: QuantConfig, hw: HardwareSpec, tiling: Tiling) -> int:
    from tlm.accelerator import Accelerator
    from tlm.transactions import LayerTask
    schedule = schedule_gemm(0, shape, tiling, hw, hw.vector_size)
    task = LayerTask("mapping", [shape], [tiling], schedule, kind="linear", has_bias=True)
    return Accelerator(hw, cfg, replay=False).run_layer(task).cycles


def schedule_gemm(g: int, shape: GemmShape, tiling: Tiling, hw: HardwareSpec, V: int) -> list[list[GemmTile]]:
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


def schedule_layer(shapes: list[GemmShape], cfg: QuantConfig, hw: HardwareSpec):
    """Tilings and the per-PE schedule of a layer's GEMMs (groups/batch matrices run one after another).

    Memoized on (shapes, config, hardware), all frozen values: the returned lists are shared and
    must not be modified."""
    return _schedule_layer(tuple(shapes), cfg, hw)


@functools.lru_cache(maxsize=512)
def _schedule_layer(shapes: tuple, cfg: QuantConfig, hw: HardwareSpec):
    V = hw.vector_size
    tilings = [choose_tiling(s, cfg, hw) for s in shapes]
    schedule = [[] for _ in range(hw.num_pes)]
    for g, (s, t) in enumerate(zip(shapes, tilings, strict=True)):
        for pe, tiles in enumerate(schedule_gemm(g, s, t, hw, V)):
            schedule[pe].extend(tiles)
    return tilings, schedule
