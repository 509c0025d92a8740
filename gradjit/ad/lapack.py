"""Derivatives of the LU factorization, the inverse from LU factors, the
Cholesky factorization, the symmetric eigendecomposition and the SVD Numba calls
for ``np.linalg.det``, ``slogdet``, ``inv``, ``cholesky``, ``eigh``/``eigvalsh`` and
``svd``/``pinv``/``cond``/``norm(A, 2)`` (``numba_xxgetrf``, ``numba_ez_xxgetri``,
``numba_xxpotrf``, ``numba_ez_xxxevd`` and ``numba_ez_gesdd`` of Numba's ``_lapack.c``;
column-major, real kinds ``'d'`` and ``'s'``).

Rules (matrices column-major as LAPACK sees them; ``tril_`` strictly lower,
``triu`` upper with the diagonal)::

    getrf  A = P L U, packed in place (L unit lower, U upper), pivots ipiv
           F = L^-1 P^T dA U^-1,  dL = L tril_(F),  dU = triu(F) U
           Ab = P L^-T (tril_(L^T Lb) + triu(Ub U^T)) U^-T
    getri  X = A^-1 from the packed factors (in place)
           dX = -X dA X with dA = P (dL U + L dU)
           M = P^T (-X^T Xb X^T),  Lb = tril_(M U^T),  Ub = triu(L^T M)
    potrf  (upper) A = U^T U from the upper triangle of A, in place; the strictly
           lower part is left as it was (Numba zeroes it afterwards)
           X = U^-T dA U^-1 (dA symmetric),  dU = Phi(X)^T U
           S = U^-1 Phi(U Ub^T) U^-T,  Ab_ij = S_ij + S_ji (i < j),  Ab_ii = S_ii

    syevd  A = V diag(w) V^T (symmetric A from one triangle; eigenvectors V in
           place when jobz = 'V', else only w)
           G = V^T dA V,  dw = diag(G),  dV = V (F o G)
           Ab = V (diag(wb) + F o (V^T Vb)) V^T, folded onto the triangle read

    gesdd  A = U diag(s) V^T, thin (k = min(m, n) columns of U and V); values only
           (jobz = 'N'): ds_i = u_i^T dA v_i,  Ab = U diag(sb) V^T
           with vectors (jobz = 'S', or 'A' whose extra columns U[:, k:], V[:, k:]
           get zero tangents and their adjoints are ignored, as in PyTorch):
           P = U^T dA V,  ds = diag(P),
           dU = U (F o (P S + S P^T)) + (I - U U^T) dA V S^-1
           dV = V (F o (S P + P^T S)) + (I - V V^T) dA^T U S^-1
           Ab = U [(F o (U^T Ub - Ub^T U)) S + diag(sb) + S (F o (V^T Vb - Vb^T V))] V^T
                + (I - U U^T) Ub S^-1 V^T + U S^-1 Vb^T (I - V V^T)

with ``Phi(X)`` the lower triangle of X with its diagonal halved,
``F_ij = 1 / (w_j - w_i)`` for the eigen rules and ``F_ij = 1 / (s_j^2 - s_i^2)`` for
the SVD (0 on the diagonal; distinct eigenvalues / singular values, nonzero
singular values where S^-1 appears).  Sources: the LU
rules are those of F. de Hoog, R. Anderssen and M. Lukas, "Differentiation of
matrix functionals using triangular factorization", Math. Comp. 80 (2011), and
M. Seeger et al., "Auto-differentiating linear algebra" (2017), sec. 3; the
Cholesky rules are I. Murray, "Differentiation of the Cholesky decomposition"
(2016), sec. 3 (eq. 10 for the adjoint); the eigenvalue rules are M. B. Giles,
"An extended collection of matrix derivative results for forward and reverse
mode AD" (2008), sec. 3.1; the SVD rules are J. Townsend, "Differentiating the
singular value decomposition" (2016), eq. 30 and its forward counterpart, written
with the projections expanded (``(I - U U^T) X = X - U (U^T X)``) so that only
k x k scratch matrices are needed; ``getri`` is the chain rule through
``A = P L U`` and ``d(A^-1) = -A^-1 dA A^-1`` (Giles 2008, sec. 3.1).

Triangular solves and products and the row interchanges call the BLAS/LAPACK
that SciPy ships (``?trsm``, ``?trmm``, ``?laswp`` through
``scipy.linalg.cython_blas`` / ``cython_lapack``, which Numba's own LAPACK calls
use as well); the masked copies between triangles are IR loops.
"""
from __future__ import annotations

from ..ir import types as T

_N, _T, _L, _U, _R = "110", "116", "76", "85", "82"     # 'N' 'T' 'L' 'U' 'R'
# parts of a square matrix for gj.part (i: row, j: column)
STRICT_LOWER, UPPER, STRICT_UPPER, LOWER, ALL = range(5)
# modes of gj.part: zero outside the part / add inside / assign inside
ZERO_OUT, ADD, ASSIGN = range(3)

