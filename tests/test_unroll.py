"""Pre-AD full unrolling of loops that run a few, constant, times
(gradjit.ir.unroll, gradjit.analysis.trips): trip counts found by running the
loop's control on constants, which loops get unrolled, and derivatives through
``x ** k`` (Numba's int_power loop) and small ``range`` loops, against analytic
derivatives, central differences and forward mode."""
import math

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Active, Duplicated
from gradjit.analysis.cfg import has_cycle
from gradjit.analysis.dominators import DominatorTree
from gradjit.analysis.loops import LoopInfo
from gradjit.analysis.trips import executed_trip_count, run_loop
from gradjit.frontend.capture import capture
from gradjit.ir.reader import read_function, read_module
from gradjit.ir.unroll import MAX_TRIPS, small_loops
from conftest import fd_grad


def _loop_function(body: str, args: str = "i64 %n"):
    mod = llvm.parse_assembly(f"define i64 @f({args}) {{\n{body}\n}}\n")
    mod.verify()
    fn = read_function(mod.get_function("f"))
    loops = LoopInfo(fn, DominatorTree(fn)).loops
    assert len(loops) == 1
    return fn, loops[0]


# int_power(a, 2) after the pre-AD pipeline: the exit test is a phi of i1 constants
def _one_block_loop(body, result):
    """IR text of ``entry -> loop (body, its own latch) -> exit returning result``."""
    return f"entry:\n  br label %loop\nloop:\n{body}\nexit:\n{result}"


FLAGS = _one_block_loop("""  %done = phi i1 [ false, %entry ], [ true, %loop ]
  %k = phi i64 [ 0, %entry ], [ %k1, %loop ]
  %k1 = add i64 %k, 1
  br i1 %done, label %exit, label %loop""", "  ret i64 %k1")

# while b: b >>= 1, from b = 13: 13, 6, 3, 1
SHIFT = _one_block_loop("""  %b = phi i64 [ 13, %entry ], [ %b1, %loop ]
  %b1 = lshr i64 %b, 1
  %z = icmp eq i64 %b1, 0
  br i1 %z, label %exit, label %loop""", "  ret i64 %b1")

# for i in range(-3, 0) with a signed test, through a second block
SIGNED = """entry:
  br label %loop
loop:
  %i = phi i64 [ -3, %entry ], [ %i1, %latch ]
  %c = icmp slt i64 %i, 0
  br i1 %c, label %latch, label %exit
latch:
  %i1 = add nsw i64 %i, 1
  br label %loop
exit:
  ret i64 %i"""

# a switch on a counter in i8 that wraps: 250, 251, ..., 255, 0
SWITCH = _one_block_loop("""  %i = phi i8 [ -6, %entry ], [ %i1, %loop ]
  %i1 = add i8 %i, 1
  switch i8 %i1, label %loop [ i8 0, label %exit
                               i8 7, label %exit ]""", "  %r = zext i8 %i1 to i64\n  ret i64 %r")

# for i in range(100): too many iterations
LONG = SHIFT.replace("[ 13, %entry ]", "[ 1, %entry ]").replace(
    "lshr i64 %b, 1", "add i64 %b, 1").replace("icmp eq i64 %b1, 0", "icmp eq i64 %b1, 101")

# for i in range(n): the bound is an argument
ARGUMENT = LONG.replace("icmp eq i64 %b1, 101", "icmp eq i64 %b1, %n")


@pytest.mark.parametrize("body,trips", [
    (FLAGS, 2), (SHIFT, 4), (SIGNED, 4), (SWITCH, 6), (LONG, None), (ARGUMENT, None),
])
def test_executed_trip_count(body, trips):
    fn, loop = _loop_function(body)
    assert executed_trip_count(fn, loop, MAX_TRIPS) == trips
    full, other = small_loops(fn)
    assert bool(full) == (trips is not None) and bool(other) == (trips is None)


def test_trip_count_limit_is_exact():
    fn, loop = _loop_function(SHIFT)
    assert executed_trip_count(fn, loop, 4) == 4
    assert executed_trip_count(fn, loop, 3) is None


