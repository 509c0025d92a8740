"""Derivatives of the BLAS and LAPACK calls Numba makes for ``@``, ``np.dot``,
``np.vdot``, ``np.linalg.norm`` and ``np.linalg.solve`` (``numba_xxdot``,
``numba_xxgemv``, ``numba_xxgemm``, ``numba_xxnrm2`` and ``numba_xgesv`` of Numba's
``_lapack.c``: Fortran conventions, column-major matrices with a leading dimension;
real kinds ``'d'`` and ``'s'``), and the glue for the factorizations behind
``det``, ``slogdet``, ``inv``, ``cholesky``, ``eigh``, ``eigvalsh``, ``svd``,
``pinv``, ``cond`` and ``norm(A, 2)`` (rules in :mod:`gradjit.ad.lapack`).

The rules are the matrix-calculus ones (M. B. Giles, "Collected matrix derivative
results for forward and reverse mode algorithmic differentiation", 2008, sec. 2.2
and 3.1), the same algebra as Enzyme's BLAS rules::

    dot   r = x.y                 dr = dx.y + x.dy            xb += rb y;  yb += rb x
    nrm2  r = |x|                 dr = x.dx / r               xb += rb x / r
    gemv  y = a op(A) x + b y     dy = a (op(dA) x + op(A) dx) + b dy
                                  xb += a op(A)^T yb;  Ab += a yb x^T (or x yb^T);  yb = b yb
    gemm  C = a op(A) op(B) + b C dC = a (op(dA) op(B) + op(A) op(dB)) + b dC
                                  op(A)b += a Cb op(B)^T;  op(B)b += a op(A)^T Cb;  Cb = b Cb

The tangent and adjoint products call the same Numba BLAS entry points, so they run
at BLAS speed.  ``a`` and ``b`` are constants for differentiation (Numba passes 1
and 0).  The reverse needs the inputs as they were at the call: the augmented primal
copies them (with ``a`` and ``b``) into a heap buffer whose pointer is recorded as
the call's shadow; the reverse of the last lane frees it.
"""
from __future__ import annotations

from ..analysis.calls import LINALG  # noqa: F401  (the calls differentiated here)
from ..ir import types as T
from . import lapack
from .linalg_runtime import HELPERS, LU_SOLVE

# the output pointer operand of each call
_OUTPUT = {"numba_xxdot": 5, "numba_xxgemv": 9, "numba_xxgemm": 12, "numba_xxnrm2": 4}
# (numba_xgesv, the LAPACK solver, is added at the end of the module)
_KINDS = {"100": "double", "115": "float"}          # 'd', 's'
_DECLS = {
    "numba_xxgemv": "declare i32 @numba_xxgemv(i8, i8, i64, i64, ptr, ptr, i64, ptr, ptr, ptr)",
    "numba_xxgemm": "declare i32 @numba_xxgemm(i8, i8, i8, i64, i64, i64, ptr, ptr, i64, ptr, "
                    "i64, ptr, ptr, i64)",
    "malloc": "declare ptr @malloc(i64)",
    "free": "declare void @free(ptr)",
    "llvm.memcpy.p0.p0.i64": "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
}
_HEADER = 16          # a and b (or r) at the start of a saved buffer


def element_type(sweep, ins) -> str:
    """'double' or 'float' for a real-kind call; UnsupportedError otherwise."""
    k = ins.operands[0]
    ty = _KINDS.get(k.ref) if k.kind == "const" else None
    if ty is None:
        raise sweep.ctx.unsupported(f"a complex (or unknown kind) BLAS call '{ins.callee}'", ins)
    ops = ins.operands
    if ins.callee == "numba_xxpotrf" and not (ops[1].kind == "const" and ops[1].ref == "85"):
        raise sweep.ctx.unsupported("a Cholesky factorization of the lower triangle", ins)
    if ins.callee == "numba_ez_xxxevd" and not (
            ops[1].kind == "const" and ops[1].ref in ("86", "78") and
            ops[2].kind == "const" and ops[2].ref in ("76", "85")):
        raise sweep.ctx.unsupported("an eigendecomposition with unknown jobz / uplo", ins)
    if ins.callee == "numba_ez_gesdd" and not (ops[1].kind == "const" and
                                               ops[1].ref in ("78", "83", "65")):
        raise sweep.ctx.unsupported("an SVD with unknown jobz", ins)
    if ins.callee == "numba_xxgetrf" and ops[1].ref != ops[2].ref:
        raise sweep.ctx.unsupported("an LU factorization of a matrix not known to be square", ins)
    return ty


def _helpers(sweep, ty, callee):
    """Register the loop helpers and constants for element type ``ty`` (and the LU
    solves for ``gesv``, SciPy's BLAS/LAPACK for the factorizations); returns the
    names of the ``one`` and ``zero`` constants."""
    if callee == "numba_xgesv" or callee in _FACTORIZATIONS:
        _lapack(sweep.b, sweep.ctx, ty)
    if callee in _FACTORIZATIONS:
        if _f_int() != "i32":
            raise sweep.ctx.unsupported(f"'{callee}' with 64-bit LAPACK pivots")
        lapack.runtime(sweep.ctx, sweep.b, ty)
    extra, sz = sweep.ctx.extra, T.FLOATS[ty]
    for name, text in _DECLS.items():
        sweep.b.decls.setdefault(name, text)
    one, zero = f"@gj.blas.one.{ty}", f"@gj.blas.zero.{ty}"
    extra.setdefault(one, f"{one} = private unnamed_addr constant {ty} 1.0")
    extra.setdefault(zero, f"{zero} = private unnamed_addr constant {ty} 0.0")
    extra.setdefault(f"gj.blas.helpers.{ty}", HELPERS.format(t=ty, sz=sz))
    return one, zero


