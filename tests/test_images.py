"""`images:` data specs: decoding (libjpeg-turbo, libpng) and preprocessing against PIL and
torchvision's evaluation transform written with PIL and numpy, to the bit; labels from class
folders and list files; the errors a bad folder or file gives.

The reference (`reference_row`) is torchvision's `Resize -> CenterCrop -> ToTensor -> Normalize`
on `Image.open(path).convert("RGB")`, spelled out: PIL's bilinear resize with torchvision's
output size, the centre box with Python's round, black padding when the crop is larger, then
`(x / 255 - mean) / std` in float32.
"""
from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import photos  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def identity_model(path: Path, shape) -> Path:
    """An Identity model with float input 'input' of `shape` (None: a symbolic batch)."""
    dims = ["N" if d is None else d for d in shape]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def reference_row(path, resize=None, crop=None, mean=(0, 0, 0), std=(1, 1, 1), layout="nchw", bgr=False):
    """torchvision's evaluation transform with PIL and numpy (resize: int shorter side or (h, w))."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    if resize is not None:
        w, h = im.size
        if isinstance(resize, tuple):
            nh, nw = resize
        elif w <= h:
            nw, nh = resize, int(resize * h / w)
        else:
            nw, nh = int(resize * w / h), resize
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    if crop is not None:
        ch, cw = crop
        h, w = a.shape[:2]
        if ch > h or cw > w:
            top, left = max((ch - h) // 2, 0), max((cw - w) // 2, 0)
            padded = np.zeros((max(h, ch), max(w, cw), 3), np.uint8)
            padded[top:top + h, left:left + w] = a
            a = padded
        h, w = a.shape[:2]
        t, l = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        a = a[t:t + ch, l:l + cw]
    if bgr:
        a = a[:, :, ::-1]
    x = (a.astype(np.float32) / np.float32(255) - np.array(mean, np.float32)) / np.array(std, np.float32)
    return x.transpose(2, 0, 1) if layout == "nchw" else x


def run_images(lowbit, tmp_path, model, spec, *flags):
    out = tmp_path / "out.npy"
    lowbit.ok("run", model, "--data", spec, "--save-outputs", out, "--quiet", *flags)
    return np.load(out)


def test_shared_photos_match_torchvision_transform_to_the_bit(lowbit, shared, tmp_path):
    """All 160 shared photos (JPEG and PNG, RGB and grayscale, many sizes) through the imagenet
    preset for a 260x260 model equal benchmarks/photos.py (PIL + numpy) exactly."""
    model = identity_model(tmp_path / "id.onnx", [None, 3, 260, 260])
    out = run_images(lowbit, tmp_path, model, f"images:{shared / 'data' / 'images'},sorted")
    files = photos.photo_files(shared / "data" / "images")
    ref = np.stack([photos.preprocess(p, 260)[0] for p in files])
    assert out.shape == ref.shape == (160, 3, 260, 260)
    bad = [f.name for f, a, b in zip(files, out, ref) if not np.array_equal(a, b)]
    assert not bad, f"{len(bad)} photos differ from PIL/torchvision: {bad[:5]}"


@pytest.mark.parametrize("flags,kw,exact", [
    (["--layout", "nhwc", "--channel-order", "bgr"], dict(resize=256, crop=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, layout="nhwc", bgr=True), True),
    (["--preprocess", "none", "--resize", "300x180"], dict(resize=(300, 180), crop=(224, 224)), False),
    (["--preprocess", "none"], dict(crop=(224, 224)), True),  # small photos: black padding
    (["--resize", "100", "--mean", "0.5,0.25,0", "--std", "0.5,2,1"], dict(resize=100, crop=(224, 224), mean=(0.5, 0.25, 0), std=(0.5, 2, 1)), True),
])
def test_preprocessing_options_match_reference(lowbit, shared, tmp_path, flags, kw, exact):
    """Layout, channel order, exact and shorter-side resize, padding crops, mean and std. An
    HxW resize whose two scales differ is exact against Pillow up to 12; Pillow 13 resizes
    vertically first when the height shrinks much more than the width, which moves some pixels
    by one level (1/255)."""
    shape = [None, 224, 224, 3] if kw.get("layout") == "nhwc" else [None, 3, 224, 224]
    model = identity_model(tmp_path / "id.onnx", shape)
    out = run_images(lowbit, tmp_path, model, f"images:{shared / 'data' / 'images'}:24,sorted", *flags)
    files = photos.photo_files(shared / "data" / "images")[:24]
    ref = np.stack([reference_row(p, **kw) for p in files])
    assert out.shape == ref.shape
    if exact:
        np.testing.assert_array_equal(out, ref)
    else:
        assert np.abs(out - ref).max() <= 1 / 255 + 1e-6
        assert np.mean(out == ref) > 0.98


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png16_rgb(path: Path, a: np.ndarray):
    """A 16-bit RGB PNG written by hand (PIL cannot write one)."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """Every colour kind PIL converts to RGB: gray, CMYK, palette (with transparency), RGBA, LA,
    1-bit, 16-bit gray and RGB, progressive JPEG; sizes below and above the crop."""
    d = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)).resize((166, 122), Image.BILINEAR)
    base.save(d / "a_rgb.jpg", quality=85)
    base.save(d / "b_progressive.JPG", quality=70, progressive=True)
    base.convert("L").save(d / "c_gray.jpg")
    base.convert("CMYK").save(d / "d_cmyk.jpg")
    base.convert("P", palette=Image.ADAPTIVE, colors=17).save(d / "e_palette.png", transparency=3)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (122, 166), dtype=np.uint8)))
    rgba.save(d / "f_rgba.png")
    base.convert("LA").save(d / "g_la.png")
    base.convert("1").save(d / "h_bits.png")
    Image.fromarray((rng.integers(0, 600, (40, 30))).astype(np.uint16)).save(d / "i_gray16.png")
    write_png16_rgb(d / "j_rgb16.png", rng.integers(0, 65536, (50, 70, 3)))
    base.save(d / "k_rgb.png")
    base.resize((30, 20)).save(d / "l_tiny.jpg")
    return d


def test_every_colour_kind_converts_as_pil(lowbit, odd_images, tmp_path):
    model = identity_model(tmp_path / "id.onnx", [None, 3, 64, 64])
    out = run_images(lowbit, tmp_path, model, f"images:{odd_images},sorted")
    files = sorted(p for p in odd_images.iterdir())
    assert len(out) == len(files) == 12
    for f, row in zip(files, out):
        ref = reference_row(f, resize=73, crop=(64, 64), mean=IMAGENET_MEAN, std=IMAGENET_STD)
        np.testing.assert_array_equal(row, ref, err_msg=f.name)


def channel_classifier(path: Path) -> Path:
    """Logits = the mean of each input channel: argmax is the dominant colour channel."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [0, 3])
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]), helper.make_node("Reshape", ["p", "shape"], ["logits"])]
    g = helper.make_graph(nodes, "g", [x], [y], [shape])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_class_folders_and_list_file_give_labels(lowbit, tmp_path):
    """Class folders sorted by name (blue 0, green 1, red 2, as ImageFolder) and a list file;
    with BGR order the dominant-channel classifier is right on every image, so top-1 is 100%;
    a limit draws from every class (seeded shuffle)."""
    root = tmp_path / "folders"
    colours = {"blue": (20, 30, 220), "green": (10, 200, 40), "red": (230, 20, 10)}
    lines = []
    for name, rgb in colours.items():
        (root / name / "sub").mkdir(parents=True)
        for i in range(4):
            tint = np.clip(np.array(rgb) + np.random.default_rng(i).integers(-9, 9, 3), 0, 255)
            path = root / name / ("sub" if i % 2 else "") / f"{i}.png"
            Image.new("RGB", (40 + i, 36), tuple(int(v) for v in tint)).save(path)
            lines.append(f"{path.relative_to(root)} {sorted(colours).index(name)}")
    (root / "stray.png").write_bytes((root / "red" / "0.png").read_bytes())  # no class: left out
    model = channel_classifier(tmp_path / "cls.onnx")
    flags = ["--preprocess", "none", "--resize", "32x32", "--channel-order", "bgr"]
    r = lowbit.run_json(model, f"images:{root},labels=folders", tmp_path, *flags)
    assert r["samples"] == 12 and r["top1"] == 100.0
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines) + "\n\n")
    r = lowbit.run_json(model, f"images:{root},labels={listing}", tmp_path, *flags)
    assert r["samples"] == 12 and r["top1"] == 100.0
    # Sorted order, first 4: all blue. Seeded order, first 6: more than one class.
    out = tmp_path / "o.npy"
    lowbit.ok("run", model, "--data", f"images:{root}:6,labels=folders", "--save-outputs", out, "--quiet", *flags)
    assert len(set(np.load(out).argmax(1))) > 1