_RUNTIME = r"""
declare void @gj_cy_{p}trsm(ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr)
declare void @gj_cy_{p}trmm(ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr)
declare void @gj_cy_{p}laswp(ptr, ptr, ptr, ptr, ptr, ptr, ptr)

; B := op(A)^-1 B, B op(A)^-1 (%solve) or op(A) B, B op(A), A triangular
define internal void @gj.tri.{t}(i1 %solve, i8 %side, i8 %uplo, i8 %trans, i8 %diag, i64 %m,
                                 i64 %n, ptr %a, i64 %lda, ptr %b, i64 %ldb) {{
entry:
  %ps = alloca i8
  %pu = alloca i8
  %pt = alloca i8
  %pd = alloca i8
  %pm = alloca i32
  %pn = alloca i32
  %pa = alloca {t}
  %pla = alloca i32
  %plb = alloca i32
  store i8 %side, ptr %ps
  store i8 %uplo, ptr %pu
  store i8 %trans, ptr %pt
  store i8 %diag, ptr %pd
  %m32 = trunc i64 %m to i32
  %n32 = trunc i64 %n to i32
  %la32 = trunc i64 %lda to i32
  %lb32 = trunc i64 %ldb to i32
  store i32 %m32, ptr %pm
  store i32 %n32, ptr %pn
  store {t} 1.0, ptr %pa
  store i32 %la32, ptr %pla
  store i32 %lb32, ptr %plb
  br i1 %solve, label %s, label %p
s:
  call void @gj_cy_{p}trsm(ptr %ps, ptr %pu, ptr %pt, ptr %pd, ptr %pm, ptr %pn, ptr %pa,
                           ptr %a, ptr %pla, ptr %b, ptr %plb)
  ret void
p:
  call void @gj_cy_{p}trmm(ptr %ps, ptr %pu, ptr %pt, ptr %pd, ptr %pm, ptr %pn, ptr %pa,
                           ptr %a, ptr %pla, ptr %b, ptr %plb)
  ret void
}}

; the row interchanges ipiv(1..n) of getrf applied to the n columns of A: in order
; (P^T A) or in reverse order (%rev: P A)
define internal void @gj.laswp.{t}(i64 %n, ptr %a, i64 %lda, ptr %ipiv, i1 %rev) {{
entry:
  %pn = alloca i32
  %pla = alloca i32
  %k1 = alloca i32
  %k2 = alloca i32
  %inc = alloca i32
  %n32 = trunc i64 %n to i32
  %la32 = trunc i64 %lda to i32
  store i32 %n32, ptr %pn
  store i32 %la32, ptr %pla
  store i32 1, ptr %k1
  store i32 %n32, ptr %k2
  %i = select i1 %rev, i32 -1, i32 1
  store i32 %i, ptr %inc
  call void @gj_cy_{p}laswp(ptr %pn, ptr %a, ptr %pla, ptr %k1, ptr %k2, ptr %ipiv, ptr %inc)
  ret void
}}

; dst[i, j] (=, += or, for %mode 0, = with zeros outside) src[i, j] (src[j, i] when
; %trans) for the (i, j) in %part, the diagonal scaled by %dscale; n x n, column-major
define internal void @gj.part.{t}(i64 %n, ptr %src, i64 %lds, ptr %dst, i64 %ldd, i32 %part,
                                  i1 %trans, {t} %dscale, i32 %mode) {{
entry:
  %e = icmp sle i64 %n, 0
  br i1 %e, label %done, label %cols
cols:
  %j = phi i64 [ 0, %entry ], [ %j1, %colend ]
  br label %rows
rows:
  %i = phi i64 [ 0, %cols ], [ %i1, %next ]
  %gt = icmp sgt i64 %i, %j
  %lt = icmp slt i64 %i, %j
  %le = xor i1 %gt, true
  %ge = xor i1 %lt, true
  %p0 = icmp eq i32 %part, 0
  %p1 = icmp eq i32 %part, 1
  %p2 = icmp eq i32 %part, 2
  %p3 = icmp eq i32 %part, 3
  %in3 = select i1 %p3, i1 %ge, i1 true
  %in2 = select i1 %p2, i1 %lt, i1 %in3
  %in1 = select i1 %p1, i1 %le, i1 %in2
  %in = select i1 %p0, i1 %gt, i1 %in1
  %od = mul i64 %j, %ldd
  %odi = add i64 %od, %i
  %pd = getelementptr {t}, ptr %dst, i64 %odi
  %zero = icmp eq i32 %mode, 0
  br i1 %in, label %inside, label %outside
inside:
  %sa = mul i64 %j, %lds
  %sa1 = add i64 %sa, %i
  %sb = mul i64 %i, %lds
  %sb1 = add i64 %sb, %j
  %so = select i1 %trans, i64 %sb1, i64 %sa1
  %ps = getelementptr {t}, ptr %src, i64 %so
  %v = load {t}, ptr %ps
  %diag = icmp eq i64 %i, %j
  %sc = select i1 %diag, {t} %dscale, {t} 1.0
  %vs = fmul {t} %v, %sc
  %add = icmp eq i32 %mode, 1
  %old = load {t}, ptr %pd
  %sum = fadd {t} %old, %vs
  %new = select i1 %add, {t} %sum, {t} %vs
  store {t} %new, ptr %pd
  br label %next
outside:
  br i1 %zero, label %clear, label %next
clear:
  store {t} 0.0, ptr %pd
  br label %next
next:
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %n
  br i1 %c, label %rows, label %colend
colend:
  %j1 = add i64 %j, 1
  %cj = icmp slt i64 %j1, %n
  br i1 %cj, label %cols, label %done
done:
  ret void
}}

; out[i] = sum_c x[i + c ldx] y[i + c ldy] for i < k (row-wise dots of k x n matrices)
define internal void @gj.rowdots.{t}(i64 %k, i64 %n, ptr %x, i64 %ldx, ptr %y, i64 %ldy,
                                     ptr %out) {{
entry:
  %e = icmp sle i64 %k, 0
  br i1 %e, label %done, label %rows
rows:
  %i = phi i64 [ 0, %entry ], [ %i1, %rowend ]
  %px = getelementptr {t}, ptr %x, i64 %i
  %py = getelementptr {t}, ptr %y, i64 %i
  %d = call {t} @gj.blas.vdot.{t}(i64 %n, ptr %px, i64 %ldx, ptr %py, i64 %ldy)
  %po = getelementptr {t}, ptr %out, i64 %i
  store {t} %d, ptr %po
  br label %rowend
rowend:
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %k
  br i1 %c, label %rows, label %done
done:
  ret void
}}

; an exactly singular LU (a zero on U's diagonal: getrf's info > 0, where Numba's
; det/slogdet return constants and solve/inv raise) gives no adjoint: the adjoint
; %d (n x n, ldd) is zeroed and the zero pivots of the saved factors %lu become 1,
; so the solves that follow stay finite (and give 0)
define internal void @gj.lu.guard.{t}(i64 %n, ptr %lu, i64 %lda, ptr %d, i64 %ldd) {{
entry:
  %e = icmp sle i64 %n, 0
  br i1 %e, label %done, label %scan
scan:
  %i = phi i64 [ 0, %entry ], [ %i1, %next ]
  %sing = phi i1 [ false, %entry ], [ %sing1, %next ]
  %o = mul i64 %i, %lda
  %oi = add i64 %o, %i
  %p = getelementptr {t}, ptr %lu, i64 %oi
  %v = load {t}, ptr %p
  %z = fcmp oeq {t} %v, 0.0
  br i1 %z, label %fix, label %next
fix:
  store {t} 1.0, ptr %p
  br label %next
next:
  %sing1 = phi i1 [ true, %fix ], [ %sing, %scan ]
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %n
  br i1 %c, label %scan, label %end
end:
  br i1 %sing1, label %zcols, label %done
zcols:
  %j = phi i64 [ 0, %end ], [ %j1, %zcols ]
  %oj = mul i64 %j, %ldd
  %pj = getelementptr {t}, ptr %d, i64 %oj
  %nb = mul i64 %n, {size}
  call void @llvm.memset.p0.i64(ptr %pj, i8 0, i64 %nb, i1 false)
  %j1 = add i64 %j, 1
  %cz = icmp slt i64 %j1, %n
  br i1 %cz, label %zcols, label %done
done:
  ret void
}}

; y[:, c] = x[:, c] * s[c] for the k columns of the m x k matrices x (ldx), y (ldy)
define internal void @gj.colscale.{t}(i64 %m, i64 %k, ptr %x, i64 %ldx, ptr %s, ptr %y,
                                      i64 %ldy) {{
entry:
  %e = icmp sle i64 %k, 0
  br i1 %e, label %done, label %cols
cols:
  %c = phi i64 [ 0, %entry ], [ %c1, %colend ]
  %ps = getelementptr {t}, ptr %s, i64 %c
  %sc = load {t}, ptr %ps
  %ox = mul i64 %c, %ldx
  %oy = mul i64 %c, %ldy
  %e2 = icmp sle i64 %m, 0
  br i1 %e2, label %colend, label %rows
rows:
  %r = phi i64 [ 0, %cols ], [ %r1, %rows ]
  %ix = add i64 %ox, %r
  %iy = add i64 %oy, %r
  %px = getelementptr {t}, ptr %x, i64 %ix
  %py = getelementptr {t}, ptr %y, i64 %iy
  %v = load {t}, ptr %px
  %w = fmul {t} %v, %sc
  store {t} %w, ptr %py
  %r1 = add i64 %r, 1
  %cr = icmp slt i64 %r1, %m
  br i1 %cr, label %rows, label %colend
colend:
  %c1 = add i64 %c, 1
  %cc = icmp slt i64 %c1, %k
  br i1 %cc, label %cols, label %done
done:
  ret void
}}

; the eigen rules' middle step on G (n x n, column-major): off the diagonal
; G_ij /= (w_j - w_i); on it, G_ii goes to %dw[i] (if not null) and is replaced by
; %wb[i] (or 0 if null)
define internal void @gj.eig.mid.{t}(i64 %n, ptr %g, i64 %ld, ptr %w, ptr %dw, ptr %wb) {{
entry:
  %e = icmp sle i64 %n, 0
  %hasdw = icmp ne ptr %dw, null
  %haswb = icmp ne ptr %wb, null
  br i1 %e, label %done, label %cols
cols:
  %j = phi i64 [ 0, %entry ], [ %j1, %colend ]
  %pwj = getelementptr {t}, ptr %w, i64 %j
  %wj = load {t}, ptr %pwj
  br label %rows
rows:
  %i = phi i64 [ 0, %cols ], [ %i1, %next ]
  %o = mul i64 %j, %ld
  %oi = add i64 %o, %i
  %pg = getelementptr {t}, ptr %g, i64 %oi
  %v = load {t}, ptr %pg
  %diag = icmp eq i64 %i, %j
  br i1 %diag, label %ondiag, label %off
off:
  %pwi = getelementptr {t}, ptr %w, i64 %i
  %wi = load {t}, ptr %pwi
  %gap = fsub {t} %wj, %wi
  %q = fdiv {t} %v, %gap
  %nil = fcmp oeq {t} %v, 0.0
  %q0 = select i1 %nil, {t} 0.0, {t} %q
  store {t} %q0, ptr %pg
  br label %next
ondiag:
  br i1 %hasdw, label %putdw, label %setwb
putdw:
  %pdw = getelementptr {t}, ptr %dw, i64 %i
  store {t} %v, ptr %pdw
  br label %setwb
setwb:
  br i1 %haswb, label %getwb, label %zero
getwb:
  %pwb = getelementptr {t}, ptr %wb, i64 %i
  %vwb = load {t}, ptr %pwb
  store {t} %vwb, ptr %pg
  br label %next
zero:
  store {t} 0.0, ptr %pg
  br label %next
next:
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %n
  br i1 %c, label %rows, label %colend
colend:
  %j1 = add i64 %j, 1
  %cj = icmp slt i64 %j1, %n
  br i1 %cj, label %cols, label %done
done:
  ret void
}}

; y[r, c] (= or, with %add, +=) x[r, c] / s[r] (%byrow) or / s[c], for the rows x cols
; column-major matrices x (ldx), y (ldy)
define internal void @gj.svd.scale.{t}(i64 %rows, i64 %cols, ptr %x, i64 %ldx, ptr %s,
                                       i1 %byrow, ptr %y, i64 %ldy, i1 %add) {{
entry:
  %e1 = icmp sle i64 %rows, 0
  %e2 = icmp sle i64 %cols, 0
  %e = or i1 %e1, %e2
  br i1 %e, label %done, label %cols.h
cols.h:
  %c = phi i64 [ 0, %entry ], [ %c1, %colend ]
  %ox = mul i64 %c, %ldx
  %oy = mul i64 %c, %ldy
  %psc = getelementptr {t}, ptr %s, i64 %c
  %sc = load {t}, ptr %psc
  br label %rows.h
rows.h:
  %r = phi i64 [ 0, %cols.h ], [ %r1, %rows.h ]
  %psr = getelementptr {t}, ptr %s, i64 %r
  %sr = load {t}, ptr %psr
  %d = select i1 %byrow, {t} %sr, {t} %sc
  %ix = add i64 %ox, %r
  %iy = add i64 %oy, %r
  %px = getelementptr {t}, ptr %x, i64 %ix
  %py = getelementptr {t}, ptr %y, i64 %iy
  %v = load {t}, ptr %px
  %q = fdiv {t} %v, %d
  %old = load {t}, ptr %py
  %sum = fadd {t} %old, %q
  %w = select i1 %add, {t} %sum, {t} %q
  store {t} %w, ptr %py
  %r1 = add i64 %r, 1
  %cr = icmp slt i64 %r1, %rows
  br i1 %cr, label %rows.h, label %colend
colend:
  %c1 = add i64 %c, 1
  %cc = icmp slt i64 %c1, %cols
  br i1 %cc, label %cols.h, label %done
done:
  ret void
}}

; the middle step of the SVD rules on k x k matrices (column-major, ld k), with
; F_ij = 1 / (s_j^2 - s_i^2) (a zero numerator gives 0: repeated singular values
; whose coupling vanishes) and G^-_ij = G_ij - G_ji:
;   tangent (%sb null): a = P, b unused; writes ds_i = P_ii and
;     %o1 = F o (P S + S P^T) - P S^-1,   %o2 = (F o (S P + P^T S))^T - S^-1 P
;   adjoint: a = U^T Ub, b = V^T Vb;
;     %o1 = (F o a^-) S + diag(sb) + S (F o b^-) - a S^-1 - S^-1 b^T
define internal void @gj.svd.mid.{t}(i64 %k, ptr %a, ptr %b, ptr %s, ptr %sb, ptr %ds,
                                     ptr %o1, ptr %o2) {{
entry:
  %e = icmp sle i64 %k, 0
  %rev = icmp ne ptr %sb, null
  br i1 %e, label %done, label %cols
cols:
  %j = phi i64 [ 0, %entry ], [ %j1, %colend ]
  %psj = getelementptr {t}, ptr %s, i64 %j
  %sj = load {t}, ptr %psj
  %sj2 = fmul {t} %sj, %sj
  br label %rows
rows:
  %i = phi i64 [ 0, %cols ], [ %i1, %next ]
  %psi = getelementptr {t}, ptr %s, i64 %i
  %si = load {t}, ptr %psi
  %si2 = fmul {t} %si, %si
  %oij0 = mul i64 %j, %k
  %oij = add i64 %oij0, %i
  %oji0 = mul i64 %i, %k
  %oji = add i64 %oji0, %j
  %paij = getelementptr {t}, ptr %a, i64 %oij
  %paji = getelementptr {t}, ptr %a, i64 %oji
  %aij = load {t}, ptr %paij
  %aji = load {t}, ptr %paji
  %po1 = getelementptr {t}, ptr %o1, i64 %oij
  %aoversj = fdiv {t} %aij, %sj
  %diag = icmp eq i64 %i, %j
  %gap = fsub {t} %sj2, %si2
  br i1 %rev, label %adj, label %tan
tan:
  ; o1_ij = (P_ij s_j + s_i P_ji) / gap - P_ij / s_j
  %t1 = fmul {t} %aij, %sj
  %t2 = fmul {t} %si, %aji
  %n1 = fadd {t} %t1, %t2
  %q1 = fdiv {t} %n1, %gap
  %z1 = fcmp oeq {t} %n1, 0.0
  %nz1 = or i1 %z1, %diag
  %f1 = select i1 %nz1, {t} 0.0, {t} %q1
  %v1 = fsub {t} %f1, %aoversj
  store {t} %v1, ptr %po1
  ; o2_ij = (s_j P_ji + P_ij s_i) / (s_i^2 - s_j^2) - P_ij / s_i
  %t3 = fmul {t} %sj, %aji
  %t4 = fmul {t} %aij, %si
  %n2 = fadd {t} %t3, %t4
  %mgap = fsub {t} %si2, %sj2
  %q2 = fdiv {t} %n2, %mgap
  %z2 = fcmp oeq {t} %n2, 0.0
  %nz2 = or i1 %z2, %diag
  %f2 = select i1 %nz2, {t} 0.0, {t} %q2
  %aoversi = fdiv {t} %aij, %si
  %v2 = fsub {t} %f2, %aoversi
  %po2 = getelementptr {t}, ptr %o2, i64 %oij
  store {t} %v2, ptr %po2
  br i1 %diag, label %putds, label %next
putds:
  %pds = getelementptr {t}, ptr %ds, i64 %i
  store {t} %aij, ptr %pds
  br label %next
adj:
  %pbij = getelementptr {t}, ptr %b, i64 %oij
  %pbji = getelementptr {t}, ptr %b, i64 %oji
  %bij = load {t}, ptr %pbij
  %bji = load {t}, ptr %pbji
  %am = fsub {t} %aij, %aji
  %bm = fsub {t} %bij, %bji
  %u1 = fmul {t} %am, %sj
  %u2 = fmul {t} %si, %bm
  %n3 = fadd {t} %u1, %u2
  %q3 = fdiv {t} %n3, %gap
  %z3 = fcmp oeq {t} %n3, 0.0
  %pk = getelementptr {t}, ptr %sb, i64 %i
  %sbi = load {t}, ptr %pk
  %off = select i1 %z3, {t} 0.0, {t} %q3
  %mid = select i1 %diag, {t} %sbi, {t} %off
  %boversi = fdiv {t} %bji, %si
  %w1 = fsub {t} %mid, %aoversj
  %w2 = fsub {t} %w1, %boversi
  store {t} %w2, ptr %po1
  br label %next
next:
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %k
  br i1 %c, label %rows, label %colend
colend:
  %j1 = add i64 %j, 1
  %cj = icmp slt i64 %j1, %k
  br i1 %cj, label %cols, label %done
done:
  ret void
}}
"""