def _hcall(b, name, ret, args):
    """Call helper ``@name`` (defined in the module, so not declared)."""
    text = ", ".join(f"{t} {v}" for t, v in args)
    if ret == "void":
        b.emit(f"call void @{name}({text})")
        return ""
    return b.assign(f"call {ret} @{name}({text})")


def _is_n(b, c):
    """i1: is transpose character ``c`` (an i8 ref) 'n' or 'N'?"""
    lo = b.assign(f"icmp eq i8 {c}, 110")
    up = b.assign(f"icmp eq i8 {c}, 78")
    return b.assign(f"or i1 {lo}, {up}")


def _flip(b, isn):
    return b.assign(f"select i1 {isn}, i8 116, i8 110")


def _sel(b, cond, ty, x, y):
    return b.assign(f"select i1 {cond}, {ty} {x}, {ty} {y}")


def _elems(b, rows, cols, ld):
    """Elements spanned by a column-major ``rows x cols`` matrix with leading
    dimension ``ld``: ``ld (cols - 1) + rows``, 0 when empty."""
    c1 = b.assign(f"sub i64 {cols}, 1")
    span = b.assign(f"mul i64 {ld}, {c1}")
    tot = b.assign(f"add i64 {span}, {rows}")
    e1 = b.assign(f"icmp sle i64 {rows}, 0")
    e2 = b.assign(f"icmp sle i64 {cols}, 0")
    e = b.assign(f"or i1 {e1}, {e2}")
    return _sel(b, e, "i64", "0", tot)


def _gep(b, ty, p, n):
    return b.assign(f"getelementptr inbounds {ty}, ptr {p}, i64 {n}")


def _bytes(b, ty, n):
    return b.assign(f"mul i64 {n}, {T.FLOATS[ty]}")


# ---------------------------------------------------------------------------
# the sweeps' entry points
# ---------------------------------------------------------------------------

def forward(sweep, ins, args):
    """Forward mode: the tangent of the call's output.  Augmented primal (reverse
    mode): save what the reverse needs and record it as the call's shadow."""
    out = args[_OUTPUT[ins.callee]]
    act = [sweep.act.is_active(a) and a.type == "ptr" for a in args]
    if not sweep.act.is_active(out):
        if any(act):
            raise sweep.ctx.unsupported(f"a BLAS call '{ins.callee}' with active inputs "
                                        "writing into memory without a shadow", ins)
        return
    ty = element_type(sweep, ins)
    one, zero = _helpers(sweep, ty, ins.callee)
    b = sweep.b
    v = [a.ref for a in args]
    if ins.callee in _BEFORE:
        v.append(getattr(sweep, "_blas_before", {})[ins.name])
    if not sweep.fwd:
        if not ins.name:
            raise sweep.ctx.unsupported(f"an unnamed BLAS call '{ins.callee}'", ins)
        saved = getattr(sweep, "_blas_saved", None)
        if saved is None:
            saved = sweep._blas_saved = {}
        if sweep.lane == 0 or ins.name not in saved:
            saved[ins.name] = _SAVE[ins.callee](b, ty, v)
        sweep._set(ins.name, saved[ins.name])
        return
    sh = [sweep.shadow(a) if m else None for a, m in zip(args, act)]
    _TANGENT[ins.callee](b, ty, v, sh, one, zero)
    if ins.callee in _BEFORE and sweep.lane == len(sweep.lanes) - 1:
        b.emit(f"call void @free(ptr {v[-1]})")


def before(sweep, ins, args):
    """Before the call (once, not per lane): keep the inputs that the call
    overwrites and that its derivative needs (the LU factors ``getri`` inverts)."""
    if ins.callee not in _BEFORE or not sweep.act.is_active(args[_OUTPUT[ins.callee]]):
        return
    if not ins.name:
        raise sweep.ctx.unsupported(f"an unnamed LAPACK call '{ins.callee}'", ins)
    ty = element_type(sweep, ins)
    _helpers(sweep, ty, ins.callee)
    if not hasattr(sweep, "_blas_before"):
        sweep._blas_before = {}
    sweep._blas_before[ins.name] = _BEFORE[ins.callee](sweep.b, ty, [a.ref for a in args])


def reverse(sweep, ins, args):
    """The adjoint of the call (current lane); frees the saved inputs after the
    last lane."""
    out = args[_OUTPUT[ins.callee]]
    if not sweep.act.is_active(out):
        return
    ty = element_type(sweep, ins)
    one, _ = _helpers(sweep, ty, ins.callee)
    act = [sweep.act.is_active(a) and a.type == "ptr" for a in args]
    b = sweep.b
    cache = sweep.ps(ins)
    v = [sweep.pv(a) if a.type != "ptr" else None for a in args]
    sh = [sweep.ps(a) if m else None for a, m in zip(args, act)]
    _REVERSE[ins.callee](b, ty, v, sh, cache, one)
    if sweep.lane == len(sweep.lanes) - 1:
        b.emit(f"call void @free(ptr {cache})")


