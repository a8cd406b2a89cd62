"""Data parallelism with JAX's own machinery: a 1-D device mesh along ``data``.

Batches are sharded along their leading axis; model and optimizer state are
replicated. The train step stays one ``nnx.jit`` program: XLA inserts the
gradient all-reduce, and batch statistics and metrics are computed over the
global batch, so a sharded run matches an unsharded one up to float
reassociation. After a compacting pruning event the (smaller) state is simply
replicated again.

Multi-host (several processes, one per host or per accelerator): `initialize`
starts ``jax.distributed`` from explicit settings (``train.coordinator_address``,
``train.num_processes``, ``train.process_id``, or the environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), or from
a cluster JAX detects (SLURM ``srun``, Open MPI ``mpirun``, Cloud TPU). Every
process then runs the same program on the global mesh: it reads its own shard
of the data (``process_index`` / ``process_count``), and global arrays are
assembled from the per-process pieces (`shard_batch`, `replicate`).
"""

import collections
import os

import jax
import numpy as np
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Explicit settings: config field -> environment variable read when the field is unset.
ENV_VARS = {
  "coordinator_address": "JAX_COORDINATOR_ADDRESS",
  "num_processes": "JAX_NUM_PROCESSES",
  "process_id": "JAX_PROCESS_ID",
}
# Launchers whose variables JAX turns into the three settings (jax/_src/clusters):
# name -> (variables that must all be present, the variable holding the process count).
_CLUSTERS = {
  "SLURM (srun)": (
    ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"),
    "SLURM_NTASKS",
  ),
  "Open MPI (mpirun)": (("OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_SIZE"), "OMPI_COMM_WORLD_SIZE"),
  "Cloud TPU": (("TPU_WORKER_HOSTNAMES",), None),
}


def settings(train_config=None, environ=None) -> dict:
  """The explicit multi-host settings: config fields first, then environment variables.

  Args:
    train_config: the ``train`` section (``coordinator_address`` '' ,
      ``num_processes`` 0 and ``process_id`` -1 mean unset); None reads only the
      environment.
    environ: the environment (default ``os.environ``).

  Returns:
    ``{'coordinator_address': str | None, 'num_processes': int | None,
    'process_id': int | None}``.
  """
  environ = os.environ if environ is None else environ
  unset = {"coordinator_address": "", "num_processes": 0, "process_id": -1}
  out = {}
  for field, var in ENV_VARS.items():
    value = None
    if train_config is not None and field in train_config:
      value = train_config[field]
      value = None if value in (unset[field], None) else value
    if value is None and environ.get(var, "").strip():
      value = environ[var].strip()
      if field != "coordinator_address":
        try:
          value = int(value)
        except ValueError:
          raise ValueError(f"{var}={value!r} is not an integer") from None
    out[field] = value
  return out


def detected_cluster(environ=None) -> tuple[str, int | None] | None:
  """``(launcher name, process count or None)`` of a cluster JAX can read, else None."""
  environ = os.environ if environ is None else environ
  for name, (required, count_var) in _CLUSTERS.items():
    if all(v in environ for v in required):
      return name, int(environ[count_var]) if count_var else None
  return None


def _check_settings(s: dict, cluster) -> None:
  given = [k for k, v in s.items() if v is not None]
  missing = [k for k, v in s.items() if v is None]
  if given and missing and cluster is None:
    names = lambda keys: " and ".join(f"train.{k} ({ENV_VARS[k]})" for k in keys)
    raise ValueError(
      f"multi-host settings incomplete: {names(given)} given but not "
      f"{names(missing)}; give all three (or none, under srun/mpirun)"
    )
  if s["num_processes"] is not None and s["num_processes"] < 1:
    raise ValueError(f"train.num_processes={s['num_processes']} must be >= 1")
  if (
    s["process_id"] is not None
    and s["num_processes"] is not None
    and not (0 <= s["process_id"] < s["num_processes"])
  ):
    raise ValueError(
      f"train.process_id={s['process_id']} must be in 0..{s['num_processes'] - 1} "
      f"(train.num_processes={s['num_processes']})"
    )


# What a collective's error says when another process of the run is gone.
_LOST_PEER = ("Gloo", "NCCL", "heartbeat timeout", "closed by peer", "reset by peer")


def lost_peer(error: BaseException) -> bool:
  """Whether ``error`` (raised in a multi-process run) means another process stopped."""
  return jax.process_count() > 1 and any(m in str(error) for m in _LOST_PEER)


