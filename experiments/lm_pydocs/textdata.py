"""Experiment helper: the pydocs splits with wt-lmtrain's (not yet landed) data code, loaded by path."""

import importlib.util
import sys


def _load(name, path):
  spec = importlib.util.spec_from_file_location(name, path)
  mod = importlib.util.module_from_spec(spec)
  sys.modules[name] = mod
  spec.loader.exec_module(mod)
  return mod


def splits(seq_len=128):
  try:
    from last_nnx.data import text  # on main once landed
  except ImportError:
    _load("last_nnx.data.pydocs", "/work/wt-lmtrain/last_nnx/data/pydocs.py")
    text = _load("last_nnx.data.text", "/work/wt-lmtrain/last_nnx/data/text.py")
  c = text.default_config("pydocs")
  c.seq_len = seq_len
  s, per_token, info, vocab = text.load_splits(c)
  import numpy as np

  return {k: np.asarray(v.inputs, np.int32) for k, v in s.items()}, per_token
