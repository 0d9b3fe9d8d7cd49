"""Quantization-aware fine-tuning through the fake-quant path (paper Sec. 7, Table 9 style).

The model's MAC layers (linear, conv and the attention matmuls) are made to compute exactly
what the hardware computes (:func:`quantize_model`: forward = the quantized datapath of
:mod:`vsquant.fakequant`, bit for bit the reference's, backward = straight-through estimator), then
fine-tuned; the metric is reported after
every epoch (epoch 0 = post-training quantization, no fine-tuning). Deterministic for a seed.

- :func:`quantize_model` swaps a model's ``nn.Linear``/``nn.Conv2d`` for fake-quant modules and runs its
  forward inside :class:`QuantMatmulMode`, which puts every product of two activations on
  :func:`vsquant.fakequant.fake_matmul`; with autograd, the backward pass treats the quantizers as
  identity (straight-through estimator), so a model can be fine-tuned through them, at every config.
- :func:`finetune_digits`: ``digits-cnn`` on the training digits (cross-entropy), held-out top-1.
- :func:`finetune_embeddings`: ``minilm`` (or ``mpnet-base``) fine-tuned to match the fp32 model's
  sentence embeddings (loss 1 - cosine, on the 58 sentences of ``sentences.txt``), scored on the
  320 sentences of the paraphrase pairs as :mod:`studies.ptq` scores them (mean/min cosine to fp32,
  Spearman of pairwise similarities, paraphrase retrieval top-1).

OCTAV with magnitude-aware differentiation (Sakr, Dai, Venkatesan et al., "Optimal Clipping and
Magnitude-aware Differentiation for Improved Quantization-aware Training", ICML 2022), as options:

- ``clip="octav"`` (``--clip octav``): the weights' clipping scalars are OCTAV's MSE-optimal fixed points,
  recomputed from the current weights at every step (the paper's "on the fly, for every tensor, at every
  iteration"): per vector (``,clip=octav`` of the config) for per-vector weight scales, per output channel
  (``calibrate_amax(method="octav")``) for ``-`` weights. Activations keep their dynamic max scales (nothing
  of them is clipped).
- ``grad="mad"`` (``--grad mad``): magnitude-aware differentiation of the clipped weights instead of the
  straight-through estimator: with s the clip of a weight's vector (or channel), dq(w)/dw = 1 for |w| <= s and
  s/|w| for |w| > s (the paper's MAD, Sec. 4: the clipped value s sign(w) = w (s/|w|) differentiated as a
  magnitude-scaled identity, not as the zero derivative of a constant nor the one of STE). With max-scaled
  weights nothing is clipped and MAD is STE, so it needs ``clip="octav"``.

    python -m studies.qat --arch 3/3U/-/- --arch 3/3U/4/6 --epochs 3
    python -m studies.qat --workload minilm --arch 4/8/-/- --arch 4/8/6/10 --epochs 3
    python -m studies.qat --arch 3/3U/4/6 --clip octav --grad mad --epochs 3
"""
from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mapping.interpret import attention
from vsquant import QuantConfig, calibrate_amax
from vsquant.fakequant import (
    _octav_vector_clips,
    fake_conv2d,
    fake_linear,
    fake_matmul,
    quantized_conv_weight,
    quantized_weight,
)
from workloads.digits import load_digits_cnn, load_digits_split
from workloads.metrics import top1

# --- modules and a torch-function mode with a straight-through estimator (for fine-tuning) -------

_INTERNAL = [0]   # > 0 while a fake-quant layer computes: its own matmuls are not intercepted


class _internal:
    def __enter__(self):
        _INTERNAL[0] += 1

    def __exit__(self, *exc):
        _INTERNAL[0] -= 1


GRADS = ("ste", "mad")     # straight-through estimator; OCTAV's magnitude-aware differentiation
CLIPS = ("max", "octav")   # the weights' clipping scalars: the max (nothing clipped) or OCTAV's, every step


class _STE(torch.autograd.Function):
    """Forward: the exact quantized output; backward: the float op's gradients (STE), the weight's times
    ``mad`` (the magnitude-aware derivative of each weight's quantizer) where given."""

    @staticmethod
    def forward(ctx, x, w, y_q, fwd_float, mad=None):
        ctx.save_for_backward(x, w)
        ctx.fwd_float = fwd_float
        ctx.mad = mad
        return y_q

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        with torch.enable_grad():
            xd, wd = x.detach().requires_grad_(), w.detach().requires_grad_()
            y = ctx.fwd_float(xd, wd)
            gx, gw = torch.autograd.grad(y, (xd, wd), g, allow_unused=True)
        if ctx.mad is not None and gw is not None:
            gw = gw * ctx.mad.to(gw.dtype)
        return gx, gw, None, None, None


