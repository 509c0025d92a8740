"""Sparse Jacobians by column coloring: compressed forward mode.

A Jacobian ``J`` (``m x n``) whose columns ``j`` and ``k`` never have a
non-zero in the same row ("structurally orthogonal") can share one tangent
direction: seeding ``e_j + e_k`` gives, in every row, either ``J[i, j]`` or
``J[i, k]``, never their sum.  Grouping the columns into ``p`` such groups
(colors) turns the ``n`` forward sweeps -- or one width-``n`` vector sweep --
into one width-``p`` sweep, and the sparsity pattern tells which entry of the
compressed ``m x p`` result each non-zero of ``J`` is (Curtis, Powell & Reid,
"On the estimation of sparse Jacobian matrices", IMA J. Appl. Math. 13, 1974;
Griewank & Walther, *Evaluating Derivatives*, 2nd ed., SIAM 2008, chapter 8).

:class:`JacobianColoring` colors the columns of a given pattern with the greedy
distance-2 coloring in largest-first order (Coleman & More, "Estimation of
sparse Jacobian matrices and graph coloring problems", SIAM J. Numer. Anal. 20,
1983; Gebremedhin, Manne & Pothen, "What color is your Jacobian?", SIAM Review
47, 2005, section 3), gives the seed matrix for a width-``p`` forward
derivative (:func:`gradjit.autodiff` with ``width=p``, or ``p`` calls of
:func:`gradjit.jvp`), and decompresses the result.  The pattern is the user's to
give (from the model's structure); a pattern that misses a non-zero gives wrong
entries, so it must be a superset of the true one.
"""

import numba
import numpy as np

__all__ = ["JacobianColoring"]


@numba.njit(cache=True)
def _transpose(indptr, indices, n):
    """CSC of a CSR pattern: ``(colptr, rows)``."""
    count = np.zeros(n + 1, np.int64)
    for k in range(indices.shape[0]):
        count[indices[k] + 1] += 1
    for j in range(n):
        count[j + 1] += count[j]
    fill = count[:-1].copy()
    rows = np.empty(indices.shape[0], np.int64)
    for i in range(indptr.shape[0] - 1):
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            rows[fill[j]] = i
            fill[j] += 1
    return count, rows


@numba.njit(cache=True)
def _greedy_colors(indptr, indices, n):
    """Greedy distance-2 column coloring in largest-first order: ``(colors,
    n_colors)``.

    Checks the CSR arrays first (raises ``ValueError``).  Columns are visited by
    decreasing number of non-zeros (ties by index); each takes the smallest
    color that no column sharing a row with it has yet.  Time
    ``O(sum_i nnz_i ** 2)`` over the rows ``i``.
    """
    m = indptr.shape[0] - 1
    if m < 0 or indptr[0] != 0 or indptr[m] != indices.shape[0]:
        raise ValueError("the pattern's CSR row pointers must start at 0, never "
                         "decrease and end at the number of indices")
    for i in range(m):
        if indptr[i + 1] < indptr[i]:
            raise ValueError("the pattern's CSR row pointers must start at 0, never "
                             "decrease and end at the number of indices")
    for k in range(indices.shape[0]):
        if indices[k] < 0 or indices[k] >= n:
            raise ValueError("the pattern's column indices must lie in [0, n_cols)")
    colptr, rows = _transpose(indptr, indices, n)
    degree = colptr[1:] - colptr[:-1]
    order = np.argsort(-degree, kind="mergesort")
    colors = np.full(n, -1, np.int64)
    # forbidden[c] == j: color c is taken by a neighbour of column j
    forbidden = np.full(n + 1, -1, np.int64)
    n_colors = 0
    for t in range(n):
        j = order[t]
        for q in range(colptr[j], colptr[j + 1]):
            i = rows[q]
            for k in range(indptr[i], indptr[i + 1]):
                c = colors[indices[k]]
                if c >= 0:
                    forbidden[c] = j
        c = 0
        while forbidden[c] == j:
            c += 1
        colors[j] = c
        n_colors = max(n_colors, c + 1)
    return colors, n_colors


@numba.njit(cache=True)
def _decompress(compressed, indptr, indices, colors, rows, out):
    """``out[i, j] = compressed[i, colors[j]]`` on the pattern of ``rows[i]``, 0
    elsewhere; one pass over ``out``."""
    n = out.shape[1]
    m = indptr.shape[0] - 1
    for i in range(out.shape[0]):
        r = rows[i]
        if r < 0 or r >= m:
            raise ValueError("decompress: an entry of rows lies outside the pattern's rows")
        for j in range(n):
            out[i, j] = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            j = indices[k]
            out[i, j] = compressed[i, colors[j]]


def _csr_of(pattern):
    """``(indptr, indices, (m, n))`` of a scipy.sparse matrix or a 2-D array-like
    (non-zero entries are the structural non-zeros)."""
    if hasattr(pattern, "tocsr"):
        csr = pattern.tocsr()
        m, n = csr.shape
        return (np.asarray(csr.indptr, np.int64), np.asarray(csr.indices, np.int64), (m, n))
    dense = np.asarray(pattern)
    if dense.ndim != 2:
        raise ValueError(f"a Jacobian sparsity pattern is 2-D (m, n); got shape {dense.shape}")
    nz = dense != 0
    indptr = np.zeros(dense.shape[0] + 1, np.int64)
    np.cumsum(nz.sum(axis=1), out=indptr[1:])
    indices = np.nonzero(nz)[1].astype(np.int64)
    return indptr, indices, dense.shape