# for i in range(3): for j in range(3): acc += 1.0: one fadd counted per inner trip
NESTED = """entry:
  br label %outer
outer:
  %i = phi i64 [ 0, %entry ], [ %i1, %outer.latch ]
  %acc = phi double [ 0.0, %entry ], [ %acc2, %outer.latch ]
  br label %inner
inner:
  %j = phi i64 [ 0, %outer ], [ %j1, %inner ]
  %acc1 = phi double [ %acc, %outer ], [ %acc2, %inner ]
  %acc2 = fadd double %acc1, 1.0
  %j1 = add i64 %j, 1
  %jd = icmp eq i64 %j1, 3
  br i1 %jd, label %outer.latch, label %inner
outer.latch:
  %i1 = add i64 %i, 1
  %id = icmp eq i64 %i1, 3
  br i1 %id, label %exit, label %outer
exit:
  ret i64 %i1"""


def test_nested_loops_run_inner_loop_again_each_outer_trip():
    mod = llvm.parse_assembly(f"define i64 @f(i64 %n) {{\n{NESTED}\n}}\n")
    mod.verify()
    fn = read_function(mod.get_function("f"))
    loops = {l.header: l for l in LoopInfo(fn, DominatorTree(fn)).loops}
    assert run_loop(fn, loops["inner"], MAX_TRIPS) == (3, 3)
    assert run_loop(fn, loops["outer"], MAX_TRIPS) == (3, 9)
    assert run_loop(fn, loops["outer"], MAX_TRIPS, max_instructions=8) is None
    full, other = small_loops(fn)
    assert full == {"inner", "outer.latch"} and not other


def _top_has_cycle(f, *types):
    cap = capture(f, types)
    return has_cycle(read_module(cap.module).functions[cap.name])


@njit
def _power_sum(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        s += a * (x[i] - 1.0) ** 2 + x[i] ** 3 - 0.25 * x[i] ** 5 + x[i] ** -2
    return s


def _power_sum_grad(x, a):
    return 2 * a * (x - 1.0) + 3 * x ** 2 - 1.25 * x ** 4 - 2 * x ** -3, float(np.sum((x - 1.0) ** 2))


@njit
def _power(x):
    return x ** 3 - 2.0 * x ** 2


def test_int_power_loops_are_gone_before_ad():
    assert not _top_has_cycle(_power, numba.float64)
    # only the loop over i is left
    cap = capture(_power_sum, (numba.float64[::1], numba.float64))
    fn = read_module(cap.module).functions[cap.name]
    assert len(LoopInfo(fn, DominatorTree(fn)).loops) == 1


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-13), (np.float32, 1e-5)])
def test_int_power_gradient_is_analytic(dtype, rtol):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 2.0, 40).astype(dtype)
    dx, da = gradjit.grad(_power_sum, argnums=(0, 1))(x, 0.7)
    want_x, want_a = _power_sum_grad(x.astype(np.float64), 0.7)
    np.testing.assert_allclose(dx, want_x, rtol=rtol, atol=rtol * np.max(np.abs(want_x)))
    assert da == pytest.approx(want_a, rel=rtol)


def test_int_power_forward_matches_reverse():
    x = np.linspace(0.6, 1.8, 9)
    v = np.cos(np.arange(9.0))
    g = gradjit.grad(_power_sum)(x, 0.3)
    _, jv = gradjit.jvp(_power_sum)((x, 0.3), (v, None))
    assert jv == pytest.approx(float(g @ v), rel=1e-13)
    _, d = gradjit.jvp(_power)((1.3,), (1.0,))
    assert d == pytest.approx(3 * 1.3 ** 2 - 4 * 1.3, rel=1e-14)


@njit
def _rotate3(m, v):
    # 3x3 matrix-vector products over fixed-size loops: unrolled before AD
    out = np.zeros(3)
    for i in range(3):
        for j in range(3):
            out[i] += m[i, j] * v[j]
    s = 0.0
    for i in range(3):
        s += math.sin(out[i]) * out[i]
    return s


@njit
def _long_fixed(v):
    # range(50): a constant trip count above MAX_TRIPS stays a loop
    s = 0.0
    for i in range(50):
        s += math.sin(v[i % v.shape[0]] * (i + 1))
    return s


