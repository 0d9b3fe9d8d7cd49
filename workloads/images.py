"""Natural images for ImageNet classifiers (``mobilenetv2``), offline and free to use.

The images are read from files that scikit-image and scikit-learn ship inside their wheels (no
download: nothing here goes through ``pooch`` or the network); nothing is copied into this repo.
The packages are located with ``importlib.util.find_spec`` and the files opened with PIL.

Sources, in :data:`SOURCES` order (licences as stated by the shipping package: the docstrings
of ``skimage.data``'s loaders and ``sklearn/datasets/images/README.txt``):

Colour photographs

==========  ===================================  ===========  ==============================================
key         file (package)                       size (WxH)   origin, licence
==========  ===================================  ===========  ==============================================
chelsea     skimage/data/chelsea.png             451x300      Chelsea the cat; CC0 by the photographer
                                                              (Stefan van der Walt)
coffee      skimage/data/coffee.png              600x400      coffee cup, courtesy of Pikolo Espresso Bar;
                                                              CC0 by the photographer (Rachel Michetti)
rocket      skimage/data/rocket.jpg              640x427      launch of DSCOVR on Falcon 9; SpaceX photo
                                                              released into the public domain
astronaut   skimage/data/astronaut.png           512x512      Eileen Collins, NASA Great Images database;
                                                              no known copyright restrictions, public domain
china       sklearn/datasets/images/china.jpg    640x427      a Chinese pagoda; CC BY 2.0, "Some rights
                                                              reserved by danielbuechele" (flickr photo
                                                              6061409035), retrieved by Robert Layton
flower      sklearn/datasets/images/flower.jpg   640x427      a dahlia; CC BY 2.0, flickr photo 6056698931 by
                                                              vultilion (sklearn's README attributes it to
                                                              "danielbuechele" but links vultilion's page)
hubble      skimage/data/hubble_deep_field.jpg   1000x872     Hubble eXtreme Deep Field, HubbleSite (NASA);
                                                              public domain
retina      skimage/data/retina.jpg              1411x1411    fundus photograph of a normal left eye, Mikael
                                                              Häggström via Wikimedia Commons; CC0 1.0
ihc         skimage/data/ihc.png                 512x512      immunohistochemistry of colonic glands, CMMI;
                                                              no known copyright restrictions
==========  ===================================  ===========  ==============================================

Grayscale photographs, converted to 3 channels by replicating the grey level (R = G = B)

==========  ===================================  ===========  ==============================================
camera      skimage/data/camera.png              512x512      cameraman with a tripod; CC0 by the
                                                              photographer (Lav Varshney)
coins       skimage/data/coins.png               384x303      Greek coins from Pompeii, Brooklyn Museum
                                                              Collection; no known copyright restrictions
clock       skimage/data/clock_motion.png        400x300      motion-blurred wall clock; public domain
                                                              (photographer Stefan van der Walt)
==========  ===================================  ===========  ==============================================

The CC BY 2.0 images (china, flower) require attribution if redistributed; this repo does not
redistribute them (they stay in the scikit-learn installation), and the attribution is above.
Not used: the other ``skimage.data`` files shipped in the wheel that are synthetic or not
photographs (colorwheel, logo, chessboard, phantom, horse, text, page, lfw_subset, binary
blobs), micrographs/textures without ImageNet-like content (cell, microaneurysms, moon, brick,
grass, gravel), the Middlebury stereo pair (motorcycle, no licence stated by scikit-image), and
every image ``skimage.data`` would fetch over the network.

The evaluation set (:func:`natural_images`) is deterministic: for each variant in
:data:`VARIANTS` (outer loop) and each source in :data:`SOURCES` (inner loop), one 224x224
image. Variant 0 is the standard ImageNet evaluation view (resize the shorter side to 256,
centre crop 224: :func:`workloads.mobilenet.preprocess`), so ``natural_images(12)`` is the
uncropped sources; the others are square crops of a fraction of the shorter side at fixed
relative positions, resized to 224x224 (PIL bilinear, antialiased), some mirrored left-right.
12 sources x 8 variants = 96 images. All are normalized with the ImageNet mean/std (float32).
"""
from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass

import numpy as np
import torch

from .mobilenet import normalize, preprocess
from .pretrained import ModelNotAvailable, package_file

__all__ = ["ImagesNotAvailable", "Source", "SOURCES", "VARIANTS", "MAX_IMAGES", "source_path", "load_source",
           "natural_images", "source_images"]


class ImagesNotAvailable(ModelNotAvailable):
    """A package that ships the images (scikit-image, scikit-learn) is not installed."""


@dataclass(frozen=True)
class Source:
    key: str
    package: str        # import name of the package that ships the file
    pip_name: str
    relpath: str        # inside the package directory
    description: str
    licence: str
    grayscale: bool = False


