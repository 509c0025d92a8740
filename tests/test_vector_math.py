"""Vector math in CPU derivative code (gradjit.backend.vecmath): math calls in loops
of a derivative run through glibc's libmvec variants, strict sums stay in source
order.  Gradients are checked against analytic derivatives (including at the
special values of exp/log: overflow, underflow, inf, nan); the mechanism itself
is checked on the generated code (vector calls present in the derivative,
absent from the user's own Numba code)."""
import math

import numba
import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Active, Duplicated
from gradjit.backend import vecmath
from kernels.lse import lse as _lse

needs_libmvec = pytest.mark.skipif(not vecmath.isa_widths(),
                                   reason="no glibc libmvec on this machine")




@njit
def _mixed(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += np.tanh(x[i]) * np.log1p(y[i] * y[i]) + math.sin(x[i]) * math.pow(y[i], 2.5)
    return s


@njit
def _map(x, out):
    for i in range(x.shape[0]):
        out[i] = math.exp(x[i]) + math.log(1.0 + x[i] * x[i])


def test_annotate_marks_only_known_math_calls(monkeypatch):
    monkeypatch.delenv("GRADJIT_VECTOR_MATH", raising=False)
    if not vecmath.isa_widths():
        assert vecmath.annotate("x") == "x"
        return
    text = "\n".join([
        "declare double @llvm.exp.f64(double)",
        "declare float @tanhf(float)",
        "declare double @mystery(double)",
        "define double @f(double %x, float %y) {",
        "  %a = tail call fast double @llvm.exp.f64(double %x) #0",
        "  %b = call float @tanhf(float %y)",
        "  %c = call double @mystery(double %a)",
        "  %d = call double @exp(double %a, double %a)",     # not libm's exp: left alone
        "  %e = call double @exp(float %y)",
        "  ret double %c",
        "}",
        "attributes #0 = { nounwind }",
    ])
    out = vecmath.annotate(text)
    lines = {ln.split("=")[0].strip(): ln for ln in out.splitlines() if " call " in ln}
    assert "memory(none)" in lines["%b"]             # libm: declared errno-free
    assert "memory(none)" not in lines["%a"]         # an intrinsic already is
    assert '"vector-function-abi-variant"="_ZGV_LLVM_N' in lines["%a"]
    assert lines["%a"].rstrip().endswith("#0")          # existing attributes kept
    assert "_tanhf(" in lines["%b"] and "<" not in lines["%b"].split("@")[0]
    assert "vector-function-abi-variant" not in lines["%c"]
    assert "vector-function-abi-variant" not in lines["%d"]
    assert "vector-function-abi-variant" not in lines["%e"]
    assert "@llvm.compiler.used" in out
    import llvmlite.binding as llvm              # the valid part is still valid IR
    valid = "\n".join(ln for ln in text.splitlines() if "@exp(" not in ln)
    llvm.parse_assembly(vecmath.annotate(valid)).verify()


def test_annotate_leaves_module_alone_when_off(monkeypatch):
    monkeypatch.setenv("GRADJIT_VECTOR_MATH", "0")
    text = "define double @f(double %x) {\n  %a = call double @llvm.exp.f64(double %x)\n  ret double %a\n}"
    assert vecmath.annotate(text) == text


@pytest.mark.parametrize("n", [1, 3, 4, 5, 17, 1000])
def test_lse_gradient_is_softmax(n):
    x = np.random.default_rng(n).normal(size=n) * 3
    g = gradjit.grad(_lse)(x)
    e = np.exp(x - x.max())
    np.testing.assert_allclose(g, e / e.sum(), rtol=1e-13, atol=1e-300)
    v, g2 = gradjit.value_and_grad(_lse)(x)
    assert v == pytest.approx(_lse(x), rel=1e-14)
    np.testing.assert_array_equal(g, g2)


def test_exp_log_special_values():
    # exp overflows to inf (its derivative too), underflows to 0; log(0) = -inf
    x = np.array([-800.0, -745.2, -1.0, 0.0, 1.0, 700.0, 709.9, np.inf, -np.inf, np.nan, 3.0])
    out, dout = np.empty_like(x), np.ones_like(x)
    dx = np.zeros_like(x)
    d = gradjit.autodiff(_map, "reverse", Duplicated, Duplicated)
    d(x, dx, out, dout)
    with np.errstate(all="ignore"):
        want = np.exp(x) + np.log1p(x * x)
        dwant = np.exp(x) + 2 * x / (1 + x * x)
    np.testing.assert_allclose(out, want, rtol=4e-16 * 8, equal_nan=True)
    ok = ~np.isinf(x)                 # at +-inf the quotient rule meets inf/inf
    np.testing.assert_allclose(dx[ok], dwant[ok], rtol=4e-16 * 8, equal_nan=True)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_mixed_math_gradient(dtype, rtol):
    rng = np.random.default_rng(7)
    x = rng.normal(size=203).astype(dtype)
    y = rng.uniform(0.2, 2.0, size=203).astype(dtype)
    gx, gy = gradjit.grad(_mixed, argnums=(0, 1))(x, y)
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    want_x = (1 - np.tanh(xd) ** 2) * np.log1p(yd * yd) + np.cos(xd) * yd ** 2.5
    want_y = np.tanh(xd) * 2 * yd / (1 + yd * yd) + np.sin(xd) * 2.5 * yd ** 1.5
    np.testing.assert_allclose(gx, want_x, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gy, want_y, rtol=rtol, atol=rtol)


def _gradient_from_njit(f, x):
    """The gradient of ``f`` at ``x`` computed in an @njit caller of its derivative,
    and that caller's LLVM IR (where the derivative's code was linked and optimized)."""
    d = gradjit.autodiff(f, "reverse", Duplicated, ret=Active)

    @njit
    def caller(x, dx):
        return d(x, dx, 1.0)

    dx = np.zeros_like(x)
    caller(x, dx)
    return dx, caller.inspect_llvm(caller.signatures[0])


@needs_libmvec
def test_derivative_calls_vector_variants_and_user_code_stays_scalar(monkeypatch):
    monkeypatch.delenv("GRADJIT_VECTOR_MATH", raising=False)
    x = np.linspace(-1.0, 1.0, 64)
    dx, ir = _gradient_from_njit(_lse, x)
    assert "_ZGV" in ir and "_exp(" in ir           # exp runs through a vector variant
    e = np.exp(x - 1.0)
    np.testing.assert_allclose(dx, e / e.sum(), rtol=1e-13)

    # the ordered-reduction option is set only while a derivative is optimized:
    # the user's own strict sum compiled afterwards keeps its scalar loop (with the
    # option on, LLVM vectorizes this one as an ordered reduction)
    @njit
    def plain(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] * (1.0 + x[i])
        return s

    plain(x)
    assert "vector.reduce.fadd" not in plain.inspect_llvm(plain.signatures[0])


@needs_libmvec
def test_libm_named_functions_vectorize_too(monkeypatch):
    """tanh / log1p are libm calls (not intrinsics) that may set errno: the call site
    is declared free of memory effects so the vectorizer can widen it."""
    monkeypatch.delenv("GRADJIT_VECTOR_MATH", raising=False)

    @njit
    def f(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += math.tanh(x[i]) + math.log1p(x[i] * x[i])
        return s

    x = np.linspace(-2.0, 2.0, 37)
    dx, ir = _gradient_from_njit(f, x)
    assert "_tanh(" in ir and "_log1p(" in ir
    np.testing.assert_allclose(dx, 1 - np.tanh(x) ** 2 + 2 * x / (1 + x * x), rtol=1e-14)


def _exp_sin_sum(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.exp(math.sin(x[i]))
    return s


def test_off_switch_gives_the_same_gradient(monkeypatch):
    x = np.random.default_rng(3).normal(size=101)
    on = gradjit.grad(njit(_exp_sin_sum))(x)
    monkeypatch.setenv("GRADJIT_VECTOR_MATH", "0")
    off = gradjit.grad(njit(_exp_sin_sum))(x)         # a new dispatcher: compiled anew
    np.testing.assert_allclose(on, off, rtol=1e-14)
    np.testing.assert_allclose(off, np.exp(np.sin(x)) * np.cos(x), rtol=1e-14)