# --- dot(kind, conj, n, x, y, result) --------------------------------------------

def _save_buffer(b, ty, scalars, parts):
    """A heap buffer holding what the reverse of a call needs: the ``ty`` values
    ``scalars`` points to (alpha, beta) in a ``_HEADER``-byte header when given,
    then the ``parts`` ``(src, count, item_bytes)`` copied one after another."""
    sizes = [b.assign(f"mul i64 {count}, {item}") for _, count, item in parts]
    total = str(_HEADER if scalars else 0)
    for nb in sizes:
        total = b.assign(f"add i64 {total}, {nb}")
    buf = b.call("malloc", "ptr", [("i64", total)])
    for k, p in enumerate(scalars):
        val = b.assign(f"load {ty}, ptr {p}")
        b.emit(f"store {ty} {val}, ptr {b.assign(f'getelementptr i8, ptr {buf}, i64 {8 * k}')}")
    at = b.assign(f"getelementptr i8, ptr {buf}, i64 {_HEADER if scalars else 0}")
    for (src, _, _), nb in zip(parts, sizes):
        b.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {at}, ptr {src}, i64 {nb}, i1 false)")
        at = b.assign(f"getelementptr i8, ptr {at}, i64 {nb}")
    return buf


def _dot_save(b, ty, v):
    n, x, y = v[2], v[3], v[4]
    sz = T.FLOATS[ty]
    return _save_buffer(b, ty, [], [(x, n, sz), (y, n, sz)])


def _dot_tangent(b, ty, v, sh, one, zero):
    n, x, y = v[2], v[3], v[4]
    t = "0.0"
    if sh[3]:
        t = _hcall(b, f"gj.blas.vdot.{ty}", ty, [("i64", n), ("ptr", sh[3]), ("i64", "1"),
                                                ("ptr", y), ("i64", "1")])
    if sh[4]:
        u = _hcall(b, f"gj.blas.vdot.{ty}", ty, [("i64", n), ("ptr", x), ("i64", "1"),
                                                ("ptr", sh[4]), ("i64", "1")])
        t = b.fadd(ty, t, u)
    b.emit(f"store {ty} {t}, ptr {sh[5]}")


def _dot_reverse(b, ty, v, sh, cache, one):
    n = v[2]
    rb = b.assign(f"load {ty}, ptr {sh[5]}")
    b.emit(f"store {ty} 0.0, ptr {sh[5]}")
    xs, ys = cache, _gep(b, ty, cache, n)
    for k, other in ((3, ys), (4, xs)):
        if sh[k]:
            _hcall(b, f"gj.blas.axpy.{ty}", "void", [("i64", n), (ty, rb), ("ptr", other), ("i64", "1"),
                                                  ("ptr", sh[k]), ("i64", "1")])


# --- nrm2(kind, n, x, incx, result) -----------------------------------------------

def _nrm2_save(b, ty, v):
    n, x, inc, res = v[1], v[2], v[3], v[4]
    nb = _bytes(b, ty, n)
    tot = b.assign(f"add i64 {nb}, {_HEADER}")
    buf = b.call("malloc", "ptr", [("i64", tot)])
    r = b.assign(f"load {ty}, ptr {res}")
    b.emit(f"store {ty} {r}, ptr {buf}")
    _hcall(b, f"gj.blas.gather.{ty}", "void", [("i64", n), ("ptr", x), ("i64", inc),
                                            ("ptr", b.assign(f"getelementptr i8, ptr {buf}, i64 {_HEADER}"))])
    return buf


def _safe_ratio(b, ty, num, r):
    q = b.fdiv(ty, num, r)
    z = b.fcmp("oeq", ty, r, "0.0")
    return b.select(z, ty, "0.0", q)


def _nrm2_tangent(b, ty, v, sh, one, zero):
    n, x, inc, res = v[1], v[2], v[3], v[4]
    t = "0.0"
    if sh[2]:
        d = _hcall(b, f"gj.blas.vdot.{ty}", ty, [("i64", n), ("ptr", x), ("i64", inc),
                                                ("ptr", sh[2]), ("i64", inc)])
        t = _safe_ratio(b, ty, d, b.assign(f"load {ty}, ptr {res}"))
    b.emit(f"store {ty} {t}, ptr {sh[4]}")


def _nrm2_reverse(b, ty, v, sh, cache, one):
    n, inc = v[1], v[3]
    rb = b.assign(f"load {ty}, ptr {sh[4]}")
    b.emit(f"store {ty} 0.0, ptr {sh[4]}")
    if sh[2]:
        r = b.assign(f"load {ty}, ptr {cache}")
        c = _safe_ratio(b, ty, rb, r)
        xs = b.assign(f"getelementptr i8, ptr {cache}, i64 {_HEADER}")
        _hcall(b, f"gj.blas.axpy.{ty}", "void", [("i64", n), (ty, c), ("ptr", xs), ("i64", "1"),
                                              ("ptr", sh[2]), ("i64", inc)])


# --- gemv(kind, trans, m, n, alpha, a, lda, x, beta, y) ---------------------------

def _gemv_dims(b, v):
    """(is_n, len(x), len(y))."""
    isn = _is_n(b, v[1])
    lx = _sel(b, isn, "i64", v[3], v[2])
    ly = _sel(b, isn, "i64", v[2], v[3])
    return isn, lx, ly


