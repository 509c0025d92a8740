"""Vector math for CPU derivative code: glibc's libmvec behind LLVM's loop vectorizer.

A loop that calls ``exp``, ``log``, ``tanh``, ``pow``, ... per element (the
``logsumexp`` of LSE and GMM, the gates of an LSTM) is not vectorized by Numba's
O3: LLVM widens ``llvm.exp.f64`` to ``llvm.exp.v4f64`` and codegen splits that
back into four scalar ``exp`` calls.  Clang's answer is ``-fveclib=libmvec``:
the loop vectorizer calls glibc's vector variants (``_ZGVdN4v_exp``: four
doubles in one AVX2 call).  llvmlite exposes no vector-library setting, so
gradjit does the same by hand, on the derivative modules it builds, never on the
user's own Numba code:

* :func:`annotate` gives every call of a function glibc has vector variants of
  the call-site attribute ``"vector-function-abi-variant"`` (LLVM's Vector
  Function ABI mapping, the mechanism behind ``#pragma omp declare simd`` and
  ``-fveclib``), declares the variants and keeps the declarations alive through
  ``@llvm.compiler.used`` until the vectorizer has run;
* :func:`ordered_reductions` lets the vectorizer keep a strict floating-point
  sum (``s += exp(x[i] - m)``) in its source order (LLVM's in-order reductions,
  ``-force-ordered-reductions``): the calls run four at a time, the additions
  stay sequential, so the sum is the scalar loop's, bit for bit.  It is on only
  while a library that contains a derivative is optimized.

Only variants whose ISA Numba's target machine has are used (AVX2 ``d`` or AVX
``c`` for 4 doubles / 8 floats, SSE ``b`` for 2 doubles / 4 floats), and only
those the process can resolve after loading ``libmvec.so.1``; on other machines
(no glibc, not x86-64) the module is left as it is.  ``GRADJIT_VECTOR_MATH=0``
turns this off.

Accuracy: glibc documents its vector functions to within 4 ulp (the scalar
ones are correctly rounded or within 1 ulp), so a derivative's primal values can
differ from Numba's in the last bits; gradients are unaffected at any tolerance
that finite differences can check.  Reference: glibc manual, "Errors in Math
Functions"; measured against glibc's scalar functions on 200,000 random inputs: up to 3
ulp for exp, sin, cos, tan, tanh, 1-2 for log, log1p, expm1, atan, sinh, cosh, erf, and
84 ulp for ``pow(x, 1/3)`` (which Numba makes of ``np.cbrt``) at ``x = 1e-300``.  The
Vector Function ABI: "Vector Function Application Binary
Interface Specification for OpenMP SIMD", Intel (x86-64 mangling ``_ZGV<isa>N<vlen>v_``).
"""
from __future__ import annotations

import os
import platform
import re
from functools import lru_cache

import llvmlite.binding as llvm

#: glibc's libmvec functions: base name -> number of (vector) arguments.  The float
#: variants are the same names with an ``f`` suffix.
LIBMVEC = {
    "acos": 1, "acosh": 1, "asin": 1, "asinh": 1, "atan": 1, "atanh": 1,
    "cbrt": 1, "cos": 1, "cosh": 1, "erf": 1, "erfc": 1, "exp": 1, "exp10": 1,
    "exp2": 1, "expm1": 1, "log": 1, "log10": 1, "log1p": 1, "log2": 1,
    "sin": 1, "sinh": 1, "tan": 1, "tanh": 1,
    "atan2": 2, "hypot": 2, "pow": 2,
}

#: LLVM intrinsics with a libmvec counterpart (``llvm.<name>.f64`` / ``.f32``).
INTRINSICS = ("acos", "asin", "atan", "atan2", "cos", "cosh", "exp", "exp10", "exp2",
              "log", "log10", "log2", "pow", "sin", "sinh", "tan", "tanh")

_TYPES = {"double": "", "float": "f"}
_CALL = re.compile(r"\bcall\b[^@\n]*?\b(double|float) @([\w.]+)\(")


def enabled() -> bool:
    """Whether derivative modules get vector math (``GRADJIT_VECTOR_MATH``, default on)."""
    return os.environ.get("GRADJIT_VECTOR_MATH", "1").strip().lower() not in (
        "0", "false", "no", "off")


def _target_features() -> set:
    """The ``+feature`` names of Numba's CPU target machine."""
    from numba.core.registry import cpu_target
    codegen = cpu_target.target_context.codegen()
    text = getattr(codegen, "_tm_features", None)
    if text is None:
        text = llvm.get_host_cpu_features().flatten()
    return {f[1:] for f in text.split(",") if f.startswith("+")}


def _load() -> bool:
    """Load ``libmvec.so.1`` into the process (so the JIT resolves the vector
    functions, also in code Numba loads from its cache); False where it cannot."""
    if platform.machine().lower() not in ("x86_64", "amd64") or platform.system() != "Linux":
        return False
    try:
        llvm.load_library_permanently("libmvec.so.1")
    except RuntimeError:
        return False
    return True


#: Whether libmvec is loaded (done once, when gradjit is imported).
LOADED = _load()


