"""The derivative rule table: partial derivatives of every differentiable opcode,
LLVM intrinsic, libm and libdevice function, written once per argument.

Both modes are derived from it (as Enzyme derives forward rules from its summed
reverse rules in ``InstructionDerivatives.td``): the tangent of ``y = f(x_1..x_n)``
is ``sum_i partial_i * dx_i`` and the adjoint update is ``dx_i += partial_i * dy``.

A rule is a list with one entry per argument: ``None`` for an argument with no
derivative (an integer exponent), :data:`ONE`, :data:`NEG_ONE`, :data:`ZERO`, or a
function ``partial(b, ty, arg, res)`` that emits the partial with builder ``b``;
``arg(k)`` returns the primal value of argument ``k`` and ``res()`` the primal
result (calling them is what marks a primal value as needed by the reverse sweep,
so a partial asks only for what it uses).  Sources: the standard derivatives of
the elementary functions (Abramowitz & Stegun, ch. 4, 7.1.19 for erf and
6.3.1 for the gamma functions, whose digamma is below).
"""
from __future__ import annotations

import math
import struct

ONE, NEG_ONE, ZERO = "one", "neg_one", "zero"


def _recip(b, ty, v):
    return b.fdiv(ty, b.const(1.0, ty), v)


def _sq(b, ty, v):
    return b.fmul(ty, v, v)


def _one_minus_sq(b, ty, v):
    return b.fsub(ty, b.const(1.0, ty), _sq(b, ty, v))


def _sign(b, ty, v):
    return b.math("copysign", ty, b.const(1.0, ty), v)


def _pick(first: bool, pred: str):
    """Partial of min/max: 1 for the chosen argument (ties go to the first)."""
    def partial(b, ty, arg, res):
        c = b.fcmp(pred, ty, arg(0), arg(1))
        if not first:
            c = b.assign(f"xor i1 {c}, true")
        return b.select(c, ty, b.const(1.0, ty), b.const(0.0, ty))
    return partial


def _pow_base(b, ty, arg, res):
    """d/dx x**y = y * x**(y-1), taken as 0 where y == 0 (x**0 == 1 for every x,
    also x == 0, where the formula reads 0 * inf), as JAX does."""
    y = arg(1)
    d = b.fmul(ty, y, b.math("pow", ty, arg(0), b.fsub(ty, y, b.const(1.0, ty))))
    return b.select(b.fcmp("oeq", ty, y, b.const(0.0, ty)), ty, b.const(0.0, ty), d)


def _pow_exponent(b, ty, arg, res):
    """d/dy x**y = x**y * log(x), taken as 0 where x == 0 (0**y is 0 for every
    y > 0, where the formula reads 0 * -inf), as JAX does."""
    x = arg(0)
    zero = b.fcmp("oeq", ty, x, b.const(0.0, ty))
    safe = b.select(zero, ty, b.const(1.0, ty), x)
    return b.fmul(ty, res(), b.math("log", ty, safe))


def _powi_base(b, ty, arg, res):
    n = arg(1)
    nm1 = b.assign(f"sub i32 {n}, 1")
    nf = b.assign(f"sitofp i32 {n} to {ty}")
    return b.fmul(ty, nf, b.math("powi", ty, arg(0), nm1))


def _atan2(k):
    def partial(b, ty, arg, res):
        y, x = arg(0), arg(1)
        den = b.fadd(ty, _sq(b, ty, x), _sq(b, ty, y))
        if k == 0:
            return b.fdiv(ty, x, den)
        return b.fneg(ty, b.fdiv(ty, y, den))
    return partial


def _erf(sign):
    def partial(b, ty, arg, res):
        x = arg(0)
        e = b.math("exp", ty, b.fneg(ty, _sq(b, ty, x)))
        return b.fmul(ty, b.const(sign * 2.0 / math.sqrt(math.pi), ty), e)
    return partial


