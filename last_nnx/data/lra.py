"""The three sources of the LRA and Speech Commands tasks: synthetic, release, TFDS.

All three share the task's ``data`` section (`config.lra_config`), its length
rule (`resolve`) and its encoding (`config.SPECS`; speech is standardized by
the train split's statistics). They differ in where the rows come from:

  synthetic  the task's generator (`synthetic`), ``data.dir`` and ``data.source`` unset;
  release    the original release under ``data.dir`` (`layout`, `readers`);
  tfds       the TensorFlow Datasets build, ``data.source='tfds'`` (`tfds_sources`).
"""

import inspect
import math
import os

import ml_collections
import numpy as np
from absl import logging

from last_nnx.data import config, layout, readers, synthetic, tfds_sources
from last_nnx.data.config import SPECS
from last_nnx.data.pipeline import SPLITS, Continuous, Split, Tokens
from last_nnx.data.source import Resolved, Source

VERSION = 1  # bump when a generator or reader changes what it produces


class _LRASource(Source):
  """What the three share: the config section, the length rule, the encoding."""

  name = ""
  synthetic = False

  def default_config(self, task: str) -> ml_collections.ConfigDict:
    return config.lra_config(task)

  def _length(self, c: ml_collections.ConfigDict) -> int:
    if "resolution" in c and c.seq_len != c.resolution**2:
      raise ValueError(
        f"data.seq_len={c.seq_len} but data.resolution={c.resolution}: an "
        f"image is read row by row, so L must be {c.resolution**2} (set "
        "only data.resolution; seq_len follows it)"
      )
    return c.seq_len

  def resolve(self, c: ml_collections.ConfigDict) -> Resolved:
    """L is ``data.seq_len`` (for images ``resolution**2``); the generator may shorten it."""
    length = self._length(c)
    if length < 1:
      raise ValueError(f"data.seq_len must be positive, got {length}")
    return Resolved(length, math.isqrt(length) if "resolution" in c else None)

  def encoding(self, c: ml_collections.ConfigDict, meta: dict) -> Tokens | Continuous:
    """The task's fixed encoding, or audio standardized as S5 does: by the train
    statistics (plus 1e-5 of full scale on the deviation)."""
    fixed = SPECS[c.task].encoding
    if fixed is not None:
      return fixed
    return Continuous(mean=meta["mean"], std=meta["std"] + 1e-5 * 32768)

  def _with_stats(
    self,
    c,
    splits: dict[str, Split],
    meta: dict,
  ) -> tuple[dict[str, Split], dict]:
    """Adds the train statistics to ``meta`` for tasks standardized by them (speech)."""
    if SPECS[c.task].encoding is None:
      meta = dict(meta, **_audio_stats(splits["train"]))
    return splits, meta


def _audio_stats(train: Split) -> dict:
  """Mean and standard deviation of the train split's samples (chunked: it may be mmapped)."""
  total, total_sq, count = 0.0, 0.0, 0
  for start in range(0, len(train), 1024):
    x = np.asarray(train.inputs[start : start + 1024], np.float64)
    total, total_sq, count = total + x.sum(), total_sq + (x * x).sum(), count + x.size
  mean = total / max(count, 1)
  return {"mean": mean, "std": float(np.sqrt(max(total_sq / max(count, 1) - mean * mean, 0.0)))}


class Synthetic(_LRASource):
  """The task's generator: a stand-in whose numbers say nothing about LRA."""

  name = "synthetic"
  synthetic = True

  def _length(self, c):
    """``data.synthetic.seq_len`` when set (presets shorten synthetic runs only)."""
    length = c.synthetic.get("seq_len")
    if length is None:
      return super()._length(c)
    if "resolution" in c and math.isqrt(length) ** 2 != length:
      raise ValueError(
        f"data.synthetic.seq_len={length}: an image is read row by row, so it "
        "must be a square (e.g. 256 = 16 x 16)"
      )
    return length

  def cache_key(self, c) -> dict:
    knobs = {k: v for k, v in c.synthetic.items() if k != "seq_len"}  # c.seq_len holds it
    return dict(kind="synthetic", task=c.task, seq_len=c.seq_len, version=VERSION, **knobs)

  def caveat(self, c) -> str:
    spec = SPECS[c.task]
    title = spec.title + (f" ({c.resolution} px)" if "resolution" in c else "")
    real = "Speech Commands" if c.task == "speech" else "LRA"
    return (
      f"no data.dir given: using synthetic {title} ({c.synthetic.n_train} train "
      f"examples, L={c.seq_len}) -- numbers on it are not {real} results; set "
      f"--config.data.dir to the real data ({layout.RELEASES[c.task].name})"
    )

  def load(self, c) -> tuple[dict[str, Split], dict]:
    """All three splits; each split has its own random stream."""
    spec = SPECS[c.task]
    generate = synthetic.GENERATORS[c.task]
    knobs = _synthetic_knobs(c)
    splits = {}
    for i, name in enumerate(SPLITS):
      rng = np.random.default_rng([c.synthetic.seed, i, VERSION])
      splits[name] = generate(c.synthetic[f"n_{name}"], c.seq_len, rng, **knobs)
    n_classes = knobs.get("n_classes", spec.n_classes)
    return self._with_stats(c, splits, {"n_classes": int(n_classes)})


