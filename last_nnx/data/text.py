r"""Text for causal language models: tokenizers, documents, a split by document, windows.

  c = data.default_config("pydocs")          # or "text_files" with c.path = "corpus/"
  task = data.build_task(c, batch_size=16)   # a `TextTask` (source `Text`)
  for inputs, lengths, targets in task.train_batches(epoch=0): ...

**Tokenizers** (``data.tokenizer``): ``'bytes'``, the UTF-8 bytes of the text
(vocab 256, for models trained here), or a checkpoint's ``tokenizer.json`` (a
file, or the checkpoint's folder holding one) read by the ``tokenizers``
package. `tokenize.check_vocab` refuses a tokenizer that does not match a model.

**Documents.** ``pydocs``: English prose that ships with CPython (`pydocs`).
``text_files``: your ``data.path`` (a file, a folder searched recursively, or a
glob) of ``.txt`` files, whose documents are the parts between blank lines
(``data.doc_separator``; ``''``: each file is one document), and ``.jsonl``
files, one JSON object per line whose ``data.text_field`` is the document.

**Split by document**: a permutation of the documents keyed by
``data.split_seed``; ``data.val_fraction`` and ``data.test_fraction`` of them
(at least one each) are val and test, the rest train; each split keeps the
documents in their original order. No window mixes two splits.

**Windows.** Each split's documents, each followed by the separator token (a
NUL byte for ``'bytes'``; the tokenizer's end-of-text token, else its
encoding of a blank line), form one token stream cut into ``N = (T - 1) // L``
windows of ``L + 1`` tokens (``L = data.seq_len``; consecutive windows share one
token; the tail that fills no window is dropped). A batch is
``(inputs (B, L) int32, lengths (B,) int32 = L, targets (B, L) int32)`` with
``targets[:, t] = inputs[:, t + 1]`` of the same window: every position is
predicted, nothing is padded. Stored rows are the ``(N, L + 1)`` windows (uint8
for bytes), so `pipeline.gather_rows` gives a calibration criterion the
``(inputs, lengths)`` token windows unchanged (`Window`).

**Bits per byte** of a split = its loss (nats per token) / ln 2 / bytes per
token, where bytes per token is the split's UTF-8 bytes (one per separator)
over its tokens (exactly 1 for ``'bytes'``; `TextTask.bytes_per_token`).
`ngram_baselines` gives what a unigram and a bigram model of the train split
score on the same targets.
"""

import dataclasses
import glob
import json
import math
import os
from collections.abc import Iterator

import ml_collections
import numpy as np
from absl import logging

from last_nnx.data import pydocs
from last_nnx.data.cache import default_cache_dir
from last_nnx.data.pipeline import SPLITS, Batch, Split, Task, Tokens
from last_nnx.data.source import Resolved, Source
from last_nnx.data.tokenize import BYTES, load_tokenizer

TEXT_TASKS = ("pydocs", "text_files")


def default_config(task: str) -> ml_collections.ConfigDict:
  """The ``data`` section of a text task (``'pydocs'`` or ``'text_files'``)."""
  if task not in TEXT_TASKS:
    raise ValueError(f"unknown text task {task!r}; expected one of {TEXT_TASKS}")
  c = ml_collections.ConfigDict()
  c.task = task
  if task == "text_files":
    c.path = ml_collections.config_dict.placeholder(str)
    c.doc_separator = "\n\n"
    c.text_field = "text"
  c.tokenizer = BYTES
  c.seq_len = 256
  c.val_fraction = 0.05
  c.test_fraction = 0.05
  c.split_seed = 42
  c.cache_dir = default_cache_dir()
  return c


def _files(spec: str) -> list[str]:
  path = os.path.expanduser(spec)
  if os.path.isdir(path):
    found = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
  else:
    found = glob.glob(path, recursive=True) if glob.has_magic(path) else [path]
  return sorted(f for f in found if f.endswith((".txt", ".jsonl")) and os.path.isfile(f))


def read_documents(c: ml_collections.ConfigDict) -> list[str]:
  """The non-empty documents of ``data.path`` (see the module docstring), in file order."""
  if not c.get("path"):
    raise ValueError(
      "data.path is not set: give your .txt or .jsonl files (a file, a folder "
      "or a glob), e.g. --config.data.path=corpus/"
    )
  files = _files(c.path)
  if not files:
    raise FileNotFoundError(f"data.path={c.path!r} holds no .txt or .jsonl file")
  docs = []
  for name in files:
    with open(name, encoding="utf-8", errors="replace") as f:
      if name.endswith(".txt"):
        body = f.read()
        parts = body.split(c.doc_separator) if c.doc_separator else [body]
        docs += [p.strip("\n") for p in parts]
        continue
      for i, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          docs.append(str(json.loads(line)[c.text_field]))
        except (json.JSONDecodeError, KeyError, TypeError):
          raise ValueError(
            f"{name}:{i} is not a JSON object with a {c.text_field!r} field: "
            "give one object per line, or set data.text_field"
          ) from None
  return [d for d in docs if d.strip()]


