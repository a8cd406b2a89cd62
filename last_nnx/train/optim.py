"""Optimizers: separate learning rate and no weight decay for SSM parameters.

Every SSM parameter has a role (`ROLES`): ``dynamics`` (the poles: S5's
``Lambda_re``, ``Lambda_im``), ``step`` (the step size, ``log_step``),
``input`` (``B``), ``output`` (``C``), ``feedthrough`` (``D``). S5's names carry
their roles (`S5_ROLES`); a layer type with other names declares them in its
``PARAM_ROLES`` (`last_nnx.ssm.base.SSMLayer`). The groups by role, as in the
reference S5 code:

================  ==============================================  =================
``opt_config``    SSM group (Adam, ``ssm_lr``, no weight decay)    special group
================  ==============================================  =================
standard          dynamics, step, input                            -
BandCdecay        dynamics, step                                   input: AdamW at ssm_lr
BfastandCdecay    dynamics, step                                   -
noBCdecay         dynamics, step, input, output, feedthrough      -
================  ==============================================  =================

Everything else (output unless noBCdecay, feedthrough, encoder, norms, GLU,
head) is AdamW at the global rate ``lr = lr_factor * ssm_lr`` with
``weight_decay``. With ``dt_global`` the ``step`` parameters move to the global
group, as in the reference. Norm parameters go to the global group: the reference listed
"norm" among SSM names, but its nested-dict matcher only sees leaf names, so in
its runs (and its published numbers) they were decayed at the global rate.
Both rates follow linear warmup then cosine decay, per optimizer update.
"""

import jax
import optax
from flax import nnx

ROLES = ("dynamics", "step", "input", "output", "feedthrough")
S5_ROLES = {
  "Lambda_re": "dynamics",
  "Lambda_im": "dynamics",
  "log_step": "step",
  "B": "input",
  "C": "output",
  "D": "feedthrough",
}
OPT_CONFIGS = {
  "standard": ({"dynamics", "step", "input"}, set()),
  "BandCdecay": ({"dynamics", "step"}, {"input"}),
  "BfastandCdecay": ({"dynamics", "step"}, set()),
  "noBCdecay": ({"dynamics", "step", "input", "output", "feedthrough"}, set()),
}


def param_roles(model: nnx.Module) -> dict[str, str]:
  """Parameter name -> role (`ROLES`), from the ``PARAM_ROLES`` of every module in
  ``model`` (the LRU maps its pole parameters onto ``dynamics``)."""
  roles = {}
  for _, module in nnx.iter_graph(model):
    roles.update(getattr(type(module), "PARAM_ROLES", None) or {})
  return roles


def param_labels(
  params, opt_config: str, dt_global: bool = False, roles: dict[str, str] | None = None
):
  """Labels every parameter ``'ssm'``, ``'ssm_decay'`` or ``'regular'``.

  Args:
    params: a parameter tree keyed by module path (``nnx.State`` of
      ``nnx.Param`` variables, or the same tree of raw arrays as optax sees it
      in ``update``).
    opt_config: one of ``OPT_CONFIGS``.
    dt_global: put the ``step`` parameters in the regular group.
    roles: parameter name -> its role (`param_roles`); names without one take
      `S5_ROLES`'.

  Returns:
    A tree of the same structure with a string label per leaf.
  """
  if opt_config not in OPT_CONFIGS:
    raise ValueError(
      f"unknown optim.opt_config {opt_config!r}; expected one of {sorted(OPT_CONFIGS)}"
    )
  ssm_roles, ssm_decay_roles = OPT_CONFIGS[opt_config]
  if dt_global:
    ssm_roles = ssm_roles - {"step"}

  def label(path, variable):
    name = str(getattr(path[-1], "key", path[-1]))
    role = (roles or {}).get(name) or S5_ROLES.get(name)
    if role in ssm_roles:
      group = "ssm"
    elif role in ssm_decay_roles:
      group = "ssm_decay"
    else:
      group = "regular"
    return variable.replace(group) if isinstance(variable, nnx.Variable) else group

  return jax.tree_util.tree_map_with_path(
    label, params, is_leaf=lambda x: isinstance(x, nnx.Variable)
  )


def learning_rate_schedule(
  peak: float, total_steps: int, warmup_steps: int, end_value: float = 0.0, kind: str = "cosine"
) -> optax.Schedule:
  """Linear warmup from ~0 to ``peak``, then cosine decay (or constant) to ``end_value``."""
  warmup_steps = max(1, int(warmup_steps))
  total_steps = max(total_steps, warmup_steps + 1)
  if kind == "constant":
    after = optax.constant_schedule(peak)
  elif kind == "cosine":
    after = optax.cosine_decay_schedule(
      peak, total_steps - warmup_steps, alpha=end_value / peak if peak else 0.0
    )
  else:
    raise ValueError(f"unknown optim.schedule {kind!r}; expected 'cosine' or 'constant'")
  # As in the reference: lr = peak * (step + 1) / warmup_steps during warmup.
  warmup = optax.linear_schedule(peak / warmup_steps, peak, warmup_steps - 1)
  return optax.join_schedules([warmup, after], [warmup_steps])


def make_optimizer(
  model: nnx.Module, optim_config, *, total_steps: int, steps_per_epoch: int, lr_scale: float = 1.0
) -> tuple[nnx.Optimizer, dict[str, optax.Schedule]]:
  """Builds the ``nnx.Optimizer`` for ``model`` from the ``optim`` config section.

  Args:
    model: the model whose ``nnx.Param`` leaves are optimized.
    optim_config: fields ``ssm_lr, lr_factor, weight_decay, opt_config,
      dt_global, warmup_epochs, lr_min, schedule, grad_clip, grad_accum``.
    total_steps: optimizer updates in the whole run.
    steps_per_epoch: optimizer updates per epoch (for the warmup length).
    lr_scale: multiplies both rates (used to retry after a divergence).

  Returns:
    ``(optimizer, schedules)``, schedules keyed ``'ssm'`` and ``'regular'``.
  """
  c = optim_config
  ssm_lr = c.ssm_lr * lr_scale
  lr = c.lr_factor * c.ssm_lr * lr_scale
  warmup = int(c.warmup_epochs * steps_per_epoch)
  schedules = {
    "ssm": learning_rate_schedule(ssm_lr, total_steps, warmup, c.lr_min, c.schedule),
    "regular": learning_rate_schedule(lr, total_steps, warmup, c.lr_min, c.schedule),
  }
  roles = param_roles(model)
  param_labels(nnx.state(model, nnx.Param), c.opt_config, c.dt_global, roles)  # fail fast
  labels = lambda params: param_labels(params, c.opt_config, c.dt_global, roles)
  tx = optax.multi_transform(
    {
      "ssm": optax.adam(schedules["ssm"]),
      "ssm_decay": optax.adamw(schedules["ssm"], weight_decay=c.weight_decay),
      "regular": optax.adamw(schedules["regular"], weight_decay=c.weight_decay),
    },
    labels,
  )
  if c.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(c.grad_clip), tx)
  if c.grad_accum > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=c.grad_accum)
  return nnx.Optimizer(model, tx, wrt=nnx.Param), schedules
