"""`text:` data specs: lines tokenized by lowbit's own reader of Hugging Face `tokenizer.json`
files, against the `tokenizers` package (WordPiece of the MiniLM model; a byte-level BPE trained
here with `tokenizers`' own trainer, as no BPE tokenizer file ships offline), and the errors a bad
file or line gives."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

try:
    import tokenizers as hf
except ImportError:  # pragma: no cover
    hf = None

FIELDS = ("input_ids", "attention_mask", "token_type_ids")


def require_tokenizers():
    if hf is None:
        pytest.fail("the Python package 'tokenizers' is missing (make deps-python installs it)", pytrace=False)


def echo_model(path: Path, names=FIELDS, length="L", dtype=TensorProto.INT64) -> Path:
    """Each token input copied to an output of the same name with '_out'."""
    inputs = [helper.make_tensor_value_info(n, dtype, ["N", length]) for n in names]
    outputs = [helper.make_tensor_value_info(n + "_out", dtype, ["N", length]) for n in names]
    nodes = [helper.make_node("Identity", [n], [n + "_out"]) for n in names]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", inputs, outputs),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def lowbit_tokens(lowbit, tmp_path, text_file, tokenizer, max_length, names=FIELDS, length="L"):
    model = echo_model(tmp_path / "echo.onnx", names, length)
    out = tmp_path / "tokens.npz"
    lowbit.ok("run", model, "--data", f"text:{text_file}", "--tokenizer", tokenizer, "--max-length", str(max_length),
              "--save-outputs", out, "--quiet")
    z = np.load(out)
    return {n: z[n + "_out"] for n in names}


def hf_tokens(tokenizer_file, lines, max_length):
    tok = hf.Tokenizer.from_file(str(tokenizer_file))
    tok.enable_truncation(max_length)
    pad_id = tok.token_to_id("[PAD]")
    if pad_id is None:
        pad_id = tok.token_to_id("<pad>") or 0
    tok.enable_padding(length=max_length, pad_id=pad_id)
    enc = tok.encode_batch(lines)
    return {"input_ids": np.array([e.ids for e in enc]), "attention_mask": np.array([e.attention_mask for e in enc]),
            "token_type_ids": np.array([e.type_ids for e in enc])}


def example_lines(path: Path):
    return [l for l in path.read_text(encoding="utf-8").split("\n") if l.strip(" \t\r")]


def test_minilm_wordpiece_ids_equal_the_stored_arrays_and_tokenizers(lowbit, shared, tmp_path):
    require_tokenizers()
    d = shared / "data" / "minilm"
    for split in ("calib", "eval"):
        got = lowbit_tokens(lowbit, tmp_path, d / f"{split}_sentences.txt", d / "tokenizer.json", 64)
        np.testing.assert_array_equal(got["input_ids"], np.load(d / f"{split}_input_ids.npy"))
        np.testing.assert_array_equal(got["attention_mask"], np.load(d / f"{split}_attention_mask.npy"))
        ref = hf_tokens(d / "tokenizer.json", example_lines(d / f"{split}_sentences.txt"), 64)
        for name in FIELDS:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{split} {name}")


HARD = ["Café naïve Ångström façade", "北京欢迎你 東京 ソウル", "emoji 😀👍🏽 in text", "tabs\tand   spaces",
        "[CLS] literally [MASK] inside", "don't we'll I'M they've", "numbers 3.14159 1,000,000 and 42nd",
        "x" * 130, "punctuation!!! ... ?! --- (brackets) [b] {c}", "MiXeD CaSe WoRdS", "ünïcödé \u00a0nbsp",
        "a very long sentence " * 20]


def test_byte_level_bpe_trained_here_matches_tokenizers(lowbit, shared, tmp_path):
    """A byte-level BPE (GPT-2 / RoBERTa style, RoBERTa's post-processor) trained by `tokenizers`
    on the shared sentences, then lowbit and `tokenizers` on held-out and hard lines."""
    require_tokenizers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    d = shared / "data" / "minilm"
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(d / "calib_sentences.txt")], trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    path = tmp_path / "bpe.json"
    tok.save(str(path))
    lines = example_lines(d / "eval_sentences.txt")[:500] + HARD
    text = tmp_path / "lines.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got = lowbit_tokens(lowbit, tmp_path, text, path, 48, names=("input_ids", "attention_mask"))
    ref = hf_tokens(path, lines, 48)
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


def test_wordpiece_hard_lines_match_tokenizers(lowbit, shared, tmp_path):
    require_tokenizers()
    text = tmp_path / "hard.txt"
    text.write_text("\n".join(HARD) + "\n\n   \n", encoding="utf-8")  # blank lines are no examples
    tok = shared / "data" / "minilm" / "tokenizer.json"
    got = lowbit_tokens(lowbit, tmp_path, text, tok, 32)
    ref = hf_tokens(tok, HARD, 32)
    for name in FIELDS:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


@pytest.mark.parametrize("content,extra,message", [
    (b"hello\n", [], "needs a tokenizer"),
    (b"\n  \n", ["--tokenizer", "TOK"], "no lines with text"),
    (b"ok line\n\xff\xfe bad\n", ["--tokenizer", "TOK"], ":2: not UTF-8"),
    (b"x" * ((1 << 20) + 1) + b"\n", ["--tokenizer", "TOK"], ":1: a line"),
    (b"fine\n", ["--tokenizer", "BADTOK"], "unsupported"),
], ids=["no tokenizer", "no text", "not utf-8", "line too long", "unsupported model"])
def test_bad_text_inputs_fail_with_a_message(lowbit, shared, tmp_path, content, extra, message):
    text = tmp_path / "t.txt"
    text.write_bytes(content)
    bad = tmp_path / "bad_tokenizer.json"
    bad.write_text(json.dumps({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}))
    tok = shared / "data" / "minilm" / "tokenizer.json"
    extra = [str(tok) if e == "TOK" else str(bad) if e == "BADTOK" else e for e in extra]
    proc = lowbit("run", echo_model(tmp_path / "e.onnx"), "--data", f"text:{text}", *extra, "--quiet")
    assert proc.returncode == 1 and "error:" in proc.stderr and message in proc.stderr, proc.stderr


def test_skip_bad_inputs_leaves_bad_lines_out(lowbit, shared, tmp_path):
    text = tmp_path / "t.txt"
    text.write_bytes(b"first line\n\xff bad\nthird line\n")
    model = echo_model(tmp_path / "e.onnx")
    r = tmp_path / "r.json"
    proc = lowbit.ok("run", model, "--data", f"text:{text}", "--tokenizer", shared / "data" / "minilm" / "tokenizer.json",
                     "--skip-bad-inputs", "--json", r, "--quiet")
    assert "left out 1 unreadable inputs" in proc.stderr and ":2:" in proc.stderr
    assert json.loads(r.read_text())["samples"] == 2