def _gemv_save(b, ty, v):
    m, n, alpha, a, lda, x, beta = v[2], v[3], v[4], v[5], v[6], v[7], v[8]
    _, lx, _ = _gemv_dims(b, v)
    sz = T.FLOATS[ty]
    return _save_buffer(b, ty, [alpha, beta], [(x, lx, sz), (a, _elems(b, m, n, lda), sz)])


def _gemv(b, kind, trans, m, n, alpha, a, lda, x, beta, y):
    b.emit(f"call i32 @numba_xxgemv(i8 {kind}, i8 {trans}, i64 {m}, i64 {n}, ptr {alpha}, "
           f"ptr {a}, i64 {lda}, ptr {x}, ptr {beta}, ptr {y})")


def _gemv_tangent(b, ty, v, sh, one, zero):
    kind, trans, m, n, alpha, a, lda, x, beta = v[:9]
    dy = sh[9]
    if sh[7]:
        _gemv(b, kind, trans, m, n, alpha, a, lda, sh[7], beta, dy)
    else:
        _gemv(b, kind, trans, m, n, zero, a, lda, x, beta, dy)
    if sh[5]:
        _gemv(b, kind, trans, m, n, alpha, sh[5], lda, x, one, dy)


def _gemv_reverse(b, ty, v, sh, cache, one):
    kind, trans, m, n, lda = v[0], v[1], v[2], v[3], v[6]
    dy = sh[9]
    isn, lx, ly = _gemv_dims(b, v)
    xs = b.assign(f"getelementptr i8, ptr {cache}, i64 {_HEADER}")
    As = _gep(b, ty, xs, lx)
    alpha = b.assign(f"load {ty}, ptr {cache}")
    beta = b.assign(f"load {ty}, ptr {b.assign(f'getelementptr i8, ptr {cache}, i64 8')}")
    if sh[7]:
        _gemv(b, kind, _flip(b, isn), m, n, cache, As, lda, dy, one, sh[7])
    if sh[5]:
        u = _sel(b, isn, "ptr", dy, xs)
        w = _sel(b, isn, "ptr", xs, dy)
        _hcall(b, f"gj.blas.ger.{ty}", "void", [("i64", m), ("i64", n), (ty, alpha), ("ptr", u),
                                             ("ptr", w), ("ptr", sh[5]), ("i64", lda)])
    _hcall(b, f"gj.blas.scal2.{ty}", "void", [("i64", ly), ("i64", "1"), (ty, beta), ("ptr", dy),
                                           ("i64", ly)])


# --- gemm(kind, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -------------

def _gemm_dims(b, v):
    """(a is 'n', b is 'n', elements of A, elements of B)."""
    ta, tb, m, n, k, lda, ldb = v[1], v[2], v[3], v[4], v[5], v[8], v[10]
    an, bn = _is_n(b, ta), _is_n(b, tb)
    na = _elems(b, _sel(b, an, "i64", m, k), _sel(b, an, "i64", k, m), lda)
    nb = _elems(b, _sel(b, bn, "i64", k, n), _sel(b, bn, "i64", n, k), ldb)
    return an, bn, na, nb


def _gemm_save(b, ty, v):
    alpha, a, bm, beta = v[6], v[7], v[9], v[11]
    _, _, na, nb = _gemm_dims(b, v)
    sz = T.FLOATS[ty]
    return _save_buffer(b, ty, [alpha, beta], [(a, na, sz), (bm, nb, sz)])


def _gemm(b, kind, ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc):
    b.emit(f"call i32 @numba_xxgemm(i8 {kind}, i8 {ta}, i8 {tb}, i64 {m}, i64 {n}, i64 {k}, "
           f"ptr {alpha}, ptr {a}, i64 {lda}, ptr {bm}, i64 {ldb}, ptr {beta}, ptr {c}, i64 {ldc})")


def _gemm_tangent(b, ty, v, sh, one, zero):
    kind, ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc = v
    dc = sh[12]
    if sh[7]:
        _gemm(b, kind, ta, tb, m, n, k, alpha, sh[7], lda, bm, ldb, beta, dc, ldc)
    else:
        _gemm(b, kind, ta, tb, m, n, k, zero, a, lda, bm, ldb, beta, dc, ldc)
    if sh[9]:
        _gemm(b, kind, ta, tb, m, n, k, alpha, a, lda, sh[9], ldb, one, dc, ldc)


def _gemm_reverse(b, ty, v, sh, cache, one):
    kind, ta, tb, m, n, k, _, _, lda, _, ldb, _, _, ldc = v
    dc = sh[12]
    an, bn, na, _ = _gemm_dims(b, v)
    As = b.assign(f"getelementptr i8, ptr {cache}, i64 {_HEADER}")
    Bs = _gep(b, ty, As, na)
    beta = b.assign(f"load {ty}, ptr {b.assign(f'getelementptr i8, ptr {cache}, i64 8')}")
    if sh[7]:
        # op(A) = A:   Ab += a Cb op(B)^T        (m x k)
        # op(A) = A^T: Ab += a op(B) Cb^T        (k x m)
        _gemm(b, kind, _sel(b, an, "i8", "110", tb), _sel(b, an, "i8", _flip(b, bn), "116"),
              _sel(b, an, "i64", m, k), _sel(b, an, "i64", k, m), n, cache,
              _sel(b, an, "ptr", dc, Bs), _sel(b, an, "i64", ldc, ldb),
              _sel(b, an, "ptr", Bs, dc), _sel(b, an, "i64", ldb, ldc), one, sh[7], lda)
    if sh[9]:
        # op(B) = B:   Bb += a op(A)^T Cb        (k x n)
        # op(B) = B^T: Bb += a Cb^T op(A)        (n x k)
        _gemm(b, kind, _sel(b, bn, "i8", _flip(b, an), "116"), _sel(b, bn, "i8", "110", ta),
              _sel(b, bn, "i64", k, n), _sel(b, bn, "i64", n, k), m, cache,
              _sel(b, bn, "ptr", As, dc), _sel(b, bn, "i64", lda, ldc),
              _sel(b, bn, "ptr", dc, As), _sel(b, bn, "i64", ldc, lda), one, sh[9], ldb)
    _hcall(b, f"gj.blas.scal2.{ty}", "void", [("i64", m), ("i64", n), (ty, beta), ("ptr", dc),
                                           ("i64", ldc)])


