"""IR layer and analyses on real Numba output: round trips, dominators, loops,
activity, TypeTrees."""
import math
import os

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest
from numba import types

import gradjit  # noqa: F401  (installs the capture hook)
from gradjit.analysis.activity import Activity
from gradjit.analysis.dominators import DominatorTree
from gradjit.analysis.loops import LoopInfo
from gradjit.frontend.capture import capture
from gradjit.frontend.typetree import describe, leaves, modeled
from gradjit.ir.reader import read_module
from gradjit.ir.writer import module_text
from gradjit.ir import types as T


@numba.njit
def nested(x, n):
    s = 0.0
    for i in range(n):
        for j in range(4):
            if x[i] > 0.5:
                s += math.sin(x[i]) * j
            else:
                s -= x[i]
    return s


@numba.njit
def with_local(x):
    t = np.empty_like(x)
    for i in range(x.shape[0]):
        t[i] = x[i] * 2.0
    return t.sum()


SIGS = [(nested, (types.float64[::1], types.int64)),
        (with_local, (types.float64[:, ::1],)),
        (with_local, (types.float32[::1],))]


@pytest.mark.parametrize("fn,sig", SIGS)
def test_round_trip_parses_and_verifies(fn, sig):
    cap = capture(fn, sig)
    model = read_module(cap.module)
    text = module_text(model)
    mod = llvm.parse_assembly(text)
    mod.verify()
    again = read_module(mod)
    assert set(again.functions) == set(model.functions)
    for name, f in model.functions.items():
        g = again.functions[name]
        assert [b.name for b in f.blocks] == [b.name for b in g.blocks]
        assert [i.opcode for i in f.instructions()] == [i.opcode for i in g.instructions()]


def _top(fn, sig):
    cap = capture(fn, sig)
    return read_module(cap.module).functions[cap.name]


def test_dominators_and_loops():
    f = _top(nested, (types.float64[::1], types.int64))
    dom = DominatorTree(f)
    entry = f.entry.name
    for b in dom.rpo:
        assert dom.dominates(entry, b)
    loops = LoopInfo(f, dom)
    assert loops.loops, "the nested loops were not found"
    for l in loops.loops:
        for b in l.blocks:
            assert dom.dominates(l.header, b)
    assert max(l.depth for l in loops.loops) >= 1
    # every back edge goes to a header that dominates its source
    for b in dom.rpo:
        for s in f.block(b).succs:
            if s in dom.idom and dom.pos[s] <= dom.pos[b]:
                assert any(l.header == s for l in loops.loops)


def test_constant_trip_count():
    @numba.njit
    def fixed(x):
        # 12 > MAX_TRIPS iterations: not unrolled before AD (gradjit.ir.unroll)
        s = 0.0
        for i in range(12):
            s += x[i % 7] * x[(i * 3) % 7]
        return s
    f = _top(fixed, (types.float64[::1],))
    loops = LoopInfo(f, DominatorTree(f))
    counts = [l.trip_count for l in loops.loops]
    assert 12 in counts, counts


def test_activity_integer_code_inactive():
    f = _top(nested, (types.float64[::1], types.int64))
    data = f.args[2 + 4]                   # x's data pointer
    act = Activity(f, [data.name], set())
    for ins in f.instructions():
        if ins.name and ins.type.startswith("i") and ins.type != "ptr":
            assert ins.name not in act.active
    loads = [i for i in f.instructions() if i.opcode == "load" and i.type == "double"]
    assert loads and all(i.name in act.active for i in loads)
    const = Activity(f, [], set())
    assert not any(i.name in const.active for i in loads)


def test_typetrees():
    assert leaves(types.float64) == [("float", "double")]
    arr = leaves(types.float32[:, :])
    assert len(arr) == 9 and arr[4] == ("data", "float")
    assert leaves(types.UniTuple(types.float64, 2)) == [("float", "double")] * 2
    assert "Float@double" in describe(types.float64[::1])
    # types gradjit does not model: leaves from Numba's flattened parameters, for an
    # argument held constant
    assert leaves(types.complex128) == [("float", "double")] * 2
    assert not modeled(types.complex128) and not modeled(types.unicode_type)
    assert modeled(types.Tuple((types.float64[:], types.int64)))
    assert all(leaf[0] in ("opaque", "int") for leaf in leaves(types.unicode_type))
    with pytest.raises(gradjit.UnsupportedError):
        leaves(types.complex128[:])