def _synthetic_knobs(c) -> dict:
  """The generator's keyword arguments: ``data.synthetic`` minus sizes and seed.

  ListOps' ``min_length`` is lowered to a quarter of ``max_length`` when a short
  ``seq_len`` leaves no room for it (e.g. the smoke preset's L=256).
  """
  knobs = {
    k: v
    for k, v in c.synthetic.items()
    if k not in ("n_train", "n_val", "n_test", "seed", "seq_len")
  }
  known = [
    p.name
    for p in inspect.signature(synthetic.GENERATORS[c.task]).parameters.values()
    if p.kind == p.KEYWORD_ONLY
  ]
  unknown = sorted(set(knobs) - set(known))
  if unknown:
    raise ValueError(
      f"data.synthetic.{unknown[0]} is not a knob of the synthetic {c.task} "
      f"generator; it has n_train, n_val, n_test, seed, seq_len, {', '.join(known)}"
    )
  if c.task == "listops":
    top = min(knobs["max_length"], c.seq_len + 1)
    if knobs["min_length"] >= top - 1:
      lowered = top // 4
      logging.info(
        "synthetic ListOps: min_length %d does not fit L=%d; using %d",
        knobs["min_length"],
        c.seq_len,
        lowered,
      )
      knobs["min_length"] = lowered
  return knobs


class Release(_LRASource):
  """The original release found under ``data.dir`` (any nesting depth)."""

  name = "release"

  def _base(self, c) -> str:
    return readers.READERS[c.task].locate(os.path.expanduser(c.dir), c)

  def cache_key(self, c) -> dict | None:
    if not c.cache_real:
      return None
    base = self._base(c)
    key = dict(
      kind="real",
      task=c.task,
      base=os.path.realpath(base),
      seq_len=c.seq_len,
      val_fraction=c.val_fraction,
      split_seed=c.split_seed,
      version=VERSION,
      files=layout.fingerprint(base, readers.READERS[c.task].depth),
    )
    if c.get("splits", "default") != "default":  # default entries keep their old keys
      key["splits"] = c.splits
    return key

  def load(self, c) -> tuple[dict[str, Split], dict]:
    base = self._base(c)
    logging.info("%s: reading %s", c.task, base)
    splits, n_classes = readers.READERS[c.task].read(base, c)
    return self._with_stats(c, splits, {"n_classes": n_classes, "source": base})


class TFDS(_LRASource):
  """The TensorFlow Datasets build under ``data.tfds_dir`` (image, text, speech)."""

  name = "tfds"

  def resolve(self, c) -> Resolved:
    if c.dir is not None:
      raise ValueError(
        f"data.source=tfds and data.dir={c.dir!r} are both set: keep one (TFDS "
        "reads from data.tfds_dir)"
      )
    if c.get("splits", "default") != "default":
      raise ValueError(
        f"data.splits={c.splits!r} reproduces the reference code's splits of "
        "the original releases; TFDS has its own: leave data.splits='default' "
        "with data.source=tfds, or read the release with data.dir"
      )
    return super().resolve(c)

  def cache_key(self, c) -> dict | None:
    if not c.cache_real:
      return None
    return dict(kind="tfds", version=VERSION, **tfds_sources.cache_key(c))

  def load(self, c) -> tuple[dict[str, Split], dict]:
    return self._with_stats(c, *tfds_sources.read(c))