@lru_cache(maxsize=None)
def isa_widths() -> tuple:
    """``((isa letter, lanes of double), ...)`` usable here, widest first; empty
    where libmvec cannot be loaded or the machine is not x86-64."""
    if not LOADED:
        return ()
    features = _target_features()
    out = []
    if "avx2" in features:
        out.append(("d", 4))
    elif "avx" in features:
        out.append(("c", 4))
    out.append(("b", 2))
    return tuple((isa, n) for isa, n in out
                 if llvm.address_of_symbol(f"_ZGV{isa}N{n}v_exp"))


def _scalar(name: str):
    """``(libmvec base name, "double" | "float")`` of a scalar function or intrinsic
    name, or None when glibc has no vector variant of it."""
    m = re.fullmatch(r"llvm\.(\w+)\.(f64|f32)", name)
    if m:
        ty = "double" if m.group(2) == "f64" else "float"
        return (m.group(1), ty) if m.group(1) in INTRINSICS else None
    if name in LIBMVEC:
        return name, "double"
    if name.endswith("f") and name[:-1] in LIBMVEC:
        return name[:-1], "float"
    return None


@lru_cache(maxsize=None)
def variants(name: str) -> tuple:
    """``(mapping, vector function name, declaration)`` for each vector variant of
    the scalar function or intrinsic ``name`` that this process can call."""
    scalar = _scalar(name)
    if scalar is None:
        return ()
    base, ty = scalar
    nargs = LIBMVEC[base]
    out = []
    for isa, lanes in isa_widths():
        n = lanes * (2 if ty == "float" else 1)
        vname = f"_ZGV{isa}N{n}{'v' * nargs}_{base}{_TYPES[ty]}"
        if not llvm.address_of_symbol(vname):
            continue
        vty = f"<{n} x {ty}>"
        decl = f"declare {vty} @{vname}({', '.join([vty] * nargs)})"
        out.append((f"_ZGV_LLVM_N{n}{'v' * nargs}_{name}({vname})", vname, decl))
    return tuple(out)


def _arguments(text: str) -> list:
    """The top-level comma-separated items of an argument list's ``text``."""
    out, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return [a for a in out if a]


def _close(line: str, start: int) -> int:
    """Index just past the parenthesis that closes the one before ``start``."""
    depth = 1
    for i in range(start, len(line)):
        c = line[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def annotate(text: str) -> str:
    """Derivative module ``text`` with vector variants attached to its math calls
    (see the module docstring); unchanged when there is nothing to attach, when
    vector math is off or unavailable, or when the module has its own
    ``@llvm.compiler.used``."""
    if not enabled() or "@llvm.compiler.used" in text:
        return text
    used = {}
    lines = text.split("\n")
    for k, line in enumerate(lines):
        if "call" not in line:
            continue
        m = _CALL.search(line)
        if m is None or "vector-function-abi-variant" in line:
            continue
        scalar = _scalar(m.group(2))
        found = variants(m.group(2)) if scalar and scalar[1] == m.group(1) else ()
        if not found:
            continue
        end = _close(line, m.end())
        if end < 0 or line.lstrip().startswith(";"):
            continue
        args = _arguments(line[m.end():end - 1])
        ty = m.group(1)
        if len(args) != LIBMVEC[scalar[0]] or not all(a.split()[0] == ty for a in args):
            continue
        attr = ",".join(v[0] for v in found)
        # a libm function (not an intrinsic) may set errno, which keeps LLVM from
        # widening the call: the call site is declared free of memory effects, as
        # clang's -fno-math-errno does (Numba never reads errno)
        pure = "" if m.group(2).startswith("llvm.") else " memory(none) nounwind willreturn"
        lines[k] = (f'{line[:end]} "vector-function-abi-variant"="{attr}"{pure}'
                    f'{line[end:]}')
        for _, vname, decl in found:
            used[vname] = decl
    if not used:
        return text
    names = [n for n in used if not re.search(rf"^declare [^\n]*@{n}\(", text, re.M)]
    tail = [used[n] for n in names]
    refs = ", ".join(f"ptr @{n}" for n in used)
    tail.append(f'@llvm.compiler.used = appending global [{len(used)} x ptr] [{refs}], '
                'section "llvm.metadata"')
    return "\n".join(lines) + "\n" + "\n".join(tail) + "\n"


_depth = [0]


def _set_ordered(on: bool) -> None:
    llvm.set_option("gradjit", f"-force-ordered-reductions={'true' if on else 'false'}")


def ordered_reductions(library) -> None:
    """Optimize Numba code ``library`` (which contains a derivative) with LLVM's
    in-order floating-point reductions allowed (see the module docstring): its
    ``finalize`` sets the option for its own run only (Numba finalizes under its
    global compiler lock, one library at a time)."""
    if not enabled() or not isa_widths() or getattr(library, "_gradjit_ordered", False):
        return
    finalize = getattr(library, "finalize", None)
    if finalize is None:
        return

    def run():
        # finalize can finalize libraries it links first (nested): count
        _depth[0] += 1
        if _depth[0] == 1:
            _set_ordered(True)
        try:
            return finalize()
        finally:
            _depth[0] -= 1
            if _depth[0] == 0:
                _set_ordered(False)

    try:
        library.finalize = run
        library._gradjit_ordered = True
    except AttributeError:
        pass
