"""Synthetic versions of every task: deterministic by seed, learnable, fast.

They stand in for the real datasets when no ``data.dir`` is given (this machine
has no network). Numbers measured on them are not LRA or Speech Commands
results. Every generator has the signature ``(n, seq_len, rng, **knobs) ->
Split`` and stores rows in the same compact form as the matching real reader,
so the pipeline cannot tell them apart:

=========== =========================================== ===========================
task        stored ``inputs``                           label
=========== =========================================== ===========================
listops     uint8 token ids ``(N, L)``, 0 = padding     value of the expression
text        uint8 bytes ``(N, L)``                      more positive than negative
                                                        sentiment words
retrieval   uint8 bytes ``(N, 2, L)``                   both documents carry the
                                                        same planted motif
image       uint8 pixels ``(N, L)``, L = side**2        orientation/frequency class
pathfinder  uint8 pixels ``(N, res*res)``               markers on one contour
speech      int16 samples ``(N, L)``                    chirp class
=========== =========================================== ===========================
"""

from collections.abc import Callable

import numpy as np

from last_nnx.data import listops as listops_lib
from last_nnx.data.contours import contours, disc_pixels, stroke_pixels
from last_nnx.data.pipeline import Split

_LOWERCASE = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
_MOTIF_CHARS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", np.uint8)
_LEXICON_SEED = 20240611  # the synthetic "language" is the same for every data seed
_CHUNK = 512  # rows generated at once by the vectorized generators (bounds memory)


def balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
  """``(n,)`` int32 labels whose class counts differ by at most one, shuffled."""
  labels = np.arange(n, dtype=np.int32) % n_classes
  rng.shuffle(labels)
  return labels


def _chunks(n: int):
  for start in range(0, n, _CHUNK):
    yield slice(start, min(n, start + _CHUNK))


