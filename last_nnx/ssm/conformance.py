"""Protocol checks for SSM layer types: what a new type is missing, said plainly."""

import jax.numpy as jnp
import numpy as np

from last_nnx.ssm.base import PrunableSSM, StateModes

REQUIRED = ("state_mask", "state_shape", "state_modes", "mask_states", "prune_states",
            "init_state", "step")


def check_protocol(layer, d_model: int) -> list[str]:
  """Problems that keep ``layer`` from working with pruning and training ([] if none)."""
  problems = [f"missing attribute or method {name!r}" for name in REQUIRED
              if not hasattr(layer, name)]
  if problems:
    return problems + ["subclass last_nnx.ssm.DiagonalSSM and declare STATE_AXES to get "
                       "mask_states/prune_states/init_state/step for free"]
  if not isinstance(layer, PrunableSSM):
    problems.append("not a last_nnx.ssm.PrunableSSM")
  modes = layer.state_modes()
  if not isinstance(modes, StateModes):
    return problems + [f"state_modes() returned {type(modes).__name__}, not StateModes"]
  s = int(np.prod(layer.state_shape))
  checks = [
      (modes.poles.shape == (s,), f"poles shape {modes.poles.shape}, expected ({s},)"),
      (jnp.iscomplexobj(modes.poles), "poles must be complex"),
      (modes.B.ndim == 2 and modes.B.shape[0] == s, f"B shape {modes.B.shape}, expected ({s}, H_in)"),
      (modes.C.ndim == 3 and modes.C.shape[0] in (1, 2) and modes.C.shape[2] == s,
       f"C shape {modes.C.shape}, expected (D in {{1, 2}}, H_out, {s})"),
      (modes.valid.shape == (s,) and modes.valid.dtype == jnp.bool_,
       f"valid must be ({s},) bool"),
      (modes.output_scale in (1.0, 2.0), "output_scale must be 1.0 or 2.0"),
  ]
  if modes.channel is None:
    checks.append((modes.B.shape[1] == d_model and modes.C.shape[1] == d_model,
                   f"MIMO layer: B (S, {d_model}) and C (D, {d_model}, S) expected"))
  else:
    checks.append((modes.B.shape[1] == 1 and modes.C.shape[1] == 1 and
                   modes.channel.shape == (s,), "multi-SISO layer: B (S, 1), C (D, 1, S) and "
                   "channel (S,) expected"))
  problems += [msg for ok, msg in checks if not ok]
  live = np.asarray(modes.valid)
  if live.any() and not np.all(np.abs(np.asarray(modes.poles))[live] < 1):
    problems.append("poles must lie inside the unit circle (|lam| < 1)")
  if not getattr(type(layer), "STATE_AXES", None):
    problems.append("STATE_AXES is empty: compaction would not shrink any parameter")
  return problems
