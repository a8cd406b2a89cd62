"""Diagonal linear recurrences ``x_t = lam * x_{t-1} + bu_t`` (pure functions).

Two algorithms give the same states: a parallel ``associative_scan`` (O(L log L)
work, O(log L) depth: the right choice on GPU/TPU) and a sequential
``lax.scan`` (O(L) work). On CPU the sequential scan is faster in every regime
we measured, 1.2-2.5x forward and 2.5-5x for the gradient (B=16, L=2048, S=64:
10 vs 25 ms forward, 32 vs 117 ms gradient; L=16384, S=128: 75 vs 89 ms, 108 vs
255 ms), so ``method='auto'`` picks it on CPU. Splitting complex numbers into
real/imag pairs or chunking the parallel scan was slower on CPU than both.
"""

import functools

import jax
import jax.numpy as jnp

METHODS = ("auto", "associative", "sequential")


def _combine(left, right):
  a_l, b_l = left
  a_r, b_r = right
  return a_r * a_l, a_r * b_l + b_r


def resolve_method(method: str) -> str:
  if method not in METHODS:
    raise ValueError(f"unknown scan method {method!r}; expected one of {METHODS}")
  if method == "auto":
    return "sequential" if jax.default_backend() == "cpu" else "associative"
  return method


def _parallel_states(lam: jax.Array, bu: jax.Array, reverse: bool) -> jax.Array:
  """``associative_scan`` of the recurrence over axis 1 (``lam`` broadcast to ``bu``)."""
  a = jnp.broadcast_to(lam, bu.shape)
  _, xs = jax.lax.associative_scan(_combine, (a, bu), axis=1, reverse=reverse)
  return xs


