"""Inline the small functions that return a freshly allocated array.

Numba compiles ``np.empty((a, b, c))`` and its kind as a call to a small
function of its own (shape checks, one ``NRT_MemInfo_alloc*`` call, the array
struct stored through ``%retptr``), which LLVM's inliner leaves alone once it is
called from two places.  The AD then sees the new array only through memory the
callee wrote: its shadow is made by the callee's derivative, lane by lane in
vector mode, and the caller cannot choose its layout (the interleaved tangents
of :mod:`gradjit.analysis.interleave` need the allocation in the function that
uses it).  Inlining these constructors after the pre-AD pipeline (which
shows them in their final, small form) puts the allocation next to its uses,
as if the user had written it there.  Same program, same results; a
constructor is small by construction (``MAX_INSTRUCTIONS``), so the growth is
bounded.
"""
from __future__ import annotations

import re

import llvmlite.binding as llvm

from ..analysis.calls import NRT_ALLOC
from . import pipeline

#: larger functions are not constructors (they compute with the array too)
MAX_INSTRUCTIONS = 160


def array_constructors(mod, keep=()) -> list:
    """Names of the defined functions of ``mod`` (other than those in ``keep``)
    that allocate with ``NRT_MemInfo_alloc*`` and store the meminfo through
    their ``%retptr`` parameter, with at most :data:`MAX_INSTRUCTIONS`
    instructions and no call to themselves."""
    out = []
    for f in mod.functions:
        if f.is_declaration or f.name in keep:
            continue
        args = list(f.arguments)
        if not args or args[0].name != "retptr":
            continue
        n, allocated, returned, recursive = 0, set(), False, False
        for b in f.blocks:
            for ins in b.instructions:
                n += 1
                ops = list(ins.operands)
                if ins.opcode == "call" and ops:
                    callee = ops[-1].name
                    recursive |= callee == f.name
                    if callee in NRT_ALLOC:
                        allocated.add(ins.name)
                elif ins.opcode == "store" and len(ops) == 2 and ops[1].name == "retptr" \
                        and ops[0].name in allocated and ops[0].name:
                    returned = True
        if returned and not recursive and n <= MAX_INSTRUCTIONS:
            out.append(f.name)
    return out


def inline_array_constructors(mod, keep=()):
    """``mod`` with the :func:`array_constructors` inlined into their callers (a
    new module when there are any)."""
    names = array_constructors(mod, keep)
    if not names:
        return mod
    text = str(mod)
    noinline_groups = set(re.findall(r"^attributes (#\d+) = \{[^}]*\bnoinline\b", text, re.M))
    for name in names:
        quoted = re.escape(f'@"{name}"(') + "|" + re.escape(f"@{name}(")
        m = re.search(rf"^define [^\n]*(?:{quoted})[^\n]*\{{$", text, re.M)
        if m is None:
            continue
        line = m.group(0)
        groups = set(re.findall(r"#\d+", line.rsplit(")", 1)[-1]))
        if "noinline" in line.rsplit(")", 1)[-1] or groups & noinline_groups:
            continue
        text = text[:m.start()] + line[:-1].rstrip() + " alwaysinline {" + text[m.end():]
    out = llvm.parse_assembly(text)
    pipeline.inline_marked(out)
    return out