def test_small_range_loops_unrolled_large_kept():
    assert not _top_has_cycle(_rotate3, numba.float64[:, ::1], numba.float64[::1])
    assert _top_has_cycle(_long_fixed, numba.float64[::1])
    rng = np.random.default_rng(5)
    m, v = rng.normal(size=(3, 3)), rng.normal(size=3)
    gm, gv = gradjit.grad(_rotate3, argnums=(0, 1))(m, v)
    np.testing.assert_allclose(gm, fd_grad(_rotate3, (m, v), 0), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gv, fd_grad(_rotate3, (m, v), 1), rtol=1e-7, atol=1e-9)
    w = rng.normal(size=7)
    np.testing.assert_allclose(gradjit.grad(_long_fixed)(w), fd_grad(_long_fixed, (w,), 0),
                               rtol=1e-7, atol=1e-8)


@njit
def _sq_residual(p, w):
    return w * (p[0] - p[1] ** 2) ** 2 + (1.0 - p[0]) ** 2


def test_power_derivative_is_loop_free_and_inlined():
    d = gradjit.autodiff(_sq_residual, "reverse", Duplicated, Active)
    p, dp = np.array([0.4, -1.1]), np.zeros(2)
    d(p, dp, 2.0, 1.0)
    assert d.compile((numba.typeof(p), numba.typeof(dp), numba.float64, numba.float64)).library.inlinable

    @njit
    def jac(ps, w, out):
        dp = np.zeros(2)
        for i in range(ps.shape[0]):
            dp[:] = 0.0
            d(ps[i], dp, w, 1.0)
            out[i] = dp
        return out

    ps = np.random.default_rng(2).normal(size=(30, 2))
    out = jac(ps, 2.0, np.empty((30, 2)))
    r = ps[:, 0] - ps[:, 1] ** 2
    want = np.stack([2 * 2.0 * r - 2 * (1 - ps[:, 0]), -2 * 2.0 * r * 2 * ps[:, 1]], axis=1)
    np.testing.assert_allclose(out, want, rtol=1e-13)


def test_unrolling_can_be_turned_off(monkeypatch):
    import gradjit.ir.unroll as unroll
    monkeypatch.setattr(unroll, "MAX_TRIPS", 0)
    assert _top_has_cycle(_power, numba.float64)
    _, d = gradjit.jvp(_power)((0.7,), (1.0,))
    assert d == pytest.approx(3 * 0.7 ** 2 - 4 * 0.7, rel=1e-14)


def test_loop_behind_a_switch_is_unrolled():
    """A multi-line ``switch`` before the loop: the text filter reads the whole case
    list (it took the block for a dead end before)."""
    import gradjit.ir.unroll as unroll
    text = """define double @f(i32 %k, double %x) {
entry:
  switch i32 %k, label %loop [
    i32 1, label %other
    i32 2, label %other
  ]
other:
  ret double 0.0
loop:
  %i = phi i8 [ 0, %entry ], [ %i1, %loop ]
  %s = phi double [ %x, %entry ], [ %s1, %loop ]
  %s1 = fmul double %s, %x
  %i1 = add i8 %i, 1
  %c = icmp eq i8 %i1, 3
  br i1 %c, label %exit, label %loop
exit:
  ret double %s1
}
"""
    mod = llvm.parse_assembly(text)
    mod.verify()
    new = unroll.unroll_small_loops(mod)
    fn = read_function(new.get_function("f"))
    assert not has_cycle(fn)
    assert sum(1 for i in fn.instructions() if i.opcode == "fmul") == 3


def test_switch_latch_gets_its_mark_after_the_case_list():
    import gradjit.ir.unroll as unroll
    text = """define void @g(i8 %n) {
entry:
  br label %loop
loop:
  %i = phi i8 [ 0, %entry ], [ %i1, %loop ]
  %i1 = add i8 %i, 1
  switch i8 %i1, label %loop [
    i8 3, label %exit
    i8 9, label %exit
  ]
exit:
  ret void
}"""
    marked_text, marked = unroll._mark(str(llvm.parse_assembly(text)), {"g": {"loop": 7}})
    assert marked == {("g", "loop")}
    assert "  ], !llvm.loop !7" in marked_text
    llvm.parse_assembly(marked_text + '\n!7 = distinct !{!7, !8}\n!8 = !{!"llvm.loop.unroll.disable"}\n').verify()