def runtime(ctx, b, ty):
    """Register the SciPy BLAS/LAPACK symbols and the IR helpers for ``ty``."""
    import llvmlite.binding as llvm
    from numba.extending import get_cython_function_address
    p = "d" if ty == "double" else "s"
    for module, name in (("cython_blas", "trsm"), ("cython_blas", "trmm"),
                         ("cython_lapack", "laswp")):
        sym = f"gj_cy_{p}{name}"
        if not llvm.address_of_symbol(sym):
            llvm.add_symbol(sym, get_cython_function_address(f"scipy.linalg.{module}", p + name))
    ctx.extra.setdefault(f"gj.lapack.runtime.{ty}", _RUNTIME.format(t=ty, p=p, size=8 if ty == "double" else 4))
    for name, text in (("malloc", "declare ptr @malloc(i64)"), ("free", "declare void @free(ptr)")):
        b.decls.setdefault(name, text)


def tri(b, ty, solve, side, uplo, trans, diag, n, a, lda, x, ldx):
    b.emit(f"call void @gj.tri.{ty}(i1 {'true' if solve else 'false'}, i8 {side}, i8 {uplo}, "
           f"i8 {trans}, i8 {diag}, i64 {n}, i64 {n}, ptr {a}, i64 {lda}, ptr {x}, i64 {ldx})")


