r"""Benchmarks: ``make bench`` / ``python -m last_nnx.bench --out bench``.

Writes ``bench/results.json`` and ``bench/results.md``, one section each (`__main__.SECTIONS`):

* ``train``, ``pruning``, ``forward``, ``memory`` (`steps`): train-step throughput per task,
  the cost of a pruning event against an epoch, dense vs masked vs compacted layer latency,
  compiled memory vs sequence length;
* ``streaming`` (`deploy`): per-token latency and exported throughput, dense vs compacted;
* ``loop`` (`loop`): the training loop against its bare compiled step, and feeding habits;
* ``capacity`` (`capacity`): the largest Path-X batch that fits, with and without donation
  and remat.

``--sections streaming`` (any subset) reruns only those sections and keeps the others'
figures from the existing ``results.json``. Every ratio is measured within one run on one
machine. Nothing here imports TensorFlow unless the ``loop`` section finds it installed.
"""
