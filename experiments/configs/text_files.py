r"""Language model (Mamba-2) on your own .txt or .jsonl files (data.path).

The run of ``pydocs.py`` (same model, schedule and pruning) on ``data.path``: a file, a
folder (searched recursively) or a glob of ``.txt`` files (documents are the parts
between blank lines; ``data.doc_separator=''``: one document per file) and ``.jsonl``
files (one JSON object per line, its ``data.text_field``, default ``text``). Split by
document (``data.val_fraction`` / ``data.test_fraction``, 5% each), windows of
``data.seq_len`` bytes; ``data.tokenizer=DIR`` reads a checkpoint's ``tokenizer.json``
instead (the model's vocabulary then follows it). See docs/lm.md, "Training on text".

  make train TASK=text_files MODEL=mamba2 ARGS="--config.data.path=corpus/"
"""

from experiments.configs import pydocs

MODEL_TYPES = pydocs.MODEL_TYPES


def get_config(arg: str | None = None):
  return pydocs.lm_config("text_files", arg)
