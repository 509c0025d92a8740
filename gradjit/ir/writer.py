"""Write the gradjit SSA model back as LLVM text that llvmlite parses."""
from __future__ import annotations

from .model import Function, Module


def function_text(f: Function) -> str:
    if f.is_declaration:
        return f.header
    out = [f.header.strip() + " {"]
    for b in f.blocks:
        out.append(f"{_label(b.name)}:")
        for i in b.instructions:
            out.append("  " + i.text.strip())
    out.append("}")
    return "\n".join(out)


def _label(name: str) -> str:
    from .model import _PLAIN
    return name if _PLAIN.match(name) else '"' + name + '"'


label = _label


def module_text(m: Module, extra_functions=(), extra_text=()) -> str:
    """Text of module ``m`` plus extra function bodies (already text)."""
    out = [f'target datalayout = "{m.datalayout}"', f'target triple = "{m.triple}"', ""]
    out.extend(m.globals_text)
    out.append("")
    for f in m.functions.values():
        out.append(function_text(f))
        out.append("")
    out.extend(extra_functions)
    out.extend(extra_text)
    return "\n".join(out) + "\n"
