"""Recovery after pruning: fine-tune a pruned LM on the dense model's logits, or on the text.

    from last_nnx.lm import distill
    history = distill.finetune(pruned, train_windows, teacher=dense, steps=300, lr=3e-4)
    history = distill.finetune(pruned, train_windows, steps=300, lr=3e-4)   # plain

With a ``teacher`` the loss per predicted token is the KL divergence from the
teacher's next-token distribution to the student's, at temperature ``T``:

    KL(p_T || q_T) = sum_v p_T(v) (log p_T(v) - log q_T(v)),
    p_T = softmax(teacher logits / T),  q_T = softmax(student logits / T),

times ``T^2`` (the usual scaling that keeps gradient sizes comparable across T),
averaged over the batch's tokens. Without one it is the next-token cross-entropy on
the text (what training used). Both use AdamW at a small constant rate with
gradients clipped at 1, on batches of ``batch_size`` windows ``(B, L + 1)`` drawn
at random from ``windows`` (inputs ``w[:, :-1]``, targets ``w[:, 1:]``). The
student is updated in place; the teacher is never changed. Pruned (compacted)
states stay removed: their parameters no longer exist, and masked slots stay
masked (the ``StateMask`` is not a parameter).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from last_nnx.lm.generate import token_nll


def kl_loss(
  student_logits: jax.Array, teacher_logits: jax.Array, temperature: float = 1.0
) -> jax.Array:
  """Mean over tokens of ``T^2 KL(softmax(t / T) || softmax(s / T))``; logits ``(..., V)``."""
  t = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  s = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  return temperature**2 * jnp.mean(jnp.sum(jnp.exp(t) * (t - s), axis=-1))


@nnx.jit(static_argnames=("temperature",))
def _distill_step(student, optimizer, inputs, teacher_logits, temperature):
  def loss_fn(m):
    return kl_loss(m(inputs), teacher_logits, temperature)

  loss, grads = nnx.value_and_grad(loss_fn)(student)
  optimizer.update(student, grads)
  return loss


@nnx.jit
def _ce_step(student, optimizer, inputs, targets):
  def loss_fn(m):
    return jnp.mean(token_nll(m(inputs), targets))

  loss, grads = nnx.value_and_grad(loss_fn)(student)
  optimizer.update(student, grads)
  return loss


@nnx.jit
def _logits(model, inputs):
  return model(inputs)


def finetune(
  student: nnx.Module,
  windows,
  *,
  teacher: nnx.Module | None = None,
  steps: int = 300,
  lr: float = 3e-4,
  batch_size: int = 16,
  temperature: float = 1.0,
  weight_decay: float = 0.0,
  seed: int = 0,
  log_every: int = 50,
  log=None,
) -> list[tuple[int, float]]:
  """Fine-tunes ``student`` in place (module docstring); ``windows (n, L + 1)`` int32.

  Returns ``[(step, mean loss since the previous entry), ...]`` every ``log_every``
  steps (the KL with a teacher, else the cross-entropy in nats per token); ``log`` is
  called with each entry as it is made (progress).
  """
  windows = np.asarray(windows, np.int32)
  if windows.ndim != 2 or windows.shape[1] < 2:
    raise ValueError(f"finetune: windows have shape {windows.shape}; pass (n, L + 1) tokens")
  if steps < 1 or not lr > 0:
    raise ValueError(f"finetune: steps = {steps}, lr = {lr}; pass steps >= 1 and lr > 0")
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=weight_decay))
  optimizer = nnx.Optimizer(student, tx, wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  history, running = [], []
  for step in range(1, steps + 1):
    rows = jnp.asarray(windows[rng.integers(0, len(windows), batch_size)])
    inputs, targets = rows[:, :-1], rows[:, 1:]
    if teacher is not None:
      loss = _distill_step(student, optimizer, inputs, _logits(teacher, inputs), float(temperature))
    else:
      loss = _ce_step(student, optimizer, inputs, targets)
    running.append(loss)
    if step % log_every == 0 or step == steps:
      history.append((step, float(np.mean(jax.device_get(running)))))
      running = []
      if log:
        log(*history[-1])
  return history
