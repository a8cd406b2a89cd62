"""Synthetic versions of every task: deterministic by seed, learnable, cheap.

They stand in for the real datasets where none is given (this machine has no
network). Numbers measured on them are not LRA results.
"""

import numpy as np

from last_nnx.data import listops as listops_lib
from last_nnx.data.pipeline import Split, pad_tokens


def _balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
  labels = np.arange(n) % n_classes
  rng.shuffle(labels)
  return labels.astype(np.int32)


# ----------------------------------------------------------------------------
# ListOps: the LRA grammar, balanced over the 10 answers.


def listops(n: int, seq_len: int, rng: np.random.Generator, *, max_depth: int = 6,
            max_args: int = 5, min_length: int = 16, max_length: int = 2000) -> Split:
  """Random ListOps expressions, stratified so each answer 0-9 is equally frequent."""
  per_class = -(-n // 10)
  buckets: list[list[list[str]]] = [[] for _ in range(10)]
  max_length = min(max_length, seq_len)
  attempts = 0
  while min(len(b) for b in buckets) < per_class:
    attempts += 1
    if attempts > 400 * n + 10000:
      raise RuntimeError("ListOps generator cannot fill every class: widen the length range")
    tree = listops_lib.random_tree(rng, max_depth=max_depth, max_args=max_args)
    tokens = listops_lib.to_tokens(tree)
    if not min_length <= len(tokens) <= max_length:
      continue
    value = listops_lib.evaluate(tree)
    if len(buckets[value]) < per_class:
      buckets[value].append(tokens)
  examples = [(toks, label) for label, b in enumerate(buckets) for toks in b]
  order = rng.permutation(len(examples))[:n]
  seqs = [listops_lib.encode(examples[i][0]) for i in order]
  inputs, lengths = pad_tokens(seqs, seq_len)
  labels = np.array([examples[i][1] for i in order], np.int32)
  return Split(inputs, lengths, labels)


# ----------------------------------------------------------------------------
# Pathfinder: are the two markers joined by one contour?


def _draw_contour(img, rng, start, steps, step_len, dash=True):
  """Draws a smooth random curve from ``start``; returns its end point."""
  res = img.shape[0]
  pos = np.array(start, float)
  angle = rng.uniform(0, 2 * np.pi)
  for t in range(steps):
    angle += rng.normal(0, 0.35)
    nxt = pos + step_len * np.array([np.cos(angle), np.sin(angle)])
    if not (1 <= nxt[0] < res - 1 and 1 <= nxt[1] < res - 1):
      angle += np.pi / 2
      continue
    if not dash or t % 3 != 2:  # dashed like the LRA contours
      for a in np.linspace(0, 1, max(2, int(step_len * 2))):
        p = pos + a * (nxt - pos)
        img[int(p[0]), int(p[1])] = 1.0
    pos = nxt
  return pos


def _marker(img, p):
  r, c = int(p[0]), int(p[1])
  img[max(0, r - 1):r + 2, max(0, c - 1):c + 2] = 1.0


def pathfinder(n: int, resolution: int, rng: np.random.Generator, *, distractors: int = 2,
               contour_steps: int = 0) -> Split:
  """Contour images ``(N, res*res)`` uint8 with label 1 iff the markers are connected."""
  steps = contour_steps or max(6, resolution // 3)
  step_len = max(1.5, resolution / 16)
  labels = _balanced_labels(n, 2, rng)
  images = np.zeros((n, resolution, resolution), np.float32)
  for i in range(n):
    img = images[i]
    start = rng.uniform(2, resolution - 2, size=2)
    end = _draw_contour(img, rng, start, steps, step_len)
    if labels[i] == 1:
      _marker(img, start)
      _marker(img, end)
    else:
      other = rng.uniform(2, resolution - 2, size=2)
      other_end = _draw_contour(img, rng, other, steps, step_len)
      _marker(img, start)
      _marker(img, other_end)
    for _ in range(distractors):
      _draw_contour(img, rng, rng.uniform(2, resolution - 2, size=2), steps // 2, step_len)
  flat = (images.reshape(n, -1) * 255).astype(np.uint8)
  return Split(flat, np.full(n, resolution * resolution, np.int32), labels)


# ----------------------------------------------------------------------------
# Text, retrieval, image, speech: simple but learnable stand-ins.


def text(n: int, seq_len: int, rng: np.random.Generator) -> Split:
  """Byte "reviews": random words; the label is which of two marker words occurs more."""
  labels = _balanced_labels(n, 2, rng)
  markers = [b"good", b"bad"]
  seqs = []
  for label in labels:
    words = []
    counts = rng.integers(1, 6, size=2)
    counts[label] += rng.integers(2, 5)
    bag = [markers[0]] * counts[0] + [markers[1]] * counts[1]
    filler = [bytes(rng.integers(97, 123, size=rng.integers(2, 8)).astype(np.uint8))
              for _ in range(rng.integers(seq_len // 12, seq_len // 7))]
    words = filler + bag
    rng.shuffle(words)
    seqs.append(list(b" ".join(words)[:seq_len]))
  inputs, lengths = pad_tokens([[b + 1 for b in s] for s in seqs], seq_len)
  return Split(inputs, lengths, labels)


def retrieval(n: int, seq_len: int, rng: np.random.Generator) -> Split:
  """Pairs of byte documents; label 1 iff both contain the same planted motif."""
  labels = _balanced_labels(n, 2, rng)
  inputs = np.zeros((n, 2, seq_len), np.int32)
  lengths = np.zeros((n, 2), np.int32)
  n_motifs = 16
  motifs = rng.integers(1, 200, size=(n_motifs, 6))
  for i, label in enumerate(labels):
    a = rng.integers(n_motifs)
    b = a if label == 1 else (a + rng.integers(1, n_motifs)) % n_motifs
    for d, m in enumerate((a, b)):
      length = int(rng.integers(seq_len // 2, seq_len + 1))
      doc = rng.integers(1, 257, size=length)
      at = int(rng.integers(0, max(1, length - 6)))
      doc[at:at + 6] = motifs[m][:len(doc[at:at + 6])]
      inputs[i, d, :length] = doc
      lengths[i, d] = length
  return Split(inputs, lengths, labels)


def image(n: int, rng: np.random.Generator, *, n_classes: int = 10, side: int = 32) -> Split:
  """Grayscale ``side x side`` images of class-specific oriented gratings plus noise."""
  labels = _balanced_labels(n, n_classes, rng)
  yy, xx = np.mgrid[0:side, 0:side] / side
  images = np.empty((n, side * side), np.uint8)
  for i, label in enumerate(labels):
    theta = np.pi * label / n_classes
    freq = 3 + (label % 3)
    phase = rng.uniform(0, 2 * np.pi)
    g = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
    g = 0.5 + 0.35 * g + 0.15 * rng.normal(size=g.shape)
    images[i] = (np.clip(g, 0, 1) * 255).astype(np.uint8).ravel()
  return Split(images, np.full(n, side * side, np.int32), labels)


def speech(n: int, seq_len: int, rng: np.random.Generator, *, n_classes: int = 10) -> Split:
  """int16 "utterances": class-specific two-tone chirps at random onsets, in noise."""
  labels = _balanced_labels(n, n_classes, rng)
  t = np.arange(seq_len) / 16000.0
  audio = np.empty((n, seq_len), np.int16)
  for i, label in enumerate(labels):
    f0 = 200 + 150 * label
    f1 = f0 * (1.5 if label % 2 else 0.75)
    onset = rng.integers(0, seq_len // 3)
    dur = seq_len // 2
    env = np.zeros(seq_len)
    env[onset:onset + dur] = np.hanning(min(dur, seq_len - onset))
    tone = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 * 16000 / seq_len / 2))
    wave = 0.6 * env * tone + 0.05 * rng.normal(size=seq_len)
    audio[i] = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
  return Split(audio, np.full(n, seq_len, np.int32), labels)
