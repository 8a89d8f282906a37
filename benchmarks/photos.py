"""The shared natural photos as ImageNet model inputs, preprocessed with PIL and numpy the way
torchvision's evaluation transform does (`Resize(r) -> CenterCrop(c) -> ToTensor -> Normalize`),
split into a calibration half and a held-out half by a seeded shuffle.

`r = round(c * 256 / 224)`: the shorter side is resized (PIL bilinear, antialiased) to `r` and the
centre `c x c` square is cropped, so a 224 crop comes from a 256 resize and EfficientNet-Lite2's
260 crop from a 297 resize. Pixels become `x / 255`, then `(x - mean) / std` per channel with
ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); grayscale and palette
images are converted to RGB first (`Image.convert("RGB")`), EXIF orientation is ignored.

With `crops=10` each photo gives torchvision's `TenCrop`: the centre and the four corner crops
of the resized image and their horizontal mirrors, so 80 held-out photos give 800 inputs (the
ten views of one photo are correlated; the split is by photo, never by view, so no photo is in
both halves).

    from photos import photo_split
    calib, held_out = photo_split(size=260, seed=0, crops=10)
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
EXTENSIONS = (".jpg", ".jpeg", ".png")


def photos_dir() -> Path:
    env = os.environ.get("LOWBIT_SHARED")
    shared = Path(env) if env else ROOT / ".." / "shared"
    return (shared / "data" / "images").resolve()


def photo_files(folder: Path | None = None) -> list[Path]:
    folder = folder or photos_dir()
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)


def _normalize(img) -> np.ndarray:
    x = np.asarray(img, dtype=np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def preprocess(path: Path, size: int, crops: int = 1) -> np.ndarray:
    """`[crops, 3, size, size]` float32 for one photo (crops 1: centre; 10: TenCrop)."""
    from PIL import Image

    resize = int(round(size * 256 / 224))
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w <= h:
            nw, nh = resize, int(resize * h / w)
        else:
            nw, nh = int(resize * w / h), resize
        im = im.resize((nw, nh), Image.BILINEAR)
        boxes = [(int(round((nw - size) / 2)), int(round((nh - size) / 2)))]
        if crops == 10:
            boxes += [(0, 0), (nw - size, 0), (0, nh - size), (nw - size, nh - size)]
        elif crops != 1:
            raise ValueError("crops must be 1 or 10")
        views = [im.crop((x, y, x + size, y + size)) for x, y in boxes]
        if crops == 10:
            views += [v.transpose(Image.FLIP_LEFT_RIGHT) for v in views]
        return np.stack([_normalize(v) for v in views])


def photo_split(size: int, seed: int = 0, crops: int = 1, folder: Path | None = None):
    """(calibration, held-out) float32 arrays: the photos shuffled with `seed`, the first half
    (rounded down) for calibration, the rest held out, each photo as `crops` views."""
    files = photo_files(folder)
    random.Random(seed).shuffle(files)
    half = len(files) // 2

    def load(part):
        return np.concatenate([preprocess(p, size, crops) for p in part]).astype(np.float32)

    return load(files[:half]), load(files[half:])


def random_crops(count: int, size: int, seed: int, out: Path, folder: Path | None = None) -> Path:
    """`count` seeded random crops of the shared photos as a float32 `[count, 3, size, size]`
    `.npy` at `out`, for calibration sets larger than the 160 photos: each draws a photo, a
    square-ish box of 25-100% of its area (aspect 3/4 to 4/3, as torchvision's
    RandomResizedCrop), resizes it to `size` (PIL bilinear), mirrors it with probability 1/2 and
    normalizes it as `preprocess` does. Written through a memory map, a slice at a time, and
    reused when `out` exists."""
    from PIL import Image

    if out.exists():
        return out
    files = photo_files(folder)
    rng = np.random.default_rng(seed)
    partial = out.with_suffix(".partial.npy")
    x = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(count, 3, size, size))
    images = {}
    for i in range(count):
        path = files[int(rng.integers(len(files)))]
        if path not in images:
            with Image.open(path) as im:
                images[path] = im.convert("RGB")
        im = images[path]
        w, h = im.size
        area = w * h * rng.uniform(0.25, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(min(w, round(np.sqrt(area * aspect))))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        left = int(rng.integers(w - cw + 1))
        top = int(rng.integers(h - ch + 1))
        view = im.crop((left, top, left + cw, top + ch)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            view = view.transpose(Image.FLIP_LEFT_RIGHT)
        x[i] = _normalize(view)
    x.flush()
    del x
    partial.rename(out)
    return out
