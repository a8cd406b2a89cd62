"""Initializations shared by the diagonal SSM layers (pure numpy, run once).

HiPPO-LegS ``A`` is normal-plus-low-rank: ``A = S - P P^T`` with ``S`` normal.
Diagonalizing the normal part ``S`` (HiPPO-N) gives eigenvalues with real part
exactly ``-1/2`` and imaginary parts spread over a wide range, the S5
initialization.
"""

import numpy as np


def hippo_legs(n: int) -> np.ndarray:
  """HiPPO-LegS state matrix, ``(n, n)`` float64."""
  p = np.sqrt(1.0 + 2.0 * np.arange(n))
  a = np.tril(p[:, None] * p[None, :]) - np.diag(np.arange(n))
  return -a


def hippo_n_eig(n: int) -> tuple[np.ndarray, np.ndarray]:
  """Eigendecomposition of the normal part of HiPPO-LegS.

  Args:
    n: state size of one block.

  Returns:
    ``(lam, v)``: eigenvalues ``(n,)`` complex128 (real parts all ``-1/2``) and
    unitary eigenvectors ``(n, n)`` complex128 with ``S = v diag(lam) v^H``.
  """
  p = np.sqrt(np.arange(n) + 0.5)
  s = hippo_legs(n) + p[:, None] * p[None, :]
  real = np.mean(np.diagonal(s)) * np.ones(n)
  # S minus its (constant) diagonal is skew-symmetric: diagonalize the Hermitian -iS.
  imag, v = np.linalg.eigh(s * -1j)
  return real + 1j * imag, v


def block_hippo_n(state_size: int, blocks: int, conj_sym: bool):
  """Block-diagonal HiPPO-N initialization of S5.

  Args:
    state_size: total latent size P (before halving for conjugate symmetry).
    blocks: number J of HiPPO-N blocks on the diagonal; must divide P.
    conj_sym: keep one eigenvalue of each conjugate pair (P/2 stored states).

  Returns:
    ``(lam, v, v_inv)``: ``lam`` ``(S,)`` complex128 with ``S = P/2`` if
    ``conj_sym`` else ``P``; ``v`` ``(P, S)`` and ``v_inv`` ``(S, P)`` complex128,
    block-diagonal eigenvector matrices used to map real B/C into the eigenbasis.
  """
  if state_size % blocks:
    raise ValueError(f"ssm state size P={state_size} must be divisible by blocks J={blocks}")
  block = state_size // blocks
  if conj_sym and block % 2:
    raise ValueError(f"conj_sym needs an even block size, got P/J={block}")
  lam, v = hippo_n_eig(block)
  keep = block // 2 if conj_sym else block
  lam, v = lam[:keep], v[:, :keep]
  lam_all = np.tile(lam, blocks)
  v_all = np.zeros((state_size, keep * blocks), dtype=np.complex128)
  for j in range(blocks):
    v_all[j * block : (j + 1) * block, j * keep : (j + 1) * keep] = v
  return lam_all, v_all, v_all.conj().T


def s4d_init(kind: str, n_stored: int) -> np.ndarray:
  """Diagonal S4D initialization with one eigenvalue per conjugate pair.

  Args:
    kind: ``'lin'`` (S4D-Lin: ``-1/2 + i pi n``) or ``'inv'`` (S4D-Inv:
      ``-1/2 + i N/pi (N/(2n+1) - 1)``, N the full state size ``2 n_stored``).
    n_stored: number of stored states (conjugate pairs) per channel.

  Returns:
    ``(n_stored,)`` complex128 eigenvalues.
  """
  n = np.arange(n_stored)
  if kind == "lin":
    imag = np.pi * n
  elif kind == "inv":
    full = 2 * n_stored
    imag = full / np.pi * (full / (2 * n + 1) - 1)
  else:
    raise ValueError(f"unknown S4D init {kind!r}; expected 'lin' or 'inv'")
  return -0.5 + 1j * imag