def laswp(b, ty, n, a, lda, ipiv, reverse):
    b.emit(f"call void @gj.laswp.{ty}(i64 {n}, ptr {a}, i64 {lda}, ptr {ipiv}, "
           f"i1 {'true' if reverse else 'false'})")


def part(b, ty, n, src, lds, dst, ldd, which, mode, trans=False, dscale="1.0"):
    b.emit(f"call void @gj.part.{ty}(i64 {n}, ptr {src}, i64 {lds}, ptr {dst}, i64 {ldd}, "
           f"i32 {which}, i1 {'true' if trans else 'false'}, {ty} {dscale}, i32 {mode})")


def scratch(b, ty, n):
    """An uninitialized n x n heap matrix (free it with :func:`release`)."""
    nn = b.assign(f"mul i64 {n}, {n}")
    return b.call("malloc", "ptr", [("i64", b.assign(f"mul i64 {nn}, {T.FLOATS[ty]}"))])


def release(b, p):
    b.emit(f"call void @free(ptr {p})")


# --- getrf(kind, m, n, a, lda, ipiv) ----------------------------------------------

def getrf_tangent(b, ty, n, lu, lda, ipiv, d):
    """``d`` (the tangent of A, column-major with ``lda``) becomes that of the packed
    factors ``lu``."""
    laswp(b, ty, n, d, lda, ipiv, False)                       # P^T dA
    tri(b, ty, True, _L, _L, _N, _U, n, lu, lda, d, lda)       # L^-1 .
    tri(b, ty, True, _R, _U, _N, _N, n, lu, lda, d, lda)       # . U^-1: F
    t = scratch(b, ty, n)
    part(b, ty, n, d, lda, t, n, STRICT_LOWER, ZERO_OUT)       # tril_(F)
    tri(b, ty, False, _L, _L, _N, _U, n, lu, lda, t, n)        # dL = L tril_(F)
    part(b, ty, n, d, lda, d, lda, UPPER, ZERO_OUT)            # triu(F)
    tri(b, ty, False, _R, _U, _N, _N, n, lu, lda, d, lda)      # dU = triu(F) U
    part(b, ty, n, t, n, d, lda, STRICT_LOWER, ADD)
    release(b, t)


