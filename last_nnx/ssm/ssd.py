"""State space duality (SSD): the Mamba-2 scan as pure functions.

One selective SSM with ``h`` heads of width ``p``, state size ``n`` and ``g``
groups (``r = h / g`` consecutive heads share one group's ``B`` and ``C``).
Head ``i`` of group ``k = i // r`` at step t, with ``a_t = dt_t A`` (A < 0):

    H_t = exp(a_t) H_{t-1} + B_t (dt_t x_t)^T       H: (n, p), B_t, C_t: (n,), x_t: (p,)
    y_t = H_t^T C_t

Unrolled, ``y_t = sum_{s <= t} (C_t . B_s) exp(a_{s+1} + ... + a_t) dt_s x_s``: a
causal matrix of rank-n "attention" with a decaying mask. The chunked algorithm
(Dao and Gu 2024, "Transformers are SSMs", Listing 1) cuts L into chunks of T
steps: inside a chunk it is the quadratic form (matmuls), across chunks a
recurrence over the chunk-end states. Work O(L T (n + p) h + L n p h), all of
it matmuls but the (L / T)-long inter-chunk step, done here as one more matmul.

Numerics: every decay exponent is a plain sum of the ``a`` it spans (the
masked-cumsum ``segsum`` and an exclusive reverse cumsum), never a difference
of two long cumsums, so float32 keeps relative error near 1e-7 per decay.
`ssd_sequential` is the step-by-step reference the tests compare with.
"""

import functools

import jax
import jax.numpy as jnp

# The scans are jitted: called eagerly (a layer outside nnx.jit, the pruning statistics)
# they compile once rather than op by op; inside a jitted step they are inlined.
_jit_chunked = functools.partial(jax.jit, static_argnames="chunk_size")


def segsum(a: jax.Array) -> jax.Array:
  """``(..., T) -> (..., T, T)``: ``out[i, j] = a[j+1] + ... + a[i]`` for i >= j, -inf above.

  ``exp(segsum(a))`` is the causal decay mask; its diagonal is ``exp(0) = 1``.
  """
  t = a.shape[-1]
  rows = jnp.broadcast_to(a[..., :, None], a.shape + (t,))  # rows[..., i, j] = a[i]
  strict = jnp.tril(jnp.ones((t, t), bool), -1)
  sums = jnp.cumsum(jnp.where(strict, rows, 0.0), axis=-2)
  return jnp.where(jnp.tril(jnp.ones((t, t), bool)), sums, -jnp.inf)