def magnitude_aware(x: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """OCTAV's magnitude-aware derivative dq(x)/dx of a quantizer clipping at ``clip`` (broadcast against x):
    1 inside the range (|x| <= clip, the straight-through estimator's), clip / |x| beyond it (Sakr et al.,
    ICML 2022, Sec. 4)."""
    a = x.abs()
    c = torch.as_tensor(clip, dtype=a.dtype).expand_as(a)
    return torch.where(a > c, c / torch.where(a > c, a, torch.ones_like(a)), torch.ones_like(a))


def weight_clips(w: torch.Tensor, cfg: QuantConfig, clip: str) -> torch.Tensor | None:
    """The OCTAV clip of every weight (broadcast to ``w``'s shape: its vector's, or its output channel's with
    ``-`` weight scales) at ``clip="octav"``, from the current weights; None at ``clip="max"`` (nothing is
    clipped). A conv weight (K, Cg, R, S) has its vectors along the channels of each kernel position, zero-padded
    to whole vectors, as :func:`vsquant.fakequant.quantized_conv_weight`."""
    if clip == "max":
        return None
    wd = w.detach().double()
    K = wd.shape[0]
    if cfg.weight_scale.kind == "coarse":
        amax = calibrate_amax(wd.reshape(K, -1).numpy(), "octav", bits=cfg.weight_bits, channel_axis=0)
        return torch.from_numpy(amax).reshape((K,) + (1,) * (wd.dim() - 1)).expand_as(wd)
    V = cfg.vector_size
    if wd.dim() == 2:
        c = _octav_vector_clips(wd, cfg.weight_bits, V, False)
        return torch.repeat_interleave(c, V, dim=1)[:, :wd.shape[1]]
    _, Cg, R, S = wd.shape
    wp = F.pad(wd.permute(0, 2, 3, 1), (0, -Cg % V))
    c = _octav_vector_clips(wp.reshape(K, -1), cfg.weight_bits, V, False)
    return torch.repeat_interleave(c, V, dim=1).reshape(K, R, S, -1)[..., :Cg].permute(0, 3, 1, 2)


def _octav_weight(w: torch.Tensor, cfg: QuantConfig, clip: str, conv: bool):
    """The quantized weight where ``-`` weights take per-channel OCTAV clips (else None: the layer quantizes
    by its config, ``,clip=octav`` included)."""
    if clip != "octav" or cfg.weight_scale.kind != "coarse":
        return None
    wd = w.detach().double()
    amax = calibrate_amax(wd.reshape(wd.shape[0], -1).numpy(), "octav", bits=cfg.weight_bits, channel_axis=0)
    return (quantized_conv_weight if conv else quantized_weight)(wd, cfg, amax)


class _QuantModule(nn.Module):
    cfg: QuantConfig
    clip: str
    grad: str
    weight: nn.Parameter

    def _mad(self) -> torch.Tensor | None:
        if self.grad != "mad":
            return None
        c = weight_clips(self.weight, self.cfg, self.clip)
        return None if c is None else magnitude_aware(self.weight.detach().double(), c)


class QuantLinear(_QuantModule):
    def __init__(self, linear: nn.Linear, cfg: QuantConfig, clip: str = "max", grad: str = "ste"):
        super().__init__()
        self.weight, self.bias, self.cfg, self.clip, self.grad = linear.weight, linear.bias, cfg, clip, grad

    def forward(self, x):
        with torch.no_grad(), _internal():
            wq = _octav_weight(self.weight, self.cfg, self.clip, conv=False)
            y_q = fake_linear(x, self.weight, self.bias, self.cfg, wq)
            mad = self._mad()
        b = None if self.bias is None else self.bias.double()
        return _STE.apply(x.double(), self.weight, y_q, lambda xx, ww: F.linear(xx, ww.double(), b), mad)


class QuantConv2d(_QuantModule):
    def __init__(self, conv: nn.Conv2d, cfg: QuantConfig, clip: str = "max", grad: str = "ste"):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"conv padding {conv.padding!r}/{conv.padding_mode!r}: only explicit zero padding")
        self.conv, self.cfg, self.clip, self.grad = conv, cfg, clip, grad
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x):
        c = self.conv
        with torch.no_grad(), _internal():
            wq = _octav_weight(self.weight, self.cfg, self.clip, conv=True)
            y_q = fake_conv2d(x, self.weight, self.bias, self.cfg, c.stride, c.padding, c.dilation, c.groups, wq)
            mad = self._mad()
        b = None if self.bias is None else self.bias.double()
        return _STE.apply(x.double(), self.weight, y_q, lambda xx, ww: F.conv2d(
            xx, ww.double(), b, c.stride, c.padding, c.dilation, c.groups), mad)


