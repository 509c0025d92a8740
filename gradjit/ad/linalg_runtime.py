"""LLVM IR routines the linear-algebra derivatives call (:mod:`gradjit.ad.linalg`):
strided dot / axpy / scaling / gather loops, a rank-1 update, and the triangular
solves with LU factors (``getrf`` / ``gesv`` layout: column-major, unit lower L
below the diagonal, U on and above it, 1-based row interchanges ``ipiv``).  They are
written as loops so LLVM inlines and vectorizes them with the derivative; the
matrix products use Numba's BLAS instead.  Each text is formatted with ``t`` (the
float type), ``sz`` (its size) and ``it`` (LAPACK's integer type).
"""

# strided dot, axpy, scal (b == 0 stores zeros), compact copy, rank-1 update, and
# the scaling of a column-major m x n matrix
HELPERS = r"""
define internal {t} @gj.blas.vdot.{t}(i64 %n, ptr %x, i64 %ix, ptr %y, i64 %iy) alwaysinline {{
entry:
  %e = icmp sle i64 %n, 0
  br i1 %e, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
  %acc = phi {t} [ 0.0, %entry ], [ %acc1, %loop ]
  %ox = mul i64 %i, %ix
  %oy = mul i64 %i, %iy
  %px = getelementptr {t}, ptr %x, i64 %ox
  %py = getelementptr {t}, ptr %y, i64 %oy
  %vx = load {t}, ptr %px
  %vy = load {t}, ptr %py
  %p = fmul {t} %vx, %vy
  %acc1 = fadd {t} %acc, %p
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %n
  br i1 %c, label %loop, label %done
done:
  %r = phi {t} [ 0.0, %entry ], [ %acc1, %loop ]
  ret {t} %r
}}

define internal void @gj.blas.axpy.{t}(i64 %n, {t} %a, ptr %x, i64 %ix, ptr %y, i64 %iy) alwaysinline {{
entry:
  %e = icmp sle i64 %n, 0
  br i1 %e, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
  %ox = mul i64 %i, %ix
  %oy = mul i64 %i, %iy
  %px = getelementptr {t}, ptr %x, i64 %ox
  %py = getelementptr {t}, ptr %y, i64 %oy
  %vx = load {t}, ptr %px
  %vy = load {t}, ptr %py
  %p = fmul {t} %a, %vx
  %s = fadd {t} %vy, %p
  store {t} %s, ptr %py
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %n
  br i1 %c, label %loop, label %done
done:
  ret void
}}

define internal void @gj.blas.scal2.{t}(i64 %m, i64 %n, {t} %b, ptr %x, i64 %ld) alwaysinline {{
entry:
  %one = fcmp oeq {t} %b, 1.0
  %em = icmp sle i64 %m, 0
  %en = icmp sle i64 %n, 0
  %e0 = or i1 %em, %en
  %e = or i1 %e0, %one
  %zero = fcmp oeq {t} %b, 0.0
  br i1 %e, label %done, label %col
col:
  %j = phi i64 [ 0, %entry ], [ %j1, %colnext ]
  %base = mul i64 %j, %ld
  br label %row
row:
  %i = phi i64 [ 0, %col ], [ %i1, %row ]
  %o = add i64 %base, %i
  %p = getelementptr {t}, ptr %x, i64 %o
  %v = load {t}, ptr %p
  %s = fmul {t} %v, %b
  %w = select i1 %zero, {t} 0.0, {t} %s
  store {t} %w, ptr %p
  %i1 = add i64 %i, 1
  %ci = icmp slt i64 %i1, %m
  br i1 %ci, label %row, label %colnext
colnext:
  %j1 = add i64 %j, 1
  %cj = icmp slt i64 %j1, %n
  br i1 %cj, label %col, label %done
done:
  ret void
}}

define internal void @gj.blas.gather.{t}(i64 %n, ptr %x, i64 %ix, ptr %y) alwaysinline {{
entry:
  %e = icmp sle i64 %n, 0
  br i1 %e, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
  %ox = mul i64 %i, %ix
  %px = getelementptr {t}, ptr %x, i64 %ox
  %py = getelementptr {t}, ptr %y, i64 %i
  %v = load {t}, ptr %px
  store {t} %v, ptr %py
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %n
  br i1 %c, label %loop, label %done
done:
  ret void
}}

define internal void @gj.blas.ger.{t}(i64 %m, i64 %n, {t} %a, ptr %u, ptr %v, ptr %x, i64 %ld) alwaysinline {{
entry:
  %em = icmp sle i64 %m, 0
  %en = icmp sle i64 %n, 0
  %e = or i1 %em, %en
  br i1 %e, label %done, label %col
col:
  %j = phi i64 [ 0, %entry ], [ %j1, %col ]
  %pv = getelementptr {t}, ptr %v, i64 %j
  %vj = load {t}, ptr %pv
  %avj = fmul {t} %a, %vj
  %base = mul i64 %j, %ld
  %colp = getelementptr {t}, ptr %x, i64 %base
  call void @gj.blas.axpy.{t}(i64 %m, {t} %avj, ptr %u, i64 1, ptr %colp, i64 1)
  %j1 = add i64 %j, 1
  %cj = icmp slt i64 %j1, %n
  br i1 %cj, label %col, label %done
done:
  ret void
}}
"""