class JacobianColoring:
    """Column coloring of a sparse Jacobian, for compressed (vector) forward mode.

    Args:
        pattern: the Jacobian's sparsity pattern, ``m x n``: a ``scipy.sparse``
            matrix or a 2-D array-like whose non-zero entries mark the entries
            of ``J`` that may be non-zero.  It must contain every entry that can
            be non-zero; extra entries only cost colors.  Use
            :meth:`from_csr` to pass CSR index arrays directly.

    Attributes:
        colors: ``(n,)`` int64, read-only, the color (tangent lane) of each column.
        n_colors: the number of colors ``p`` (``0`` for a pattern with no column).
        lanes: ``max(n_colors, 2)``, the ``width`` to give
            :func:`gradjit.autodiff` (``width=1`` is the scalar mode, whose
            shadows have no lane axis); lanes past ``n_colors`` are seeded 0.
        shape: ``(m, n)``.

    Raises:
        ValueError: the pattern is not 2-D, or its CSR arrays are inconsistent.

    Example (``f(x, out)`` writes ``out = F(x)``, ``x`` of length ``n``)::

        coloring = gradjit.JacobianColoring(pattern)
        df = gradjit.autodiff(f, "forward", Dual, Dual, width=coloring.lanes)
        seeds = coloring.seeds()                      # (lanes, n)
        compressed = np.empty((m, coloring.lanes))
        df(x, seeds, out, compressed.T)  # compressed = J @ seeds.T
        J = coloring.decompress(compressed)           # (m, n), dense

    Coloring is the greedy distance-2 coloring in largest-first order (Coleman
    & More 1983; Gebremedhin, Manne & Pothen, SIAM Review 47, 2005, section 3),
    time ``O(sum_i nnz_i ** 2)`` over the pattern's rows.
    """

    def __init__(self, pattern):
        indptr, indices, shape = _csr_of(pattern)
        self._set(indptr, indices, shape)

    @classmethod
    def from_csr(cls, indptr, indices, n_cols):
        """The coloring of the CSR pattern ``(indptr, indices)`` with ``n_cols``
        columns: row ``i``'s non-zeros are the columns
        ``indices[indptr[i]:indptr[i + 1]]`` (any order, no duplicates needed).

        Raises:
            ValueError: ``indptr`` does not start at 0, decreases, or does not end
                at ``len(indices)``, a column index is outside ``[0, n_cols)``, or
                the arrays are not integer arrays.
        """
        indptr, indices = np.asarray(indptr), np.asarray(indices)
        for a in (indptr, indices):
            if a.size and a.dtype.kind not in "iu":
                raise ValueError(f"the pattern's CSR arrays must be integer arrays, got {a.dtype}")
        indptr = indptr.astype(np.int64)
        indices = indices.astype(np.int64)
        self = cls.__new__(cls)
        self._set(indptr, indices, (max(indptr.shape[0] - 1, 0), int(n_cols)))
        return self

    def _set(self, indptr, indices, shape):
        if indptr.ndim != 1 or indices.ndim != 1:
            raise ValueError("the pattern's CSR arrays must be 1-D")
        self.shape = (int(shape[0]), int(shape[1]))
        # own copies: decompress indexes with them unchecked
        self._indptr = indptr.copy()
        self._indices = indices.copy()
        colors, n_colors = _greedy_colors(self._indptr, self._indices, self.shape[1])
        colors.flags.writeable = False
        self.colors = colors
        self.n_colors = n_colors
        self.lanes = max(n_colors, 2)

    def seeds(self, width=None, dtype=np.float64):
        """The seed matrix ``S``, ``(width, n)``: ``S[c, j] = 1`` if column ``j``
        has color ``c``, else 0; the tangent seed of the vector forward mode.

        Args:
            width: lanes (default :attr:`lanes`, ``max(n_colors, 2)``); more than
                ``n_colors`` pads with zero lanes (also to keep one compiled
                width for several patterns).
            dtype: float64 or float32.

        Raises:
            ValueError: ``width < n_colors``.
        """
        width = self.lanes if width is None else int(width)
        if width < self.n_colors:
            raise ValueError(f"width {width} is less than the {self.n_colors} colors")
        s = np.zeros((width, self.shape[1]), dtype=dtype)
        s[self.colors, np.arange(self.shape[1])] = 1
        return s

    def decompress(self, compressed, out=None, rows=None):
        """The Jacobian from its compressed form ``compressed = J @ seeds().T``.

        Args:
            compressed: ``(M, >= n_colors)`` float array; column ``c`` is the
                Jacobian times seed lane ``c`` (the output tangent of lane ``c``).
            out: optional ``(M, n)`` float array (any strides) to write into;
                every entry is written (zeros off the pattern).
            rows: optional ``(M,)`` int array: row ``i`` of the result has the
                pattern of the pattern's row ``rows[i]`` (a Jacobian whose rows
                come in few patterns can be colored from one row per pattern).
                Default: row ``i`` has row ``i``'s pattern (``M = m``).

        Returns:
            ``out`` or a new ``(M, n)`` array of ``compressed``'s dtype.

        Raises:
            ValueError: shapes that do not fit, or ``rows`` out of range.
        """
        compressed = np.asarray(compressed)
        m, n = self.shape
        rows = np.arange(m) if rows is None else np.asarray(rows)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ValueError("rows must be a 1-D integer array")
        big_m = rows.shape[0]
        if compressed.ndim != 2 or compressed.shape[0] != big_m or \
                compressed.shape[1] < self.n_colors:
            raise ValueError(f"compressed Jacobian of shape {compressed.shape}: expected "
                             f"({big_m}, >= {self.n_colors})")
        if out is None:
            out = np.empty((big_m, n), dtype=compressed.dtype)
        elif out.shape != (big_m, n):
            raise ValueError(f"out has shape {out.shape}, expected {(big_m, n)}")
        _decompress(compressed, self._indptr, self._indices, self.colors, rows, out)
        return out
