"""Split stores of aggregates that hold both pointers and floats into member stores.

A function returning a tuple such as ``(float32 value, array)`` stores it through
``retptr`` as one first-class aggregate: LLVM's InstCombine splits aggregate
stores only when the struct has no padding, and ``{ float, { ptr, ... } }`` has 4
bytes of it.  The AD sweeps work per scalar value (as Enzyme's do), so such a
store has no rule: its float's derivative and its arrays' shadows would be lost.

This pass rewrites each such store as one ``extractvalue`` + ``getelementptr`` +
scalar ``store`` per leaf (a scalar or an aggregate holding no pointer), at the
offsets of the module's data layout, then runs InstCombine, which reads each leaf
straight out of the ``insertvalue`` chain that built the aggregate.  Linear in the
size of the module; a module without such stores is returned as it is.
"""
from __future__ import annotations

import re
from functools import lru_cache

import llvmlite.binding as llvm

# "store { ... } %v, ptr %p, align N" of a named value (constants carry no derivative)
_STORE = re.compile(r"^(\s*)store ((?:\{|\[|<\{).*[\}\]]) (%[-\w.$\"]+), ptr (%[-\w.$\"]+)"
                    r"(?:, align \d+)?\s*$")
_FLOAT = re.compile(r"\b(?:half|float|double)\b")


def _mixed(ty: str) -> bool:
    return "ptr" in ty and _FLOAT.search(ty) is not None


@lru_cache(maxsize=256)
def _leaves(ty: str, layout: str) -> tuple:
    """``((index path, byte offset, leaf type text), ...)`` of aggregate type ``ty``
    under data layout ``layout``: struct and array members are followed while they
    hold pointers and floats both."""
    mod = llvm.parse_assembly(f'target datalayout = "{layout}"\n@g = external global {ty}')
    td = llvm.create_target_data(layout)
    out = []

    def walk(t, path, base):
        text = str(t)
        if not (t.is_struct or t.is_array) or not _mixed(text):
            out.append((path, base, text))
            return
        members = list(t.elements)
        if t.is_array:
            step = td.get_abi_size(members[0])
            for i in range(t.element_count):
                walk(members[0], path + (i,), base + i * step)
        else:
            for i, m in enumerate(members):
                walk(m, path + (i,), base + td.get_element_offset(t, i))

    walk(mod.get_global_variable("g").global_value_type, (), 0)
    return tuple(out)


def split_aggregate_stores(mod):
    """``mod`` (an llvmlite module) with its stores of pointer-and-float aggregates
    split per leaf (see the module docstring); the same module when it has none."""
    text = str(mod)
    if "store {" not in text and "store [" not in text and "store <{" not in text:
        return mod
    layout = mod.data_layout
    lines, k = [], 0
    for line in text.splitlines():
        m = _STORE.match(line) if "store " in line else None
        if m is None or not _mixed(m.group(2)):
            lines.append(line)
            continue
        indent, ty, val, ptr = m.groups()
        for j, (path, off, leaf) in enumerate(_leaves(ty, layout)):
            name = f"%gj.as{k}.{j}"
            lines.append(f"{indent}{name} = extractvalue {ty} {val}, "
                         + ", ".join(str(i) for i in path))
            lines.append(f"{indent}{name}.p = getelementptr inbounds i8, ptr {ptr}, i64 {off}")
            lines.append(f"{indent}store {leaf} {name}, ptr {name}.p")
        k += 1
    if k == 0:
        return mod
    try:
        out = llvm.parse_assembly("\n".join(lines) + "\n")
        out.verify()
    except RuntimeError:              # an unforeseen shape: the sweeps report the store
        return mod
    from .pipeline import run_passes
    return run_passes(out, "instruction_combine", "dead_code_elimination")