def split_documents(
  n_docs: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
  """Document indices of each split (sorted: each split keeps the original order)."""
  if n_docs < 3:
    raise ValueError(
      f"the text has {n_docs} document(s): splitting by document needs at least "
      "3 (train, val, test); give more documents, or separate them (.txt: by "
      "blank lines, data.doc_separator)"
    )
  n_val = min(max(1, round(val_fraction * n_docs)), n_docs - 2)
  n_test = min(max(1, round(test_fraction * n_docs)), n_docs - 1 - n_val)
  order = np.random.default_rng(seed).permutation(n_docs)
  parts = {
    "val": order[:n_val],
    "test": order[n_val : n_val + n_test],
    "train": order[n_val + n_test :],
  }
  return {k: np.sort(v) for k, v in parts.items()}


def _stream_dtype(vocab: int):
  return np.uint8 if vocab <= 256 else np.uint16 if vocab <= 65536 else np.int32


def windows(stream: np.ndarray, seq_len: int) -> np.ndarray:
  """``(N, L + 1)`` windows of a token stream ``(T,)``: row k is ``stream[kL : kL + L + 1]``."""
  n = (len(stream) - 1) // seq_len
  index = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
  return stream[index]


@dataclasses.dataclass(frozen=True)
class Window(Tokens):
  """Stored windows ``(..., L + 1)`` -> the model's inputs ``(..., L)`` int32 (the
  targets are the same rows shifted by one: `TextTask`). Token ids as stored (no
  offset, no padding)."""

  def __call__(self, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    del lengths
    return np.asarray(rows[..., :-1], np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class TextTask(Task):
  """A `pipeline.Task` of token windows for next-token prediction.

  ``n_classes`` is the vocabulary (what each position is classified into).
  ``bytes_per_token``: per split, UTF-8 bytes over tokens (bits per byte =
  loss / ln 2 / it). ``info``: tokenizer, document and token counts, corpus
  facts, unigram/bigram baselines.
  """

  bytes_per_token: dict = dataclasses.field(default_factory=dict)
  info: dict = dataclasses.field(default_factory=dict)
  objective: str = "lm"

  def _batches(self, split: Split, index_batches) -> Iterator[Batch]:
    for idx in index_batches:
      rows = np.asarray(split.inputs[idx], np.int32)
      yield rows[:, :-1], np.asarray(split.lengths[idx], np.int32), rows[:, 1:]

  def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
    """As `Task.train_batches` (same order and sharding), targets ``(B, L)``."""
    if not 0 <= start_step <= self.steps_per_epoch:
      raise ValueError(f"start_step {start_step} outside 0..{self.steps_per_epoch}")
    order = self.epoch_order(epoch)[self.process_index :: self.process_count]
    size = self.batch_size
    return self._batches(
      self.splits["train"],
      (order[k * size : (k + 1) * size] for k in range(start_step, self.steps_per_epoch)),
    )

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """As `Task.eval_batches`: windows in order, this process's share, last batch smaller."""
    if split not in ("val", "test"):
      raise ValueError(f"eval_batches takes 'val' or 'test', got {split!r}")
    order = np.arange(len(self.splits[split]))[self.process_index :: self.process_count]
    size = self.eval_batch_size
    return self._batches(
      self.splits[split], (order[k : k + size] for k in range(0, len(order), size))
    )


def ngram_baselines(splits: dict[str, Split], vocab: int) -> dict[str, dict[str, float]]:
  """Bits per token of a unigram and a bigram model fitted on the train windows'
  targets, on the val and test windows' targets (the targets the LM is scored on).

  Unigram: add-one smoothing, ``p(y) = (c(y) + 1) / (n + V)``. Bigram: Witten-Bell
  interpolation with it, ``p(y|x) = (c(x, y) + T(x) p(y)) / (c(x) + T(x))``, ``T(x)``
  the number of distinct tokens seen after ``x`` (no parameter to tune).
  """

  def pairs(split):
    rows = np.asarray(split.inputs, np.int64)
    return rows[:, :-1].ravel(), rows[:, 1:].ravel()

  prev, nxt = pairs(splits["train"])
  uni = (np.bincount(nxt, minlength=vocab) + 1.0) / (len(nxt) + vocab)
  keys, counts = np.unique(prev * vocab + nxt, return_counts=True)
  context = np.bincount(prev, minlength=vocab).astype(np.float64)
  types = np.bincount(keys // vocab, minlength=vocab).astype(np.float64)
  out: dict[str, dict[str, float]] = {"unigram": {}, "bigram": {}}
  for name in ("val", "test"):
    x, y = pairs(splits[name])
    query = x * vocab + y
    at = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
    pair = np.where(keys[at] == query, counts[at], 0).astype(np.float64)
    denom = context[x] + types[x]
    p_bi = np.where(denom > 0, (pair + types[x] * uni[y]) / np.maximum(denom, 1), uni[y])
    out["unigram"][name] = float(-np.mean(np.log2(uni[y])))
    out["bigram"][name] = float(-np.mean(np.log2(p_bi)))
  return out


def _documents(c) -> tuple[list[str], dict]:
  if c.task == "pydocs":
    docs, info = pydocs.documents(c.cache_dir)
    return docs, info
  return read_documents(c), {"path": c.path}


def load_splits(c: ml_collections.ConfigDict):
  """``(splits, bytes_per_token, info)`` of the text task ``c``.

  Raises:
    ValueError: fewer than 3 documents, or a split too short for one window.
  """
  tokenizer = load_tokenizer(c.tokenizer)
  docs, info = _documents(c)
  parts = split_documents(len(docs), c.val_fraction, c.test_fraction, c.split_seed)
  sep = tokenizer.separator
  sep_ids = np.asarray([sep], np.int32) if sep is not None else tokenizer.encode("\n\n")
  dtype = _stream_dtype(tokenizer.vocab_size)
  splits, per_token, counts = {}, {}, {}
  for name in SPLITS:
    pieces, n_bytes = [], 0
    for i in parts[name]:
      pieces += [tokenizer.encode(docs[i]), sep_ids]
      n_bytes += len(docs[i].encode("utf-8")) + 1
    stream = np.concatenate(pieces).astype(dtype)
    if len(stream) < c.seq_len + 1:
      raise ValueError(
        f"the {name} split has {len(stream)} tokens ({len(parts[name])} "
        f"documents), fewer than one window of data.seq_len + 1 = "
        f"{c.seq_len + 1}: give more text, or lower data.seq_len"
      )
    rows = windows(stream, c.seq_len)
    splits[name] = Split(
      rows, np.full(len(rows), c.seq_len, np.int32), np.zeros(len(rows), np.int32)
    )
    per_token[name] = n_bytes / len(stream)
    counts[name] = dict(
      documents=int(len(parts[name])),
      tokens=int(len(stream)),
      bytes=int(n_bytes),
      windows=int(len(rows)),
    )
  info = dict(info, tokenizer=tokenizer.name, vocab_size=tokenizer.vocab_size, splits=counts)
  return splits, per_token, info, tokenizer.vocab_size


class Text(Source):
  """The source of the text tasks (`TEXT_TASKS`): windows for next-token prediction.

  Not cached as splits: windowing is fast, and the slow part of ``pydocs``
  (parsing the stdlib) is cached by `pydocs.documents`. ``meta`` carries
  ``bytes_per_token`` and ``info`` (with the n-gram baselines in bits per byte)
  into the `TextTask` (`make_task`).
  """

  name = "text"
  synthetic = False

  def default_config(self, task: str) -> ml_collections.ConfigDict:
    return default_config(task)

  def resolve(self, c: ml_collections.ConfigDict) -> Resolved:
    if c.seq_len < 1:
      raise ValueError(f"data.seq_len must be positive, got {c.seq_len}")
    return Resolved(c.seq_len)

  def load(self, c: ml_collections.ConfigDict) -> tuple[dict[str, Split], dict]:
    splits, per_token, info, vocab = load_splits(c)
    bits = ngram_baselines(splits, vocab)
    info["baselines_bits_per_byte"] = {
      model: {s: b / per_token[s] for s, b in by_split.items()} for model, by_split in bits.items()
    }
    b = info["baselines_bits_per_byte"]
    logging.info(
      "text %s: tokenizer %s (vocab %d), %s documents, %s windows of L=%d; test "
      "bits per byte of a unigram %.3f and a bigram %.3f model",
      c.task,
      info["tokenizer"],
      vocab,
      [info["splits"][s]["documents"] for s in SPLITS],
      [info["splits"][s]["windows"] for s in SPLITS],
      c.seq_len,
      b["unigram"]["test"],
      b["bigram"]["test"],
    )
    return splits, {"n_classes": vocab, "bytes_per_token": per_token, "info": info}

  def encoding(self, c: ml_collections.ConfigDict, meta: dict) -> Window:
    del c
    return Window(meta["n_classes"])

  def make_task(self, meta: dict, **fields) -> TextTask:
    """The `TextTask` over the loaded splits (``fields``: those of `Task`)."""
    return TextTask(**fields, bytes_per_token=meta["bytes_per_token"], info=meta["info"])


def bits_per_byte(loss_nats: float, bytes_per_token: float) -> float:
  """Loss in nats per token -> bits per byte."""
  return loss_nats / math.log(2) / bytes_per_token