def _ste_matmul(a, b, cfg):
    with torch.no_grad(), _internal():
        y_q = fake_matmul(a, b, cfg)
    return _STE.apply(a.double(), b.double(), y_q, torch.matmul)


_MATMULS = {torch.matmul, torch.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.bmm}


class QuantMatmulMode(TorchFunctionMode):
    """Within this mode, every product of two activations (``torch.matmul``/``bmm``/``@``, attention's
    QK^T and AV) and every ``F.scaled_dot_product_attention`` runs on :func:`fake_matmul` with an STE,
    as :mod:`mapping.lower` puts them on the vector MAC units. A product with a parameter operand
    raises: the mapper would treat it as a linear layer, which the module swap does not cover."""

    def __init__(self, cfg: QuantConfig):
        super().__init__()
        self.cfg = cfg

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _INTERNAL[0]:
            return func(*args, **kwargs)
        if func in _MATMULS:
            a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2"))
            if isinstance(a, nn.Parameter) or isinstance(b, nn.Parameter):
                raise ValueError("fake-quant path: a matmul with a parameter operand (a linear layer written as "
                                 "x @ W) is not supported; use nn.Linear or the reference interpreter")
            return _ste_matmul(a, b, self.cfg)
        if func is F.scaled_dot_product_attention:
            g = lambda i, n, d=None: args[i] if len(args) > i else kwargs.get(n, d)  # noqa: E731
            if g(4, "dropout_p", 0.0) or kwargs.get("enable_gqa"):
                raise ValueError("fake-quant attention: dropout and grouped-query attention are not supported")
            return attention(g(0, "query").double(), g(1, "key").double(), g(2, "value").double(),
                             g(3, "attn_mask"), g(5, "is_causal", False), kwargs.get("scale"),
                             lambda x, y: _ste_matmul(x, y, self.cfg))
        return func(*args, **kwargs)


def _swap(model: nn.Module, cfg: QuantConfig, clip: str, grad: str) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, QuantLinear(child, cfg, clip, grad))
        elif isinstance(child, nn.Conv2d):
            setattr(model, name, QuantConv2d(child, cfg, clip, grad))
        else:
            _swap(child, cfg, clip, grad)


def qat_config(cfg: QuantConfig | str, clip: str = "max", grad: str = "ste") -> tuple[QuantConfig, str]:
    """(the config, the weights' clip) of a QAT run: ``clip="octav"`` puts ``,clip=octav`` on per-vector weight
    scales and keeps per-channel OCTAV clips for ``-`` weights; ``grad`` checked against :data:`GRADS`."""
    cfg = QuantConfig.parse(cfg)
    if clip not in CLIPS:
        raise ValueError(f"clip {clip!r} is not a QAT clip; allowed: {', '.join(CLIPS)}")
    if grad not in GRADS:
        raise ValueError(f"grad {grad!r} is not a QAT gradient estimator; allowed: {', '.join(GRADS)} "
                         "(straight-through, or OCTAV's magnitude-aware differentiation)")
    if cfg.weight_clip == "octav":
        clip = "octav"
    if clip == "octav" and cfg.weight_scale.kind in ("int", "fp"):
        cfg = cfg.with_(weight_clip="octav")
    elif clip == "octav" and cfg.weight_scale.kind != "coarse":
        raise ValueError(f"clip=octav: {cfg.weight_format.name} weights have block scales of their format's own; "
                         "OCTAV clips '-', integer and fp per-vector weight scales")
    if grad == "mad" and clip != "octav":
        raise ValueError("grad='mad' scales the gradient of clipped weights, and max-scaled weights clip nothing "
                         "(MAD would be STE): use clip='octav' with it")
    return cfg, clip