def huge_png() -> bytes:
    """A PNG whose header claims 60000 x 60000 pixels (3.6 G) with one row of data."""
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 180001))
            + png_chunk(b"IEND", b""))


def huge_jpeg(small: bytes) -> bytes:
    """`small` with its frame header (SOF0) claiming 65000 x 65000 pixels."""
    at = small.index(b"\xff\xc0")
    return small[:at + 5] + struct.pack(">HH", 65000, 65000) + small[at + 9:]


@pytest.mark.parametrize("make,spec_suffix,message", [
    (lambda d: None, "", "no .jpg, .jpeg or .png files"),
    (lambda d: (d / "x.jpg").write_bytes(b"GIF89a not really"), "", "not a JPEG or PNG file"),
    (lambda d: (d / "x.jpg").write_bytes(Path(d / "..").joinpath("t.jpg").read_bytes()[:-900]), "", "truncated"),
    (lambda d: (d / "x.png").write_bytes(Path(d / "..").joinpath("t.png").read_bytes()[:100]), "", "not a readable PNG"),
    (lambda d: (d / "x.png").write_bytes(huge_png()), "", "decompression bomb"),
    (lambda d: (d / "x.jpg").write_bytes(huge_jpeg(Path(d / "..").joinpath("t.jpg").read_bytes())), "", "decompression bomb"),
    (lambda d: (d / "a").mkdir(), ",labels=folders", "holds no .jpg"),
    (lambda d: (d / "l.txt").write_text("nothere.jpg 1\n"), ",labels={d}/l.txt", "no such file"),
    (lambda d: (d / "l.txt").write_text("t.jpg cat\n"), ",labels={d}/l.txt", "expected 'path label'"),
])
def test_bad_folders_and_files_fail_with_a_message(lowbit, tmp_path, make, spec_suffix, message):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    base.save(tmp_path / "t.jpg")
    base.save(tmp_path / "t.png")
    d = tmp_path / "data"
    d.mkdir()
    make(d)
    model = identity_model(tmp_path / "id.onnx", [None, 3, 32, 32])
    proc = lowbit("run", model, "--data", f"images:{d}" + spec_suffix.format(d=d), "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "error:" in proc.stderr and message in proc.stderr, proc.stderr


def test_missing_folder_and_wrong_model_input(lowbit, shared, tmp_path):
    proc = lowbit("run", identity_model(tmp_path / "id.onnx", [None, 3, 32, 32]), "--data", f"images:{tmp_path}/nope")
    assert proc.returncode == 1 and "no such folder" in proc.stderr
    gray = identity_model(tmp_path / "gray.onnx", [None, 1, 28, 28])
    proc = lowbit("run", gray, "--data", f"images:{shared / 'data' / 'images'}:2")
    assert proc.returncode == 1 and "model input 'input' has 1 channels" in proc.stderr, proc.stderr


def test_ptq_from_a_folder_writes_the_same_file_as_from_arrays(lowbit, shared, tmp_path):
    """EfficientNet-Lite2 calibrated on 16 photos read from the folder (imagenet preset) and on
    the same photos preprocessed by PIL and numpy into a .npy: the written files are identical."""
    folder = tmp_path / "photos"
    folder.mkdir()
    files = photos.photo_files(shared / "data" / "images")[::10]
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    np.save(tmp_path / "calib.npy", np.stack([photos.preprocess(f, 260)[0] for f in files]))
    model = shared / "models" / "efficientnet_lite2.onnx"
    common = ["--range-setting-only", "--per-channel", "--quiet"]
    lowbit.ok("ptq", model, "--calib", f"images:{folder},sorted", "-o", tmp_path / "a.onnx", *common)
    lowbit.ok("ptq", model, "--calib", f"npy:{tmp_path / 'calib.npy'}", "-o", tmp_path / "b.onnx", *common)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_skip_bad_inputs_leaves_them_out_with_a_warning_and_a_count(lowbit, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    good = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    for i in range(3):
        good.save(d / f"good{i}.jpg")
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (d / "cut.jpg").write_bytes((d / "good0.jpg").read_bytes()[:-200])
    model = identity_model(tmp_path / "id.onnx", [None, 3, 32, 32])
    proc = lowbit("run", model, "--data", f"images:{d}", "--quiet")
    assert proc.returncode == 1 and "error:" in proc.stderr
    r = tmp_path / "r.json"
    proc = lowbit.ok("run", model, "--data", f"images:{d}", "--skip-bad-inputs", "--json", r, "--quiet")
    assert "left out 2 unreadable inputs" in proc.stderr and "bad.png" in proc.stderr and "cut.jpg" in proc.stderr
    summary = json.loads(r.read_text())
    assert summary["samples"] == 3 and summary["skipped"] == 2


def test_config_file_data_object_sets_the_preprocessing(lowbit, shared, tmp_path):
    """A `data` object in ptq's --config sets the preprocessing; a bad one is refused by name."""
    folder = tmp_path / "p"
    folder.mkdir()
    for f in photos.photo_files(shared / "data" / "images")[:4]:
        (folder / f.name).write_bytes(f.read_bytes())
    model = channel_classifier(tmp_path / "cls.onnx")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"data": {"preprocess": "none", "resize": "32x32", "channel_order": "bgr"}}))
    lowbit.ok("ptq", model, "--calib", f"images:{folder}", "--config", config, "--range-setting-only",
              "-o", tmp_path / "q.onnx", "--quiet")
    config.write_text(json.dumps({"data": {"crop": 64}}))  # read: the model takes 32x32
    proc = lowbit("ptq", model, "--calib", f"images:{folder}", "--config", config, "-o", tmp_path / "q.onnx")
    assert proc.returncode != 0 and "the preprocessing makes 64" in proc.stderr, proc.stderr
    config.write_text(json.dumps({"data": {"resize": "big"}}))
    proc = lowbit("ptq", model, "--calib", f"images:{folder}", "--config", config, "-o", tmp_path / "q.onnx")
    assert proc.returncode != 0 and "data object" in proc.stderr, proc.stderr


