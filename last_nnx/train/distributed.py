"""Data parallelism with JAX's own machinery: a 1-D device mesh along ``data``.

Batches are sharded along their leading axis; model and optimizer state are
replicated. The train step stays one ``nnx.jit`` program: XLA inserts the
gradient all-reduce, and batch statistics and metrics are computed over the
global batch, so a sharded run matches an unsharded one up to float
reassociation. After a compacting pruning event the (smaller) state is simply
replicated again.

Multi-host: `maybe_initialize_distributed` calls ``jax.distributed.initialize()``
when the usual cluster environment is present (a coordinator address, or
SLURM / Open MPI / Kubernetes variables JAX auto-detects); each host then
reads its own shard of the data (``process_index`` / ``process_count``).
"""

import collections
import os

import jax
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
                "TPU_WORKER_HOSTNAMES")


def maybe_initialize_distributed() -> bool:
  """Starts ``jax.distributed`` when a multi-host environment is detected."""
  if not any(v in os.environ for v in _CLUSTER_ENV):
    return False
  if jax.distributed.is_initialized():
    return True
  jax.distributed.initialize()
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def make_mesh(num_devices: int = 0) -> Mesh | None:
  """A ``('data',)`` mesh over the first ``num_devices`` devices (0: all); None for one."""
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f"train.num_devices={n} but only {len(devices)} devices are visible")
  if n <= 1:
    return None
  return Mesh(np.asarray(devices[:n]), ("data",))


def check_batch(batch_size: int, mesh: Mesh | None, name: str = "train.batch_size") -> None:
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(f"{name}={batch_size} must divide evenly across {mesh.size} devices: "
                     f"use a multiple of {mesh.size} or set train.num_devices")


def shard_batch(batch, mesh: Mesh | None):
  """Places host arrays on the mesh, split along the batch axis (a no-op without mesh).

  In a multi-host run each host passes its own slice; the global array is
  assembled from the per-process pieces.
  """
  if mesh is None:
    return batch
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  if jax.process_count() > 1:
    return tuple(jax.make_array_from_process_local_data(sharding, np.asarray(a)) for a in batch)
  return tuple(jax.device_put(np.asarray(a), sharding) for a in batch)


def replicate(*nodes, mesh: Mesh | None) -> None:
  """Replicates every variable of the given NNX objects across the mesh, in place."""
  if mesh is None:
    return
  replicated = NamedSharding(mesh, PartitionSpec())
  for node in nodes:
    state = nnx.state(node)
    nnx.update(node, jax.device_put(state, replicated))


def prefetch_to_device(batches, mesh: Mesh | None, size: int = 2):
  """Yields the batches of ``batches`` already on the device, ``size`` ahead.

  Each batch is placed (sharded along ``data`` on a mesh, else on the default
  device) while the previous steps still run, so the host never waits on a
  transfer before dispatching the next step.
  """
  queue = collections.deque()
  for batch in batches:
    queue.append(shard_batch(batch, mesh) if mesh is not None
                 else tuple(jax.device_put(np.asarray(a)) for a in batch))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
