"""Section ``capacity``: the largest Path-X-shape batch whose train step fits the
device, with and without donation and rematerialization (XLA's compiled memory)."""

from last_nnx.bench import loop as loop_lib
from last_nnx.bench.common import TASK_SHAPES, build_model, make_batch


def bench_capacity(capacity_gib: float, batch_probes=(4, 8)) -> dict:
  """Largest Path-X-shape S5 batch whose train step fits, with/without donation and remat."""
  shape = TASK_SHAPES["pathx"]
  limit = loop_lib.device_memory_limit()
  source = "device bytes_limit"
  if limit is None:
    limit, source = int(capacity_gib * 2**30), f"nominal {capacity_gib:g} GiB"
  rows = []
  for remat in (False, True):
    make = lambda: (lambda m: (m, loop_lib.adam_optimizer(m)))(
      build_model(shape, "s5", remat=remat)
    )
    for donate in (False, True):
      row = loop_lib.largest_batch(
        make, lambda b: make_batch(shape, b), donate=donate, limit_bytes=limit, probes=batch_probes
      )
      rows.append(dict(row, remat=remat))
  return dict(limit_bytes=limit, limit_source=source, seq_len=shape["L"], rows=rows)


def capacity_markdown(r: dict) -> list[str]:
  lines = [
    f"## Largest Path-X batch (S5, L={r['seq_len']}; {r['limit_source']}: "
    f"{r['limit_bytes'] / 2**30:.1f} GiB; from XLA's compiled memory)",
    "",
    "| remat | donation | largest batch | GiB at it | MiB per example |",
    "|---|---|---|---|---|",
  ]
  for row in r["rows"]:
    lines.append(
      f"| {'yes' if row['remat'] else 'no'} | {'yes' if row['donate'] else 'no'} | "
      f"{row['largest_batch']} | {row['bytes_at_largest'] / 2**30:.1f} | "
      f"{row['per_example_bytes'] / 2**20:.0f} |"
    )
  return lines + [""]
