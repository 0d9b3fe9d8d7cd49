"""Post-training quantization accuracy of real trained models, as the VS-Quant paper's Tables 2-7.

Every MAC layer runs through a bit-exact datapath backend (:mod:`mapping.backends`)
(the fake-quant path where it applies, static calibration included, else the ``vsquant`` reference);
everything else runs in float64 on the host. Four real models:

``digits-cnn``  the project-trained CNN (:mod:`workloads.digits`); metric: top-1 on the 360 held-out
    images. Static calibration (Table 2) uses the first 200 *training* images.
``mobilenetv2``  the real ImageNet MobileNetV2 (:mod:`workloads.mobilenet`) on 72 of the 96 natural-image
    views of :mod:`workloads.images`; the other 24 (the last two views of each photograph) calibrate.
    Metric: top-1 agreement with the fp32 model (plus top-5 agreement and mean KL(fp32 || quantized)).
``minilm``, ``mpnet-base``  the real all-MiniLM-L6-v2 and all-mpnet-base-v2, evaluated on the 320
    sentences of the 160 shipped paraphrase pairs (``workloads/data/paraphrases.tsv``, padded together to
    one length); metric: fidelity of the sentence embeddings (attention-mask mean pooling of
    last_hidden_state) to the fp32 PyTorch model: mean and minimum cosine similarity over sentences,
    the Spearman correlation between the pairwise cosine-similarity matrices (upper triangles) of the
    quantized and fp32 embeddings, and the paraphrase retrieval top-1 of the quantized embeddings (is
    a sentence's nearest neighbour its paraphrase?). Static calibration uses the 58 other sentences of
    ``workloads/data/sentences.txt``.

The fp32 row/column is the float64 interpreter (``float_backend``): for digits its top-1, for the
other models its fidelity to the fp32 model (~1.0, float64 vs float32 round-off).

Tables (each a DataFrame; rows are bit widths or methods, numbers are the workload's headline metric;
the long-form frames carry every metric):

- :func:`table_calibration` (Table 2): per-channel weights and per-tensor *static* activation
  scales, each calibrated with max, percentile 99.9 / 99.99, entropy (KL), MSE and OCTAV. Activations
  are ``NU`` (unsigned where the input is non-negative) for digits and 8-bit for MiniLM, as the
  paper's CNN / BERT rows.
- :func:`table_per_vector` (Table 3): fp32 per-vector scales on W and A (V=16), dynamic max
  calibration of activations, against the best per-channel calibration of Table 2.
- :func:`table_vector_size` (Table 4): N/N(U)/fp32/fp32 at V in ``sizes``.
- :func:`table_two_level` (Tables 5-7): two-level integer scales ``ws/as`` and fp16 scales, plus
  the best per-channel column.
- :func:`table_clip` (beyond the paper): per-vector scales from each weight vector's max (Eq. 7a) against its
  OCTAV clip (``,clip=octav``; Sakr et al., ICML 2022), two-level and fp32 per-vector scales side by side.
- :func:`table_formats` (beyond the paper): VS-Quant's points beside the block formats that descend from
  it (OCP MX, NVFP4) on the same datapath, accuracy next to energy per op and area from the cost model;
  :func:`plot_formats` plots accuracy against energy and perf/area by format family.

CLI: ``python -m studies.ptq --workload digits-cnn|minilm|mpnet-base|mobilenetv2|all --table calibration|
per-vector|vector-size|two-level|variants|clip|findings|formats|all [--quick] [--csv DIR] [--store FILE]
[--plot FILE]``; every finished
configuration is committed to the store at once (with ``--csv``, ``DIR/ptq.sqlite``), so a killed study
loses nothing it finished and a rerun computes only what is missing.
"""
from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

import vsquant
from vsquant import QuantConfig
from workloads.metrics import classifier_agreement, embedding_fidelity, mean_pool, top1

__all__ = [
    "CALIBRATIONS",
    "PTQWorkload",
    "calibrated_backend",
    "evaluate_config",
    "load_workload",
    "main",
    "record_inputs",
    "load_sentence_model",
    "sentence_batches",
    "table_calibration",
    "table_clip",
    "table_findings",
    "table_formats",
    "plot_formats",
    "design_cost",
    "FORMAT_CONFIGS",
    "table_per_vector",
    "table_two_level",
    "table_vector_size",
]

# calibration method name -> (vsquant method, percentile)
CALIBRATIONS = {"max": ("max", None), "99.9%": ("percentile", 99.9), "99.99%": ("percentile", 99.99),
                "entropy": ("entropy", None), "mse": ("mse", None), "octav": ("octav", None)}