def _sum_to(x: jax.Array, shape: tuple) -> jax.Array:
  """Sums ``x`` over the axes that ``shape`` broadcast along (undoes a broadcast)."""
  lead = x.ndim - len(shape)
  x = jnp.sum(x, axis=tuple(range(lead)))
  return jnp.sum(x, axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _parallel_recurrence(lam: jax.Array, bu: jax.Array, reverse: bool) -> jax.Array:
  return _parallel_states(lam, bu, reverse)


def _parallel_recurrence_fwd(lam, bu, reverse):
  xs = _parallel_states(lam, bu, reverse)
  return xs, (lam, xs)


def _parallel_recurrence_bwd(reverse, residuals, g):
  """The transpose of the recurrence, written out instead of differentiated through.

  ``x = R bu`` is linear in ``bu``; its transpose (JAX's complex convention: no
  conjugation) is the same recurrence run the other way in time, ``gb_t = lam
  gb_{t+1} + g_t`` (forward direction), so the cotangent of ``bu`` is one more
  parallel scan. ``lam`` enters step t only through ``lam * x_prev(t)``, so its
  cotangent is ``sum_{b,t} gb_t x_prev(t)``. Autodiff through ``associative_scan``
  instead transposes every strided slice of every level into a padded full-length
  array and adds them: at L = 2048 about 6x the bytes of the forward scan.
  """
  lam, xs = residuals
  gb = _parallel_states(lam, g, not reverse)
  if reverse:  # x_t = lam x_{t+1} + bu_t
    terms = gb[:, :-1] * xs[:, 1:]
  else:  # x_t = lam x_{t-1} + bu_t
    terms = gb[:, 1:] * xs[:, :-1]
  return _sum_to(terms, jnp.shape(lam)).reshape(jnp.shape(lam)), gb


_parallel_recurrence.defvjp(_parallel_recurrence_fwd, _parallel_recurrence_bwd)


# Compiled as a unit: called outside jit (a layer or calibration code run eagerly), a bare
# lax.scan is traced and compiled again at every call (~0.1 s each on CPU).
@functools.partial(jax.jit, static_argnames=("reverse", "method"))
def diagonal_recurrence(
  lam: jax.Array, bu: jax.Array, *, reverse: bool = False, method: str = "auto"
) -> jax.Array:
  """All states of a diagonal recurrence with zero initial state.

  Args:
    lam: ``(S,)`` complex poles, broadcast along the batch and time axes.
    bu: ``(B, L, S)`` complex driven inputs ``B_bar u_t``.
    reverse: run backward in time (``x_t = lam x_{t+1} + bu_t``).
    method: ``'auto'``, ``'associative'`` or ``'sequential'``.

  Returns:
    ``(B, L, S)`` complex states.
  """
  if resolve_method(method) == "associative":
    return _parallel_recurrence(lam, bu, reverse)

  def step(x, b):
    x = lam * x + b
    return x, x

  x0 = jnp.zeros((bu.shape[0],) + bu.shape[2:], bu.dtype)
  _, xs = jax.lax.scan(step, x0, jnp.swapaxes(bu, 0, 1), reverse=reverse)
  return jnp.swapaxes(xs, 0, 1)


def mimo_diagonal_system(
  lam: jax.Array,
  b: jax.Array,
  c: jax.Array,
  u: jax.Array,
  *,
  bidirectional: bool,
  method: str = "auto",
) -> jax.Array:
  """Output ``sum_d Re(C_d x^(d))`` of a diagonal MIMO system (S5, LRU), no feedthrough.

  Args:
    lam: ``(S,)`` complex discrete poles.
    b: ``(S, H)`` complex input matrix (rows of pruned states already zeroed).
    c: ``(D, H, S)`` complex output matrices, D = 2 when ``bidirectional`` (the
      second reads the backward-in-time states).
    u: ``(B, L, H)`` float inputs.
    bidirectional: add the backward recurrence's output.
    method: scan method (`diagonal_recurrence`).

  Returns:
    ``(B, L, H)`` float32 outputs.
  """
  bu = _input_projection(u, b)
  states = [diagonal_recurrence(lam, bu, method=method)]
  if bidirectional:
    states.append(diagonal_recurrence(lam, bu, reverse=True, method=method))
  return _real_output(states, c[: len(states)])


def _input_projection(u: jax.Array, b: jax.Array) -> jax.Array:
  """``B u``: ``u (B, L, H)`` float, ``b (S, H)`` complex -> ``(B, L, S)`` complex."""
  return jnp.einsum("blh,sh->bls", u.astype(b.dtype), b)


@jax.custom_vjp
def _real_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """``Re(x w^T)``: ``x (B, L, K)`` and ``w (H, K)`` complex -> ``(B, L, H)`` float32."""
  return jnp.einsum("blk,hk->blh", x, w).real


def _real_matmul_fwd(x, w):
  return _real_matmul(x, w), (x, w)


def _real_matmul_bwd(residuals, g):
  """The transposes autodiff takes (``Re``'s: the cotangent as a complex with zero
  imaginary part, no conjugation), with the weight gradient contracted as ``x^T g``
  rather than ``g^T x``: XLA then lays out a transposed copy of the narrow states
  ``(B L, K)``, not of the wide complex cotangent ``(B L, H)``."""
  x, w = residuals
  gc = g.astype(x.dtype)
  return jnp.einsum("blh,hk->blk", gc, w), jnp.einsum("blk,blh->kh", x, gc).T


_real_matmul.defvjp(_real_matmul_fwd, _real_matmul_bwd)


def _real_output(states: list, c: jax.Array) -> jax.Array:
  """``sum_d Re(c_d x^(d))`` for the directions' states ``(B, L, S)`` and ``c (D, H, S)``.

  With states narrower than the output (``D S <= H``, e.g. ListOps: 2 x 8 against
  128), one complex matmul over the states side by side, ``Re([c_1 .. c_D] [x^(1);
  ..; x^(D)])``, as the paper's step does: one complex ``(B, L, H)`` is written and one
  complex cotangent taken instead of one per direction, and its gradient is
  `_real_matmul`'s (ListOps train step, XLA's cost analysis: 6.77 -> 6.39 GB side by
  side, -> 6.27 GB with that gradient). With wide states (Path-X: 2 x 128 against 128)
  copying them side by side and splitting their cotangent for the two transposed
  scans moves more than it saves (33.7 -> 36.1 GB), and so does `_real_matmul`'s
  gradient per direction (-> 34.6 GB): each direction has its plain matmul.
  """
  if len(states) * states[0].shape[-1] <= c.shape[1]:
    x = jnp.concatenate(states, axis=-1) if len(states) > 1 else states[0]  # (B, L, D S)
    w = jnp.concatenate(list(c), axis=-1)  # (H, D S)
    return _real_matmul(x, w)
  y = jnp.einsum("bls,hs->blh", states[0], c[0]).real
  for xs, cd in zip(states[1:], c[1:]):
    y = y + jnp.einsum("bls,hs->blh", xs, cd).real
  return y
