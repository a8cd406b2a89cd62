"""Text data for language models: tokenizers, documents split by document, windows,
bits-per-byte bookkeeping, n-gram baselines, the CPython corpus, and bad inputs."""

import json
import math
import os

import numpy as np
import pytest

from last_nnx import data
from last_nnx.data import pydocs, text, tokenize

WORDS = (
  "state space models prune whole states . the layer keeps its strongest modes and "
  "drops the rest ; a language model reads bytes and predicts the next one"
).split()


def _doc(rng, n_words: int) -> str:
  return " ".join(rng.choice(WORDS, n_words))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """A folder with a .txt file (paragraphs are documents) and a .jsonl file."""
  root = tmp_path_factory.mktemp("corpus")
  rng = np.random.default_rng(0)
  paragraphs = [_doc(rng, 20 + 5 * i) for i in range(12)]
  (root / "a.txt").write_text("\n\n".join(paragraphs) + "\n")
  jsonl = [_doc(rng, 30) + " é" for _ in range(8)]
  with open(root / "b.jsonl", "w") as f:
    for d in jsonl:
      f.write(json.dumps({"text": d, "id": 1}) + "\n")
    f.write("\n")  # blank lines are skipped
  return root, paragraphs + jsonl


def _config(path, **fields):
  c = data.default_config("text_files")
  c.path = str(path)
  c.seq_len = 16
  c.val_fraction = c.test_fraction = 0.2
  c.update(fields)
  return c


def test_documents_split_windows_and_targets(corpus):
  root, docs = corpus
  c = _config(root)
  assert text.read_documents(c) == docs
  task = data.build_task(c, batch_size=4, eval_batch_size=3)
  info = task.info["splits"]
  assert sum(v["documents"] for v in info.values()) == len(docs) == 20
  assert info["val"]["documents"] == info["test"]["documents"] == 4
  # Each split is its documents, each followed by a NUL, cut into windows of L + 1.
  parts = text.split_documents(len(docs), 0.2, 0.2, c.split_seed)
  for name, split in task.splits.items():
    stream = b"".join(docs[i].encode() + b"\0" for i in parts[name])
    assert info[name]["bytes"] == info[name]["tokens"] == len(stream)
    assert task.bytes_per_token[name] == 1.0
    n = (len(stream) - 1) // 16
    assert split.inputs.shape == (n, 17) and split.inputs.dtype == np.uint8
    np.testing.assert_array_equal(split.inputs[1], np.frombuffer(stream[16:33], np.uint8))
  inputs, lengths, targets = next(task.train_batches(0))
  assert inputs.shape == targets.shape == (4, 16) and inputs.dtype == targets.dtype == np.int32
  np.testing.assert_array_equal(lengths, 16)
  np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
  # Eval: every window once, in order, the last batch smaller; resume skips whole batches.
  rows = np.concatenate([b[0] for b in task.eval_batches("val")])
  np.testing.assert_array_equal(rows, task.splits["val"].inputs[:, :-1])
  later = list(task.train_batches(0, start_step=2))
  assert len(later) == task.steps_per_epoch - 2
  np.testing.assert_array_equal(later[0][0], list(task.train_batches(0))[2][0])
  # Calibration reads windows through the generic gather: the model's inputs, unchanged.
  from last_nnx.data import pipeline

  x, n, _ = pipeline.gather_rows(np.array([0, 1]), task.splits["train"], task.encoding)
  np.testing.assert_array_equal(x, task.splits["train"].inputs[:2, :-1])
  np.testing.assert_array_equal(n, 16)


def test_whole_files_as_documents_and_two_processes(corpus):
  root, _ = corpus
  with pytest.raises(ValueError, match=r"has 1 document\(s\): splitting by document needs"):
    text.load_splits(_config(root / "a.txt", doc_separator=""))  # the whole file: one document
  c = _config(root)
  one = data.build_task(c, batch_size=4)
  halves = [data.build_task(c, batch_size=2, process_index=i, process_count=2) for i in range(2)]
  both = np.concatenate([b[0] for h in halves for b in [next(h.train_batches(3))]])
  whole = next(one.train_batches(3))[0]
  assert sorted(map(bytes, both.astype(np.uint8))) == sorted(map(bytes, whole.astype(np.uint8)))


def test_ngram_baselines_match_brute_force():
  rng = np.random.default_rng(1)
  rows = lambda n: rng.integers(0, 5, (n, 7)).astype(np.uint8)
  splits = {
    name: text.Split(r, np.full(len(r), 6, np.int32), np.zeros(len(r), np.int32))
    for name, r in (("train", rows(40)), ("val", rows(5)), ("test", rows(6)))
  }
  got = text.ngram_baselines(splits, vocab=8)
  train = splits["train"].inputs.astype(int)
  prev, nxt = train[:, :-1].ravel(), train[:, 1:].ravel()
  uni = lambda y: (np.sum(nxt == y) + 1) / (len(nxt) + 8)

  def bigram(x, y):
    after = nxt[prev == x]
    c, t = len(after), len(set(after.tolist()))
    return (np.sum(after == y) + t * uni(y)) / (c + t) if c + t else uni(y)

  test = splits["test"].inputs.astype(int)
  pairs = list(zip(test[:, :-1].ravel(), test[:, 1:].ravel()))
  assert got["unigram"]["test"] == pytest.approx(-np.mean([math.log2(uni(y)) for _, y in pairs]))
  assert got["bigram"]["test"] == pytest.approx(
    -np.mean([math.log2(bigram(x, y)) for x, y in pairs])
  )