MSE_SAMPLE = 1 << 18     # activation MSE calibration on a seeded subsample of at most this many values
# sentence-embedding models: name -> "module:loader" returning (model, tokenizer), offline
SENTENCE_MODELS = {"minilm": "workloads.pretrained:load_minilm", "mpnet-base": "workloads.mpnet:load_mpnet"}
PTQ_WORKLOADS = ("digits-cnn", *SENTENCE_MODELS, "mobilenetv2")
WEIGHT_ENTROPY_BINS = 256   # per-channel weight entropy histograms (rows of <= a few thousand values; 2048 bins
                            # take 95 s per bit width on MiniLM's weights, 256 take 8 s)


# --- workloads ----------------------------------------------------------------------------------

@dataclass(eq=False)
class PTQWorkload:
    """A model captured on its evaluation inputs, its calibration inputs and how to score an output."""

    name: str
    captured: object                  # CapturedGraph on the evaluation inputs
    calib_captured: object            # CapturedGraph on the calibration inputs
    reference: object                 # labels (digits), fp32 embeddings or fp32 logits (mobilenetv2)
    metric: str                       # "top1", "mean_cos" or "top1_agree"
    act_bits_rule: str                # "U": activations NU (CNN), or "8": 8-bit activations (BERT)
    extra: dict = field(default_factory=dict)
    store: object | None = None       # a studies.store.ResultStore: finished points survive a killed run
    _act_stats: dict = field(default_factory=dict)
    _calib_inputs: dict | None = None

    def score(self, output) -> dict:
        if self.name == "digits-cnn":   # task accuracy, and closeness to the fp32 model's logits
            a = classifier_agreement(output, self.extra["fp32_logits"])
            return {"top1": top1(output, self.reference), "top1_agree": a["top1"], "kl": a["kl"]}
        if self.metric == "top1_agree":
            a = classifier_agreement(output, self.reference)
            return {"top1_agree": a["top1"], "top5_agree": a["top5"], "kl": a["kl"]}
        h = output["last_hidden_state"] if isinstance(output, dict) else getattr(output, "last_hidden_state", output[0])
        return embedding_fidelity(mean_pool(h, self.extra["attention_mask"]), self.reference, pairs=True)

    def act_bits(self, n: int) -> str:
        """The activation field of Tables 2-3 for weight width n: nU for the CNN, 8 for the transformer."""
        return f"{n}U" if self.act_bits_rule == "U" else self.act_bits_rule

    def calib_inputs(self) -> dict:
        """Every MAC layer's float inputs on the calibration set (recorded once)."""
        if self._calib_inputs is None:
            self._calib_inputs = record_inputs(self.calib_captured)
        return self._calib_inputs


@functools.cache
def load_workload(name: str, size: int | None = None) -> PTQWorkload:
    """A workload of :data:`PTQ_WORKLOADS` as a :class:`PTQWorkload` (cached per process).

    ``size`` evaluates on a prefix of the evaluation set (sentence models: the first ``size`` paraphrase
    pairs; mobilenetv2: the first ``size`` images), e.g. for faster tests; default: all of it."""
    from mapping.capture import capture
    from workloads.models import get_workload
    if name == "digits-cnn":
        wl = get_workload("digits-cnn")       # the held-out digits; calibration: the first training images
        (x,), (xc,) = wl.inputs, wl.calibration_inputs()
        with torch.no_grad():
            logits = wl.model(x).double().numpy()                                        # the fp32 model
        m64 = wl.model.double()
        return PTQWorkload(name, capture(m64, (x.double(),)), capture(m64, (xc.double(),)),
                           np.asarray(wl.info["labels"]), "top1", "U", extra={"fp32_logits": logits})
    if name in SENTENCE_MODELS:
        return _sentence_workload(name, size)
    if name == "mobilenetv2":
        from workloads.images import MAX_IMAGES
        from workloads.models import MOBILENET_CALIB_IMAGES
        n_eval = MAX_IMAGES - MOBILENET_CALIB_IMAGES   # views are ordered view-major: the last views calibrate
        wl = get_workload("mobilenetv2", batch=min(n_eval, size or n_eval))
        model, (evals,), sources = wl.model, wl.inputs, wl.info["sources"]
        (calib,) = wl.calibration_inputs()
        n_eval = len(evals)
        with torch.no_grad():
            ref = model(evals).double().numpy()                                          # the fp32 model
        m64 = model.double()
        return PTQWorkload(name, capture(m64, (evals.double(),)), capture(m64, (calib.double(),)), ref,
                           "top1_agree", "U", extra={"images": n_eval, "calib_images": len(calib),
                                                     "sources": sources[:n_eval],
                                                     "fp32_top1_prob": float(np.median(_softmax_max(ref)))})
    raise ValueError(f"studies.ptq supports the workloads {', '.join(PTQ_WORKLOADS)}; got {name!r}")


def _softmax_max(logits: np.ndarray) -> np.ndarray:
    """Each row's largest softmax probability: how sure the fp32 classifier is (top-1 agreement flips
    easily where it is unsure)."""
    z = logits - logits.max(axis=1, keepdims=True)
    return 1.0 / np.exp(z).sum(axis=1)