# psi(x) = d/dx log Gamma(x): the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10,
# then the asymptotic series ln x - 1/(2x) - sum_k B_2k / (2k x^2k) (Abramowitz &
# Stegun 6.3.5 and 6.3.18, six terms: relative error below 1e-14 for x >= 10), and
# the reflection psi(x) = psi(1 - x) - pi / tan(pi x) for x < 1/2 (A&S 6.3.7).
_DIGAMMA = r"""
define internal double @gj.digamma.f64(double %x0) alwaysinline {{
entry:
  %neg = fcmp olt double %x0, 0.5
  %x1m = fsub double 1.0, %x0
  %x = select i1 %neg, double %x1m, double %x0
  br label %loop
loop:
  %xi = phi double [ %x, %entry ], [ %xn, %body ]
  %acc = phi double [ 0.0, %entry ], [ %accn, %body ]
  %small = fcmp olt double %xi, 10.0
  br i1 %small, label %body, label %tail
body:
  %r = fdiv double 1.0, %xi
  %accn = fsub double %acc, %r
  %xn = fadd double %xi, 1.0
  br label %loop
tail:
  %inv = fdiv double 1.0, %xi
  %inv2 = fmul double %inv, %inv
  %p5 = fmul double %inv2, {c5}
  %p4 = fsub double {c4}, %p5
  %q4 = fmul double %inv2, %p4
  %p3 = fsub double {c3}, %q4
  %q3 = fmul double %inv2, %p3
  %p2 = fsub double {c2}, %q3
  %q2 = fmul double %inv2, %p2
  %p1 = fsub double {c1}, %q2
  %q1 = fmul double %inv2, %p1
  %p0 = fsub double {c0}, %q1
  %poly = fmul double %inv2, %p0
  %lg = call double @{log}(double %xi)
  %h = fmul double %inv, 0.5
  %s1 = fsub double %lg, %h
  %s2 = fsub double %s1, %poly
  %psi = fadd double %s2, %acc
  %pix = fmul double %x0, {pi}
  %t = call double @{tan}(double %pix)
  %refl = fdiv double {pi}, %t
  %psir = fsub double %psi, %refl
  %out = select i1 %neg, double %psir, double %psi
  ret double %out
}}
"""


def _hex(v: float) -> str:
    """An LLVM double constant that is exactly ``v``."""
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]


_DIGAMMA_CONSTS = dict(c0=_hex(1 / 12), c1=_hex(1 / 120), c2=_hex(1 / 252), c3=_hex(1 / 240),
                       c4=_hex(1 / 132), c5=_hex(691 / 32760), pi=_hex(math.pi))


def _digamma(b, ty, x):
    """Emit ``psi(x)`` (a call of the module's ``gj.digamma.f64``)."""
    cuda = b.target == "cuda"
    log, tan = ("__nv_log", "__nv_tan") if cuda else ("llvm.log.f64", "tan")
    b.decls.setdefault(log, f"declare double @{log}(double)")
    b.decls.setdefault(tan, f"declare double @{tan}(double)")
    b.decls.setdefault("gj.digamma.f64", _DIGAMMA.format(log=log, tan=tan, **_DIGAMMA_CONSTS))
    if ty == "double":
        return b.assign(f"call double @gj.digamma.f64(double {x})")
    xd = b.assign(f"fpext {ty} {x} to double")
    r = b.assign(f"call double @gj.digamma.f64(double {xd})")
    return b.assign(f"fptrunc double {r} to {ty}")