_SAVE = {"numba_xxdot": _dot_save, "numba_xxnrm2": _nrm2_save,
         "numba_xxgemv": _gemv_save, "numba_xxgemm": _gemm_save}
_TANGENT = {"numba_xxdot": _dot_tangent, "numba_xxnrm2": _nrm2_tangent,
            "numba_xxgemv": _gemv_tangent, "numba_xxgemm": _gemm_tangent}
_REVERSE = {"numba_xxdot": _dot_reverse, "numba_xxnrm2": _nrm2_reverse,
            "numba_xxgemv": _gemv_reverse, "numba_xxgemm": _gemm_reverse}


# --- LAPACK gesv(kind, n, nrhs, a, lda, ipiv, b, ldb): np.linalg.solve -----------
#
# On exit ``a`` holds the LU factors of P A = L U, ``ipiv`` the row interchanges and
# ``b`` the solution X of A X = B.  Tangent: dX = A^-1 (dB - dA X); adjoint:
# Bb = A^-T Xb, Ab = -Bb X^T (Giles 2008, sec. 3.1), both solved with the LU
# factors.  The factors themselves get no derivative: Numba's solve discards them,
# so the shadow of ``a`` holds zeros after the call (forward) and the adjoint of A
# before it (reverse).

def _f_int():
    """LLVM integer type of LAPACK's ``F_INT`` in Numba's build (the pivots)."""
    import numpy as np
    from numba.np.linalg import F_INT_nptype
    return f"i{8 * np.dtype(F_INT_nptype).itemsize}"


def _lapack(b, sweep_ctx, ty):
    it = _f_int()
    sweep_ctx.extra.setdefault(f"gj.lapack.{ty}", LU_SOLVE.format(t=ty, it=it))
    neg = f"@gj.blas.negone.{ty}"
    sweep_ctx.extra.setdefault(neg, f"{neg} = private unnamed_addr constant {ty} -1.0")
    return it, neg


def _gesv_sizes(b, v):
    n, nrhs, lda, ldb = v[1], v[2], v[4], v[7]
    return _elems(b, n, n, lda), _elems(b, n, nrhs, ldb)


