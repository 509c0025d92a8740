"""Split phis and selects of pointer-carrying aggregates into per-field values.

Numba builds some array structs as first-class aggregates and merges them with a
phi (``np.ascontiguousarray`` / ``np.asfortranarray`` of an ``'A'``-layout array:
the input itself when it is already contiguous, else a copy).  After inlining,
the data pointer reaching the loads is ``extractvalue (phi {ptr, ptr, i64, ...})``:
an aggregate without floats, which the activity analysis (like Enzyme's, which
works per scalar value) does not follow, so the derivative through such an array
would silently be lost.

This pass demotes each such merge to memory -- one ``alloca`` in the entry block,
a store of the incoming aggregate at the end of every predecessor (a phi) or of
both operands with a select of the two slots (a select), and a load where the
merge was -- and runs LLVM's SROA, which splits the slots into one scalar phi /
select per field (the "reg2mem then mem2reg" route of LLVM's own pipelines), then
InstCombine, which reads each field out of the insertvalue chain that built it.
Linear in the size of the module; a module without such merges is returned as is.
"""
from __future__ import annotations

import re

import llvmlite.binding as llvm

from .text import ENTRY, TERMINATORS
from .text import blocks as split_blocks

# "%x = phi { ... } [ ... ]" / "%x = select i1 %c, { ... } %a, { ... } %b" whose
# aggregate type holds a pointer (the type runs up to the first "[ " of a phi's
# incoming list, or up to the operand of a select)
_PHI = re.compile(r"^(\s*)(%[-\w.$\"]+) = phi ((?:\{|\[|<\{)[^=]*?\bptr\b.*?) ((?:\[ .*? \],? ?)+)\s*$")
_SELECT = re.compile(r"^(\s*)(%[-\w.$\"]+) = select (?:\w+ )*i1 ([^,]+), ((?:\{|\[|<\{)[^=]*?\bptr\b.*?) "
                     r"(%[-\w.$\"]+|undef|poison|zeroinitializer), \4 "
                     r"(%[-\w.$\"]+|undef|poison|zeroinitializer)\s*$")
_INCOMING = re.compile(r"\[ (.+?), (%[-\w.$\"]+) \]")


def _has_merge(text: str) -> bool:
    return any(_PHI.match(line) or _SELECT.match(line) for line in text.splitlines()
               if (" = phi " in line or " = select " in line) and "ptr" in line)


def _rewrite_function(lines: list) -> list:
    """Rewrite one function definition (its lines, ``define`` to ``}``)."""
    head = lines[0]
    # blocks: name -> list of lines (the entry block is unnamed in some printers)
    order, blocks = split_blocks(lines[1:-1])
    allocas, stores, n = [], {}, 0
    for name in order:
        out = []
        for line in blocks[name]:
            m = _PHI.match(line)
            s = None if m else _SELECT.match(line)
            if not (m or s):
                out.append(line)
                continue
            n += 1
            if m:
                ind, res, ty, inc = m.groups()
                slot = f"%gj.aggslot.{n}"
                allocas.append(f"  {slot} = alloca {ty}")
                for val, pred in _INCOMING.findall(inc):
                    stores.setdefault(pred.lstrip("%").strip('"'), []).append(
                        f"  store {ty} {val}, ptr {slot}")
                out.append(("load", f"{ind}{res} = load {ty}, ptr {slot}"))
            else:
                ind, res, cond, ty, a, b = s.groups()
                sa, sb = f"%gj.aggslot.{n}.t", f"%gj.aggslot.{n}.f"
                allocas += [f"  {sa} = alloca {ty}", f"  {sb} = alloca {ty}"]
                out += [f"{ind}store {ty} {a}, ptr {sa}", f"{ind}store {ty} {b}, ptr {sb}",
                        f"{ind}%gj.aggsel.{n} = select i1 {cond}, ptr {sa}, ptr {sb}",
                        f"{ind}{res} = load {ty}, ptr %gj.aggsel.{n}"]
        # loads that replace phis go after the block's remaining phis
        phis = [l for l in out if isinstance(l, str) and " = phi " in l]
        loads = [l[1] for l in out if isinstance(l, tuple)]
        rest = [l for l in out if isinstance(l, str) and " = phi " not in l]
        blocks[name] = phis + loads + rest
    for name, extra in stores.items():
        blk = blocks[name]
        at = len(blk)
        while at > 0 and not blk[at - 1].strip():
            at -= 1
        term = at - 1
        while term >= 0 and not blk[term].lstrip().startswith(TERMINATORS):
            term -= 1
        blk[term:term] = extra
    new = [head]
    for i, name in enumerate(order):
        if name != ENTRY:
            new.append(f"{name if _plain(name) else chr(34) + name + chr(34)}:")
        blk = blocks[name]
        if i == 0:
            blk = allocas + blk
        new += blk
    new.append(lines[-1])
    return new


def _plain(name: str) -> bool:
    return re.match(r"^[-\w.$]+$", name) is not None


def split_aggregate_merges(mod, tm=None):
    """Return ``mod`` (an llvmlite ModuleRef after the pre-AD pipeline) with every
    phi / select of a pointer-carrying aggregate split into per-field values (a
    new, verified module when anything changed)."""
    text = str(mod)
    if not _has_merge(text):
        return mod
    lines, out, fn = text.splitlines(), [], None
    for line in lines:
        if fn is None:
            if line.startswith("define "):
                fn = [line]
            else:
                out.append(line)
            continue
        fn.append(line)
        if line.startswith("}"):
            out += _rewrite_function(fn) if any(_PHI.match(l) or _SELECT.match(l) for l in fn) else fn
            fn = None
    new = llvm.parse_assembly("\n".join(out) + "\n")
    new.verify()
    from .pipeline import run_passes
    # SROA splits the slots; InstCombine: extractvalue (insertvalue ...) -> the field
    return run_passes(new, "sroa", "instruction_combine", tm=tm)