def getrf_adjoint(b, ty, n, lu, lda, ipiv, d):
    """``d`` (the adjoint of the packed factors) becomes that of A (zero when the
    factorization was exactly singular: ``gj.lu.guard``)."""
    b.emit(f"call void @gj.lu.guard.{ty}(i64 {n}, ptr {lu}, i64 {lda}, ptr {d}, i64 {lda})")
    t = scratch(b, ty, n)
    part(b, ty, n, d, lda, t, n, STRICT_LOWER, ZERO_OUT)       # Lb
    tri(b, ty, False, _L, _L, _T, _U, n, lu, lda, t, n)        # L^T Lb
    part(b, ty, n, d, lda, d, lda, UPPER, ZERO_OUT)            # Ub
    tri(b, ty, False, _R, _U, _T, _N, n, lu, lda, d, lda)      # Ub U^T
    part(b, ty, n, d, lda, d, lda, UPPER, ZERO_OUT)
    part(b, ty, n, t, n, d, lda, STRICT_LOWER, ADD)            # M
    release(b, t)
    tri(b, ty, True, _L, _L, _T, _U, n, lu, lda, d, lda)       # L^-T M
    tri(b, ty, True, _R, _U, _T, _N, n, lu, lda, d, lda)       # . U^-T
    laswp(b, ty, n, d, lda, ipiv, True)                        # P .