def load_sentence_model(name: str):
    """(model in eval mode with eager attention, tokenizer) of a :data:`SENTENCE_MODELS` entry, offline."""
    import importlib

    from workloads.models import use_attention
    if name not in SENTENCE_MODELS:
        raise ValueError(f"sentence-embedding models: {', '.join(SENTENCE_MODELS)}; got {name!r}")
    module, fn = SENTENCE_MODELS[name].split(":")
    model, tokenizer = getattr(importlib.import_module(module), fn)()
    use_attention(model.eval(), "eager")
    return model, tokenizer


def sentence_batches(tokenizer, size: int | None = None) -> tuple[dict, dict, int]:
    """(calibration inputs: ``sentences.txt``; evaluation inputs: the first ``size`` paraphrase pairs as
    a0, b0, a1, b1, ...; the number of pairs), each tokenized and padded to its longest sentence."""
    from workloads.models import load_paraphrases, sentence_calibration
    pairs = load_paraphrases()[:size]
    calib = sentence_calibration(tokenizer)
    evals = dict(tokenizer([s for p in pairs for s in p], padding=True, return_tensors="pt"))
    return calib, evals, len(pairs)


def _sentence_workload(name: str, size: int | None = None) -> PTQWorkload:
    """A sentence-embedding model: calibrated on ``sentences.txt``, evaluated on the paraphrase pairs."""
    from mapping.capture import capture
    model, tokenizer = load_sentence_model(name)
    calib, evals, n_pairs = sentence_batches(tokenizer, size)
    with torch.no_grad():
        ref = mean_pool(model(**evals).last_hidden_state, evals["attention_mask"])   # the fp32 model
    m64 = model.double()
    return PTQWorkload(name, capture(m64, evals), capture(m64, calib), ref, "mean_cos", "8",
                       extra={"attention_mask": evals["attention_mask"], "sentences": len(evals["input_ids"]),
                              "pairs": n_pairs, "calib_sentences": len(calib["input_ids"]),
                              "seq": int(evals["input_ids"].shape[1])})


def _as_workload(workload) -> PTQWorkload:
    return workload if isinstance(workload, PTQWorkload) else load_workload(workload)


# --- backends -----------------------------------------------------------------------------------

def record_inputs(captured) -> dict:
    """Run ``captured`` in float64 and return every MAC layer's inputs: {layer name: {"input"} or {"a","b"}}."""
    from mapping.backends import RecordingBackend
    from mapping.interpret import QuantInterpreter
    recorder = RecordingBackend()
    QuantInterpreter(captured, recorder).forward()
    return recorder.inputs


def _subsample(x: np.ndarray, n: int = MSE_SAMPLE) -> np.ndarray:
    x = np.asarray(x).reshape(-1)
    if x.size <= n:
        return x
    return x[np.random.default_rng(0).choice(x.size, n, replace=False)]


def _act_amax(w: PTQWorkload, layer: str, operand: str, method: str, bits: int, unsigned: bool) -> float:
    key = (layer, operand, method, bits, unsigned)
    if key not in w._act_stats:
        x = w.calib_inputs()[layer][operand]
        vmethod, pct = CALIBRATIONS[method]
        if vmethod == "mse":
            x = _subsample(x)
        kw = {"percentile": pct} if pct is not None else {}
        w._act_stats[key] = float(vsquant.calibrate_amax(x, vmethod, bits=bits, unsigned=unsigned, **kw))
    return w._act_stats[key]


def _calib_min(w: PTQWorkload, layer: str, operand: str) -> float:
    key = (layer, operand, "min")
    if key not in w._act_stats:
        x = w.calib_inputs()[layer][operand]
        w._act_stats[key] = float(x.min()) if x.size else 0.0
    return w._act_stats[key]


