"""Quantization-aware fine-tuning through the fake-quant path (paper Sec. 7, Table 9 style).

The model's MAC layers (linear, conv and the attention matmuls) are made to compute exactly
what the hardware computes (:func:`studies.fakequant.quantize_model`: forward = the quantized
datapath, backward = straight-through estimator), then fine-tuned; the metric is reported after
every epoch (epoch 0 = post-training quantization, no fine-tuning). Deterministic for a seed.

- :func:`finetune_digits`: ``digits-cnn`` on the training digits (cross-entropy), held-out top-1.
- :func:`finetune_embeddings`: ``minilm`` (or ``mpnet-base``) fine-tuned to match the fp32 model's
  sentence embeddings (loss 1 - cosine, on the 58 sentences of ``sentences.txt``), scored on the
  320 sentences of the paraphrase pairs as :mod:`studies.ptq` scores them (mean/min cosine to fp32,
  Spearman of pairwise similarities, paraphrase retrieval top-1).

    python -m studies.qat --arch 3/3U/-/- --arch 3/3U/4/6 --epochs 3
    python -m studies.qat --workload minilm --arch 4/8/-/- --arch 4/8/6/10 --epochs 3
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


def finetune_embeddings(cfg: str, workload: str = "minilm", epochs: int = 3, lr: float = 2e-5, batch: int = 8,
                        seed: int = 0) -> list[dict]:
    """Embedding fidelity on the paraphrase pairs after 0..epochs epochs of STE fine-tuning at ``cfg``."""
    from workloads.pretrained import mean_pool

    from .ptq import SENTENCE_MODELS, embedding_fidelity, load_sentence_model, sentence_batches
    if workload not in SENTENCE_MODELS:
        raise ValueError(f"finetune_embeddings supports {', '.join(SENTENCE_MODELS)}; got {workload!r}")
    torch.manual_seed(seed)
    model, tokenizer = load_sentence_model(workload)
    train, evals, _ = sentence_batches(tokenizer)   # fine-tuned on the calibration sentences, scored on the pairs
    with torch.no_grad():   # the fp32 model's embeddings: the targets and the reference
        target = mean_pool(model(**train).last_hidden_state.double(), train["attention_mask"])
        ref = mean_pool(model(**evals).last_hidden_state.double(), evals["attention_mask"]).numpy()
    qmodel = quantize_model(copy.deepcopy(model).double(), cfg)   # eval mode: no dropout while fine-tuning

    def score() -> dict:
        with torch.no_grad():
            emb = mean_pool(qmodel(**evals).last_hidden_state, evals["attention_mask"])
        return embedding_fidelity(emb.numpy(), ref, pairs=True)

    opt = torch.optim.Adam(qmodel.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history = [score()]
    n = len(target)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            out = qmodel(**{k: v[idx] for k, v in train.items()}).last_hidden_state
            emb = mean_pool(out, train["attention_mask"][idx])
            loss = (1 - F.cosine_similarity(emb, target[idx], dim=1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append(score())
    return history


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.qat", description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("digits-cnn", "minilm", "mpnet-base"), default="digits-cnn")
    ap.add_argument("--arch", action="append",
                    help="datapath (repeatable); default 3/3U/-/- and 3/3U/4/6 (digits), 4/8/-/- and 4/8/6/10")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4 digits, 2e-5 sentence models)")
    args = ap.parse_args(argv)
    if args.workload == "digits-cnn":
        archs = args.arch or ["3/3U/-/-", "3/3U/4/6"]
        _, _, xte, yte = load_digits_split()
        fp32 = _top1(load_digits_cnn(), torch.from_numpy(xte), yte)
        print(f"digits-cnn held-out top-1, fp32 {fp32:.4f}; epoch 0 = post-training quantization")
        print("arch".ljust(12) + "".join(f"epoch {e:<3}" for e in range(args.epochs + 1)))
        for a in archs:
            h = finetune_digits(a, args.epochs, args.lr or 1e-4)
            print(a.ljust(12) + "".join(f"{v:<9.4f}" for v in h))
        return 0
    archs = args.arch or ["4/8/-/-", "4/8/6/10"]
    print(f"{args.workload}: sentence-embedding fidelity to fp32 on the paraphrase pairs; "
          "epoch 0 = post-training quantization")
    for a in archs:
        h = finetune_embeddings(a, args.workload, args.epochs, args.lr or 2e-5)
        for e, r in enumerate(h):
            print(f"{a:<12} epoch {e}  " + "  ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