# --- getri(kind, n, a, lda, ipiv) ---------------------------------------------------

def getri_tangent(b, ty, gemm, n, lu, x, lda, ipiv, d):
    """``d`` (the tangent of the packed factors ``lu``, as they were before the call)
    becomes that of the inverse ``x``.  ``gemm(ta, tb, alpha, a, lda, b, ldb, beta,
    c, ldc)`` multiplies n x n matrices."""
    t = scratch(b, ty, n)
    part(b, ty, n, d, lda, t, n, STRICT_LOWER, ZERO_OUT)       # dL
    tri(b, ty, False, _R, _U, _N, _N, n, lu, lda, t, n)        # dL U
    part(b, ty, n, d, lda, d, lda, UPPER, ZERO_OUT)            # dU
    tri(b, ty, False, _L, _L, _N, _U, n, lu, lda, d, lda)      # L dU
    part(b, ty, n, t, n, d, lda, ALL, ADD)
    laswp(b, ty, n, d, lda, ipiv, True)                        # dA = P (dL U + L dU)
    gemm(_N, _N, "one", x, lda, d, lda, "zero", t, n)          # X dA
    gemm(_N, _N, "neg", t, n, x, lda, "zero", d, lda)          # -X dA X
    release(b, t)


def getri_adjoint(b, ty, gemm, n, lu, x, lda, ipiv, d):
    """``d`` (the adjoint of the inverse) becomes that of the packed factors."""
    t = scratch(b, ty, n)
    gemm(_T, _N, "one", x, lda, d, lda, "zero", t, n)          # X^T Xb
    gemm(_N, _T, "neg", t, n, x, lda, "zero", d, lda)          # G = -X^T Xb X^T
    laswp(b, ty, n, d, lda, ipiv, False)                       # M = P^T G
    part(b, ty, n, d, lda, t, n, ALL, ZERO_OUT)
    tri(b, ty, False, _R, _U, _T, _N, n, lu, lda, t, n)        # M U^T
    tri(b, ty, False, _L, _L, _T, _U, n, lu, lda, d, lda)      # L^T M
    part(b, ty, n, d, lda, d, lda, UPPER, ZERO_OUT)            # Ub
    part(b, ty, n, t, n, d, lda, STRICT_LOWER, ADD)            # Lb
    release(b, t)


# --- potrf(kind, uplo, n, a, lda), uplo = 'U' -----------------------------------------

def potrf_tangent(b, ty, n, u, lda, d):
    """The upper triangle of ``d`` (the tangent of A's upper triangle) becomes that
    of U; its strictly lower part (A's values, left in place) is kept."""
    s = scratch(b, ty, n)
    part(b, ty, n, d, lda, s, n, UPPER, ZERO_OUT)
    part(b, ty, n, d, lda, s, n, STRICT_LOWER, ADD, trans=True)   # dA, symmetric
    tri(b, ty, True, _L, _U, _T, _N, n, u, lda, s, n)          # U^-T dA
    tri(b, ty, True, _R, _U, _N, _N, n, u, lda, s, n)          # . U^-1: X
    part(b, ty, n, s, n, s, n, UPPER, ZERO_OUT, dscale="0.5")  # Phi(X)^T
    tri(b, ty, False, _R, _U, _N, _N, n, u, lda, s, n)         # . U
    part(b, ty, n, s, n, d, lda, UPPER, ASSIGN)
    release(b, s)


def potrf_adjoint(b, ty, n, u, lda, d):
    """The upper triangle of ``d`` (the adjoint of U) becomes the adjoint of A's
    upper triangle; the strictly lower part passes through."""
    s = scratch(b, ty, n)
    part(b, ty, n, d, lda, s, n, LOWER, ZERO_OUT, trans=True)  # Ub^T
    tri(b, ty, False, _L, _U, _N, _N, n, u, lda, s, n)         # U Ub^T
    part(b, ty, n, s, n, s, n, LOWER, ZERO_OUT, dscale="0.5")  # Phi(U Ub^T)
    tri(b, ty, True, _L, _U, _N, _N, n, u, lda, s, n)          # U^-1 .
    tri(b, ty, True, _R, _U, _T, _N, n, u, lda, s, n)          # . U^-T: S
    part(b, ty, n, s, n, d, lda, UPPER, ASSIGN)
    part(b, ty, n, s, n, d, lda, STRICT_UPPER, ADD, trans=True)
    release(b, s)


# --- syevd(kind, jobz, uplo, n, a, lda, w) (np.linalg.eigh, eigvalsh) ----------------

def symmetrize(b, ty, n, a, lda, dst, lower):
    """``dst`` (n x n) = the symmetric matrix whose ``lower`` (else upper) triangle
    is that of ``a``."""
    part(b, ty, n, a, lda, dst, n, LOWER if lower else UPPER, ZERO_OUT)
    part(b, ty, n, a, lda, dst, n, STRICT_UPPER if lower else STRICT_LOWER, ADD, trans=True)


def fold(b, ty, n, m, dst, ldd, lower):
    """``dst`` = the adjoint of the triangle read from the adjoint ``m`` of the
    symmetric matrix built from it: ``m_ij + m_ji`` off the diagonal, ``m_ii``."""
    part(b, ty, n, m, n, dst, ldd, LOWER if lower else UPPER, ZERO_OUT)
    part(b, ty, n, m, n, dst, ldd, STRICT_LOWER if lower else STRICT_UPPER, ADD, trans=True)


