"""The benchmarked task shapes (plain data: importing this module imports no JAX)."""

from typing import Any

# From experiments/configs (S5 settings); vocab None = continuous input.
TASK_SHAPES: dict[str, dict[str, Any]] = {
  "listops": dict(L=2048, vocab=17, classes=10, layers=8, H=128, P=16, J=8, s4d_H=128),
  "text": dict(L=4096, vocab=257, classes=2, layers=6, H=256, P=192, J=12, s4d_H=256),
  "retrieval": dict(
    L=4000, vocab=257, classes=2, layers=6, H=128, P=256, J=16, s4d_H=256, retrieval=True
  ),
  "image": dict(L=1024, vocab=None, classes=10, layers=6, H=512, P=384, J=3, s4d_H=512),
  "pathfinder": dict(L=1024, vocab=None, classes=2, layers=6, H=192, P=256, J=8, s4d_H=256),
  "pathx": dict(L=16384, vocab=None, classes=2, layers=6, H=128, P=256, J=16, s4d_H=256),
  "speech": dict(L=16000, vocab=None, classes=10, layers=6, H=96, P=128, J=16, s4d_H=96),
}