def _compact(chars: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Moves the kept entries of each row to its front (order kept), zeros after.

  ``chars`` and ``keep`` are ``(N, M)``; returns ``(N, M)`` rows and ``(N,)``
  int32 counts of kept entries.
  """
  order = np.argsort(~keep, axis=1, kind="stable")
  out = np.take_along_axis(np.where(keep, chars, 0), order, axis=1)
  return out, keep.sum(axis=1).astype(np.int32)


# ----------------------------------------------------------------------------
# ListOps: the LRA grammar, answers stratified to be balanced.


def listops(
  n: int,
  seq_len: int,
  rng: np.random.Generator,
  *,
  max_depth: int = 10,
  max_args: int = 10,
  min_length: int = 500,
  max_length: int = 2000,
) -> Split:
  """Random expressions of the LRA grammar, each answer 0-9 equally frequent.

  Trees are drawn as LRA draws them and kept when ``min_length < tokens <
  max_length`` (LRA's strict bounds; ``max_length`` is capped at ``seq_len +
  1``), until every answer has its share: stratified rejection sampling.

  Returns token ids ``(n, seq_len)`` uint8 (0 = padding), lengths and labels.
  """
  max_length = min(max_length, seq_len + 1)
  if min_length >= max_length - 1:
    raise ValueError(
      f"ListOps length window ({min_length}, {max_length}) is empty: lower "
      "data.synthetic.min_length below data.seq_len"
    )
  per_class = -(-n // 10)
  buckets: list[list[list[int]]] = [[] for _ in range(10)]
  u = listops_lib.uniform_stream(rng)
  budget = 2000 * n + 100_000
  for _ in range(budget):
    if min(map(len, buckets)) >= per_class:
      break
    tokens: list[int] = []
    try:
      value = listops_lib.sample(
        u, max_depth=max_depth, max_args=max_args, limit=max_length - 1, out=tokens
      )
    except listops_lib.TooLong:
      continue
    if len(tokens) > min_length and len(buckets[value]) < per_class:
      buckets[value].append(tokens)
  else:
    counts = [len(b) for b in buckets]
    raise RuntimeError(
      f"ListOps generator could not fill every answer ({counts} of "
      f"{per_class} each) with max_depth={max_depth}, max_args={max_args} "
      f"and lengths in ({min_length}, {max_length}): widen the window"
    )
  labels = balanced_labels(n, 10, rng)
  taken = [0] * 10
  rows = np.zeros((n, seq_len), np.uint8)
  lengths = np.zeros(n, np.int32)
  for i, label in enumerate(labels):
    tokens = buckets[label][taken[label]]
    taken[label] += 1
    rows[i, : len(tokens)] = tokens
    lengths[i] = len(tokens)
  return Split(rows, lengths, labels)


# ----------------------------------------------------------------------------
# Pathfinder: are the two markers the ends of one contour?


def pathfinder(
  n: int,
  seq_len: int,
  rng: np.random.Generator,
  *,
  distractors: int = 4,
  segments: int = 8,
  curvature: float = 0.35,
) -> Split:
  """Pathfinder-style images, ``seq_len = res**2``: label 1 iff the markers share a contour.

  Every image has two long dashed contours of ``segments`` paddles, each
  paddle a sixteenth of the image side, plus ``distractors`` short ones (a
  third as long). A positive marks both ends of the first contour; a negative
  marks one end of each long contour, so both classes draw the same ink and
  the same number of loose ends. Marker radius and stroke width scale with the
  resolution as in the LRA releases (radius 1.5 px at 32, 3 px at 128).

  ``segments`` sets the difficulty like LRA's contour length (6, 9, 14): at 8 a
  small convnet learns Pathfinder-32 in minutes (tests/test_data_learn.py);
  at 14 the markers' distance says nothing about the label and small models
  stay at chance for a long time, as on LRA's hard variant.

  Returns pixels ``(n, res*res)`` uint8 (0 or 255), lengths and balanced labels.
  """
  res = int(round(np.sqrt(seq_len)))
  if res * res != seq_len or res < 8:
    raise ValueError(f"pathfinder needs a square image of at least 8x8, got L={seq_len}")
  step = res / 16
  radius = 1.5 * np.sqrt(res / 32)
  thickness = max(1, res // 64)
  margin = radius + 1
  labels = balanced_labels(n, 2, rng)
  images = np.zeros((n, res * res), np.uint8)
  for rows in _chunks(n):
    m = rows.stop - rows.start
    long = contours(rng, m, 2, segments, res, step, curvature, margin)
    short = contours(
      rng, m, max(distractors, 0), max(1, segments // 3), res, step, curvature, margin
    )
    positive = labels[rows].astype(bool)[:, None]
    far_end = np.where(positive, long[:, 0, -1], long[:, 1, -1])
    markers = np.stack([long[:, 0, 0], far_end], axis=1)
    pixels = [stroke_pixels(long, res, 0.7, thickness), disc_pixels(markers, res, radius)]
    if distractors > 0:
      pixels.append(stroke_pixels(short, res, 0.7, thickness))
    flat = np.concatenate(pixels, axis=1) + (np.arange(m) * res * res)[:, None]
    block = images[rows].reshape(-1)  # a view: rows of a C-contiguous array
    block[flat.ravel()] = 255
  return Split(images, np.full(n, seq_len, np.int32), labels)


# ----------------------------------------------------------------------------
# Text: byte-level "reviews" whose label is the majority sentiment.

POSITIVE_WORDS = (
  b"good",
  b"great",
  b"superb",
  b"fine",
  b"lovely",
  b"brilliant",
  b"excellent",
  b"enjoyable",
)
NEGATIVE_WORDS = (b"bad", b"awful", b"boring", b"poor", b"dull", b"terrible", b"weak", b"horrible")
_MAX_WORD = 10  # longest word ("brilliant", "enjoyable", ...) plus its space


def _lexicon(n_filler: int = 400) -> tuple[np.ndarray, np.ndarray]:
  """Word table ``(V, _MAX_WORD)`` uint8 (space-terminated) and ``(V,)`` sizes with space.

  Rows 0-7 are the positive words, 8-15 the negative ones, then random
  lowercase filler words that never equal a sentiment word.
  """
  rng = np.random.default_rng(_LEXICON_SEED)
  words = list(POSITIVE_WORDS + NEGATIVE_WORDS)
  taken = set(words)
  while len(words) < 16 + n_filler:
    w = bytes(rng.choice(_LOWERCASE, size=int(rng.integers(2, _MAX_WORD))))
    if w not in taken:
      taken.add(w)
      words.append(w)
  table = np.zeros((len(words), _MAX_WORD), np.uint8)
  sizes = np.zeros(len(words), np.int64)
  for i, w in enumerate(words):
    table[i, : len(w) + 1] = np.frombuffer(w + b" ", np.uint8)
    sizes[i] = len(w) + 1
  return table, sizes


def text(n: int, seq_len: int, rng: np.random.Generator, *, density: float = 0.05) -> Split:
  """Byte documents of random words; label 1 iff positive words outnumber negative ones.

  A document holds between half and all of ``seq_len // 10`` words; about
  ``density`` of them carry sentiment, the majority side at least one more.
  Returns bytes ``(n, seq_len)`` uint8 (stored raw; the pipeline shifts them
  by one so that 0 stays padding), lengths and balanced labels.
  """
  table, sizes = _lexicon()
  n_filler = len(table) - 16
  max_words = seq_len // _MAX_WORD
  if max_words < 8:
    raise ValueError(f"synthetic text needs seq_len >= {8 * _MAX_WORD}, got {seq_len}")
  labels = balanced_labels(n, 2, rng)
  rows = np.zeros((n, seq_len), np.uint8)
  lengths = np.zeros(n, np.int32)
  for sl in _chunks(n):
    m = sl.stop - sl.start
    n_words = rng.integers(max_words // 2, max_words + 1, size=m)
    ids = 16 + rng.integers(0, n_filler, size=(m, max_words))
    n_sent = np.maximum(3, np.round(n_words * density)).astype(int)
    n_major = n_sent // 2 + 1 + rng.integers(0, n_sent // 4 + 1)
    # Random slots among the document's words: rank random keys, padding words last.
    keys = np.where(np.arange(max_words) < n_words[:, None], rng.random((m, max_words)), 2.0)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    major_side = np.where(labels[sl] == 1, 0, 8)[:, None]  # positive words are rows 0-7
    sentiment = np.where(rank < n_major[:, None], major_side, 8 - major_side)
    ids = np.where(rank < n_sent[:, None], sentiment + rng.integers(0, 8, (m, max_words)), ids)
    chars = table[ids].reshape(m, -1)
    keep = (np.arange(_MAX_WORD) < sizes[ids][..., None]).reshape(m, -1)
    keep &= np.repeat(np.arange(max_words) < n_words[:, None], _MAX_WORD, axis=1)
    packed, count = _compact(chars, keep)
    packed[np.arange(m), count - 1] = 0  # drop the last word's space
    rows[sl, : packed.shape[1]] = packed
    lengths[sl] = count - 1
  return Split(rows, lengths, labels)


# ----------------------------------------------------------------------------
# Retrieval: do two documents share a planted motif?


def retrieval(
  n: int, seq_len: int, rng: np.random.Generator, *, motifs: int = 32, motif_length: int = 8
) -> Split:
  """Pairs of byte documents, each with one planted motif; label 1 iff the motifs match.

  Backgrounds are lowercase letters and spaces, motifs uppercase letters and
  digits drawn from a fixed bank of ``motifs``. Returns bytes ``(n, 2,
  seq_len)`` uint8 (raw, shifted by the pipeline), lengths ``(n, 2)`` and
  balanced labels.
  """
  if seq_len < 2 * motif_length:
    raise ValueError(f"synthetic retrieval needs seq_len >= {2 * motif_length}, got {seq_len}")
  bank = np.random.default_rng(_LEXICON_SEED).choice(_MOTIF_CHARS, size=(motifs, motif_length))
  background = np.concatenate([_LOWERCASE, np.frombuffer(b"    ", np.uint8)])
  labels = balanced_labels(n, 2, rng)
  rows = np.zeros((n, 2, seq_len), np.uint8)
  lengths = rng.integers(seq_len // 2, seq_len + 1, size=(n, 2)).astype(np.int32)
  first = rng.integers(0, motifs, size=n)
  second = np.where(labels == 1, first, (first + rng.integers(1, motifs, size=n)) % motifs)
  which = np.stack([first, second], axis=1)  # (n, 2)
  for sl in _chunks(n):
    m = sl.stop - sl.start
    docs = rng.choice(background, size=(m, 2, seq_len))
    at = rng.integers(0, lengths[sl] - motif_length + 1)  # (m, 2)
    cols = at[..., None] + np.arange(motif_length)
    np.put_along_axis(docs, cols, bank[which[sl]], axis=2)
    docs[np.arange(seq_len) >= lengths[sl][..., None]] = 0
    rows[sl] = docs
  return Split(rows, lengths, labels)


# ----------------------------------------------------------------------------
# Image: class-dependent gratings.


def image(
  n: int, seq_len: int, rng: np.random.Generator, *, n_classes: int = 10, noise: float = 0.15
) -> Split:
  """Grayscale ``side x side`` gratings (``seq_len = side**2``); the class sets orientation
  and spatial frequency, phase and contrast are random, pixel noise added.

  Returns pixels ``(n, seq_len)`` uint8, lengths and balanced labels.
  """
  side = int(round(np.sqrt(seq_len)))
  if side * side != seq_len:
    raise ValueError(f"synthetic image needs a square seq_len, got {seq_len}")
  labels = balanced_labels(n, n_classes, rng)
  yy, xx = np.mgrid[0:side, 0:side] / side
  images = np.zeros((n, seq_len), np.uint8)
  for sl in _chunks(n):
    k = labels[sl][:, None, None]
    m = len(k)
    theta = np.pi * k / n_classes
    freq = 2 + (k % 3) * 1.5
    phase = rng.uniform(0, 2 * np.pi, size=(m, 1, 1))
    contrast = rng.uniform(0.25, 0.45, size=(m, 1, 1))
    g = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
    g = 0.5 + contrast * g + noise * rng.normal(size=(m, side, side))
    images[sl] = (np.clip(g, 0, 1) * 255).astype(np.uint8).reshape(m, -1)
  return Split(images, np.full(n, seq_len, np.int32), labels)


# ----------------------------------------------------------------------------
# Speech: class-dependent chirps.


def speech(
  n: int, seq_len: int, rng: np.random.Generator, *, n_classes: int = 10, noise: float = 0.05
) -> Split:
  """int16 "utterances": one Hann-windowed linear chirp per clip in noise.

  The class sets the start frequency (spread over 0.02-0.38 cycles per sample)
  and the sweep direction; onset, duration and loudness are random.
  Returns samples ``(n, seq_len)`` int16, lengths and balanced labels.
  """
  if not 2 <= n_classes <= 35:
    raise ValueError(f"synthetic speech has 2..35 classes, got {n_classes}")
  labels = balanced_labels(n, n_classes, rng)
  audio = np.zeros((n, seq_len), np.int16)
  t = np.arange(seq_len)
  for sl in _chunks(n):
    k = labels[sl][:, None]
    m = len(k)
    f0 = 0.02 + 0.36 * k / n_classes
    f1 = f0 * np.where(k % 2 == 1, 1.6, 0.6)
    duration = rng.integers(seq_len // 2, 3 * seq_len // 4 + 1, size=(m, 1))
    onset = rng.integers(0, seq_len - duration + 1)
    tr = t - onset
    inside = (tr >= 0) & (tr < duration)
    phase = 2 * np.pi * (f0 * tr + (f1 - f0) * tr**2 / (2 * duration))
    window = np.where(inside, np.sin(np.pi * np.clip(tr, 0, None) / duration) ** 2, 0.0)
    loud = rng.uniform(0.3, 0.8, size=(m, 1))
    wave = loud * window * np.sin(phase) + noise * rng.normal(size=(m, seq_len))
    audio[sl] = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
  return Split(audio, np.full(n, seq_len, np.int32), labels)


# task -> generate(n, seq_len, rng, **knobs) -> Split
GENERATORS: dict[str, Callable[..., Split]] = {
  "listops": listops,
  "text": text,
  "retrieval": retrieval,
  "image": image,
  "pathfinder": pathfinder,
  "pathx": pathfinder,
  "speech": speech,
}