def calibrated_backend(workload, cfg: QuantConfig | str, method: str = "max"):
    """Per-channel weights and per-tensor *static* activations, both calibrated with ``method``, on the
    fake-quant datapath (:class:`mapping.backends.FakeQuantBackend`, equal to ``vsquant.layers`` with
    ``act_amax``).

    ``method`` is a key of :data:`CALIBRATIONS`. Weights: per output channel alpha from
    ``vsquant.calibrate_amax`` on the unpadded weight (entropy with :data:`WEIGHT_ENTROPY_BINS` bins).
    Activations: one alpha per MAC-layer input,
    from the float inputs recorded on the workload's calibration set. A layer's activations are
    unsigned (``NU`` in ``cfg``) only if its calibration and evaluation inputs are both non-negative.
    """
    from mapping.backends import FakeQuantBackend
    w = _as_workload(workload)
    cfg = QuantConfig.parse(cfg)
    if not cfg.is_baseline:
        raise ValueError(f"calibrated_backend is for per-channel configs (W/A/-/-), got {cfg}")
    if method not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {method!r}; known: {', '.join(CALIBRATIONS)}")
    vmethod, pct = CALIBRATIONS[method]
    kw = {"percentile": pct} if pct is not None else {}

    def weight_amax(layer, args):
        key = args.get("weight_key")
        akey = ("weight", key, method, cfg.weight_bits)
        amax = w._act_stats.get(akey) if key is not None else None
        if amax is None:
            wt = args["weight"]
            extra = {"num_bins": WEIGHT_ENTROPY_BINS} if vmethod == "entropy" else {}
            amax = vsquant.calibrate_amax(wt.reshape(wt.shape[0], -1), vmethod, bits=cfg.weight_bits, channel_axis=0,
                                          **kw, **extra)
            if key is not None:
                w._act_stats[akey] = amax
        return amax

    def act_calibration(layer, operand, x):
        unsigned = bool(cfg.act_unsigned and x.size and x.min() >= 0 and _calib_min(w, layer.name, operand) >= 0)
        return unsigned, _act_amax(w, layer.name, operand, method, cfg.act_bits, unsigned)

    return FakeQuantBackend(cfg, weight_amax=weight_amax, act_calibration=act_calibration,
                            name=f"calibrated_backend({cfg}, {method})")


# --- evaluation ---------------------------------------------------------------------------------

def evaluate_config(workload, cfg_or_scheme, calibration: str | None = None) -> dict:
    """Run the workload with every MAC layer on a datapath bit-exact with the vsquant reference at a config
    and score it (with a store on the workload: reuse a stored run, else store this one).

    ``cfg_or_scheme``: a config string / QuantConfig (``"4/8/6/10"``, ``"4/8/fp32/fp32,V=32"``: weights
    quantized once, activations dynamically, :func:`mapping.backends.fast_backend`), ``"fp32"`` (the float64 model),
    or a tuple ``(cfg, method)`` / ``calibration=method`` for static calibration of a per-channel
    config (:func:`calibrated_backend`). Returns the metric dict plus ``config``, ``calibration`` and
    ``seconds``.
    """
    from mapping.backends import fast_backend, float_backend
    from mapping.interpret import QuantInterpreter
    w = _as_workload(workload)
    if isinstance(cfg_or_scheme, tuple):
        cfg_or_scheme, calibration = cfg_or_scheme
    label = "fp32" if str(cfg_or_scheme) == "fp32" else str(QuantConfig.parse(cfg_or_scheme))
    calibration_label = calibration or ("-" if label == "fp32" else "dynamic")
    point = {"study": "ptq", "workload": w.name, "eval_size": _eval_size(w), "config": label,
             "calibration": calibration_label}
    if w.store is not None and (hit := w.store.get(point)) is not None:
        return hit
    t0 = time.perf_counter()
    if label == "fp32":
        backend = float_backend
    elif calibration is not None:
        backend = calibrated_backend(w, label, calibration)
    else:
        backend = fast_backend(label)   # bit-exact with the reference; the fake-quant path where it applies
    out = QuantInterpreter(w.captured, backend).forward()
    res = w.score(out)
    res.update(config=label, calibration=calibration_label, seconds=time.perf_counter() - t0)
    if w.store is not None:
        w.store.put(point, res, res["seconds"])   # committed at once: a killed table keeps its finished points
    return res


def _eval_size(w: PTQWorkload) -> int:
    """How many evaluation items the workload scores (pairs, images or held-out digits)."""
    return int(w.extra.get("pairs") or w.extra.get("images") or len(w.reference))


def _metric_names(w: PTQWorkload) -> list[str]:
    return {"top1": ["top1", "top1_agree", "kl"], "top1_agree": ["top1_agree", "top5_agree", "kl"]}.get(
        w.metric, ["mean_cos", "min_cos", "spearman", "retrieval_top1"])


def _wide(w: PTQWorkload, records: list[dict], index: str, columns: str) -> pd.DataFrame:
    """Long records -> the paper's layout (index x columns of the headline metric); long form in attrs."""
    long = pd.DataFrame(records)
    wide = long.pivot_table(index=index, columns=columns, values=w.metric, aggfunc="first", sort=False)
    wide.columns.name = None
    wide.attrs["long"] = long
    wide.attrs["metric"] = w.metric
    return wide


def _fp32(w: PTQWorkload) -> dict:
    key = "fp32_result"
    if key not in w.extra:
        w.extra[key] = evaluate_config(w, "fp32")
    return w.extra[key]


# --- tables -------------------------------------------------------------------------------------

