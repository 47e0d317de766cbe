"""Non-negative least squares: Lawson and Hanson's active-set algorithm, in numpy.

``nnls(A, b)`` minimises ``||A x - b||`` subject to ``x >= 0``. The latency model needs it
because its coefficients are costs (seconds per flop, per byte, per layer): a negative one would
be a term that makes a network faster as it grows, and extrapolation would inherit it. scipy has
an implementation, but scipy is not one of fsrt's dependencies and this is forty lines.

The algorithm keeps a *passive* set of free coefficients (the rest are held at zero). Each outer
step frees the held coefficient whose gradient most wants to grow; the inner loop solves the
unconstrained problem on the passive set and, when that solution has non-positive entries, moves
from the current feasible point towards it as far as feasibility allows and returns the
coefficients that reached zero to the held set. It ends when no held coefficient would decrease
the residual (the KKT conditions hold), after at most a few times ``n`` steps.
"""

from __future__ import annotations

import numpy as np


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> tuple[np.ndarray, float]:
    """``(x, residual norm)`` of ``min ||a x - b|| subject to x >= 0`` (Lawson-Hanson active set).

    ``a`` is m x n, ``b`` has m entries. Raises ``ValueError`` on mismatched shapes or non-finite
    input and ``RuntimeError`` if it does not converge in ``max_iter`` inner steps (default 50n,
    far more than well-posed problems need).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 1 or a.shape[0] != b.shape[0]:
        raise ValueError(f"nnls needs an m x n matrix and m values, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("nnls input has non-finite values")
    m, n = a.shape
    max_iter = 50 * n if max_iter is None else max_iter
    tol = 10.0 * np.finfo(np.float64).eps * max(m, n) * max(np.abs(a).sum(axis=0).max(initial=0.0), 1.0)
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    gradient = a.T @ b
    steps = 0
    while not passive.all() and np.max(np.where(passive, -np.inf, gradient)) > tol:
        j = int(np.argmax(np.where(passive, -np.inf, gradient)))
        passive[j] = True
        before = x.copy()
        while True:
            steps += 1
            if steps > max_iter:
                raise RuntimeError(f"nnls did not converge in {max_iter} steps")
            z = _solve_on(a, b, passive)
            if np.all(z[passive] > tol):
                x = z
                break
            # Move from x towards z until the first passive coefficient reaches zero; hold it there.
            blocking = passive & (z <= tol)
            step = np.min(x[blocking] / (x[blocking] - z[blocking]))
            x = x + step * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        if not passive[j] and np.array_equal(x, before):
            break  # rounding: freeing j cannot lower the residual after all, so the KKT point is reached
        gradient = a.T @ (b - a @ x)
    return x, float(np.linalg.norm(a @ x - b))


def _solve_on(a: np.ndarray, b: np.ndarray, passive: np.ndarray) -> np.ndarray:
    """Unconstrained least squares over the passive columns; held coefficients are zero."""
    z = np.zeros(a.shape[1])
    z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
    return z