def syevd_tangent(b, ty, gemm, n, v, ldv, w, da, lda, lower, dw, dv):
    """Tangents ``dw`` (n) and, if not None, ``dv`` (n x n, ``lda``) of the
    eigenvalues and eigenvectors from ``da`` (the tangent of the triangle read)."""
    s, t = scratch(b, ty, n), scratch(b, ty, n)
    symmetrize(b, ty, n, da, lda, s, lower)
    gemm("116", "110", "one", v, ldv, s, n, "zero", t, n)          # V^T dA
    gemm("110", "110", "one", t, n, v, ldv, "zero", s, n)          # G = V^T dA V
    b.emit(f"call void @gj.eig.mid.{ty}(i64 {n}, ptr {s}, i64 {n}, ptr {w}, ptr {dw}, ptr null)")
    if dv is not None:
        gemm("110", "110", "one", v, ldv, s, n, "zero", dv, lda)  # V (F o G)
    release(b, s)
    release(b, t)


def syevd_adjoint(b, ty, gemm, n, v, ldv, w, vb, wb, da, lda, lower):
    """The adjoint of the triangle read, into ``da``, from ``wb`` and (if not None)
    ``vb``, the adjoints of the eigenvalues and eigenvectors."""
    s, t = scratch(b, ty, n), scratch(b, ty, n)
    if vb is not None:
        gemm("116", "110", "one", v, ldv, vb, lda, "zero", t, n)   # V^T Vb
    else:
        b.emit(f"call void @gj.blas.scal2.{ty}(i64 {n}, i64 {n}, {ty} 0.0, ptr {t}, i64 {n})")
    b.emit(f"call void @gj.eig.mid.{ty}(i64 {n}, ptr {t}, i64 {n}, ptr {w}, ptr null, ptr {wb})")
    gemm("110", "110", "one", v, ldv, t, n, "zero", s, n)          # V (.)
    gemm("110", "116", "one", s, n, v, ldv, "zero", t, n)          # (.) V^T
    fold(b, ty, n, t, da, lda, lower)
    release(b, s)
    release(b, t)


# --- gesdd(kind, 'N', m, n, a, lda, s, ...): singular values only --------------------

def gesdd_values_tangent(b, ty, gemm, m, n, k, u, s, vt, da, lda, ds):
    """``ds`` (k) = the tangents of the singular values: diag(U^T dA V); ``u`` is
    m x k (ld m), ``vt`` k x n (ld k)."""
    t = b.call("malloc", "ptr", [("i64", b.assign(f"mul i64 {b.assign(f'mul i64 {k}, {n}')}, "
                                                   f"{T.FLOATS[ty]}"))])
    gemm("116", "110", k, n, m, "one", u, m, da, lda, "zero", t, k)      # U^T dA
    b.emit(f"call void @gj.rowdots.{ty}(i64 {k}, i64 {n}, ptr {t}, i64 {k}, ptr {vt}, "
           f"i64 {k}, ptr {ds})")
    release(b, t)


def gesdd_values_adjoint(b, ty, gemm, m, n, k, u, s, vt, sb, da, lda):
    """``da`` = U diag(sb) V^T, the adjoint of A from that of the singular values."""
    t = b.call("malloc", "ptr", [("i64", b.assign(f"mul i64 {b.assign(f'mul i64 {m}, {k}')}, "
                                                   f"{T.FLOATS[ty]}"))])
    b.emit(f"call void @gj.colscale.{ty}(i64 {m}, i64 {k}, ptr {u}, i64 {m}, ptr {sb}, "
           f"ptr {t}, i64 {m})")
    gemm("110", "110", m, n, k, "one", t, m, vt, k, "zero", da, lda)    # U diag(sb) V^T
    release(b, t)


# --- gesdd(kind, 'S' or 'A', m, n, a, lda, s, u, ldu, vt, ldvt): with vectors ------------

def _malloc(b, ty, *dims):
    n = dims[0]
    for d in dims[1:]:
        n = b.assign(f"mul i64 {n}, {d}")
    return b.call("malloc", "ptr", [("i64", b.assign(f"mul i64 {n}, {T.FLOATS[ty]}"))])


def _gep(b, ty, p, n):
    return b.assign(f"getelementptr inbounds {ty}, ptr {p}, i64 {n}")


def _gep_cols(b, ty, p, cols, ld):
    return _gep(b, ty, p, b.assign(f"mul i64 {cols}, {ld}"))


def _scale(b, ty, rows, cols, x, ldx, s, byrow, y, ldy, add):
    b.emit(f"call void @gj.svd.scale.{ty}(i64 {rows}, i64 {cols}, ptr {x}, i64 {ldx}, ptr {s}, "
           f"i1 {'true' if byrow else 'false'}, ptr {y}, i64 {ldy}, i1 {'true' if add else 'false'})")


def gesdd_tangent(b, ty, gemm, m, n, k, u, ldu, s, vt, ldvt, da, lda, ds, du, dvt):
    """Tangents ``ds`` (k), ``du`` (the first k columns, ld ``ldu``) and ``dvt`` (the
    first k rows, ld ``ldvt``) of the thin SVD from ``da`` (m x n, ``lda``); ``u`` is
    U (m x k), ``vt`` V^T (k x n).  ``du``/``dvt`` may be None (inactive)."""
    t1, p = _malloc(b, ty, k, n), _malloc(b, ty, k, k)
    o1, o2 = _malloc(b, ty, k, k), _malloc(b, ty, k, k)
    gemm("116", "110", k, n, m, "one", u, ldu, da, lda, "zero", t1, k)      # U^T dA
    gemm("110", "116", k, k, n, "one", t1, k, vt, ldvt, "zero", p, k)       # P = U^T dA V
    b.emit(f"call void @gj.svd.mid.{ty}(i64 {k}, ptr {p}, ptr null, ptr {s}, ptr null, "
           f"ptr {ds}, ptr {o1}, ptr {o2})")
    if du is not None:
        gemm("110", "116", m, k, n, "one", da, lda, vt, ldvt, "zero", du, ldu)  # dA V
        _scale(b, ty, m, k, du, ldu, s, False, du, ldu, False)              # . S^-1
        gemm("110", "110", m, k, k, "one", u, ldu, o1, k, "one", du, ldu)   # + U o1
    if dvt is not None:
        _scale(b, ty, k, n, t1, k, s, True, dvt, ldvt, False)               # S^-1 U^T dA
        gemm("110", "110", k, n, k, "one", o2, k, vt, ldvt, "one", dvt, ldvt)  # + o2 V^T
    for q in (t1, p, o1, o2):
        release(b, q)