def initialize(train_config=None) -> bool:
  """Starts ``jax.distributed`` for a multi-process run; returns whether it is one.

  Explicit settings (see `settings`) win; missing ones are filled in by JAX
  from a detected cluster (`detected_cluster`); with neither, or a single
  process, nothing is started. Must run before anything else touches JAX's
  devices. On CPUs the cross-process collectives use gloo unless
  ``JAX_CPU_COLLECTIVES_IMPLEMENTATION`` says otherwise.

  Raises:
    ValueError: some settings are given but not all (and no cluster fills them in).
  """
  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  s = settings(train_config)
  cluster = detected_cluster()
  _check_settings(s, cluster)
  count = s["num_processes"] if s["num_processes"] is not None else (cluster or (None, None))[1]
  if count == 1 or (count is None and cluster is None):
    return False
  if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=s["coordinator_address"],
    num_processes=s["num_processes"],
    process_id=s["process_id"],
  )
  logging.info(
    "jax.distributed (%s): process %d of %d, %d local / %d global devices",
    "explicit settings" if cluster is None else cluster[0],
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
  return True


def make_mesh(num_devices: int = 0) -> Mesh | None:
  """A ``('data',)`` mesh over the first ``num_devices`` devices (0: all); None for one.

  With several processes the mesh spans every device of every process.
  """
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f"train.num_devices={n} but only {len(devices)} devices are visible")
  if jax.process_count() > 1:
    if n != len(devices):
      raise ValueError(
        f"train.num_devices={n}: a run of {jax.process_count()} processes uses "
        f"all {len(devices)} devices; set train.num_devices=0"
      )
    return Mesh(np.asarray(devices), ("data",))
  if n <= 1:
    return None
  return Mesh(np.asarray(devices[:n]), ("data",))


def check_batch(batch_size: int, mesh: Mesh | None, name: str = "train.batch_size") -> None:
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(
      f"{name}={batch_size} must divide evenly across {mesh.size} devices: "
      f"use a multiple of {mesh.size} or set train.num_devices"
    )


def shard_batch(batch, mesh: Mesh | None):
  """Places host arrays on the mesh, split along the batch axis (a no-op without mesh).

  In a multi-host run each host passes its own slice; the global array is
  assembled from the per-process pieces (process ``i``'s rows come ``i``-th).
  """
  if mesh is None:
    return batch
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  if jax.process_count() > 1:
    return tuple(jax.make_array_from_process_local_data(sharding, np.asarray(a)) for a in batch)
  return tuple(jax.device_put(np.asarray(a), sharding) for a in batch)


def _replicated(x, sharding: NamedSharding):
  """``x`` (a host array, or a device array holding the whole value) replicated."""
  if not isinstance(x, (jax.Array, np.ndarray)):
    return x
  if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
    return x
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(
      _replicated(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x)
    )
  # device_put cannot target other processes' devices: every process builds the
  # global array from its own copy of the (identical) value.
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(*nodes, mesh: Mesh | None) -> None:
  """Replicates every variable of the given NNX objects across the mesh, in place.

  With several processes every process must hold the same values (the same
  seed, the same checkpoint, the same pruning decisions).
  """
  if mesh is None:
    return
  replicated = NamedSharding(mesh, PartitionSpec())
  for node in nodes:
    state = nnx.state(node)
    nnx.update(node, jax.tree.map(lambda x: _replicated(x, replicated), state))


def assert_same_on_every_process(value: str, what: str) -> None:
  """Raises on every process unless all processes pass the same ``value`` (a no-op alone).

  Compares a digest of ``value`` across processes: decisions each process takes
  on its own (a pruning event's keep set) must agree, or the replicated state
  would silently differ between processes.
  """
  if jax.process_count() == 1:
    return
  import hashlib

  digest = np.frombuffer(hashlib.sha256(value.encode()).digest(), np.uint32)
  multihost_utils.assert_equal(
    digest, f"{what} differs between processes (process {jax.process_index()})"
  )


def prefetch_to_device(batches, mesh: Mesh | None, size: int = 2):
  """Yields the batches of ``batches`` already on the device, ``size`` ahead.

  Each batch is placed (sharded along ``data`` on a mesh, else on the default
  device) while the previous steps still run, so the host never waits on a
  transfer before dispatching the next step.
  """
  queue = collections.deque()
  for batch in batches:
    queue.append(
      shard_batch(batch, mesh)
      if mesh is not None
      else tuple(jax.device_put(np.asarray(a)) for a in batch)
    )
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
