"""A small parser for LLVM first-class type text (``double``, ``{ double, i64 }``,
``[4 x double]``, ``ptr``, ``i1``) so the AD can build adjoints of aggregates."""
from __future__ import annotations

import functools
import re

FLOATS = {"double": 8, "float": 4, "half": 2}
_INT = re.compile(r"i(\d+)$")


@functools.lru_cache(maxsize=None)
def parse(text: str):
    """Parse a type: returns a str for scalars, ``("struct", (T, ...), packed)`` or
    ``("array", n, T)``.  Raises ``ValueError`` for anything else."""
    t, rest = _parse(text.strip())
    if rest.strip():
        raise ValueError(f"trailing text in type {text!r}")
    return t


def _parse(s: str):
    s = s.lstrip()
    if s.startswith("<{"):
        elems, rest = _list(s[2:], "}>")
        return ("struct", tuple(elems), True), rest
    if s.startswith("{"):
        elems, rest = _list(s[1:], "}")
        return ("struct", tuple(elems), False), rest
    if s.startswith("["):
        m = re.match(r"\[\s*(\d+)\s+x\s+", s)
        inner, rest = _parse(s[m.end():])
        rest = rest.lstrip()
        assert rest.startswith("]")
        return ("array", int(m.group(1)), inner), rest[1:]
    if s.startswith("<"):
        from ..errors import UnsupportedError
        raise UnsupportedError("SIMD vector types (a callee compiled by Numba before gradjit "
                               "could capture its IR; import gradjit before compiling it)")
    m = re.match(r"[A-Za-z0-9_.%]+", s)
    if not m:
        raise ValueError(f"cannot parse type {s!r}")
    return m.group(0), s[m.end():]


def _list(s, close):
    elems = []
    s = s.lstrip()
    if s.startswith(close):
        return elems, s[len(close):]
    while True:
        t, s = _parse(s)
        elems.append(t)
        s = s.lstrip()
        if s.startswith(","):
            s = s[1:]
            continue
        assert s.startswith(close), s
        return elems, s[len(close):]


def text(t) -> str:
    """LLVM text of a parsed type."""
    if isinstance(t, str):
        return t
    if t[0] == "struct":
        body = ", ".join(text(e) for e in t[1])
        return ("<{ %s }>" if t[2] else "{ %s }") % body
    return f"[{t[1]} x {text(t[2])}]"


def has_float(t) -> bool:
    """True if the (parsed or text) type holds a floating-point scalar anywhere."""
    if isinstance(t, str) and (t.startswith("{") or t.startswith("[") or t.startswith("<")):
        try:
            t = parse(t)
        except (ValueError, NotImplementedError):
            return "double" in t or "float" in t
    if isinstance(t, str):
        return t in FLOATS
    if t[0] == "struct":
        return any(has_float(e) for e in t[1])
    return has_float(t[2])


def has_ptr(t) -> bool:
    if isinstance(t, str) and (t.startswith("{") or t.startswith("[")):
        t = parse(t)
    if isinstance(t, str):
        return t == "ptr"
    if t[0] == "struct":
        return any(has_ptr(e) for e in t[1])
    return has_ptr(t[2])


def float_paths(t, prefix=()):
    """Index paths (for extractvalue/insertvalue) of every float leaf of ``t``,
    with the leaf type: ``[((0,), 'double'), ((2, 1), 'float')]``."""
    if isinstance(t, str) and (t.startswith("{") or t.startswith("[")):
        t = parse(t)
    if isinstance(t, str):
        return [(prefix, t)] if t in FLOATS else []
    out = []
    if t[0] == "struct":
        for k, e in enumerate(t[1]):
            out.extend(float_paths(e, prefix + (k,)))
    else:
        for k in range(t[1]):
            out.extend(float_paths(t[2], prefix + (k,)))
    return out


def size(t) -> int:
    """Allocation size in bytes with natural alignment (x86-64 / NVPTX data layouts)."""
    return _size_align(parse(t) if isinstance(t, str) else t)[0]


def align(t) -> int:
    """ABI alignment in bytes (x86-64 / NVPTX data layouts; at most 8 for scalars)."""
    return _size_align(parse(t) if isinstance(t, str) else t)[1]


def _size_align(t):
    if isinstance(t, str):
        if t in FLOATS:
            return FLOATS[t], FLOATS[t]
        if t == "ptr":
            return 8, 8
        m = _INT.match(t)
        if m:
            n = max(1, (int(m.group(1)) + 7) // 8)
            n = 1 << (n - 1).bit_length()
            return n, min(n, 8)
        raise ValueError(f"no size for type {t}")
    if t[0] == "array":
        s, a = _size_align(t[2])
        return s * t[1], a
    off, al = 0, 1
    for e in t[1]:
        s, a = _size_align(e)
        if not t[2]:
            off = (off + a - 1) // a * a
            al = max(al, a)
        off += s
    if not t[2]:
        off = (off + al - 1) // al * al
    return off, al


def additive_zero(t) -> str:
    """The identity of ``fadd`` for type ``t``: ``-0.0`` for a float (``x + -0.0``
    is ``x`` for every ``x``, so LLVM folds it away without fast-math flags, where
    ``x + 0.0`` turns ``-0.0`` into ``0.0`` and stays), else :func:`zero`.  The
    initial value of adjoint accumulators."""
    if isinstance(t, str) and t.startswith("<"):
        n, elem = t[1:-1].split(" x ")
        if elem.strip() in FLOATS:                      # a vector of floats: each -0.0
            return "<" + ", ".join([f"{elem.strip()} -0.0"] * int(n)) + ">"
    z = zero(t)
    return "-0.0" if z == "0.0" else z


def zero(t) -> str:
    """LLVM constant text of zero for type ``t``."""
    t = text(parse(t)) if isinstance(t, str) else text(t)
    if t in FLOATS:
        return "0.0"
    if t == "ptr":
        return "null"
    if _INT.match(t):
        return "0"
    return "zeroinitializer"
