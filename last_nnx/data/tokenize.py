"""Tokenizers of text tasks: UTF-8 bytes (vocab 256) or a checkpoint's ``tokenizer.json``.

Both expose ``name``, ``vocab_size``, ``separator`` (the id put between documents, or
None), ``encode(str) -> (T,) int32`` and ``decode(ids) -> str``. `check_vocab` tells
whether a tokenizer can be a model's.
"""

import os

import numpy as np

BYTES = "bytes"
_EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")
# A model's vocabulary may be its tokenizer's padded up to a multiple (mamba_ssm pads
# 50277 to 50288 with pad_vocab_size_multiple = 16; Megatron-style models use 128).
VOCAB_PAD_MULTIPLE = 128


class ByteTokenizer:
  """UTF-8 bytes as tokens 0..255; the separator between documents is byte 0 (NUL)."""

  name = BYTES
  vocab_size = 256
  separator = 0

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

  def decode(self, ids) -> str:
    return bytes(np.asarray(ids, np.uint8).tolist()).decode("utf-8", errors="replace")


class JsonTokenizer:
  """A ``tokenizer.json`` (Hugging Face ``tokenizers``); no special tokens are added."""

  def __init__(self, path: str):
    try:
      import tokenizers  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError(
        "reading tokenizer.json needs the tokenizers package: pip install tokenizers"
      ) from e
    try:
      self._tok = tokenizers.Tokenizer.from_file(path)
    except Exception as e:  # the package raises its own Exception type on a bad file
      raise ValueError(
        f"{path} is not a readable tokenizer.json ({str(e).splitlines()[0]}): "
        "use the file that came with the checkpoint"
      ) from None
    self.name = path
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    eos = [self._tok.token_to_id(t) for t in _EOS_NAMES]
    eos = [i for i in eos if i is not None]
    self.separator = eos[0] if eos else None

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

  def decode(self, ids) -> str:
    return self._tok.decode([int(i) for i in ids])


def load_tokenizer(spec: str) -> ByteTokenizer | JsonTokenizer:
  """``'bytes'``, a ``tokenizer.json`` file, or a folder holding one."""
  if spec == BYTES:
    return ByteTokenizer()
  path = os.path.expanduser(spec)
  if os.path.isdir(path):
    path = os.path.join(path, "tokenizer.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"data.tokenizer={spec!r}: no tokenizer.json there; give 'bytes' "
      "or the checkpoint's tokenizer.json (or its folder)"
    )
  return JsonTokenizer(path)


def check_vocab(tokenizer_vocab: int, model_vocab: int, tokenizer_name: str = "") -> None:
  """Raises when a tokenizer cannot be the model's: more tokens than the model's
  vocabulary, or a vocabulary larger than the tokenizer's padded to a multiple of
  `VOCAB_PAD_MULTIPLE` (e.g. bytes, 256, on a 50288-token model)."""
  padded = -(-tokenizer_vocab // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE
  if tokenizer_vocab <= model_vocab <= padded:
    return
  name = f" ({tokenizer_name})" if tokenizer_name else ""
  raise ValueError(
    f"the tokenizer{name} has {tokenizer_vocab} tokens but the model's "
    f"vocabulary has {model_vocab}: use the tokenizer.json that came with the "
    "checkpoint (data.tokenizer=DIR), or data.tokenizer=bytes for a model with "
    "vocab 256"
  )