def table_calibration(workload, bits=(3, 4, 6, 8), methods=tuple(CALIBRATIONS)) -> pd.DataFrame:
    """Table 2: per-channel weights, per-tensor static activations, each calibration method.

    Rows: ``Wt=N Act=A`` (A = NU for digits, 8 for MiniLM) and ``fp32``; columns: methods.
    """
    w = _as_workload(workload)
    recs = []
    for n in bits:
        cfg = f"{n}/{w.act_bits(n)}/-/-"
        for m in methods:
            r = evaluate_config(w, cfg, m)
            recs.append(dict(bits=f"Wt={n} Act={w.act_bits(n)}", method=m, **r))
    fp = _fp32(w)
    for m in methods:
        recs.append(dict(bits="fp32", method=m, **fp))
    return _wide(w, recs, "bits", "method")


def _best_per_channel(w: PTQWorkload, cfg: str, methods=tuple(CALIBRATIONS)) -> dict:
    """Best static per-channel result (by the headline metric) over the calibration methods, cached per
    config; selected on the evaluation set itself, as the paper's "best per-channel"."""
    cache = w.extra.setdefault("best_pc", {})
    if cfg not in cache:
        best = None
        for m in methods:
            r = evaluate_config(w, cfg, m)
            if best is None or r[w.metric] > best[w.metric]:
                best = r
        cache[cfg] = best
    return cache[cfg]


def table_per_vector(workload, bits=(3, 4, 6, 8), vector_size: int = 16, best_per_channel: bool = True) -> pd.DataFrame:
    """Table 3: fp32 per-vector scales on W and A (V=16), against the best static per-channel calibration."""
    w = _as_workload(workload)
    recs = []
    for n in bits:
        row = f"Wt={n} Act={w.act_bits(n)}"
        r = evaluate_config(w, f"{n}/{w.act_bits(n)}/fp32/fp32,V={vector_size}")
        recs.append(dict(bits=row, scheme="per-vector", **r))
        if best_per_channel:
            recs.append(dict(bits=row, scheme="best per-channel", **_best_per_channel(w, f"{n}/{w.act_bits(n)}/-/-")))
    fp = _fp32(w)
    recs += [dict(bits="fp32", scheme=s, **fp) for s in (["per-vector", "best per-channel"] if best_per_channel
                                                          else ["per-vector"])]
    return _wide(w, recs, "bits", "scheme")


def table_vector_size(workload, bits: int = 6, sizes=(1, 2, 4, 8, 16, 32, 64)) -> pd.DataFrame:
    """Table 4: ``bits``-bit W and A with fp32 per-vector scales, by vector size V (plus the fp32 model)."""
    w = _as_workload(workload)
    row = f"Wt={bits} Act={w.act_bits(bits)}"
    recs = [dict(bits=row, V=f"V={v}", **evaluate_config(w, f"{bits}/{w.act_bits(bits)}/fp32/fp32,V={v}"))
            for v in sizes]
    recs.append(dict(bits=row, V="fp32", **_fp32(w)))
    return _wide(w, recs, "bits", "V")


def table_two_level(workload, weight_bits=(3, 4, 6, 8), act_bits=(4, 6, 8),
                    scales=("3/4", "4/4", "4/6", "6/4", "6/6", "fp16/fp16"), best_per_channel: bool = True,
                    unsigned: bool | None = None) -> pd.DataFrame:
    """Tables 5-7: two-level integer per-vector scales ``S=ws/as`` (and fp16 scales) at W/A bit widths.

    Rows ``Wt=N Act=A`` for every weight and activation width (activations ``AU`` for digits unless
    ``unsigned=False``); columns ``S=...``, ``best per-channel`` (static calibration) and ``fp32``.
    """
    w = _as_workload(workload)
    unsigned = (w.act_bits_rule == "U") if unsigned is None else unsigned
    recs = []
    fp = _fp32(w)
    for a in act_bits:
        af = f"{a}U" if unsigned else f"{a}"
        for n in weight_bits:
            row = f"Wt={n} Act={af}"
            for s in scales:
                r = evaluate_config(w, f"{n}/{af}/{s}")
                recs.append(dict(bits=row, scales=f"S={s}", **r))
            if best_per_channel:
                recs.append(dict(bits=row, scales="best per-channel", **_best_per_channel(w, f"{n}/{af}/-/-")))
            recs.append(dict(bits=row, scales="fp32", **fp))
    return _wide(w, recs, "bits", "scales")


VARIANTS = {"Eq. 7 order": "", "requantize": ",requantize", "nonzero": ",nonzero",
            "requantize+nonzero": ",requantize,nonzero"}


