"""The geometry of synthetic Pathfinder images: random contours, dashed strokes, discs.

Pure numpy on pixel grids of side ``res``; `synthetic.pathfinder` composes them.
"""

import numpy as np


def reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Folds coordinates into ``[lo, hi]`` by mirroring at the borders (keeps curves smooth)."""
  width = hi - lo
  y = np.mod(x - lo, 2 * width)
  return lo + width - np.abs(y - width)


def contours(
  rng, n: int, count: int, segments: int, res: int, step: float, curvature: float, margin: float
) -> np.ndarray:
  """Smooth random walks: ``(n, count, segments + 1, 2)`` float (row, col) vertices."""
  start = rng.uniform(margin, res - 1 - margin, size=(n, count, 1, 2))
  heading = rng.uniform(0, 2 * np.pi, size=(n, count, 1))
  turns = rng.normal(0, curvature, size=(n, count, segments))
  angles = heading + np.cumsum(turns, axis=-1)
  moves = step * np.stack([np.sin(angles), np.cos(angles)], axis=-1)
  path = np.concatenate([start, start + np.cumsum(moves, axis=2)], axis=2)
  return reflect(path, margin, res - 1 - margin)


def stroke_pixels(vertices: np.ndarray, res: int, dash: float, thickness: int) -> np.ndarray:
  """Flat pixel indices (per image, ``(n, P)``) covered by dashed strokes along the vertices.

  Each segment is drawn over its first ``dash`` fraction (the paddles of the
  LRA images), sampled twice per pixel, with a ``thickness`` square brush.
  """
  a, b = vertices[:, :, :-1], vertices[:, :, 1:]
  seg_len = np.linalg.norm(b - a, axis=-1).max()
  k = max(2, int(np.ceil(2 * seg_len * dash)) + 1)
  frac = np.linspace(0.0, dash, k)[:, None]
  pts = a[..., None, :] + frac * (b - a)[..., None, :]  # (n, c, s, k, 2)
  pts = np.floor(pts.reshape(len(vertices), -1, 2) + 0.5).astype(np.int64)
  offsets = np.arange(thickness) - (thickness - 1) // 2
  dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
  rows = np.clip(pts[:, :, None, 0] + dy.ravel(), 0, res - 1)
  cols = np.clip(pts[:, :, None, 1] + dx.ravel(), 0, res - 1)
  return (rows * res + cols).reshape(len(vertices), -1)


def disc_pixels(centers: np.ndarray, res: int, radius: float) -> np.ndarray:
  """Flat pixel indices ``(n, P)`` of filled discs around ``(n, m, 2)`` centers."""
  r = int(np.ceil(radius))
  dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
  inside = dy**2 + dx**2 <= radius**2 + 0.25
  dy, dx = dy[inside], dx[inside]
  c = np.floor(centers + 0.5).astype(np.int64)
  rows = np.clip(c[..., 0:1] + dy, 0, res - 1)
  cols = np.clip(c[..., 1:2] + dx, 0, res - 1)
  return (rows * res + cols).reshape(len(centers), -1)