def _gesv_save(b, ty, v):
    n, a, ipiv, x = v[1], v[3], v[5], v[6]
    na, nx = _gesv_sizes(b, v)
    sz = T.FLOATS[ty]
    return _save_buffer(b, ty, [], [(a, na, sz), (x, nx, sz), (ipiv, n, int(_f_int()[1:]) // 8)])


def _lusolve(b, ty, n, nrhs, lu, lda, ipiv, rhs, ldb, trans):
    b.emit(f"call void @gj.lapack.lusolve.{ty}(i64 {n}, i64 {nrhs}, ptr {lu}, i64 {lda}, "
           f"ptr {ipiv}, ptr {rhs}, i64 {ldb}, i1 {trans})")


def _gesv_tangent(b, ty, v, sh, one, zero):
    kind, n, nrhs, a, lda, ipiv, x, ldb = v
    neg = f"@gj.blas.negone.{ty}"
    db = sh[6]
    if sh[3]:
        _gemm(b, kind, "110", "110", n, nrhs, n, neg, sh[3], lda, x, ldb, one, db, ldb)
        b.emit(f"call void @gj.blas.scal2.{ty}(i64 {n}, i64 {n}, {ty} 0.0, ptr {sh[3]}, i64 {lda})")
    _lusolve(b, ty, n, nrhs, a, lda, ipiv, db, ldb, "false")


def _gesv_reverse(b, ty, v, sh, cache, one):
    kind, n, nrhs, _, lda, _, _, ldb = v
    neg = f"@gj.blas.negone.{ty}"
    na, nx = _gesv_sizes(b, v)
    xs = _gep(b, ty, cache, na)
    ipivs = _gep(b, ty, xs, nx)
    db = sh[6]
    _lusolve(b, ty, n, nrhs, cache, lda, ipivs, db, ldb, "true")
    if sh[3]:
        b.emit(f"call void @gj.blas.scal2.{ty}(i64 {n}, i64 {n}, {ty} 0.0, ptr {sh[3]}, i64 {lda})")
        _gemm(b, kind, "110", "116", n, n, nrhs, neg, db, ldb, xs, ldb, one, sh[3], lda)


_OUTPUT["numba_xgesv"] = 6
_SAVE["numba_xgesv"] = _gesv_save
_TANGENT["numba_xgesv"] = _gesv_tangent
_REVERSE["numba_xgesv"] = _gesv_reverse


# --- LU and Cholesky factorizations, inverse (gradjit.ad.lapack) -------------------
#
# getrf(kind, m, n, a, lda, ipiv) (Numba passes m == n), getri(kind, n, a, lda, ipiv),
# potrf(kind, 'U', n, a, lda): in place, so the shadow of ``a`` holds the tangent of
# the input before the call and that of the output after it (the adjoints the other
# way round).

_FACTORIZATIONS = {"numba_xxgetrf", "numba_ez_xxgetri", "numba_xxpotrf", "numba_ez_xxxevd",
                   "numba_ez_gesdd"}
_IPIV = 4                                           # bytes per pivot (F_INT, checked)


def _square(b, v, n, lda):
    return _elems(b, v[n], v[n], v[lda])


def _getrf_save(b, ty, v):
    na = _square(b, v, 2, 4)
    return _save_buffer(b, ty, [], [(v[3], na, T.FLOATS[ty]), (v[5], v[2], _IPIV)])


def _getrf_tangent(b, ty, v, sh, one, zero):
    lapack.getrf_tangent(b, ty, v[2], v[3], v[4], v[5], sh[3])


def _getrf_reverse(b, ty, v, sh, cache, one):
    ipiv = _gep(b, ty, cache, _square(b, v, 2, 4))
    lapack.getrf_adjoint(b, ty, v[2], cache, v[4], ipiv, sh[3])


def _getri_before(b, ty, v):
    """A buffer [LU before the call | the inverse | pivots], LU filled now."""
    nb = _bytes(b, ty, _square(b, v, 1, 3))
    two = b.assign(f"mul i64 {nb}, 2")
    piv = b.assign(f"mul i64 {v[1]}, {_IPIV}")
    buf = b.call("malloc", "ptr", [("i64", b.assign(f"add i64 {two}, {piv}"))])
    b.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {buf}, ptr {v[2]}, i64 {nb}, i1 false)")
    return buf


def _getri_parts(b, ty, v, buf):
    nb = _bytes(b, ty, _square(b, v, 1, 3))
    x = b.assign(f"getelementptr i8, ptr {buf}, i64 {nb}")
    return x, b.assign(f"getelementptr i8, ptr {x}, i64 {nb}"), nb


def _getri_save(b, ty, v):
    buf = v[-1]
    x, ipiv, nb = _getri_parts(b, ty, v, buf)
    b.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {x}, ptr {v[2]}, i64 {nb}, i1 false)")
    piv = b.assign(f"mul i64 {v[1]}, {_IPIV}")
    b.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {ipiv}, ptr {v[4]}, i64 {piv}, i1 false)")
    return buf


def _gemm_n(b, ty, kind, n, one, zero):
    consts = {"one": one, "zero": zero, "neg": f"@gj.blas.negone.{ty}"}

    def gemm(ta, tb, alpha, a, lda, bm, ldb, beta, c, ldc):
        _gemm(b, kind, ta, tb, n, n, n, consts[alpha], a, lda, bm, ldb, consts[beta], c, ldc)
    return gemm


def _getri_tangent(b, ty, v, sh, one, zero):
    gemm = _gemm_n(b, ty, v[0], v[1], one, zero)
    lapack.getri_tangent(b, ty, gemm, v[1], v[-1], v[2], v[3], v[4], sh[2])


def _getri_reverse(b, ty, v, sh, cache, one):
    zero = f"@gj.blas.zero.{ty}"
    gemm = _gemm_n(b, ty, v[0], v[1], one, zero)
    x, ipiv, _ = _getri_parts(b, ty, v, cache)
    lapack.getri_adjoint(b, ty, gemm, v[1], cache, x, v[3], ipiv, sh[2])


def _potrf_save(b, ty, v):
    return _save_buffer(b, ty, [], [(v[3], _square(b, v, 2, 4), T.FLOATS[ty])])


def _potrf_tangent(b, ty, v, sh, one, zero):
    lapack.potrf_tangent(b, ty, v[2], v[3], v[4], sh[3])


def _potrf_reverse(b, ty, v, sh, cache, one):
    lapack.potrf_adjoint(b, ty, v[2], cache, v[4], sh[3])


# --- syevd(kind, jobz, uplo, n, a, lda, w): np.linalg.eigh ('V'), eigvalsh ('N') ---
#
# The derivative needs the eigenvectors V and the eigenvalues w: with jobz = 'V'
# they are the outputs; with 'N' a copy of the input is decomposed again with 'V'
# before the call.  Saved for the reverse: [V (lda) | w].

def _evd_vectors(v):
    return v[1] == "86"


def _evd_before(b, ty, v):
    if _evd_vectors(v):
        return "null"
    kind, _, uplo, n, a, lda = v[:6]
    nb = _bytes(b, ty, _square(b, v, 3, 5))
    buf = b.call("malloc", "ptr", [("i64", b.assign(f"add i64 {nb}, {_bytes(b, ty, n)}"))])
    b.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {buf}, ptr {a}, i64 {nb}, i1 false)")
    w = b.assign(f"getelementptr i8, ptr {buf}, i64 {nb}")
    b.decls.setdefault("numba_ez_xxxevd",
                       "declare i32 @numba_ez_xxxevd(i8, i8, i8, i64, ptr, i64, ptr)")
    b.emit(f"call i32 @numba_ez_xxxevd(i8 {kind}, i8 86, i8 {uplo}, i64 {n}, ptr {buf}, "
           f"i64 {lda}, ptr {w})")
    return buf