def table_variants(workload, configs=("4/8/4/6", "4/8/6/10", "6/8/4/6", "8/8/6/10")) -> pd.DataFrame:
    """The two scale-rounding variants of Sec. 4.4 side by side: the paper's order (integer values from
    the fp per-vector scale, Eq. 7c; dequantized with the two-level scale, Eq. 7j) vs requantizing the
    values with the two-level scale, and letting a non-zero vector's scale round to 0 (Eq. 7g) vs not."""
    w = _as_workload(workload)
    records = [dict(_fp32(w), config="fp32", variant=name) for name in VARIANTS]
    for cfg in configs:
        for name, flag in VARIANTS.items():
            r = evaluate_config(w, cfg + flag)
            records.append(dict(r, config=cfg, variant=name))
    return _wide(w, records, "config", "variant")


CLIPS = {"max": "", "octav": ",clip=octav"}


def table_clip(workload, configs=("4/8/6/10", "4/8/fp32/fp32", "3/8/6/10", "3/8/fp32/fp32")) -> pd.DataFrame:
    """The clip of the weights' per-vector scales: each vector's max (Eq. 7a, the paper) against its OCTAV
    clip (``,clip=octav``: the MSE-optimal clip of each vector, Sakr et al., ICML 2022, before the two-level
    quantization of the scales); activations dynamic, max-scaled, in both. Rows: configs; columns: clips."""
    w = _as_workload(workload)
    records = [dict(_fp32(w), config="fp32", clip=name) for name in CLIPS]
    for cfg in configs:
        for name, opt in CLIPS.items():
            records.append(dict(evaluate_config(w, cfg + opt), config=cfg, clip=name))
    return _wide(w, records, "config", "clip")


# --- CLI ----------------------------------------------------------------------------------------

def table_findings(workload) -> pd.DataFrame:
    """The paper's two headline findings on one model (README, "Findings"):

    - 4-bit weights, 8-bit activations: two-level per-vector 4/8/6/10 against per-channel 4/8/-/- with
      dynamic max scaling and with the best of Table 2's six static calibrations (by the headline metric);
    - 8-bit per-channel weights with *per-tensor* activations (8/8/-/-, dynamic and best static) against
      4/8/6/10 (the paper's BERT finding that per-layer activation scaling fails at 8 bits).

    Rows: configs (``calibration`` says how the per-tensor scales were set); columns: every metric.
    """
    w = _as_workload(workload)
    a8 = "8U" if w.act_bits_rule == "U" else "8"      # 8-bit activations (unsigned after ReLU in CNNs)
    recs = [dict(row="fp32", **_fp32(w))]
    for cfg in (f"4/{a8}/-/-", f"8/{a8}/-/-"):
        dyn = evaluate_config(w, cfg)
        best = _best_per_channel(w, cfg)
        recs += [dict(row=f"{cfg} dynamic max", **dyn), dict(row=f"{cfg} best static", **best)]
    recs.append(dict(row=f"4/{a8}/6/10", **evaluate_config(w, f"4/{a8}/6/10")))
    df = pd.DataFrame(recs).set_index("row")
    cols = [c for c in _metric_names(w) + ["calibration", "seconds"] if c in df.columns]
    df = df[cols]
    df.attrs["long"] = df.reset_index()
    df.attrs["metric"] = w.metric
    return df


#: the format families side by side (#16): VS-Quant's per-channel and two-level integer points, OCP MX, NVFP4
FORMAT_CONFIGS = ("8/8/-/-", "4/8/-/-", "4/8/6/10", "4/4/4/6", "mxint8", "mxfp8_e4m3", "mxfp6_e2m3", "mxfp4",
                  "nvfp4", "mxfp4/mxfp8_e4m3")


def format_family(cfg: QuantConfig | str) -> str:
    """``VS-Quant`` (integer elements, '-' or integer two-level scales), ``MX`` (E8M0 block scales), ``NVFP4``
    (E4M3 block scales under an fp32 tensor scale) or ``mixed``."""
    c = QuantConfig.parse(cfg)
    kinds = {c.weight_scale.kind, c.act_scale.kind}
    if not c.block_formats:
        return "VS-Quant"
    if kinds == {"e8m0"}:
        return "MX"
    if kinds == {"e4m3"}:
        return "NVFP4"
    return "mixed"


def design_cost(workload, cfg: QuantConfig | str, hw: str = "magnet16") -> dict:
    """Energy per op and area of ``cfg`` on the workload's layers at the shapes ``run.py --workload NAME
    --timing-only`` simulates (its default batch and sequence: the design point a user runs, not the
    evaluation batch), on the preset's iso-depth hardware, priced by :mod:`costmodels`, absolute and normalized
    to 8/8/-/- on the same layers; the lowering and the baseline are computed once per workload."""
    from costmodels import evaluate, normalized
    from mapping.capture import capture
    from mapping.lower import lower
    from mapping.network import simulate_timing

    from . import pipeline
    w = _as_workload(workload)
    if "lowered" not in w.extra:
        wl = pipeline.load_workload(w.name, timing_only=True)
        w.extra["lowered"] = lower(capture(wl.model, wl.inputs))
    low = w.extra["lowered"]
    dp = pipeline.datapath(str(cfg), hw)
    key = ("baseline_cost", hw)
    if key not in w.extra:
        base_run = simulate_timing(low, dp.baseline, dp.hw_ref)
        w.extra[key] = evaluate([r for _, r in base_run.layers], dp.hw_ref, dp.baseline)
    base = w.extra[key]
    run = simulate_timing(low, dp.cfg, dp.hw)
    cost = evaluate([r for _, r in run.layers], dp.hw, dp.cfg)
    n = normalized(cost, base)
    return {"fj_per_op": cost.fj_per_op, "energy_norm": n["energy"], "area_mm2": cost.area_mm2,
            "area_norm": n["area"], "perf_per_area_norm": n["perf_per_area"],
            "weight_bits_per_element": dp.cfg.weight_storage_bits, "act_bits_per_element": dp.cfg.act_storage_bits}