def _chunks(a: jax.Array, t: int) -> jax.Array:
  """``(b, L, ...) -> (b, L / t, t, ...)`` (L already a multiple of t)."""
  return a.reshape((a.shape[0], a.shape[1] // t, t) + a.shape[2:])


def _prepare(x, dt, A, B, C, chunk_size):
  """Pads L to a multiple of the chunk and splits heads into (group, head in group).

  Padding steps get ``dt = 0``: no input and no decay, so the outputs and the
  final state of the real steps are unchanged.
  """
  b, length, h, p = x.shape
  g = B.shape[2]
  t = max(1, min(chunk_size, length))
  pad = (-length) % t
  widths = lambda a: [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2)
  x, dt, B, C = (jnp.pad(v, widths(v)) for v in (x, dt, B, C))
  xdt = (x * dt[..., None]).reshape(b, length + pad, g, h // g, p)  # (b, L', g, r, p)
  a = (dt * A).reshape(b, length + pad, g, h // g)  # (b, L', g, r), log-decays <= 0
  return t, xdt, a, B, C


@_jit_chunked
def ssd_chunked(
  x: jax.Array,
  dt: jax.Array,
  A: jax.Array,
  B: jax.Array,
  C: jax.Array,
  chunk_size: int,
  initial_state: jax.Array | None = None,
):
  """The chunked SSD scan.

  Args:
    x: ``(b, L, h, p)`` float32 head inputs.
    dt: ``(b, L, h)`` float32 positive steps (after softplus).
    A: ``(h,)`` float32 negative decay rates.
    B, C: ``(b, L, g, n)`` float32 input and output vectors of each group.
    chunk_size: T (the last chunk is zero-step padded when T does not divide L).
    initial_state: ``(b, h, n, p)`` state before step 0, or None (zeros).

  Returns:
    ``(y (b, L, h, p), final_state (b, h, n, p))``, both float32.
  """
  b, length, h, p = x.shape
  g, n = B.shape[2:]
  t, xdt, a, B, C = _prepare(x, dt, A, B, C, chunk_size)
  xs = _chunks(xdt, t)  # (b, c, t, g, r, p)
  Bc, Cc = _chunks(B, t), _chunks(C, t)  # (b, c, t, g, n)
  a = jnp.moveaxis(_chunks(a, t), (1, 2), (3, 4))  # (b, g, r, c, t): time last
  a_cum = jnp.cumsum(a, axis=-1)  # decay from the chunk start through step l
  tail = jnp.cumsum(a[..., ::-1], axis=-1)[..., ::-1]  # a[l] + ... + a[t-1]
  chunk_total = tail[..., 0]  # (b, g, r, c)
  to_end = jnp.concatenate([tail[..., 1:], jnp.zeros_like(tail[..., :1])], axis=-1)

  with jax.named_scope("ssd_intra_chunk"):
    # 1. Inside each chunk: y_l = sum_{s <= l} (C_l . B_s) exp(a_{s+1..l}) dt_s x_s.
    decay = jnp.exp(segsum(a))  # (b, g, r, c, t, t)
    scores = jnp.einsum("bclgn,bcsgn->bcgls", Cc, Bc)  # (b, c, g, t, t)
    y_diag = jnp.einsum("bcgls,bgrcls,bcsgrp->bclgrp", scores, decay, xs)

  with jax.named_scope("ssd_chunk_states"):
    # 2. Each chunk's own contribution to the state at its end (zero state at its start).
    states = jnp.einsum("bclgn,bgrcl,bclgrp->bcgrnp", Bc, jnp.exp(to_end), xs)

  with jax.named_scope("ssd_inter_chunk"):
    # 3. States entering each chunk: H_in[z] = sum_{c < z} exp(sum of chunk totals
    #    strictly between c and z) S_c (+ the decayed initial state), as one matmul.
    if initial_state is None:
      init = jnp.zeros((b, 1, g, h // g, n, p), x.dtype)
    else:
      init = initial_state.reshape(b, g, h // g, n, p)[:, None]
    states = jnp.concatenate([init, states], axis=1)  # (b, c + 1, g, r, n, p)
    padded = jnp.pad(chunk_total, [(0, 0)] * 3 + [(1, 0)])
    chunk_decay = jnp.exp(segsum(padded))  # (b, g, r, c + 1, c + 1)
    entering = jnp.einsum("bgrzc,bcgrnp->bzgrnp", chunk_decay, states)
    h_in, final = entering[:, :-1], entering[:, -1]

  with jax.named_scope("ssd_state_to_output"):
    # 4. What the entering state adds at step l of its chunk: exp(a_{0..l}) C_l^T H_in.
    y_off = jnp.einsum("bclgn,bcgrnp,bgrcl->bclgrp", Cc, h_in, jnp.exp(a_cum))

  y = (y_diag + y_off).reshape(b, -1, h, p)[:, :length]
  return y, final.reshape(b, h, n, p)


@jax.jit
def ssd_sequential(x, dt, A, B, C, initial_state=None):
  """Reference: the recurrence of the module docstring, one step at a time (`lax.scan`).

  Same arguments and results as `ssd_chunked` (no chunk size).
  """
  b, length, h, p = x.shape
  g, n = B.shape[2:]
  head_group = jnp.arange(h) // (h // g)
  state = jnp.zeros((b, h, n, p), x.dtype) if initial_state is None else initial_state

  def step(state, inputs):
    x_t, dt_t, b_t, c_t = inputs  # (b, h, p), (b, h), (b, g, n), (b, g, n)
    b_h, c_h = b_t[:, head_group], c_t[:, head_group]  # (b, h, n)
    state = (
      jnp.exp(dt_t * A)[..., None, None] * state
      + b_h[..., :, None] * (dt_t[..., None] * x_t)[..., None, :]
    )
    return state, jnp.einsum("bhn,bhnp->bhp", c_h, state)

  inputs = tuple(jnp.moveaxis(v, 1, 0) for v in (x, dt, B, C))
  final, y = jax.lax.scan(step, state, inputs)
  return jnp.moveaxis(y, 0, 1), final


@_jit_chunked
def state_energy_sums(x, dt, A, B, C, valid, chunk_size):
  """Per-state sums over valid steps of what the selective-SSM criteria need.

  For state ``n`` of group ``k`` (heads ``i`` in the group), with
  ``e_t,i[n] = ||H_t,i[n, :]||^2`` (its row of the head state):

    output_energy[k, n]   = sum_{b,t valid} C_t,k[n]^2 sum_i e_t,i[n]
                          (= sum_i ||C_t,k[n] H_t,i[n, :]||^2, its share of y)
    controllability[k, n] = sum_{b,t valid} sum_i e_t,i[n]
    observability[k, n]   = sum_{b,t valid} C_t,k[n]^2

  The head states of every step are needed, so this scans over chunks (a
  `lax.scan` carrying the state entering the chunk) and holds one chunk's
  ``(b, T, h, n, p)`` states at a time.

  Args:
    x, dt, A, B, C: as for `ssd_chunked`.
    valid: ``(b, L)`` bool, the steps to count (``t < length``).
    chunk_size: T.

  Returns:
    ``(sums, count)``: a dict of the three ``(g, n)`` float32 sums and the
    number of valid steps (float32 scalar).
  """
  b, length, h, p = x.shape
  g, n = B.shape[2:]
  t, xdt, a, B, C = _prepare(x, dt, A, B, C, chunk_size)
  w = jnp.pad(valid.astype(jnp.float32), [(0, 0), (0, xdt.shape[1] - length)])
  # Chunk axis first, for the scan: (c, b, t, ...).
  seq = tuple(jnp.moveaxis(_chunks(v, t), 1, 0) for v in (xdt, a, B, C, w))

  def chunk(h_in, inputs):
    xs, ac, Bc, Cc, wc = inputs  # (b,t,g,r,p), (b,t,g,r), (b,t,g,n), (b,t,g,n), (b,t)
    ac = jnp.moveaxis(ac, 1, -1)  # (b, g, r, t)
    decay = jnp.exp(segsum(ac))  # (b, g, r, t, t)
    # H_l = sum_{s <= l} exp(a_{s+1..l}) B_s (dt_s x_s)^T + exp(a_{0..l}) H_in.
    states = jnp.einsum("bgrls,bsgn,bsgrp->blgrnp", decay, Bc, xs) + jnp.einsum(
      "bgrl,bgrnp->blgrnp", jnp.exp(jnp.cumsum(ac, -1)), h_in
    )
    e = jnp.sum(states * states, axis=-1).sum(axis=3)  # (b, t, g, n): summed over heads
    c2 = Cc * Cc
    sums = jnp.stack(
      [
        jnp.einsum("bl,blgn,blgn->gn", wc, c2, e),
        jnp.einsum("bl,blgn->gn", wc, e),
        jnp.einsum("bl,blgn->gn", wc, c2),
      ]
    )
    return states[:, -1], sums

  h0 = jnp.zeros((b, g, h // g, n, p), x.dtype)
  _, per_chunk = jax.lax.scan(chunk, h0, seq)
  total = per_chunk.sum(axis=0)
  names = ("output_energy", "controllability", "observability")
  return {k: total[i] for i, k in enumerate(names)}, jnp.sum(w)
