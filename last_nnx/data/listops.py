"""The ListOps language (Nangia & Bowman, 2018) as used by LRA.

Operators on lists of digits: MAX, MIN, MED (median, floored), SM (sum mod 10).
Source text looks like ``[MAX 2 9 [MIN 4 7 ] 0 ]``; LRA strips parentheses.
"""

import numpy as np

OPERATORS = ("[MAX", "[MIN", "[MED", "[SM")
# 0: padding, 1: unknown; then digits, operators and the closing bracket.
VOCAB = ["<pad>", "<unk>"] + [str(d) for d in range(10)] + list(OPERATORS) + ["]"]
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
VOCAB_SIZE = len(VOCAB)


def random_tree(rng: np.random.Generator, *, max_depth: int, max_args: int, depth: int = 0):
  """A random expression: an int (leaf) or ``(op, [children])``."""
  if depth >= max_depth or (depth > 0 and rng.random() < 0.25):
    return int(rng.integers(10))
  op = OPERATORS[rng.integers(len(OPERATORS))]
  n_args = int(rng.integers(2, max_args + 1))
  return op, [random_tree(rng, max_depth=max_depth, max_args=max_args, depth=depth + 1)
              for _ in range(n_args)]


def evaluate(tree) -> int:
  if isinstance(tree, int):
    return tree
  op, args = tree
  values = [evaluate(a) for a in args]
  if op == "[MAX":
    return max(values)
  if op == "[MIN":
    return min(values)
  if op == "[MED":
    return int(np.floor(np.median(values)))
  return sum(values) % 10


def to_tokens(tree) -> list[str]:
  if isinstance(tree, int):
    return [str(tree)]
  op, args = tree
  out = [op]
  for a in args:
    out += to_tokens(a)
  return out + ["]"]


def tokenize(source: str) -> list[str]:
  """LRA source text -> tokens (parentheses removed)."""
  return source.replace("(", " ").replace(")", " ").split()


def encode(tokens: list[str]) -> list[int]:
  return [TOKEN_ID.get(t, 1) for t in tokens]


def parse(tokens: list[str]):
  """Tokens -> tree (inverse of `to_tokens`); used to check labels."""
  def go(i):
    t = tokens[i]
    if t in OPERATORS:
      args, i = [], i + 1
      while tokens[i] != "]":
        a, i = go(i)
        args.append(a)
      return (t, args), i + 1
    return int(t), i + 1
  tree, end = go(0)
  if end != len(tokens):
    raise ValueError("trailing tokens after a complete expression")
  return tree