_SK = ("skimage", "scikit-image")
_SL = ("sklearn", "scikit-learn")
SOURCES: tuple[Source, ...] = (
    Source("chelsea", *_SK, "data/chelsea.png", "Chelsea the cat (Stefan van der Walt)", "CC0"),
    Source("coffee", *_SK, "data/coffee.png", "coffee cup, Pikolo Espresso Bar (Rachel Michetti)", "CC0"),
    Source("rocket", *_SK, "data/rocket.jpg", "DSCOVR launch on Falcon 9 (SpaceX)", "public domain"),
    Source("astronaut", *_SK, "data/astronaut.png", "astronaut Eileen Collins (NASA)", "public domain"),
    Source("china", *_SL, "datasets/images/china.jpg", "Chinese pagoda (flickr: danielbuechele)", "CC BY 2.0"),
    Source("flower", *_SL, "datasets/images/flower.jpg", "dahlia (flickr: vultilion)", "CC BY 2.0"),
    Source("hubble", *_SK, "data/hubble_deep_field.jpg", "Hubble eXtreme Deep Field (NASA)", "public domain"),
    Source("retina", *_SK, "data/retina.jpg", "fundus photograph (Mikael Häggström)", "CC0 1.0"),
    Source("ihc", *_SK, "data/ihc.png", "immunohistochemistry, colonic glands (CMMI)",
           "no known copyright restrictions"),
    Source("camera", *_SK, "data/camera.png", "cameraman (Lav Varshney)", "CC0", grayscale=True),
    Source("coins", *_SK, "data/coins.png", "Greek coins from Pompeii (Brooklyn Museum)",
           "no known copyright restrictions", grayscale=True),
    Source("clock", *_SK, "data/clock_motion.png", "motion-blurred clock (Stefan van der Walt)", "public domain",
           grayscale=True),
)

# (fraction of the shorter side, centre row, centre column (relative), mirror); None = standard view
VARIANTS: tuple[tuple[float, float, float, bool] | None, ...] = (
    None,
    (0.60, 0.50, 0.50, False),
    (1.00, 0.50, 0.50, True),
    (0.50, 0.30, 0.30, False),
    (0.50, 0.70, 0.70, True),
    (0.75, 0.35, 0.65, False),
    (0.75, 0.65, 0.35, True),
    (0.35, 0.50, 0.50, False),
)
MAX_IMAGES = len(SOURCES) * len(VARIANTS)


def source_path(src: Source) -> pathlib.Path:
    """The file inside the installed package (the package is located, not imported)."""
    return package_file(
        src.package, src.relpath, error=ImagesNotAvailable,
        missing=f"image {src.key!r} is shipped by {src.pip_name}, which is not installed; "
                f"install it with `pip install {src.pip_name}`",
        reinstall=f"reinstall it with `pip install --force-reinstall {src.pip_name}` (image {src.key!r})")


@functools.cache
def _load(key: str) -> np.ndarray:
    from PIL import Image
    src = _by_key(key)
    with Image.open(source_path(src)) as im:
        a = np.asarray(im.convert("RGB"))   # grayscale: R = G = B
    a = a.copy()
    a.setflags(write=False)
    return a


def _by_key(key: str) -> Source:
    for s in SOURCES:
        if s.key == key:
            return s
    raise KeyError(f"unknown image {key!r}; known: {', '.join(s.key for s in SOURCES)}")


def load_source(key: str) -> np.ndarray:
    """A source image as a read-only uint8 (H, W, 3) array (grayscale replicated to 3 channels)."""
    return _load(key)


def _crop_view(a: np.ndarray, frac: float, cy: float, cx: float, flip: bool, size: int) -> torch.Tensor:
    from PIL import Image
    h, w = a.shape[:2]
    side = max(1, round(frac * min(h, w)))
    top = round(min(max(cy * h - side / 2, 0), h - side))
    left = round(min(max(cx * w - side / 2, 0), w - side))
    img = Image.fromarray(a[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return normalize(img)


def _describe(src: Source, variant) -> str:
    head = f"{src.key} ({src.relpath.split('/')[-1]}, {src.package}; {src.licence})"
    if variant is None:
        return f"{head}: resize 256 + centre crop 224"
    frac, cy, cx, flip = variant
    return (f"{head}: square crop {frac:.2f} of the shorter side centred at ({cy:.2f}, {cx:.2f}) -> 224"
            + (", mirrored" if flip else ""))


def natural_images(n: int = 64) -> tuple[torch.Tensor, list[str]]:
    """The first ``n`` images of the evaluation set: (float32 (n, 3, 224, 224) ImageNet-normalized,
    one description per image). Deterministic; ``n`` from 1 to :data:`MAX_IMAGES` (96)."""
    n = int(n)
    if not 1 <= n <= MAX_IMAGES:
        raise ValueError(f"n must be in [1, {MAX_IMAGES}] ({len(SOURCES)} sources x {len(VARIANTS)} views), got {n}")
    xs, desc = [], []
    for i in range(n):
        variant, src = VARIANTS[i // len(SOURCES)], SOURCES[i % len(SOURCES)]
        a = load_source(src.key)
        xs.append(preprocess(a) if variant is None else _crop_view(a, *variant, size=224))
        desc.append(_describe(src, variant))
    return torch.stack(xs), desc


def source_images() -> tuple[torch.Tensor, list[str]]:
    """The uncropped sources in the standard ImageNet view ((12, 3, 224, 224)) and their keys."""
    x, _ = natural_images(len(SOURCES))
    return x, [s.key for s in SOURCES]