def table_formats(workload, configs=FORMAT_CONFIGS) -> pd.DataFrame:
    """VS-Quant beside the block formats of today (OCP MX, NVFP4) on one datapath: each config's accuracy (the
    workload's metrics, dynamic scales) next to its energy per op, area and perf/area from the cost model (on
    the workload's own layers, normalized to 8/8/-/-) and the bits it stores per weight and activation."""
    w = _as_workload(workload)
    recs = [{**_fp32(w), "family": "-"}]
    for cfg in configs:
        recs.append({**evaluate_config(w, cfg), "family": format_family(cfg), **design_cost(w, cfg)})
    df = pd.DataFrame(recs).set_index("config")
    cols = [c for c in ["family"] + _metric_names(w) + ["energy_norm", "perf_per_area_norm", "area_norm",
                                                        "fj_per_op", "weight_bits_per_element",
                                                        "act_bits_per_element", "seconds"] if c in df.columns]
    df = df[cols]
    df.attrs["long"] = df.reset_index()
    df.attrs["metric"] = w.metric
    return df


FAMILY_STYLE = {"VS-Quant": ("o", "tab:blue"), "MX": ("s", "tab:orange"), "NVFP4": ("^", "tab:green"),
                "mixed": ("D", "tab:purple")}


def plot_formats(tables: dict[str, pd.DataFrame], path) -> None:
    """Accuracy against energy per op and against perf/area (both normalized to 8/8/-/-), one row of panels per
    workload, the format families by marker: ``tables`` maps a workload name to its :func:`table_formats`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(tables), 2, figsize=(10, 3.6 * len(tables)), squeeze=False)
    for row, (name, df) in zip(axes, tables.items(), strict=True):
        metric = df.attrs.get("metric", "top1")
        d = df[df["family"] != "-"]
        for ax, x, xlabel in ((row[0], "energy_norm", "energy per op (x 8/8/-/-)"),
                              (row[1], "perf_per_area_norm", "perf / area (x 8/8/-/-)")):
            for fam, (marker, color) in FAMILY_STYLE.items():
                sel = d[d["family"] == fam]
                ax.scatter(sel[x], sel[metric], marker=marker, color=color, label=fam, s=40)
            for cfg, r in d.iterrows():
                ax.annotate(str(cfg), (r[x], r[metric]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(metric)
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


TABLES = ("calibration", "per-vector", "vector-size", "two-level", "variants", "clip", "findings", "formats")


def _build(w: PTQWorkload, table: str, quick: bool) -> pd.DataFrame:
    if table == "findings":
        return table_findings(w)
    if table == "formats":
        return table_formats(w, configs=("4/8/6/10", "mxfp4", "nvfp4") if quick else FORMAT_CONFIGS)
    if table == "calibration":
        return table_calibration(w, bits=(4, 8) if quick else (3, 4, 6, 8))
    if table == "per-vector":
        return table_per_vector(w, bits=(3, 4) if quick else (3, 4, 6, 8))
    if table == "vector-size":
        return table_vector_size(w, sizes=(1, 16, 64) if quick else (1, 2, 4, 8, 16, 32, 64))
    if table == "clip":
        return table_clip(w, configs=("4/8/6/10", "4/8/fp32/fp32") if quick else
                          ("4/8/6/10", "4/8/fp32/fp32", "3/8/6/10", "3/8/fp32/fp32"))
    if table == "variants":
        return table_variants(w, configs=("4/8/4/6", "4/8/6/10") if quick else ("4/8/4/6", "4/8/6/10", "6/8/4/6",
                                                                                  "8/8/6/10"))
    if quick:
        return table_two_level(w, weight_bits=(3, 4), act_bits=(8,), scales=("4/4", "6/10", "fp16/fp16"))
    act_bits = (4, 6, 8) if w.act_bits_rule == "U" else (6, 8)
    return table_two_level(w, act_bits=act_bits, scales=("4/8", "4/10", "6/8", "6/10", "fp16/fp16", "fp32/fp32")
                           if w.act_bits_rule != "U" else ("3/4", "4/4", "4/6", "6/4", "6/6", "fp16/fp16"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.ptq", description=__doc__.split("\n")[0])
    p.add_argument("--workload", choices=PTQ_WORKLOADS + ("all",), default="digits-cnn",
                   help="the model (all: every one in turn)")
    p.add_argument("--table", choices=TABLES + ("all",), default="all",
                   help="which of the paper's tables to reproduce (default all; findings: the headline comparison)")
    p.add_argument("--quick", action="store_true",
                   help="smaller grids (fewer bit widths, vector sizes and calibrations), for a first look")
    p.add_argument("--csv", metavar="DIR", help="write each table (wide) and its long form as CSV into DIR")
    p.add_argument("--plot", metavar="FILE",
                   help="with --table formats (or all): plot accuracy against energy per op and perf/area of the "
                        "format families, one row per workload (.png, .pdf or .svg)")
    p.add_argument("--store", metavar="FILE",
                   help="SQLite file that keeps every finished run (workload, evaluation size, config, "
                        "calibration, code version) and reuses it, so a killed study resumes where it stopped "
                        "(default with --csv: DIR/ptq.sqlite); a run of other code is never served")
    args = p.parse_args(argv)
    store_path = args.store or (str(pathlib.Path(args.csv) / "ptq.sqlite") if args.csv else None)
    import signal

    from .cli import PLOT_SUFFIXES, check_output_path, one_line, user_errors
    if args.plot:
        why = check_output_path(args.plot, "--plot", PLOT_SUFFIXES)
        if why is None and args.table not in ("formats", "all"):
            why = f"--plot draws the formats table; give --table formats (or all), not {args.table}"
        if why:
            print(f"python -m studies.ptq: error: {why}", file=sys.stderr)
            return 2
    plotted: dict[str, pd.DataFrame] = {}

    def stop(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)       # a second signal changes nothing while it stops
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for name in PTQ_WORKLOADS if args.workload == "all" else (args.workload,):
            _report(name, TABLES if args.table == "all" else (args.table,), args.quick, args.csv, store_path, plotted)
            if args.plot and plotted:
                plot_formats(plotted, args.plot)   # after each workload: a killed run keeps the finished panels
            if args.workload == "all":
                load_workload.cache_clear()        # one model in memory at a time (MPNet's graph is ~8 GB)
    except KeyboardInterrupt as e:
        kept = (f"every finished run is kept in {store_path}; run the same command again to resume" if store_path
                else "nothing was kept (give --store FILE or --csv DIR to keep finished runs)")
        print(f"python -m studies.ptq: stopped by {e or 'SIGINT'}: {kept}", file=sys.stderr)
        return 130
    except user_errors() as e:
        print(f"python -m studies.ptq: error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


def _report(name: str, tables, quick: bool, csv: str | None, store_path: str | None = None,
            built: dict | None = None) -> None:
    from .store import ResultStore
    w = load_workload(name)
    w.store = ResultStore(store_path) if store_path else None
    try:
        _print_tables(w, tables, quick, csv, built)
    finally:
        if w.store is not None:
            w.store.close()
            w.store = None


def _print_tables(w: PTQWorkload, tables, quick: bool, csv: str | None, built: dict | None = None) -> None:
    name = w.name
    metric = {"top1": "top-1 on the 360 held-out digits",
              "top1_agree": f"top-1 agreement with fp32 on {w.extra.get('images')} natural images, where the "
                            f"fp32 model's median top-1 probability is {w.extra.get('fp32_top1_prob', 0):.2f}",
              "mean_cos": f"mean cosine of sentence embeddings to fp32 ({w.extra.get('sentences')} sentences in "
                          f"{w.extra.get('pairs')} paraphrase pairs)"}[w.metric]
    for t in tables:
        t0 = time.perf_counter()
        df = _build(w, t, quick)
        dt = time.perf_counter() - t0
        if t == "formats" and built is not None:
            built[name] = df
        print(f"\n== {name}: {t} ({metric}; {dt:.1f} s)", flush=True)
        print(df.to_string(float_format=lambda v: f"{v:.4f}"))
        long = df.attrs["long"]
        if w.metric != "top1" and t not in ("findings", "formats"):
            cols = [c for c in ("bits", "method", "scheme", "V", "scales", "config", "clip", "calibration", "mean_cos",
                                "min_cos", "spearman", "retrieval_top1", "top1_agree", "top5_agree", "kl")
                    if c in long.columns]
            print(long[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)
        if csv:
            d = pathlib.Path(csv)
            d.mkdir(parents=True, exist_ok=True)
            df.to_csv(d / f"ptq_{name}_{t}.csv")
            long.to_csv(d / f"ptq_{name}_{t}_long.csv", index=False)


if __name__ == "__main__":
    sys.exit(main())
