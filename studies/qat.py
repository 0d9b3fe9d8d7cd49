"""Quantization-aware fine-tuning through the fake-quant path (paper Sec. 7, Table 9 style).

``finetune_digits(cfg, epochs)`` starts from the trained ``digits-cnn``, swaps its MAC layers for
the exact fake-quant versions (:mod:`studies.fakequant`: forward = what the hardware computes,
backward = straight-through), fine-tunes on the training digits and reports the held-out top-1
after every epoch (epoch 0 = post-training quantization, no fine-tuning). Deterministic for a seed.

    python -m studies.qat --arch 3/3U/-/- --arch 3/3U/4/6 --epochs 3
"""
from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from workloads.digits import load_digits_cnn, load_digits_split

from .fakequant import quantize_model


def _top1(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1).numpy() == y).mean())


def finetune_digits(cfg: str, epochs: int = 3, lr: float = 1e-4, batch: int = 64, seed: int = 0) -> list[float]:
    """Held-out top-1 after 0..epochs epochs of STE fine-tuning at ``cfg``."""
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = load_digits_split()
    model = quantize_model(copy.deepcopy(load_digits_cnn()).double(), cfg)
    xt, yt = torch.from_numpy(xtr).double(), torch.from_numpy(ytr)
    xe = torch.from_numpy(xte).double()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history = [_top1(model, xe, yte)]
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append(_top1(model, xe, yte))
    return history


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.qat", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="datapath (repeatable); default 3/3U/-/- and 3/3U/4/6")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args(argv)
    archs = args.arch or ["3/3U/-/-", "3/3U/4/6"]
    _, _, xte, yte = load_digits_split()
    fp32 = _top1(load_digits_cnn(), torch.from_numpy(xte), yte)
    print(f"digits-cnn held-out top-1, fp32 {fp32:.4f}; epoch 0 = post-training quantization")
    print("arch".ljust(12) + "".join(f"epoch {e:<3}" for e in range(args.epochs + 1)))
    for a in archs:
        h = finetune_digits(a, args.epochs, args.lr)
        print(a.ljust(12) + "".join(f"{v:<9.4f}" for v in h))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