def quantize_model(model: nn.Module, cfg: QuantConfig | str, *, clip: str = "max", grad: str = "ste") -> nn.Module:
    """Make ``model`` (in place) compute what the accelerator computes; returns it.

    Every ``nn.Linear`` and ``nn.Conv2d`` becomes its fake-quant module, and every call of the
    model runs inside :class:`QuantMatmulMode`, so products of two activations (attention) are
    quantized too. The model's other ops run in float64 (``model.double()``). ``clip="octav"``: OCTAV clips of
    the weights, recomputed every call; ``grad="mad"``: their magnitude-aware derivative in the backward pass
    (module docstring)."""
    cfg, clip = qat_config(cfg, clip, grad)
    if getattr(model, "_vsquant_cfg", None) is not None:
        raise ValueError(f"model is already quantized at {model._vsquant_cfg}")
    _swap(model, cfg, clip, grad)
    mode = QuantMatmulMode(cfg)

    def enter(module, args):
        mode.__enter__()

    def leave(module, args, output):
        mode.__exit__(None, None, None)

    model.register_forward_pre_hook(enter)
    model.register_forward_hook(leave, always_call=True)
    model._vsquant_cfg = cfg
    return model


# --- fine-tuning ---------------------------------------------------------------------------------

def _top1(model, x, y) -> float:
    with torch.no_grad():
        return top1(model(x), y)


def finetune_digits(cfg: str, epochs: int = 3, lr: float = 1e-4, batch: int = 64, seed: int = 0, *,
                    clip: str = "max", grad: str = "ste") -> list[float]:
    """Held-out top-1 after 0..epochs epochs of fine-tuning at ``cfg`` (STE, or ``clip``/``grad`` as
    :func:`quantize_model`)."""
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = load_digits_split()
    model = quantize_model(copy.deepcopy(load_digits_cnn()).double(), cfg, clip=clip, grad=grad)
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
                        seed: int = 0, *, clip: str = "max", grad: str = "ste") -> list[dict]:
    """Embedding fidelity on the paraphrase pairs after 0..epochs epochs of fine-tuning at ``cfg`` (STE, or
    ``clip``/``grad`` as :func:`quantize_model`)."""
    from workloads.metrics import embedding_fidelity
    from workloads.pretrained import mean_pool

    from .ptq import SENTENCE_MODELS, load_sentence_model, sentence_batches
    if workload not in SENTENCE_MODELS:
        raise ValueError(f"finetune_embeddings supports {', '.join(SENTENCE_MODELS)}; got {workload!r}")
    torch.manual_seed(seed)
    model, tokenizer = load_sentence_model(workload)
    train, evals, _ = sentence_batches(tokenizer)   # fine-tuned on the calibration sentences, scored on the pairs
    with torch.no_grad():   # the fp32 model's embeddings: the targets and the reference
        target = mean_pool(model(**train).last_hidden_state.double(), train["attention_mask"])
        ref = mean_pool(model(**evals).last_hidden_state.double(), evals["attention_mask"]).numpy()
    # eval mode: no dropout while fine-tuning
    qmodel = quantize_model(copy.deepcopy(model).double(), cfg, clip=clip, grad=grad)

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
    ap.add_argument("--clip", choices=CLIPS, default="max",
                    help="the weights' clipping scalars: max (default) or OCTAV's, recomputed every step")
    ap.add_argument("--grad", choices=GRADS, default="ste",
                    help="gradient of the weight quantizers: ste (default) or mad (magnitude-aware, with --clip octav)")
    args = ap.parse_args(argv)
    for a in args.arch or []:
        try:
            qat_config(a, args.clip, args.grad)
        except ValueError as e:
            ap.error(str(e))
    how = "" if args.clip == "max" and args.grad == "ste" else f" (clip {args.clip}, grad {args.grad})"
    if args.workload == "digits-cnn":
        archs = args.arch or ["3/3U/-/-", "3/3U/4/6"]
        _, _, xte, yte = load_digits_split()
        fp32 = _top1(load_digits_cnn(), torch.from_numpy(xte), yte)
        print(f"digits-cnn held-out top-1, fp32 {fp32:.4f}; epoch 0 = post-training quantization{how}")
        print("arch".ljust(12) + "".join(f"epoch {e:<3}" for e in range(args.epochs + 1)))
        for a in archs:
            h = finetune_digits(a, args.epochs, args.lr or 1e-4, clip=args.clip, grad=args.grad)
            print(a.ljust(12) + "".join(f"{v:<9.4f}" for v in h), flush=True)
        return 0
    archs = args.arch or ["4/8/-/-", "4/8/6/10"]
    print(f"{args.workload}: sentence-embedding fidelity to fp32 on the paraphrase pairs; "
          f"epoch 0 = post-training quantization{how}")
    for a in archs:
        h = finetune_embeddings(a, args.workload, args.epochs, args.lr or 2e-5, clip=args.clip, grad=args.grad)
        for e, r in enumerate(h):
            print(f"{a:<12} epoch {e}  " + "  ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