def _tokenizer_json(path, corpus_docs):
  tokenizers = pytest.importorskip("tokenizers")
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="<unk>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=["<unk>", "<|endoftext|>"])
  tok.train_from_iterator(corpus_docs, trainer)
  tok.save(str(path))
  return tok


def test_tokenizer_json_and_bits_per_byte(corpus, tmp_path):
  root, docs = corpus
  tok = _tokenizer_json(tmp_path / "tokenizer.json", docs)
  loaded = tokenize.load_tokenizer(str(tmp_path))  # the checkpoint's folder works too
  assert loaded.vocab_size == tok.get_vocab_size() and loaded.separator == 1
  assert loaded.decode(loaded.encode("the layer keeps")) == "the layer keeps"
  task = data.build_task(
    _config(root, tokenizer=str(tmp_path / "tokenizer.json"), seq_len=4), batch_size=2
  )
  parts = text.split_documents(len(docs), 0.2, 0.2, 42)
  for name in ("train", "test"):
    n_bytes = sum(len(docs[i].encode()) + 1 for i in parts[name])
    n_tokens = sum(len(docs[i].split()) + 1 for i in parts[name])
    assert task.bytes_per_token[name] == pytest.approx(n_bytes / n_tokens)
    assert task.info["splits"][name]["tokens"] == n_tokens
  assert task.vocab_size == task.n_classes == loaded.vocab_size
  assert text.bits_per_byte(math.log(2) * 3.0, 1.5) == pytest.approx(2.0)


def test_bad_inputs_are_one_line(corpus, tmp_path):
  root, _ = corpus
  # A tokenizer that does not match the model's vocabulary.
  with pytest.raises(
    ValueError,
    match=r"has 256 tokens but the model's vocabulary has 50288: "
    r"use the tokenizer.json",
  ):
    tokenize.check_vocab(256, 50288, "bytes")
  with pytest.raises(ValueError, match="has 300 tokens but the model's vocabulary has 256"):
    tokenize.check_vocab(300, 256)
  tokenize.check_vocab(50277, 50288)  # mamba2-130m: the tokenizer's vocab padded to 16
  tokenize.check_vocab(256, 256)
  # Text shorter than one window.
  with pytest.raises(
    ValueError,
    match=r"split has \d+ tokens .*fewer than one window of "
    r"data.seq_len \+ 1 = 100001: give more text, or lower",
  ):
    text.load_splits(_config(root, seq_len=100000))
  (tmp_path / "tiny.txt").write_text("one\n\ntwo\n\nthree\n")
  with pytest.raises(ValueError, match="fewer than one window"):
    text.load_splits(_config(tmp_path / "tiny.txt"))
  (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:1 is not a JSON object with a 'text' field"):
    text.read_documents(_config(tmp_path / "bad.jsonl"))
  with pytest.raises(FileNotFoundError, match="no tokenizer.json there"):
    tokenize.load_tokenizer(str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="holds no .txt or .jsonl"):
    text.read_documents(_config(tmp_path / "*.csv"))
  for message in ("split has", "is not a JSON object"):
    assert "\n" not in message
  assert not os.path.exists(tmp_path / "cache")


def test_pydocs_extraction_skips_tests_and_site_packages(tmp_path):
  lib = tmp_path / "lib"
  for sub in ("pkg", "pkg/tests", "test", "site-packages/x", "config-3.11-x86_64"):
    (lib / sub).mkdir(parents=True)
  (lib / "pkg" / "mod.py").write_text(
    '"""Module doc."""\n\ndef f():\n  """Function doc.\n\n    Indented."""\n\n'
    'class C:\n  """Class doc."""\n  def g(self):\n    return 1\n'
  )
  (lib / "pkg" / "empty.py").write_text("x = 1\n")
  (lib / "pkg" / "broken.py").write_text("def (:\n")
  for skipped in ("pkg/tests/t.py", "test/t.py", "site-packages/x/s.py", "config-3.11-x86_64/c.py"):
    (lib / skipped).write_text('"""skip me"""\n')
  assert [os.path.relpath(p, lib) for p in pydocs.stdlib_files(str(lib))] == [
    "pkg/broken.py",
    "pkg/empty.py",
    "pkg/mod.py",
  ]
  docs = pydocs.extract(str(lib))
  topics = pydocs.topic_documents()
  assert docs[: len(topics)] == topics and len(topics) > 50
  assert docs[len(topics) :] == ["Module doc.\n\nFunction doc.\n\nIndented.\n\nClass doc."]
