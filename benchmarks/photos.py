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
