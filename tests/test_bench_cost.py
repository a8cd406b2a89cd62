"""The ``cost`` benchmark section: XLA's cost figures of the compiled step, tiny shape."""

import jax
import jax.numpy as jnp
import pytest

from last_nnx.bench import cost


def test_compiled_cost_counts_a_known_program():
  x = jax.ShapeDtypeStruct((1000,), jnp.float32)
  figures = cost.compiled_cost(jax.jit(lambda v: jnp.exp(v) * 2.0 + 1.0).lower(x).compile())
  assert figures["bytes_accessed"] == 8000  # one read and one write of 1000 float32
  assert figures["flops"] >= 2000
  assert figures["fusions"] == 1


@pytest.mark.slow  # ~7 s cold: compiles two train steps and two forwards
def test_cost_section_gives_both_scan_methods_figures_at_a_tiny_shape(monkeypatch):
  monkeypatch.setattr(cost, "REFERENCE_SCRIPT", "/nonexistent/reference_step.py")
  result = cost.bench_cost(["listops", "text"], batches={"listops": 2}, length=16, layers=1)
  assert result["reference"].startswith("no ")  # says why the paper's figures are absent
  assert result["skipped_tasks"] == ["text"]
  row = result["tasks"]["listops"]
  assert (row["seq_len"], row["layers"], row["batch"]) == (16, 1, 2)
  assert "reference" not in row and "ratio" not in row
  assert sorted(row["ours"]) == sorted(cost.SCAN_METHODS)
  for method in cost.SCAN_METHODS:
    train, forward = row["ours"][method]["train_step"], row["ours"][method]["forward"]
    for figures in (train, forward):
      assert figures["flops"] > 0 and figures["bytes_accessed"] > 0 and figures["fusions"] > 0
    # The gradient and the update cost more than the forward alone.
    assert train["flops"] > 2 * forward["flops"]
    assert train["bytes_accessed"] > forward["bytes_accessed"]
  lines = cost.markdown(result)
  assert sum(line.startswith("| listops") for line in lines) == 2 * len(cost.SCAN_METHODS)


def test_ratios_divide_ours_by_the_reference():
  ours = {p: dict(flops=2.0, bytes_accessed=3.0, fusions=4) for p in cost.PROGRAMS}
  ref = {p: dict(flops=4.0, bytes_accessed=6.0, fusions=8) for p in cost.PROGRAMS}
  assert cost.ratios(ours, ref) == {
    p: dict(flops=0.5, bytes_accessed=0.5, fusions=0.5) for p in cost.PROGRAMS
  }
