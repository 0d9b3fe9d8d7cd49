#!/usr/bin/env python
"""vsqsim command line.

Today: a quantization report of one layer on the VS-Quant reference datapath
(``--workload gemm:MxKxN`` or ``conv:...``). The full pipeline (mapper, TLM, cost model, whole
networks such as bert-base) is being built; such workloads are refused with a clear message.

    python run.py --workload gemm:384x768x3072 --arch 4/8/6/10
"""
from __future__ import annotations

import argparse
import json
import sys

DEFAULT_WORKLOAD = "gemm:384x768x3072"
PLANNED = ("bert-base", "bert-large", "resnet50", "minilm", "mpnet-base", "mobilenetv2", "digits-cnn")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="run.py", description="vsqsim: per-vector scaled quantization (VS-Quant) accelerator simulator.")
    ap.add_argument("--workload", default=DEFAULT_WORKLOAD,
                    help=f"gemm:MxKxN or conv:BxCxHxW,KxRxS[,s=S][,p=P][,d=D][,g=G] (default {DEFAULT_WORKLOAD})")
    ap.add_argument("--arch", default="4/8/6/10",
                    help="datapath W/A/ws/as, e.g. 8/8/-/-, 4/8/6/10, 4/4U/4/6, 4/8/fp16/fp16; "
                         "options ,R=<bits> ,V=<size> (default 4/8/6/10)")
    ap.add_argument("--scale-product", default=None, metavar="full|R",
                    help="round the scale product sw*sa to R bits, or keep it full width")
    ap.add_argument("--vector-size", type=int, default=None, metavar="V", help="vector size (default 16)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the layer's random tensors (default 0)")
    ap.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    from vsquant import QuantConfig
    from workloads.layers import LAYER_FORMS, parse_layer
    try:
        cfg = QuantConfig.parse(args.arch, scale_product=args.scale_product, vector_size=args.vector_size)
    except ValueError as e:
        ap.error(f"--arch: {e}")
    if args.workload in PLANNED:
        ap.error(f"--workload {args.workload!r} needs the mapper and TLM, which are not built yet; "
                 f"available now: {LAYER_FORMS}")
    try:
        wl = parse_layer(args.workload)
    except ValueError as e:
        ap.error(f"--workload: {e}")
    from studies.layer_report import format_report, layer_report
    report = layer_report(wl, cfg, seed=args.seed)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