def _evd_parts(b, ty, v, buf):
    return buf, b.assign(f"getelementptr i8, ptr {buf}, i64 {_bytes(b, ty, _square(b, v, 3, 5))}")


def _evd_save(b, ty, v):
    if not _evd_vectors(v):
        return v[-1]
    sz = T.FLOATS[ty]
    return _save_buffer(b, ty, [], [(v[4], _square(b, v, 3, 5), sz), (v[6], v[3], sz)])


def _evd_tangent(b, ty, v, sh, one, zero):
    n, lda, lower = v[3], v[5], v[2] == "76"
    gemm = _gemm_n(b, ty, v[0], n, one, zero)
    vec, w = (v[4], v[6]) if _evd_vectors(v) else _evd_parts(b, ty, v, v[-1])
    da, dw = sh[4], sh[6]
    if da is None:
        b.emit(f"call void @gj.blas.scal2.{ty}(i64 {n}, i64 1, {ty} 0.0, ptr {dw}, i64 {n})")
        return
    lapack.syevd_tangent(b, ty, gemm, n, vec, lda, w, da, lda, lower, dw,
                         da if _evd_vectors(v) else None)
    if not _evd_vectors(v):
        b.emit(f"call void @gj.blas.scal2.{ty}(i64 {n}, i64 {n}, {ty} 0.0, ptr {da}, i64 {lda})")


def _evd_reverse(b, ty, v, sh, cache, one):
    n, lda, lower = v[3], v[5], v[2] == "76"
    gemm = _gemm_n(b, ty, v[0], n, one, f"@gj.blas.zero.{ty}")
    vec, w = _evd_parts(b, ty, v, cache)
    da, dw = sh[4], sh[6]
    if da is not None:
        lapack.syevd_adjoint(b, ty, gemm, n, vec, lda, w, da if _evd_vectors(v) else None,
                             dw, da, lda, lower)
    b.emit(f"call void @gj.blas.scal2.{ty}(i64 {n}, i64 1, {ty} 0.0, ptr {dw}, i64 {n})")


# --- gesdd(kind, jobz, m, n, a, lda, s, u, ldu, vt, ldvt) --------------------------
#
# jobz = 'N' (np.linalg.cond, norm(A, 2), norm(A, 'nuc'): singular values only):
# before the call a copy of A is decomposed with jobz = 'S' into
# [A copy | s (k) | U (m x k) | V^T (k x n)], k = min(m, n); the reverse keeps that
# buffer.  jobz = 'S' / 'A' (np.linalg.svd with full_matrices False / True, pinv,
# lstsq's SVD): the outputs themselves are U, s, V^T; the augmented primal copies
# [s | U | V^T] (with their leading dimensions) for the reverse.  The input ``a`` is
# destroyed by the call: its tangent after it is 0, its adjoint before it is
# assigned, and the outputs' adjoints are consumed.

def _svd_vectors(v):
    return v[1] != "78"


def _svd_dims(b, v):
    m, n = v[2], v[3]
    lt = b.assign(f"icmp slt i64 {m}, {n}")
    return m, n, _sel(b, lt, "i64", m, n)


def _svd_parts(b, ty, v, buf):
    """(m, n, k, s, u, ldu, vt, ldvt) in the buffer ``buf`` saved for the reverse
    (or, for jobz 'N', made before the call)."""
    m, n, k = _svd_dims(b, v)
    if _svd_vectors(v):
        s, ldu, ldvt = buf, v[8], v[10]
        u = _gep(b, ty, s, k)
        vt = _gep(b, ty, u, _elems(b, m, _svd_cols(b, v)[0], ldu))
        return m, n, k, s, u, ldu, vt, ldvt
    s = b.assign(f"getelementptr i8, ptr {buf}, i64 {_bytes(b, ty, _elems(b, m, n, v[5]))}")
    u = _gep(b, ty, s, k)
    vt = _gep(b, ty, u, b.assign(f"mul i64 {m}, {k}"))
    return m, n, k, s, u, m, vt, k


def _svd_before(b, ty, v):
    if _svd_vectors(v):
        return "null"
    kind, _, m, n, a, lda = v[:6]
    _, _, k = _svd_dims(b, v)
    na = _elems(b, m, n, lda)
    total = b.assign(f"add i64 {na}, {k}")
    total = b.assign(f"add i64 {total}, {b.assign(f'mul i64 {m}, {k}')}")
    total = b.assign(f"add i64 {total}, {b.assign(f'mul i64 {k}, {n}')}")
    buf = b.call("malloc", "ptr", [("i64", _bytes(b, ty, total))])
    b.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {buf}, ptr {a}, i64 {_bytes(b, ty, na)}, i1 false)")
    _, _, _, s, u, _, vt, _ = _svd_parts(b, ty, v, buf)
    b.decls.setdefault("numba_ez_gesdd", "declare i32 @numba_ez_gesdd(i8, i8, i64, i64, ptr, "
                                         "i64, ptr, ptr, i64, ptr, i64)")
    b.emit(f"call i32 @numba_ez_gesdd(i8 {kind}, i8 83, i64 {m}, i64 {n}, ptr {buf}, i64 {lda}, "
           f"ptr {s}, ptr {u}, i64 {m}, ptr {vt}, i64 {k})")
    return buf