LU_SOLVE = r"""
define internal void @gj.lapack.swaps.{t}(i64 %n, ptr %ipiv, ptr %v, i1 %rev) alwaysinline {{
entry:
  br label %loop
loop:
  %k = phi i64 [ 0, %entry ], [ %k1, %loop ]
  %nm1 = sub i64 %n, 1
  %rk = sub i64 %nm1, %k
  %i = select i1 %rev, i64 %rk, i64 %k
  %pp = getelementptr {it}, ptr %ipiv, i64 %i
  %p0 = load {it}, ptr %pp
  %p1 = sext {it} %p0 to i64
  %p = sub i64 %p1, 1
  %pi = getelementptr {t}, ptr %v, i64 %i
  %pq = getelementptr {t}, ptr %v, i64 %p
  %a = load {t}, ptr %pi
  %b = load {t}, ptr %pq
  store {t} %b, ptr %pi
  store {t} %a, ptr %pq
  %k1 = add i64 %k, 1
  %c = icmp slt i64 %k1, %n
  br i1 %c, label %loop, label %done
done:
  ret void
}}

; L w = v in place (L unit lower triangular, below the diagonal of lu)
define internal void @gj.lapack.lower.{t}(i64 %n, ptr %lu, i64 %lda, ptr %v) alwaysinline {{
entry:
  br label %jl
jl:
  %j = phi i64 [ 0, %entry ], [ %j1, %jnext ]
  %pj = getelementptr {t}, ptr %v, i64 %j
  %xj = load {t}, ptr %pj
  %i0 = add i64 %j, 1
  %has = icmp slt i64 %i0, %n
  %cb = mul i64 %j, %lda
  br i1 %has, label %il, label %jnext
il:
  %i = phi i64 [ %i0, %jl ], [ %i1, %il ]
  %o = add i64 %cb, %i
  %pl = getelementptr {t}, ptr %lu, i64 %o
  %l = load {t}, ptr %pl
  %pv = getelementptr {t}, ptr %v, i64 %i
  %vi = load {t}, ptr %pv
  %m = fmul {t} %l, %xj
  %s = fsub {t} %vi, %m
  store {t} %s, ptr %pv
  %i1 = add i64 %i, 1
  %ci = icmp slt i64 %i1, %n
  br i1 %ci, label %il, label %jnext
jnext:
  %j1 = add i64 %j, 1
  %cj = icmp slt i64 %j1, %n
  br i1 %cj, label %jl, label %done
done:
  ret void
}}

; U w = v in place (U upper triangular, on and above the diagonal of lu)
define internal void @gj.lapack.upper.{t}(i64 %n, ptr %lu, i64 %lda, ptr %v) alwaysinline {{
entry:
  br label %jl
jl:
  %k = phi i64 [ 0, %entry ], [ %k1, %jnext ]
  %nm1 = sub i64 %n, 1
  %j = sub i64 %nm1, %k
  %cb = mul i64 %j, %lda
  %od = add i64 %cb, %j
  %pd = getelementptr {t}, ptr %lu, i64 %od
  %d = load {t}, ptr %pd
  %pj = getelementptr {t}, ptr %v, i64 %j
  %vj = load {t}, ptr %pj
  %xj = fdiv {t} %vj, %d
  store {t} %xj, ptr %pj
  %has = icmp sgt i64 %j, 0
  br i1 %has, label %il, label %jnext
il:
  %i = phi i64 [ 0, %jl ], [ %i1, %il ]
  %o = add i64 %cb, %i
  %pl = getelementptr {t}, ptr %lu, i64 %o
  %l = load {t}, ptr %pl
  %pv = getelementptr {t}, ptr %v, i64 %i
  %vi = load {t}, ptr %pv
  %m = fmul {t} %l, %xj
  %s = fsub {t} %vi, %m
  store {t} %s, ptr %pv
  %i1 = add i64 %i, 1
  %ci = icmp slt i64 %i1, %j
  br i1 %ci, label %il, label %jnext
jnext:
  %k1 = add i64 %k, 1
  %ck = icmp slt i64 %k1, %n
  br i1 %ck, label %jl, label %done
done:
  ret void
}}

; U^T w = v in place
define internal void @gj.lapack.uppert.{t}(i64 %n, ptr %lu, i64 %lda, ptr %v) alwaysinline {{
entry:
  br label %jl
jl:
  %j = phi i64 [ 0, %entry ], [ %j1, %jend ]
  %cb = mul i64 %j, %lda
  %has = icmp sgt i64 %j, 0
  br i1 %has, label %il, label %jend
il:
  %i = phi i64 [ 0, %jl ], [ %i1, %il ]
  %acc = phi {t} [ 0.0, %jl ], [ %acc1, %il ]
  %o = add i64 %cb, %i
  %pl = getelementptr {t}, ptr %lu, i64 %o
  %l = load {t}, ptr %pl
  %pv = getelementptr {t}, ptr %v, i64 %i
  %vi = load {t}, ptr %pv
  %m = fmul {t} %l, %vi
  %acc1 = fadd {t} %acc, %m
  %i1 = add i64 %i, 1
  %ci = icmp slt i64 %i1, %j
  br i1 %ci, label %il, label %jend
jend:
  %sum = phi {t} [ 0.0, %jl ], [ %acc1, %il ]
  %pj = getelementptr {t}, ptr %v, i64 %j
  %vj = load {t}, ptr %pj
  %s = fsub {t} %vj, %sum
  %od = add i64 %cb, %j
  %pd = getelementptr {t}, ptr %lu, i64 %od
  %d = load {t}, ptr %pd
  %x = fdiv {t} %s, %d
  store {t} %x, ptr %pj
  %j1 = add i64 %j, 1
  %cj = icmp slt i64 %j1, %n
  br i1 %cj, label %jl, label %done
done:
  ret void
}}

; L^T w = v in place
define internal void @gj.lapack.lowert.{t}(i64 %n, ptr %lu, i64 %lda, ptr %v) alwaysinline {{
entry:
  br label %jl
jl:
  %k = phi i64 [ 0, %entry ], [ %k1, %jend ]
  %nm1 = sub i64 %n, 1
  %j = sub i64 %nm1, %k
  %cb = mul i64 %j, %lda
  %i0 = add i64 %j, 1
  %has = icmp slt i64 %i0, %n
  br i1 %has, label %il, label %jend
il:
  %i = phi i64 [ %i0, %jl ], [ %i1, %il ]
  %acc = phi {t} [ 0.0, %jl ], [ %acc1, %il ]
  %o = add i64 %cb, %i
  %pl = getelementptr {t}, ptr %lu, i64 %o
  %l = load {t}, ptr %pl
  %pv = getelementptr {t}, ptr %v, i64 %i
  %vi = load {t}, ptr %pv
  %m = fmul {t} %l, %vi
  %acc1 = fadd {t} %acc, %m
  %i1 = add i64 %i, 1
  %ci = icmp slt i64 %i1, %n
  br i1 %ci, label %il, label %jend
jend:
  %sum = phi {t} [ 0.0, %jl ], [ %acc1, %il ]
  %pj = getelementptr {t}, ptr %v, i64 %j
  %vj = load {t}, ptr %pj
  %s = fsub {t} %vj, %sum
  store {t} %s, ptr %pj
  %k1 = add i64 %k, 1
  %ck = icmp slt i64 %k1, %n
  br i1 %ck, label %jl, label %done
done:
  ret void
}}

; solve A X = B (trans false) or A^T X = B (trans true) in place on the n x nrhs
; column-major b, with the LU factors and pivots of getrf / gesv
define internal void @gj.lapack.lusolve.{t}(i64 %n, i64 %nrhs, ptr %lu, i64 %lda, ptr %ipiv, ptr %b, i64 %ldb, i1 %trans) {{
entry:
  %e1 = icmp sle i64 %n, 0
  %e2 = icmp sle i64 %nrhs, 0
  %e = or i1 %e1, %e2
  br i1 %e, label %done, label %col
col:
  %c = phi i64 [ 0, %entry ], [ %c1, %colnext ]
  %off = mul i64 %c, %ldb
  %bc = getelementptr {t}, ptr %b, i64 %off
  br i1 %trans, label %tr, label %nt
nt:
  call void @gj.lapack.swaps.{t}(i64 %n, ptr %ipiv, ptr %bc, i1 false)
  call void @gj.lapack.lower.{t}(i64 %n, ptr %lu, i64 %lda, ptr %bc)
  call void @gj.lapack.upper.{t}(i64 %n, ptr %lu, i64 %lda, ptr %bc)
  br label %colnext
tr:
  call void @gj.lapack.uppert.{t}(i64 %n, ptr %lu, i64 %lda, ptr %bc)
  call void @gj.lapack.lowert.{t}(i64 %n, ptr %lu, i64 %lda, ptr %bc)
  call void @gj.lapack.swaps.{t}(i64 %n, ptr %ipiv, ptr %bc, i1 true)
  br label %colnext
colnext:
  %c1 = add i64 %c, 1
  %cc = icmp slt i64 %c1, %nrhs
  br i1 %cc, label %col, label %done
done:
  ret void
}}
"""