RULES = {
    # opcodes
    "fadd": [ONE, ONE],
    "fsub": [ONE, NEG_ONE],
    "fneg": [NEG_ONE],
    "fmul": [lambda b, ty, a, r: a(1), lambda b, ty, a, r: a(0)],
    "fdiv": [lambda b, ty, a, r: _recip(b, ty, a(1)),
             lambda b, ty, a, r: b.fneg(ty, b.fdiv(ty, r(), a(1)))],
    "frem": [ONE, lambda b, ty, a, r: b.fneg(ty, b.math("trunc", ty, b.fdiv(ty, a(0), a(1))))],
    # intrinsics and libm
    "fmuladd": [lambda b, ty, a, r: a(1), lambda b, ty, a, r: a(0), ONE],
    "fma": [lambda b, ty, a, r: a(1), lambda b, ty, a, r: a(0), ONE],
    "sin": [lambda b, ty, a, r: b.math("cos", ty, a(0))],
    "cos": [lambda b, ty, a, r: b.fneg(ty, b.math("sin", ty, a(0)))],
    "tan": [lambda b, ty, a, r: b.fadd(ty, b.const(1.0, ty), _sq(b, ty, r()))],
    "exp": [lambda b, ty, a, r: r()],
    "exp2": [lambda b, ty, a, r: b.fmul(ty, r(), b.const(math.log(2.0), ty))],
    "expm1": [lambda b, ty, a, r: b.fadd(ty, r(), b.const(1.0, ty))],
    "log": [lambda b, ty, a, r: _recip(b, ty, a(0))],
    "log2": [lambda b, ty, a, r: _recip(b, ty, b.fmul(ty, a(0), b.const(math.log(2.0), ty)))],
    "log10": [lambda b, ty, a, r: _recip(b, ty, b.fmul(ty, a(0), b.const(math.log(10.0), ty)))],
    "log1p": [lambda b, ty, a, r: _recip(b, ty, b.fadd(ty, a(0), b.const(1.0, ty)))],
    "sqrt": [lambda b, ty, a, r: b.fdiv(ty, b.const(0.5, ty), r())],
    "cbrt": [lambda b, ty, a, r: _recip(b, ty, b.fmul(ty, b.const(3.0, ty), _sq(b, ty, r())))],
    "tanh": [lambda b, ty, a, r: _one_minus_sq(b, ty, r())],
    "sinh": [lambda b, ty, a, r: b.math("cosh", ty, a(0))],
    "cosh": [lambda b, ty, a, r: b.math("sinh", ty, a(0))],
    "asin": [lambda b, ty, a, r: _recip(b, ty, b.math("sqrt", ty, _one_minus_sq(b, ty, a(0))))],
    "acos": [lambda b, ty, a, r: b.fneg(ty, _recip(b, ty, b.math("sqrt", ty, _one_minus_sq(b, ty, a(0)))))],
    "atan": [lambda b, ty, a, r: _recip(b, ty, b.fadd(ty, b.const(1.0, ty), _sq(b, ty, a(0))))],
    "asinh": [lambda b, ty, a, r: _recip(b, ty, b.math("sqrt", ty, b.fadd(ty, _sq(b, ty, a(0)), b.const(1.0, ty))))],
    "acosh": [lambda b, ty, a, r: _recip(b, ty, b.math("sqrt", ty, b.fsub(ty, _sq(b, ty, a(0)), b.const(1.0, ty))))],
    "atanh": [lambda b, ty, a, r: _recip(b, ty, _one_minus_sq(b, ty, a(0)))],
    "atan2": [_atan2(0), _atan2(1)],
    "hypot": [lambda b, ty, a, r: b.fdiv(ty, a(0), r()), lambda b, ty, a, r: b.fdiv(ty, a(1), r())],
    "pow": [_pow_base, _pow_exponent],
    "powi": [_powi_base, None],
    "fabs": [lambda b, ty, a, r: _sign(b, ty, a(0))],
    "copysign": [lambda b, ty, a, r: b.fmul(ty, _sign(b, ty, a(0)), _sign(b, ty, a(1))), ZERO],
    "floor": [ZERO], "ceil": [ZERO], "trunc": [ZERO], "round": [ZERO], "rint": [ZERO],
    "nearbyint": [ZERO], "roundeven": [ZERO],
    "minnum": [_pick(True, "ole"), _pick(False, "ole")],
    "maxnum": [_pick(True, "oge"), _pick(False, "oge")],
    "minimum": [_pick(True, "ole"), _pick(False, "ole")],
    "maximum": [_pick(True, "oge"), _pick(False, "oge")],
    "erf": [_erf(1.0)],
    "erfc": [_erf(-1.0)],
    "lgamma": [lambda b, ty, a, r: _digamma(b, ty, a(0))],
    "tgamma": [lambda b, ty, a, r: b.fmul(ty, r(), _digamma(b, ty, a(0)))],
}
RULES["numba_gamma"] = RULES["tgamma"]       # math.gamma on the CPU (Numba's helper)
# math.ldexp(x, n) = x * 2**n: the partial in x is 2**n (exact for an int n); none in n
RULES["ldexp"] = [lambda b, ty, a, r: b.math("exp2", ty, b.assign(f"sitofp i32 {a(1)} to {ty}")),
                  None]