def _svd_gemm(b, kind, one, zero):
    consts = {"one": one, "zero": zero, "neg": f"@gj.blas.negone.{one.rsplit('.', 1)[1]}"}

    def gemm(ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc):
        _gemm(b, kind, ta, tb, m, n, k, consts[alpha], a, lda, bm, ldb, consts[beta], c, ldc)
    return gemm


def _svd_cols(b, v):
    """(columns of U, rows of V^T) the call writes: m and n for jobz 'A', else k."""
    m, n, k = _svd_dims(b, v)
    return (m, n) if v[1] == "65" else (k, k)


def _svd_save(b, ty, v):
    if not _svd_vectors(v):
        return v[-1]
    m, n, k = _svd_dims(b, v)
    ucols, vrows = _svd_cols(b, v)
    sz = T.FLOATS[ty]
    return _save_buffer(b, ty, [], [(v[6], k, sz), (v[7], _elems(b, m, ucols, v[8]), sz),
                                    (v[9], _elems(b, vrows, n, v[10]), sz)])


def _svd_tangent(b, ty, v, sh, one, zero):
    m, n, k = _svd_dims(b, v)
    ds, du, dvt = sh[6], sh[7], sh[9]
    if sh[4] is None:
        ucols, vrows = _svd_cols(b, v)
        for p, rows, cols, ld in ((ds, k, "1", k), (du, m, ucols, v[8]), (dvt, vrows, n, v[10])):
            if p is not None and (p is ds or _svd_vectors(v)):
                b.emit(f"call void @gj.blas.scal2.{ty}(i64 {rows}, i64 {cols}, {ty} 0.0, "
                       f"ptr {p}, i64 {ld})")
        return
    gemm = _svd_gemm(b, v[0], one, zero)
    if _svd_vectors(v):
        lapack.gesdd_tangent(b, ty, gemm, m, n, k, v[7], v[8], v[6], v[9], v[10], sh[4], v[5],
                             ds, du, dvt)
        if v[1] == "65":
            lapack.gesdd_complement_tangent(b, ty, gemm, m, n, k, v[7], v[8], v[9], v[10],
                                            du, dvt)
    else:
        _, _, _, s, u, _, vt, _ = _svd_parts(b, ty, v, v[-1])
        lapack.gesdd_values_tangent(b, ty, gemm, m, n, k, u, s, vt, sh[4], v[5], ds)
    b.emit(f"call void @gj.blas.scal2.{ty}(i64 {m}, i64 {n}, {ty} 0.0, ptr {sh[4]}, i64 {v[5]})")


def _svd_reverse(b, ty, v, sh, cache, one):
    m, n, k, s, u, ldu, vt, ldvt = _svd_parts(b, ty, v, cache)
    ds, du, dvt = sh[6], sh[7], sh[9]
    if sh[4] is not None:
        gemm = _svd_gemm(b, v[0], one, f"@gj.blas.zero.{ty}")
        if _svd_vectors(v):
            if v[1] == "65":
                lapack.gesdd_complement_adjoint(b, ty, gemm, m, n, k, u, ldu, vt, ldvt, du, dvt)
            lapack.gesdd_adjoint(b, ty, gemm, m, n, k, u, ldu, s, vt, ldvt, du, ds, dvt,
                                 sh[4], v[5])
        else:
            lapack.gesdd_values_adjoint(b, ty, gemm, m, n, k, u, s, vt, ds, sh[4], v[5])
    b.emit(f"call void @gj.blas.scal2.{ty}(i64 {k}, i64 1, {ty} 0.0, ptr {ds}, i64 {k})")
    if _svd_vectors(v):
        ucols, vrows = _svd_cols(b, v)
        for p, rows, cols, ld in ((du, m, ucols, v[8]), (dvt, vrows, n, v[10])):
            if p is not None:
                b.emit(f"call void @gj.blas.scal2.{ty}(i64 {rows}, i64 {cols}, {ty} 0.0, "
                       f"ptr {p}, i64 {ld})")


_OUTPUT.update({"numba_xxgetrf": 3, "numba_ez_xxgetri": 2, "numba_xxpotrf": 3,
                "numba_ez_xxxevd": 6, "numba_ez_gesdd": 6})
_SAVE["numba_ez_gesdd"] = _svd_save
_TANGENT["numba_ez_gesdd"] = _svd_tangent
_REVERSE["numba_ez_gesdd"] = _svd_reverse
_SAVE["numba_ez_xxxevd"] = _evd_save
_TANGENT["numba_ez_xxxevd"] = _evd_tangent
_REVERSE["numba_ez_xxxevd"] = _evd_reverse
_SAVE.update({"numba_xxgetrf": _getrf_save, "numba_ez_xxgetri": _getri_save,
              "numba_xxpotrf": _potrf_save})
_TANGENT.update({"numba_xxgetrf": _getrf_tangent, "numba_ez_xxgetri": _getri_tangent,
                 "numba_xxpotrf": _potrf_tangent})
_REVERSE.update({"numba_xxgetrf": _getrf_reverse, "numba_ez_xxgetri": _getri_reverse,
                 "numba_xxpotrf": _potrf_reverse})
_BEFORE = {"numba_ez_xxgetri": _getri_before, "numba_ez_xxxevd": _evd_before,
           "numba_ez_gesdd": _svd_before}
