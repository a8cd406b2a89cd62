"""The ``data`` section of a run config, and what each task looks like to a model.

Fields of ``lra_config(task)``, the section of the LRA and Speech Commands
tasks (a plain ConfigDict, so ``--config.data.synthetic.n_train=2000`` works):

  task        one of `TASKS`.
  dir         None: the synthetic generator; a folder: the real release under it.
  source      None: ``dir`` or the synthetic generator; ``tfds``: the TensorFlow
              Datasets build of the release (image, text, speech; `TFDS_TASKS`).
  tfds_dir    where TFDS keeps prepared datasets (None: TFDS's default,
              ``~/tensorflow_datasets``); tfds tasks only.
  seq_len     sequence length L (Pathfinder/Path-X: ``resolution**2``, follows it).
  cache_dir   prepared data cache (``$LAST_NNX_CACHE`` or ``~/.cache/last_nnx``).
  cache_real  also cache parsed real data (memory-mapped on later runs).
  val_fraction  share of train held out as val where the release has no val split
              (text: 0 = validate on test, as LRA; image: 0.1 = 45000/5000).
  split_seed  fixes which examples that held-out val gets (not the training seed).
  splits      'default' (this package's splits) or 'reference' (the paper's code's:
              its random Pathfinder/Path-X and CIFAR val splits, its Speech Commands
              class ids; `last_nnx.data.splits`). Real releases only.
  resolution, variant   Pathfinder/Path-X only: image side and difficulty folder.
  synthetic   n_train, n_val, n_test, seed, seq_len (None: ``data.seq_len``; a
              shorter synthetic L for quick runs that real data ignores), and the
              generator's knobs.

Other tasks bring their own section with their source (`last_nnx.data.table`):
``digits`` has only task, seq_len (64), cache_dir, n_val, n_test and split_seed;
``arrays`` has the fields of `last_nnx.data.arrays` (path, n_classes, vocab_size, ...).
"""

import dataclasses

import ml_collections

from last_nnx.data import listops as listops_lib
from last_nnx.data.cache import default_cache_dir
from last_nnx.data.pipeline import Continuous, Tokens

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx", "speech")
TFDS_TASKS = ("image", "text", "speech")  # data.source=tfds (last_nnx/data/tfds_sources.py)
BYTE_VOCAB = 257  # bytes 0..255 shifted to 1..256; 0 is padding


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """Fixed facts of a task.

  title: how log lines name it.
  seq_len: LRA's (or Speech Commands') sequence length.
  n_classes: classes of the real task.
  encoding: how stored rows become model inputs; None: fitted on the train split.
  synthetic: defaults of the synthetic generator (sizes and knobs).
  """

  title: str
  seq_len: int
  n_classes: int
  encoding: Tokens | Continuous | None
  synthetic: dict
  retrieval: bool = False
  resolution: int | None = None


_PIXELS_CIFAR = Continuous(mean=122.6, std=61.0)  # S4/S5's grayscale CIFAR statistics
_PIXELS_PATHFINDER = Continuous(mean=127.5, std=127.5)  # S4/S5: Normalize(0.5, 0.5)

SPECS = {
  "listops": TaskSpec(
    "ListOps",
    2048,
    10,
    Tokens(listops_lib.VOCAB_SIZE),
    dict(
      n_train=5000,
      n_val=500,
      n_test=500,
      max_depth=10,
      max_args=10,
      min_length=500,
      max_length=2000,
    ),
  ),
  "text": TaskSpec(
    "IMDB text",
    4096,
    2,
    Tokens(BYTE_VOCAB, offset=1),
    dict(n_train=5000, n_val=500, n_test=500, density=0.05),
  ),
  "retrieval": TaskSpec(
    "AAN retrieval",
    4000,
    2,
    Tokens(BYTE_VOCAB, offset=1),
    dict(n_train=5000, n_val=500, n_test=500, motifs=32, motif_length=8),
    retrieval=True,
  ),
  "image": TaskSpec(
    "CIFAR-10 image",
    1024,
    10,
    _PIXELS_CIFAR,
    dict(n_train=10000, n_val=1000, n_test=1000, n_classes=10, noise=0.15),
  ),
  "pathfinder": TaskSpec(
    "Pathfinder",
    1024,
    2,
    _PIXELS_PATHFINDER,
    dict(n_train=10000, n_val=1000, n_test=1000, distractors=4, segments=8, curvature=0.35),
    resolution=32,
  ),
  "pathx": TaskSpec(
    "Path-X",
    16384,
    2,
    _PIXELS_PATHFINDER,
    dict(n_train=4000, n_val=500, n_test=500, distractors=4, segments=8, curvature=0.35),
    resolution=128,
  ),
  "speech": TaskSpec(
    "Speech Commands",
    16000,
    35,
    None,
    dict(n_train=3500, n_val=350, n_test=350, n_classes=10, noise=0.05),
  ),
}


def lra_config(task: str) -> ml_collections.ConfigDict:
  """The default ``data`` section of an LRA or Speech Commands task (synthetic until
  ``dir`` or ``source`` is set)."""
  spec = SPECS[task]
  c = ml_collections.ConfigDict()
  c.task = task
  c.dir = ml_collections.config_dict.placeholder(str)
  c.source = ml_collections.config_dict.placeholder(str)
  if task in TFDS_TASKS:
    c.tfds_dir = ml_collections.config_dict.placeholder(str)
  if spec.resolution:
    c.resolution = spec.resolution
    c.variant = "curv_contour_length_14"  # the hard variant LRA uses
    c.seq_len = c.get_ref("resolution") * c.get_ref("resolution")
  else:
    c.seq_len = spec.seq_len
  c.cache_dir = default_cache_dir()
  c.cache_real = True
  c.val_fraction = 0.1 if task == "image" else 0.0
  c.split_seed = 42
  c.splits = "default"  # or "reference": the paper's code's splits and class ids
  c.synthetic = ml_collections.ConfigDict(dict(seed=0, **spec.synthetic))
  # Presets shorten synthetic sequences here, never data.seq_len: real data keeps its L.
  c.synthetic.seq_len = ml_collections.config_dict.placeholder(int)
  return c
