"""Load hoisting for GPU kernels (gradjit.backend.schedule) and the overlap check
that makes it valid; no GPU needed."""
import llvmlite.binding as llvm
import numpy as np
import pytest

from gradjit.backend.schedule import array_extent, check_disjoint, hoist_loads

_IR = """
declare void @opaque(ptr)
declare double @llvm.fma.f64(double, double, double)

define void @k(ptr %a, ptr %b, ptr %c, ptr %d, i64 %i) {
entry:
  %pa = getelementptr double, ptr %a, i64 %i
  %va = load double, ptr %pa, align 8
  %pb = getelementptr double, ptr %b, i64 %i
  store double %va, ptr %pb, align 8
  %pc = getelementptr double, ptr %c, i64 %i
  %vc = load double, ptr %pc, align 8
  store double 0.0, ptr %pc, align 8
  %pd = getelementptr double, ptr %d, i64 %i
  %vd = load double, ptr %pd, align 8
  %1 = call double @llvm.fma.f64(double %vc, double %va, double %vd)
  store double %1, ptr %pd, align 8
  %vb = load double, ptr %pb, align 8
  call void @opaque(ptr %a)
  %va2 = load double, ptr %pa, align 8
  %s = fadd double %vb, %va2
  store double %s, ptr %pd, align 8
  ret void
}
"""


def _order(text):
    body = text[text.index("define void @k"):]
    return [ln.split("=")[0].strip() if "=" in ln else ln.strip().split(" ")[0]
            for ln in body.split("\n")[2:] if ln.strip() and ln.strip() != "}"]


def test_loads_move_above_stores_to_other_arrays_only():
    text, written = hoist_loads(_IR, "k", disjoint=[0, 1, 2, 3])
    llvm.parse_assembly(text).verify()              # still valid IR (numbered values renamed)
    order = _order(text)
    pos = {name: k for k, name in enumerate(order)}
    first_store = order.index("store")
    # the loads of c and d pass the store to b
    assert pos["%vc"] < first_store and pos["%vd"] < first_store
    # a load of b after the store to b stays after it (same array)
    stores = [k for k, n in enumerate(order) if n == "store"]
    assert pos["%vb"] > stores[0]
    # nothing passes the call; the load after it stays after it
    assert pos["%va2"] > order.index("call")
    assert written == {0, 1, 2, 3}                 # a is passed to a call: may be written


def test_unknown_pointers_are_barriers():
    text, _ = hoist_loads(_IR, "k", disjoint=[0, 1])    # c and d unknown
    order = _order(text)
    pos = {name: k for k, name in enumerate(order)}
    first_store = order.index("store")
    assert pos["%vc"] > first_store                   # may alias b: stays


def test_array_extent_and_overlap():
    a = np.zeros((4, 5))
    lo, hi = array_extent(a)
    assert hi - lo == a.nbytes
    r = a[::-1, ::2]
    lo2, hi2 = array_extent(r)
    assert lo2 == a.ctypes.data and hi2 == a.ctypes.data + a.nbytes
    check_disjoint([("x", a[:2]), ("y", a[2:])], {"x", "y"})        # halves: fine
    check_disjoint([("x", a), ("y", a)], set())                      # both read: fine
    with pytest.raises(ValueError, match="overlap"):
        check_disjoint([("x", a), ("y", a[1:3, 1:2])], {"y"})
    check_disjoint([("x", a), ("y", np.zeros(0))], {"x", "y"})       # empty never overlaps


def test_multiline_switch_and_numbered_values():
    ir = """
define void @k(ptr %a, ptr %b, i32 %c, i64 %i) {
entry:
  %0 = getelementptr double, ptr %a, i64 %i
  %1 = load double, ptr %0, align 8
  store double %1, ptr %b, align 8
  %2 = getelementptr double, ptr %a, i64 1
  %3 = load double, ptr %2, align 8
  switch i32 %c, label %4 [
    i32 0, label %5
    i32 1, label %6
  ]
4:
  store double %3, ptr %b, align 8
  ret void
5:
  ret void
6:
  ret void
}
"""
    text, written = hoist_loads(ir, "k", disjoint=[0, 1])
    mod = llvm.parse_assembly(text)
    mod.verify()
    body = text[text.index("entry:"):]
    assert body.index("%gj.v3 = load") < body.index("store double %gj.v1")
    assert "switch i32 %c, label %gj.v4 [\n    i32 0, label %gj.v5" in body
    assert written == {1}


def test_written_found_when_the_address_is_defined_below_its_use():
    """LICM can place a preheader (defining an address) after the loop body that
    stores through it in the text; the store still counts for its array."""
    ir = """
define void @k(ptr %a, ptr %b, i64 %n) {
entry:
  br label %def
use:
  %i = phi i64 [ 0, %def ], [ %i1, %use ]
  store double 1.0, ptr %p, align 8
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %n
  br i1 %c, label %use, label %done
def:
  %p = getelementptr double, ptr %a, i64 1
  %v = load double, ptr %b, align 8
  br label %use
done:
  ret void
}
"""
    text, written = hoist_loads(ir, "k", disjoint=[0, 1])
    llvm.parse_assembly(text).verify()
    assert written == {0}


def test_unknown_pointers_make_escaped_arrays_written():
    ir = """
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
define void @k(ptr %a, ptr %b, ptr %c, i1 %s) {
entry:
  %p = select i1 %s, ptr %a, ptr %b
  call void @llvm.memcpy.p0.p0.i64(ptr %p, ptr %c, i64 8, i1 false)
  ret void
}
"""
    _, written = hoist_loads(ir, "k", disjoint=[0, 1, 2])
    assert written == {0, 1, 2}          # a, b through the select; c passed to the call


def test_ordered_atomics_and_lifetimes_are_fences():
    ir = """
declare void @llvm.lifetime.end.p0(i64, ptr)
define void @k(ptr %a, ptr %b, ptr %t) {
entry:
  %x = atomicrmw fadd ptr %a, double 1.0 seq_cst
  %v = load double, ptr %b, align 8
  store double %v, ptr %t, align 8
  %w = load double, ptr %t, align 8
  call void @llvm.lifetime.end.p0(i64 8, ptr %t)
  %u = load double, ptr %b, align 8
  ret void
}
"""
    text, written = hoist_loads(ir, "k", disjoint=[0, 1])
    order = _order(text)
    assert order.index("%x") < order.index("%v")          # not above the seq_cst atomic
    assert order.index("%w") < order.index("call") < order.index("%u")
    assert written == {0}