def gesdd_adjoint(b, ty, gemm, m, n, k, u, ldu, s, vt, ldvt, ub, sb, vtb, da, lda):
    """``da`` (m x n, ``lda``) = the adjoint of A from ``sb`` (k) and the adjoints
    ``ub`` (m x k, ld ``ldu``) and ``vtb`` (k x n, ld ``ldvt``) of the thin U and
    V^T (None: zero)."""
    ga, gb = _malloc(b, ty, k, k), _malloc(b, ty, k, k)
    x, mid = _malloc(b, ty, m, k), _malloc(b, ty, k, k)
    y = _malloc(b, ty, k, n)
    zero = f"call void @gj.blas.scal2.{ty}(i64 {k}, i64 {k}, {ty} 0.0, ptr {{}}, i64 {k})"
    if ub is not None:
        gemm("116", "110", k, k, m, "one", u, ldu, ub, ldu, "zero", ga, k)       # U^T Ub
    else:
        b.emit(zero.format(ga))
    if vtb is not None:
        gemm("110", "116", k, k, n, "one", vt, ldvt, vtb, ldvt, "zero", gb, k)   # V^T Vb
    else:
        b.emit(zero.format(gb))
    b.emit(f"call void @gj.svd.mid.{ty}(i64 {k}, ptr {ga}, ptr {gb}, ptr {s}, ptr {sb}, "
           f"ptr null, ptr {mid}, ptr null)")
    gemm("110", "110", m, k, k, "one", u, ldu, mid, k, "zero", x, m)            # U M
    if ub is not None:
        _scale(b, ty, m, k, ub, ldu, s, False, x, m, True)                      # + Ub S^-1
    gemm("110", "110", m, n, k, "one", x, m, vt, ldvt, "zero", da, lda)         # (.) V^T
    if vtb is not None:
        _scale(b, ty, k, n, vtb, ldvt, s, True, y, k, False)                    # S^-1 Vb^T
        gemm("110", "110", m, n, k, "one", u, ldu, y, k, "one", da, lda)        # + U (.)
    for q in (ga, gb, x, mid, y):
        release(b, q)


def gesdd_complement_tangent(b, ty, gemm, m, n, k, u, ldu, vt, ldvt, du, dvt):
    """jobz 'A' (m x m U, n x n V^T): tangents of the extra columns U_p = U[:, k:] and
    rows Vt_p = V^T[k:, :], which are any orthonormal bases of the complements.  The
    choice that keeps [U_k U_p] orthogonal with no rotation inside the complement,
    ``dU_p = -U_k dU_k^T U_p`` and ``dVt_p = -Vt_p dVt_k^T Vt_k``, gives the right
    derivatives to every function of the complement spaces (projectors
    ``U_p U_p^T``, norms of projections), the only well-defined ones."""
    if du is not None:
        mk = b.assign(f"sub i64 {m}, {k}")
        up, dup = _gep_cols(b, ty, u, k, ldu), _gep_cols(b, ty, du, k, ldu)
        t = _malloc(b, ty, k, m)
        gemm("116", "110", k, mk, m, "one", du, ldu, up, ldu, "zero", t, k)     # dU_k^T U_p
        gemm("110", "110", m, mk, k, "neg", u, ldu, t, k, "zero", dup, ldu)     # -U_k (.)
        release(b, t)
    if dvt is not None:
        nk = b.assign(f"sub i64 {n}, {k}")
        vp, dvp = _gep(b, ty, vt, k), _gep(b, ty, dvt, k)
        t = _malloc(b, ty, n, k)
        gemm("110", "116", nk, k, n, "one", vp, ldvt, dvt, ldvt, "zero", t, n)  # Vt_p dVt_k^T
        gemm("110", "110", nk, n, k, "neg", t, n, vt, ldvt, "zero", dvp, ldvt)  # -(.) Vt_k
        release(b, t)


def gesdd_complement_adjoint(b, ty, gemm, m, n, k, u, ldu, vt, ldvt, ub, vtb):
    """The adjoint of :func:`gesdd_complement_tangent`: the adjoints of the extra
    columns / rows move onto those of the thin factors,
    ``Ub_k -= U_p Ub_p^T U_k`` and ``Vtb_k -= Vt_k Vtb_p^T Vt_p``."""
    if ub is not None:
        mk = b.assign(f"sub i64 {m}, {k}")
        up, ubp = _gep_cols(b, ty, u, k, ldu), _gep_cols(b, ty, ub, k, ldu)
        t = _malloc(b, ty, m, k)
        gemm("116", "110", mk, k, m, "one", ubp, ldu, u, ldu, "zero", t, m)     # Ub_p^T U_k
        gemm("110", "110", m, k, mk, "neg", up, ldu, t, m, "one", ub, ldu)      # -= U_p (.)
        release(b, t)
    if vtb is not None:
        nk = b.assign(f"sub i64 {n}, {k}")
        vp, vbp = _gep(b, ty, vt, k), _gep(b, ty, vtb, k)
        t = _malloc(b, ty, k, n)
        gemm("110", "116", k, nk, n, "one", vt, ldvt, vbp, ldvt, "zero", t, k)  # Vt_k Vtb_p^T
        gemm("110", "110", k, n, nk, "neg", t, k, vp, ldvt, "one", vtb, ldvt)   # -= (.) Vt_p
        release(b, t)