def test_type_parser():
    t = "{ double, [2 x float], i64, ptr }"
    assert T.size(t) == 32
    assert [p for p, _ in T.float_paths(t)] == [(0,), (1, 0), (1, 1)]
    assert T.has_float(t) and T.has_ptr(t)
    assert T.text(T.parse(t)) == t


def test_profiling_metadata_on_function_headers(tmp_path):
    """With NUMBA_ENABLE_PROFILING=1 Numba attaches debug metadata to function
    definitions (``define ... !dbg !4 {``); the derivative module must not keep
    references to metadata it dropped.  Run in a fresh process (Numba reads the
    variable at import); the gradient is checked against the analytic one."""
    import subprocess
    import sys
    script = tmp_path / "prof.py"
    script.write_text(
        "import numpy as np, numba, gradjit\n"
        "@numba.njit\n"
        "def f(x):\n"
        "    s = 0.0\n"
        "    for i in range(x.shape[0]):\n"
        "        s += np.sin(x[i]) * x[i]\n"
        "    return s\n"
        "x = np.linspace(0.1, 2.0, 7)\n"
        "g = gradjit.grad(f)(x)\n"
        "assert np.allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-12, atol=1e-14), g\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_ENABLE_PROFILING="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_allocator_compiled_before_import_is_linked(tmp_path):
    """Numba's array allocator compiled before ``import gradjit`` (no raw IR: its
    optimized library shares it as ``linkonce_odr``) and called from an array
    constructor compiled afterwards: the capture keeps its definition whatever
    the link order (it used to be dropped, and the AD saw an unknown call)."""
    import subprocess
    import sys
    script = tmp_path / "early.py"
    script.write_text(
        "import numpy as np, numba\n"
        "@numba.njit\n"
        "def early(n):\n"
        "    return np.zeros((3, n)).sum()\n"
        "early(3)\n"
        "import gradjit\n"
        "@numba.njit\n"
        "def scratch(x):\n"
        "    p = np.zeros((3, x.shape[0]))\n"
        "    for i in range(x.shape[0]):\n"
        "        p[0, i] = x[i]\n"
        "    return p\n"
        "@numba.njit\n"
        "def f(x):\n"
        "    p = scratch(x)\n"
        "    t = np.empty((x.shape[0], 2, 2))\n"
        "    for i in range(x.shape[0]):\n"
        "        t[i, 1, 0] = np.sin(p[0, i])\n"
        "    s = 0.0\n"
        "    for i in range(x.shape[0]):\n"
        "        s += t[i, 1, 0] * x[i]\n"
        "    return s\n"
        "x = np.linspace(0.1, 2.0, 7)\n"
        "g = gradjit.grad(f)(x)\n"
        "assert np.allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-12, atol=1e-14), g\n"
        "print('ok')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


_STRIDED_GLOBAL = np.arange(300000.0)[::2]  # Numba makes a dynamic global for it


@numba.njit
def _reads_strided_global(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += _STRIDED_GLOBAL[i] * x[i] * x[i]
    return s


@numba.njit
def _calls_reader(x):
    return _reads_strided_global(x) * 2.0


_d_calls_reader = gradjit.autodiff(_calls_reader, "reverse", gradjit.Duplicated)


@numba.njit
def _twice_through_a_caller(x, dx):
    return _once_through_a_caller(x, dx) + _d_calls_reader(x, dx, 1.0)


@numba.njit
def _once_through_a_caller(x, dx):
    return _d_calls_reader(x, dx, 1.0)


def test_derivative_with_global_linked_twice_into_one_library():
    """A derivative reaching a Numba global (a strided global array) linked into a
    library twice (directly and through a callee): its globals keep their
    linkage, so the copies merge (it failed with 'symbol multiply defined')."""
    x = np.linspace(0.1, 1.0, 5)
    dx = np.zeros(5)
    _twice_through_a_caller(x, dx)
    np.testing.assert_allclose(dx, 2 * 2 * 2 * _STRIDED_GLOBAL[:5] * x, rtol=1e-14)


def test_aggregate_merges_are_split():
    """Phis and selects of pointer-carrying aggregates (Numba's array structs) become
    per-field values, so the activity analysis sees the data pointers."""
    from gradjit.ir.aggregate_phis import split_aggregate_merges
    text = """
define ptr @f(i1 %c, i1 %d, ptr %p, ptr %q, i64 %n) {
entry:
  %a = insertvalue { ptr, i64 } undef, ptr %p, 0
  %a1 = insertvalue { ptr, i64 } %a, i64 %n, 1
  %b = insertvalue { ptr, i64 } undef, ptr %q, 0
  %b1 = insertvalue { ptr, i64 } %b, i64 1, 1
  br i1 %c, label %then, label %join
then:
  br label %join
join:
  %i = phi i64 [ 0, %entry ], [ 1, %then ]
  %m = phi { ptr, i64 } [ %a1, %entry ], [ %b1, %then ]
  %s = select i1 %d, { ptr, i64 } %m, { ptr, i64 } %a1
  %x = extractvalue { ptr, i64 } %s, 0
  %y = getelementptr double, ptr %x, i64 %i
  ret ptr %y
}
"""
    mod = split_aggregate_merges(llvm.parse_assembly(text))
    out = str(mod)
    assert "phi { ptr" not in out and "select i1 %d, { ptr" not in out
    assert "extractvalue" not in out
    assert "phi ptr" in out and "select i1 %d, ptr" in out
    # a module without such merges comes back as it was
    plain = llvm.parse_assembly("define i64 @g(i64 %a) {\nentry:\n  ret i64 %a\n}\n")
    assert split_aggregate_merges(plain) is plain


_REFCOUNTS = """
declare void @NRT_incref(ptr)
declare void @NRT_decref(ptr)

define void @f(ptr %a, ptr %b, ptr %c, ptr %out, i1 %k) {
entry:
  call void @NRT_incref(ptr %a)
  call void @NRT_incref(ptr %b)
  call void @NRT_incref(ptr %c)
  store ptr %b, ptr %out
  br i1 %k, label %x, label %y
x:
  call void @NRT_decref(ptr %a)
  ret void
y:
  %m = phi ptr [ %c, %entry ]
  call void @NRT_decref(ptr %a)
  call void @NRT_decref(ptr %m)
  ret void
}
"""


def test_drop_borrowed_refcounts_keeps_escaping_meminfos():
    """``ir.refcounts``: the increments and decrements of an argument used by
    nothing else go (``%a``, on every path); an argument that is stored (``%b``,
    its reference escapes) or merged by a phi (``%c``) keeps all of its own."""
    from gradjit.ir.refcounts import drop_borrowed_refcounts
    model = read_module(llvm.parse_assembly(_REFCOUNTS))
    assert drop_borrowed_refcounts(model) == 3
    text = module_text(model)
    assert "@NRT_incref(ptr %a)" not in text and "@NRT_decref(ptr %a)" not in text
    assert text.count("@NRT_incref(ptr %b)") == 1 and text.count("@NRT_incref(ptr %c)") == 1
    assert text.count("@NRT_decref(ptr %m)") == 1
    llvm.parse_assembly(text).verify()


def test_split_aggregate_stores_of_pointers_and_floats():
    """A padded { float, { ptr, i64 } } stored whole becomes one store per leaf at the
    data layout's offsets (InstCombine, which runs after, splits unpadded ones)."""
    import llvmlite.binding as llvm
    from gradjit.ir.aggregate_stores import split_aggregate_stores
    from gradjit.ir.pipeline import target_machine
    layout = str(target_machine().target_data)
    body = """
define void @f(ptr %r, float %a, ptr %p, i64 %n, ptr %q) {
  %s0 = insertvalue { float, { ptr, i64 } } undef, float %a, 0
  %s1 = insertvalue { float, { ptr, i64 } } %s0, ptr %p, 1, 0
  %s2 = insertvalue { float, { ptr, i64 } } %s1, i64 %n, 1, 1
  store { float, { ptr, i64 } } %s2, ptr %r, align 8
  %t = insertvalue { ptr, ptr } undef, ptr %p, 0
  store { ptr, ptr } %t, ptr %q, align 8
  ret void
}"""
    out = str(split_aggregate_stores(llvm.parse_assembly(f'target datalayout = "{layout}"' + body)))
    stores = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("store")]
    assert "store float %a, ptr %r, align 4" in stores
    assert any(s.startswith("store ptr %p, ptr %gj.as0") for s in stores)
    assert any(s.startswith("store i64 %n, ptr %gj.as0") for s in stores)
    assert not any(s.startswith("store { float") for s in stores)
    offsets = sorted(int(ln.split("i64 ")[-1]) for ln in out.splitlines()
                     if "getelementptr" in ln and "%gj.as0" in ln)
    assert offsets == [8, 16]