RULES["numba_ldexp"] = RULES["numba_ldexpf"] = RULES["ldexp"]
# math.frexp(x) = (m, e) with m = x * 2**-e (exact): the partial of m in x is 2**-e,
# that is m / x (exact, a power of two), and 1 where m = x, e = 0: at x = 0 and at
# x = +-inf (C's frexp), the x with x == x + x; the exponent goes through the
# pointer argument (an int: no partial)
RULES["frexp"] = [lambda b, ty, a, r: b.select(b.fcmp("oeq", ty, a(0), b.fadd(ty, a(0), a(0))),
                                               ty, b.const(1.0, ty), b.fdiv(ty, r(), a(0))),
                  None]
RULES["numba_frexp"] = RULES["numba_frexpf"] = RULES["frexp"]
RULES["fmin"] = RULES["minnum"]
RULES["fmax"] = RULES["maxnum"]
RULES["fmod"] = RULES["frem"]
RULES["arcsin"], RULES["arccos"], RULES["arctan"] = RULES["asin"], RULES["acos"], RULES["atan"]


def has_rule(name: str) -> bool:
    return name in RULES


#: Partials that are another function of the same operand, which the primal often
#: computes too (sin and cos of one angle in a rotation): ``name -> (companion,
#: negate)``, the partial being ``[-]companion(x)``.  The reverse sweep takes the
#: primal's value where it has one instead of calling the function again (forward
#: mode needs nothing: the tangent code sits next to the primal's, and LLVM merges
#: the two calls).
COMPANIONS = {"sin": ("cos", False), "cos": ("sin", True)}


def partials(name: str):
    """The per-argument partial list of ``name``; raises ``KeyError`` if none."""
    return RULES[name]


#: Functions whose partial derivatives are infinite at finite points of their
#: domain (the ends of it, or 0): forward mode applies strong zero to these only
#: (reverse mode to every partial; see :func:`scale`).
SINGULAR = frozenset({"sqrt", "cbrt", "log", "log2", "log10", "log1p", "acos", "asin",
                      "atanh", "acosh", "pow", "powi", "lgamma", "tgamma", "atan2",
                      "hypot"})


def scale(b, ty, partial, value, strong_zero=False):
    """``partial * value`` with the constant partials folded (``None`` for zero).

    With ``strong_zero`` (both sweeps) a zero ``value`` gives 0 even where the
    partial is infinite or NaN: the adjoint reaching the untaken side of a branch
    or select is exactly 0, and the partials there are evaluated at values the
    program guarded against (``x / y if y != 0 else x``, ``log(x) if x > 0``,
    ``np.cbrt``'s branch for the other sign); likewise a zero tangent reaching a
    clamped value (``sqrt(max(x, 0))`` at ``x < 0``).  ``0 * inf`` must not poison
    the derivative (Enzyme's "strong zero" semantics; JAX users know the problem
    as the double-``where`` trick)."""
    if partial is ZERO or partial is None:
        return None
    if partial is ONE:
        return value
    if partial is NEG_ONE:
        return b.fneg(ty, value)
    prod = b.fmul(ty, partial, value)
    if not strong_zero:
        return prod
    zero = b.const(0.0, ty)
    return b.select(b.fcmp("oeq", ty, value, zero), ty, zero, prod)
