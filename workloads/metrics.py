"""Accuracy metrics of a workload: how a quantized output is judged (DESIGN.md, "How data flows": "workloads
metric -> accuracy vs the fp32 model"), in one module.

- :func:`accuracy_metric`: the metric ``run.py`` and sweeps report for a workload's output: top-1 accuracy
  where the workload has labels (``digits-cnn``), top-1 agreement with the float model for a CNN
  classifier, else the cosine similarity to the float model; always with the output's cosine and SQNR.
- :func:`top1` (task accuracy), :func:`classifier_agreement` (top-1/top-5 agreement and KL to the fp32
  logits), for classifiers;
- :func:`mean_pool`, :func:`embedding_fidelity` and :func:`paraphrase_retrieval_top1`, for sentence
  embeddings (the PTQ study's metric of MiniLM and MPNet).

Inputs are NumPy arrays or torch tensors; results are Python floats.
"""
from __future__ import annotations

import numpy as np
import torch

from vsquant import sqnr_db

__all__ = ["METRICS", "accuracy_metric", "classifier_agreement", "embedding_fidelity", "mean_pool",
           "paraphrase_retrieval_top1", "top1"]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x)


def top1(logits, labels) -> float:
    """Top-1 accuracy of logits (N, classes) (a NumPy array or a torch tensor) against integer labels (N,)."""
    return float((_np(logits).argmax(axis=-1) == np.asarray(labels)).mean())


def mean_pool(last_hidden_state, attention_mask) -> np.ndarray:
    """Sentence embeddings (:func:`workloads.pretrained.mean_pool`) as float64 NumPy."""
    from .pretrained import mean_pool as pool
    h = torch.as_tensor(last_hidden_state).detach().double()
    return pool(h, torch.as_tensor(attention_mask)).numpy()


def _cos_matrix(e: np.ndarray) -> np.ndarray:
    n = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-300)
    return n @ n.T


def paraphrase_retrieval_top1(emb) -> float:
    """Embeddings (S, H) of sentences in pairs (a0, b0, a1, b1, ...): the fraction whose nearest other
    sentence by cosine similarity is its own paraphrase."""
    c = _cos_matrix(np.asarray(emb, np.float64))
    if len(c) % 2:
        raise ValueError(f"paraphrase retrieval needs sentences in pairs; got {len(c)} sentences")
    np.fill_diagonal(c, -np.inf)
    return float((c.argmax(axis=1) == (np.arange(len(c)) ^ 1)).mean())


def embedding_fidelity(emb_q, emb_fp, pairs: bool = False) -> dict:
    """Fidelity of embeddings (S, H) to the reference: per-sentence cosine (mean, min) and the
    Spearman correlation of the two pairwise cosine-similarity matrices (upper triangle, i < j);
    with ``pairs`` (sentences ordered a0, b0, a1, b1, ...) also the paraphrase retrieval top-1 of
    ``emb_q`` (:func:`paraphrase_retrieval_top1`)."""
    from scipy.stats import spearmanr
    q, f = np.asarray(emb_q, np.float64), np.asarray(emb_fp, np.float64)
    if q.shape != f.shape or q.ndim != 2:
        raise ValueError(f"embeddings must both be (sentences, hidden); got {q.shape} and {f.shape}")
    cos = (q * f).sum(1) / np.maximum(np.linalg.norm(q, axis=1) * np.linalg.norm(f, axis=1), 1e-300)
    iu = np.triu_indices(len(q), 1)
    sq, sf = _cos_matrix(q)[iu], _cos_matrix(f)[iu]
    rho = float(spearmanr(sq, sf).statistic) if len(sq) > 1 else float("nan")
    out = {"mean_cos": float(cos.mean()), "min_cos": float(cos.min()), "spearman": rho}
    if pairs:
        out["retrieval_top1"] = paraphrase_retrieval_top1(q)
    return out


def classifier_agreement(logits, ref_logits) -> dict:
    """How a (quantized) classifier's ``logits`` agree with the fp32 reference ``ref_logits`` (both
    (N, classes)): ``top1`` (same arg-max), ``top5`` (the reference's top-1 class is in the top 5)
    and ``kl`` (mean KL(p_ref || p) of the softmaxes, nats)."""
    y = torch.as_tensor(_np(logits), dtype=torch.float64)
    r = torch.as_tensor(_np(ref_logits), dtype=torch.float64)
    if y.shape != r.shape or y.ndim != 2:
        raise ValueError(f"logits must both be (N, classes), got {tuple(y.shape)} and {tuple(r.shape)}")
    ref_top1 = r.argmax(dim=1)
    k = min(5, y.shape[1])
    top1 = (y.argmax(dim=1) == ref_top1).double().mean().item()
    top5 = (y.topk(k, dim=1).indices == ref_top1[:, None]).any(dim=1).double().mean().item()
    lr, ly = torch.log_softmax(r, dim=1), torch.log_softmax(y, dim=1)
    kl = (lr.exp() * (lr - ly)).sum(dim=1).mean().item()
    return {"top1": top1, "top5": top5, "kl": kl}


def _finite(v):
    return v if v is None or np.isfinite(v) else None


#: the metrics a workload can name (:attr:`workloads.models.Workload.metric`)
METRICS = {
    "top1": "top-1 accuracy against the workload's labels",
    "top1_agreement": "top-1 agreement with the float model (a classifier without labels)",
    "cosine": "cosine similarity of the output to the float model",
}


def accuracy_metric(metric: str, info: dict, y: np.ndarray, y_float: np.ndarray) -> dict:
    """The workload's ``metric`` (a key of :data:`METRICS`) on the quantized output ``y`` against the float
    output ``y_float``; always with the output's cosine similarity and SQNR.

    A metric that is undefined on these outputs (the cosine or SQNR of an all-zero output) is ``None`` with a
    ``reason``, never NaN."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
    labels = info.get("labels")
    if metric == "top1" and labels is None:
        raise ValueError(f"workload {info.get('name')!r}: metric 'top1' needs labels (info['labels'])")
    flat, ref = y.reshape(-1), y_float.reshape(-1)
    norms = float(np.linalg.norm(flat) * np.linalg.norm(ref))
    cos = float(flat @ ref / norms) if norms > 0 else None
    out: dict = {"cosine": cos, "sqnr_db": _finite(sqnr_db(y_float, y)) if np.any(ref) else None}
    if not np.any(ref) or not np.any(flat):
        which = "the float model's output" if not np.any(ref) else "the quantized output"
        out["reason"] = f"{which} is all zero ({ref.size} values): cosine similarity and SQNR are undefined"
    if metric == "top1":
        out.update(metric="top-1 accuracy", kind="task", value=top1(y, labels), float_value=top1(y_float, labels))
    elif metric == "top1_agreement":
        agree = classifier_agreement(y.reshape(len(y), -1), y_float.reshape(len(y_float), -1))
        out.update(metric="top-1 agreement with the float model", kind="fidelity", value=agree["top1"],
                   top5_agreement=agree["top5"], kl=_finite(agree["kl"]))
    else:
        out.update(metric="cosine similarity to the float model", kind="fidelity", value=cos)
    return out
