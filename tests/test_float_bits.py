"""Bit casts of active floats to integers: fine when the bits only serve tests
(np.nan_to_num's sign test), reported when they could become a float again
(gradjit.analysis.activity.float_bits_escape)."""
import llvmlite.binding as llvm
import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit.analysis.activity import float_bits_escape
from gradjit.ir.reader import read_function


def _bits_of(body):
    mod = llvm.parse_assembly(f"define double @f(double %x, ptr %p) {{\nentry:\n{body}\n}}\n")
    mod.verify()
    fn = read_function(mod.get_function("f"))
    return fn, next(i for i in fn.instructions() if i.name == "b")


@pytest.mark.parametrize("body,escapes", [
    # sign test: the bits end in a compare
    ("  %b = bitcast double %x to i64\n  %n = icmp slt i64 %b, 0\n"
     "  %r = select i1 %n, double 0.0, double %x\n  ret double %r", False),
    # through integer ops into a branch
    ("  %b = bitcast double %x to i64\n  %e = lshr i64 %b, 52\n  %m = and i64 %e, 2047\n"
     "  %c = icmp eq i64 %m, 2047\n  br i1 %c, label %a, label %z\na:\n  ret double 0.0\n"
     "z:\n  ret double %x", False),
    # fabs by masking the sign bit: a float again
    ("  %b = bitcast double %x to i64\n  %m = and i64 %b, 9223372036854775807\n"
     "  %r = bitcast i64 %m to double\n  ret double %r", True),
    # into memory (could be read back as a float)
    ("  %b = bitcast double %x to i64\n  store i64 %b, ptr %p\n  ret double %x", True),
])
def test_float_bits_escape(body, escapes):
    fn, b = _bits_of(body)
    assert float_bits_escape(fn, b) is escapes


@njit
def _cleaned(x):
    return np.sum(np.nan_to_num(x) * x)


def test_nan_to_num_gradient():
    x = np.array([0.5, -1.5, 2.0, -0.25])
    np.testing.assert_allclose(gradjit.grad(_cleaned)(x), 2 * x, rtol=1e-15)
    t = np.array([1.0, 0.5, -2.0, 3.0])
    _, jv = gradjit.jvp(_cleaned)((x,), (t,))
    assert jv == pytest.approx(float(2 * x @ t), rel=1e-15)