def test_train_reads_an_image_folder_a_batch_at_a_time(lowbit, tmp_path):
    """`lowbit train` on class folders: rows are decoded for each shuffled batch (not loaded
    whole), and a small conv net learns the dominant colour."""
    from onnx import numpy_helper
    root = tmp_path / "folders"
    for k, rgb in enumerate([(20, 30, 220), (10, 200, 40), (230, 20, 10)]):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(8):
            tint = np.clip(np.array(rgb) + np.random.default_rng(10 * k + i).integers(-20, 20, 3), 0, 255)
            Image.new("RGB", (40, 36), tuple(int(v) for v in tint)).save(root / f"c{k}" / f"{i}.png")
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b"),
             numpy_helper.from_array((rng.standard_normal((3, 4)) * 0.3).astype(np.float32), "fw"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = tmp_path / "small.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), model)
    out = tmp_path / "trained.onnx"
    lowbit.ok("train", model, "--train", f"images:{root},labels=folders", "--epochs", "30", "--batch-size", "8",
              "--optimizer", "adam", "--lr", "0.05", "--preprocess", "none", "--resize", "32x32", "-o", out, "--quiet")
    r = lowbit.run_json(out, f"images:{root},labels=folders", tmp_path, "--preprocess", "none", "--resize", "32x32")
    assert r["samples"] == 24 and r["top1"] >= 90.0, r
