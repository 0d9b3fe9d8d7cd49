#!/usr/bin/env python
"""vsqsim: simulate a DNN workload on a VS-Quant accelerator design point.

    python run.py --workload bert-base --arch 4/8/6/10
    python run.py --workload resnet50 --arch 4/4U/4/6 --timing-only --json out.json
    python run.py --workload digits-cnn --arch 8/8/-/- --datapath bit-serial

Captures the workload's PyTorch graph, lowers every MAC layer to tiles of vector-MAC work, runs
them on the transaction-level accelerator (with real quantized tensors unless --timing-only),
prices what the hardware did with the technology cost model (absolute and normalized to the same
hardware at 8/8/-/-), and measures the accuracy metric of the workload on the quantized output.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time

KNOWN = ("bert-base", "bert-large", "minilm", "mpnet-base", "mobilenetv2", "resnet50", "resnet18", "digits-cnn")
FORMS = "gemm:MxKxN, conv:BxCxHxW,KxRxS[,s=S][,p=P][,d=D][,g=G], module:path.py:factory"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line and status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="run.py", description=__doc__.split("\n\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--workload", default="bert-base",
                    help=f"{', '.join(KNOWN)}, or {FORMS} (default bert-base)")
    ap.add_argument("--arch", default="4/8/6/10",
                    help="datapath W/A/ws/as: e.g. 8/8/-/- (per-channel baseline), 4/8/6/10 (two-level "
                         "per-vector), 4/4U/4/6 (unsigned activations), 4/8/fp16/fp16; options ,R=<bits> ,V=<size> "
                         "(default 4/8/6/10)")
    ap.add_argument("--seq", type=int, help="tokens per sentence of a transformer workload (default: bert-base and "
                                            "bert-large 128; minilm, mpnet-base and checkpoints the longest "
                                            "of the shipped sentences, padded)")
    ap.add_argument("--batch", type=int, help="inputs per batch (default: bert 1, minilm, mpnet-base and "
                                              "checkpoints 8 sentences, mobilenetv2 16 images, digits-cnn its "
                                              "360 held-out digits; not for gemm:/conv: layers)")
    ap.add_argument("--hw", default="magnet16", metavar="PRESET|FILE",
                    help="hardware preset (magnet16, simba, tiny) or a YAML file (default magnet16)")
    ap.add_argument("--datapath", choices=("parallel", "bit-serial"), default="parallel",
                    help="the vector MAC units: parallel W x A multipliers (default), or bit-serial, one weight bit "
                         "plane a pass (W passes; the preset's bit_serial_lanes, equal area; PrecisionBatching)")
    ap.add_argument("--planes", type=int, metavar="K",
                    help="with --datapath bit-serial: run the stored weights with their top K bit planes (run-time "
                         "precision, K passes; a truncated weight, its accuracy measured)")
    ap.add_argument("--midpoint", action="store_true",
                    help="with --planes: add the dropped planes' mean back (one activation sum per PE broadcast)")
    ap.add_argument("--scale-product", metavar="full|R", help="round the scale product sw*sa to R bits, or full")
    ap.add_argument("--timing-only", action="store_true",
                    help="simulate cycles and action counts without tensors (no accuracy, no gating counts)")
    ap.add_argument("--checkpoint", metavar="DIR", help="a local Hugging Face checkpoint directory to load "
                                                        "instead of random initialization")
    ap.add_argument("--on-unknown", choices=("error", "host"), default="error",
                    help="an op the mapper does not know: stop with an error (default) or run it on the host")
    ap.add_argument("--json", metavar="PATH", help="write the report as JSON (stable schema)")
    ap.add_argument("--csv", metavar="PATH", help="write the per-layer table as CSV")
    ap.add_argument("--plot", metavar="PATH", help="write the energy breakdown vs 8/8/-/- as a PNG")
    ap.add_argument("--graph", metavar="PATH", help="write the op graph (.graphml or .json) with where each op runs")
    ap.add_argument("--seed", type=int, default=0, help="seed of random weights and inputs (default 0)")
    ap.add_argument("--layers", type=int, default=20, metavar="N", help="layers shown in the table (default 20)")
    ap.add_argument("--verbose", action="store_true",
                    help="print how long each stage took (load, capture, lower, simulate, cost, accuracy) and what "
                         "came from the cache")
    ap.add_argument("--no-cache", action="store_true",
                    help="with --timing-only: neither use nor fill the cache of lowerings and layer runs "
                         "($VSQSIM_CACHE/runs; also VSQSIM_NO_CACHE=1)")
    return ap


def _validate(ap, args):
    """Every argument checked before any work starts: a mistake costs one line, not a wait."""
    from studies.cli import PLOT_SUFFIXES, check_output_path
    from tlm import datapath_config
    from tlm.hardware import list_presets, load_hardware
    from vsquant import QuantConfig
    try:
        QuantConfig.parse(args.arch, scale_product=args.scale_product)
    except ValueError as e:
        ap.error(f"--arch: {e}")
    try:
        args.hw_spec = load_hardware(args.hw)   # loaded once: the pipeline gets the spec
    except (ValueError, FileNotFoundError, OSError) as e:
        msg = str(e).splitlines()[0]
        ap.error(f"--hw: {msg}" + ("" if "magnet16" in msg else f" (presets: {', '.join(list_presets())})"))
    try:
        args.hw_spec = args.hw_spec.with_datapath(args.datapath)
    except ValueError as e:
        ap.error(f"--datapath: {e}")
    try:
        cfg = datapath_config(args.arch, args.hw_spec, scale_product=args.scale_product)
        if args.hw_spec.pe.bit_serial:
            from vsquant.bitserial import check_bit_serial
            check_bit_serial(cfg)
    except ValueError as e:
        ap.error(f"--arch: {e}")
    if args.planes is not None and not args.hw_spec.pe.bit_serial:
        ap.error("--planes runs the weights' top bit planes: it needs --datapath bit-serial")
    if args.planes is not None and not 1 <= args.planes <= cfg.weight_bits:
        ap.error(f"--planes must be in [1, {cfg.weight_bits}] (the weights' bits at {cfg}), got {args.planes}")
    if args.midpoint and args.planes is None:
        ap.error("--midpoint adds the dropped planes' mean back: it needs --planes")
    for flag, path, suffixes in (("--json", args.json, (".json",)), ("--csv", args.csv, None),
                                 ("--plot", args.plot, PLOT_SUFFIXES), ("--graph", args.graph, (".graphml", ".json"))):
        if path is not None and (why := check_output_path(path, flag, suffixes)):
            ap.error(why)
    wl = args.workload
    if not (wl in KNOWN or wl.startswith(("gemm:", "conv:", "module:"))):
        ap.error(f"--workload {wl!r} is unknown; known: {', '.join(KNOWN)}, or {FORMS}")
    for name in ("seq", "batch"):
        v = getattr(args, name)
        if v is not None and v < 1:
            ap.error(f"--{name} must be a positive integer, got {v}")


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _fixed(x, decimals):
    return "undefined" if x is None else f"{x:.{decimals}f}"


def summary(r: dict, n_layers: int) -> str:
    t, a, hw = r["totals"], r["accuracy"], r["hardware"]
    acc = (f"undefined: {a['reason']}" if a.get("reason") else "not measured (--timing-only)") \
        if a["value"] is None else (
        f"{a['metric']}: {a['value']:.4f} ({a['kind']})"
        + (f", float model {a['float_value']:.4f}" if "float_value" in a else "")
        + (f"; output cosine {_fixed(a['cosine'], 5)}, SQNR {_fixed(a['sqnr_db'], 2)} dB" if "cosine" in a else ""))
    opts = r.get("options", {})
    planes = (f" with the top {opts['planes']} weight planes{' + midpoint' if opts.get('midpoint') else ''}"
              if opts.get("planes") else "")
    lines = [
        f"vsqsim  {r['workload']} at {r['arch']}{planes} on {hw['name']} ({hw['num_pes']} PEs x {hw['lanes']} "
        f"{'bit-serial ' if hw.get('datapath') == 'bit-serial' else ''}lanes x "
        f"V={hw['vector_size']}, {hw['clock_hz'] / 1e9:g} GHz, {hw['technology_nm']:g} nm)",
        f"  MAC layers        {t['mac_layers']}  ({t['macs'] / 1e9:.3f} GMAC); ops by unit {t['ops_by_unit']}",
        f"  cycles            {t['cycles']:,}  (ideal {t['ideal_cycles']:,}); latency {t['latency_s'] * 1e3:.3f} ms; "
        f"utilization {t['utilization']:.1%}",
        f"  energy / op       {t['energy_fj_per_op']:.1f} fJ (PE array) = {t['energy_norm']:.3f} x 8/8/-/-; "
        f"{t['tops_per_w']:.1f} TOPS/W;  with GB, NoC, DRAM {t['energy_fj_per_op_total']:.0f} fJ "
        f"= {t['energy_norm_total']:.3f} x",
        f"  area              {t['area_mm2']:.3f} mm2 (PE array) = {t['area_norm']:.3f} x 8/8/-/-; "
        f"{t['tops_per_mm2']:.2f} TOPS/mm2 = {t['perf_per_area_norm']:.3f} x perf/area",
        f"  accuracy          {acc}",
    ] + ([f"  measured on       {a['measured_on']}"] if a.get("measured_on") else [])
    layers = r["layers"]
    shown = sorted(layers, key=lambda x: -x["energy_pj"])[:n_layers] if len(layers) > n_layers else layers
    head = f"  {'layer':<44} {'kind':<7} {'M':>6} {'K':>6} {'N':>6} {'MMAC':>8} {'cycles':>10} {'util':>6} " \
           f"{'energy nJ':>9} {'bound':<13} tiling"
    which = f" (the {len(shown)} with most energy of {len(layers)}; all in --csv/--json)" \
        if len(shown) < len(layers) else ""
    lines += ["", f"  per layer{which}", head]
    for x in shown:
        lines.append(f"  {x['name'][:44]:<44} {x['kind']:<7} {x['M']:>6} {x['K']:>6} {x['N']:>6} "
                     f"{x['macs'] / 1e6:>8.1f} {x['cycles']:>10,} {x['utilization']:>6.1%} "
                     f"{x['energy_pj'] / 1e3:>9.2f} "
                     f"{x['bottleneck']:<13} {x['tiling']}")
    return "\n".join(lines)


def stage_times(marks: list[tuple[str, float]], stats: dict) -> str:
    """One line per stage with its wall time (from the marks the pipeline's progress calls left), and what the
    cache gave."""
    lines = ["  stages (wall time)"]
    for (name, t), (_, t_next) in zip(marks[:-1], marks[1:], strict=True):
        lines.append(f"    {name:<20} {t_next - t:7.2f} s")
    lines.append(f"    {'total':<20} {marks[-1][1] - marks[0][1]:7.2f} s (after Python started and imported run.py)")
    c = stats.get("cache")
    if c:
        runs = ", ".join(f"{k} {v}" for k, v in c.items() if k != "lowering")
        lines.append(f"  cache: lowering {c['lowering']}" + (f"; layer runs: {runs}" if runs else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _validate(ap, args)
    from tqdm import tqdm

    from costmodels import plot_breakdown
    from studies.cli import one_line, user_errors
    from studies.pipeline import datapath, run_design_point, write_json
    bar = tqdm(total=None, desc="vsqsim", unit="stage", file=sys.stderr, leave=False, disable=None, mininterval=0.5)
    quiet_bar = bar.disable                     # not a terminal: one line per stage instead of a bar
    t_start = time.perf_counter()
    marks: list[tuple[str, float]] = [("setup", t_start)]

    def progress(stage):
        marks.append((stage, time.perf_counter()))
        if quiet_bar:
            print(f"vsqsim: {stage} ({time.perf_counter() - t_start:.1f} s so far)", file=sys.stderr, flush=True)
        bar.set_description(f"vsqsim: {stage}")
        bar.update(1)

    t0 = time.perf_counter()
    stats: dict = {}
    try:
        report, cost, base = run_design_point(
            args.workload, args.arch, hw=args.hw, seq=args.seq, batch=args.batch, scale_product=args.scale_product,
            timing_only=args.timing_only, checkpoint=args.checkpoint, seed=args.seed, on_unknown=args.on_unknown,
            progress=progress, return_costs=True, graph_path=args.graph,
            dp=datapath(args.arch, args.hw_spec, scale_product=args.scale_product, preset=args.hw, planes=args.planes,
                        midpoint=args.midpoint),
            use_cache=not args.no_cache, stats=stats)
    except user_errors() as e:
        bar.close()
        print(f"run.py: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.close()
        print("run.py: interrupted", file=sys.stderr)
        return 130
    bar.close()
    print(summary(report, args.layers))
    marks.append(("end", time.perf_counter()))
    print(f"\n  ({time.perf_counter() - t0:.1f} s)")
    if args.verbose:
        print(stage_times(marks, stats))
    if args.json:
        write_json(report, args.json)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(report["layers"][0]))
            w.writeheader()
            w.writerows(report["layers"])
    if args.plot:
        plot_breakdown([base, cost], args.plot, baseline=base, labels=["8/8/-/-", report["arch"]],
                       title=f"{report['workload']}: energy per op by component")
    return 0


if __name__ == "__main__":
    sys.exit(main())
