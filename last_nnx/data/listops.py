"""The ListOps language (Nangia & Bowman, 2018) as the LRA benchmark uses it.

Expressions nest four operators over digits: ``[MAX``, ``[MIN``, ``[MED``
(median, rounded down) and ``[SM`` (sum mod 10), each closed by ``]``. The LRA
files write them with parentheses, ``( ( [MAX 2 ) 9 ) ]``, which carry no
information and are dropped.

Token ids: 0 is padding, then the ten digits, the four operators and ``]``.
"""

from collections.abc import Callable, Iterator

import numpy as np

OPERATORS = ("[MAX", "[MIN", "[MED", "[SM")
CLOSE = "]"
VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + OPERATORS + (CLOSE,)
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
VOCAB_SIZE = len(VOCAB)  # 16
DIGIT_IDS = tuple(TOKEN_ID[str(d)] for d in range(10))
OPERATOR_IDS = tuple(TOKEN_ID[op] for op in OPERATORS)
CLOSE_ID = TOKEN_ID[CLOSE]

# LRA's generator (lra_benchmarks/data/listops.py): below the depth limit a node is
# an operator with probability 0.25, otherwise a digit.
OPERATOR_P = 0.25


def apply(op: str, values: list[int]) -> int:
  """The value of ``op`` applied to a list of digits."""
  if op == "[MAX":
    return max(values)
  if op == "[MIN":
    return min(values)
  if op == "[MED":
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2
  if op == "[SM":
    return sum(values) % 10
  raise ValueError(f"unknown ListOps operator {op!r}")


def tokenize(source: str) -> list[str]:
  """LRA source text -> tokens, parentheses removed."""
  return source.replace("(", " ").replace(")", " ").split()


def evaluate(tokens: list[str]) -> int:
  """The value of a tokenized expression; ValueError if it is malformed."""
  stack: list[tuple[str, list[int]]] = []
  result = None
  for t in tokens:
    if result is not None:
      raise ValueError("tokens after a complete expression")
    if t in OPERATORS:
      stack.append((t, []))
    elif t == CLOSE:
      if not stack or len(stack[-1][1]) == 0:
        raise ValueError("']' without an open operator or with no argument")
      op, values = stack.pop()
      value = apply(op, values)
      if stack:
        stack[-1][1].append(value)
      else:
        result = value
    elif len(t) == 1 and t.isdigit():
      if stack:
        stack[-1][1].append(int(t))
      else:
        result = int(t)
    else:
      raise ValueError(f"unknown token {t!r}")
  if result is None:
    raise ValueError("incomplete expression")
  return result


def uniform_stream(rng: np.random.Generator, block: int = 1 << 16) -> Callable[[], float]:
  """A cheap ``() -> float`` in [0, 1) drawing from ``rng`` in blocks (Python-call speed)."""

  def blocks() -> Iterator[float]:
    while True:
      yield from rng.random(block).tolist()

  return blocks().__next__


class TooLong(Exception):
  """Raised while sampling once an expression passes the length limit."""


def sample(
  u: Callable[[], float],
  *,
  max_depth: int,
  max_args: int,
  limit: int,
  out: list[int],
  depth: int = 1,
) -> int:
  """Appends one random expression's token ids to ``out``; returns its value.

  Follows LRA's generator: the root sits at depth 1; below ``max_depth`` a node
  is an operator with probability `OPERATOR_P` taking 2..``max_args``
  arguments. Raises `TooLong` as soon as ``out`` holds more than ``limit``
  tokens, so oversized trees cost no more than ``limit`` draws.
  """
  if depth < max_depth and u() < OPERATOR_P:
    k = int(u() * len(OPERATORS))
    out.append(OPERATOR_IDS[k])
    n_args = 2 + int(u() * (max_args - 1))
    values = [
      sample(u, max_depth=max_depth, max_args=max_args, limit=limit, out=out, depth=depth + 1)
      for _ in range(n_args)
    ]
    out.append(CLOSE_ID)
    if len(out) > limit:
      raise TooLong
    return apply(OPERATORS[k], values)
  value = int(u() * 10)
  out.append(DIGIT_IDS[value])
  if len(out) > limit:
    raise TooLong
  return value
