"""Load hoisting for GPU derivative kernels: within each basic block, loads move
above earlier stores that cannot write what they read.

Why: a reverse-mode kernel reads a seed and zeroes it (``d = dout[i]; dout[i] =
0``) and accumulates adjoints (``dx[i] += ...``).  On an H100 a load issued after a
store to a line the same thread has just read waits for that store: the measured
reverse kernel of ``out[i] = a sin(x[i]) + y[i] x[i]`` (2^24 float64 elements)
took 1.41 ms where a hand-ordered one with every load first took 0.39 ms (primal
0.2 ms).  LLVM's NVPTX backend keeps memory operations in source order and PTX has
no alias information for ``ptxas`` to reorder them, so the order is set here, on
the optimized IR, just before code generation.

Which stores a load may pass: the array arguments the caller names in
``disjoint`` (the data pointers of distinct top-level arrays and their shadows) do
not overlap; :func:`check_disjoint` enforces this for every array the kernel
writes at launch time (Enzyme makes the same ``noalias`` assumption of shadows and
primal arrays).  A load moves above a store or atomic only when both addresses
are derived (through ``getelementptr``/casts) from two different such arguments.
It never moves above a call (other than pure intrinsics), a fence, a barrier, a
``phi`` or the definition of its own operands; volatile and atomic loads stay.
One pass over each block (as-soon-as-possible list scheduling with the highest
level reached per array): linear in the kernel's length, plus a sort per block.
"""
from __future__ import annotations

import re

_NAME = r"%[-\w.$]+|%\"[^\"]+\""
_DEF = re.compile(rf"^\s*({_NAME})\s*=\s*(.*)$")
_USE = re.compile(_NAME)
_PTR_OPERAND = re.compile(rf"\bptr(?: addrspace\(\d+\))? ({_NAME})")
_PURE_CALL = re.compile(
    r"@llvm\.(nvvm\.read\.ptx\.sreg\.|fma\.|fmuladd\.|fabs\.|sqrt\.|minnum\.|maxnum\.|minimum\.|"
    r"maximum\.|copysign\.|floor\.|ceil\.|trunc\.|rint\.|nearbyint\.|round\.|roundeven\.|umax\.|"
    r"umin\.|smax\.|smin\.|abs\.|ctlz\.|cttz\.|ctpop\.|bswap\.|assume|"
    r"experimental\.noalias\.scope\.decl|[su]add\.with\.overflow|[su]sub\.with\.overflow|"
    r"[su]mul\.with\.overflow|nvvm\.fma\.|nvvm\.fabs|nvvm\.d2i|nvvm\.d2ll|nvvm\.f2i|nvvm\.lohi|"
    r"nvvm\.mul\.|nvvm\.rcp\.|nvvm\.sqrt\.|nvvm\.ex2\.|nvvm\.lg2\.|nvvm\.add\.|nvvm\.div\.)")


def _kernel_span(lines, kernel):
    head = re.compile(rf"^define\b.*@{re.escape(kernel)}\(")
    for k, line in enumerate(lines):
        if head.match(line):
            for j in range(k + 1, len(lines)):
                if lines[j].startswith("}"):
                    return k, j
    raise ValueError(f"kernel {kernel} not in module")


def _params(define_line):
    sig = define_line[define_line.index("(") + 1:]
    out, depth, cur = [], 0, ""
    for ch in sig:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                out.append(cur)
                break
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    names = []
    for p in out:
        m = re.search(rf"({_NAME})\s*$", p.strip())
        names.append(m.group(1) if m else None)
    return names


class _Ins:
    __slots__ = ("text", "name", "kind", "ptr", "uses", "op")

    def __init__(self, text):
        self.text = text
        m = _DEF.match(text)
        self.name = m.group(1) if m else None
        body = (m.group(2) if m else text.strip())
        self.uses = set(_USE.findall(body))
        self.ptr = None
        op = self.op = body.split(" ", 1)[0]
        if op == "load":
            self.kind = "fixed" if re.match(r"load (atomic|volatile)\b", body) else "load"
            p = _PTR_OPERAND.search(body)
            self.ptr = p.group(1) if p else None
        elif op == "store":
            self.kind = "barrier" if re.match(r"store (atomic|volatile)\b", body) else "store"
            ps = _PTR_OPERAND.findall(body)
            self.ptr = ps[-1] if ps else None
        elif op in ("atomicrmw", "cmpxchg"):
            # ordered atomics (acquire and stronger) are fences for other accesses
            self.kind = "barrier" if re.search(r"\b(acquire|acq_rel|seq_cst)\b", body) \
                else "store"
            p = _PTR_OPERAND.search(body)
            self.ptr = p.group(1) if p else None
        elif op in ("call", "tail", "musttail", "notail", "invoke", "callbr"):
            self.kind = "other" if _PURE_CALL.search(body) else "barrier"
        elif op in ("fence", "phi", "landingpad", "va_arg"):
            self.kind = "barrier"
        else:
            self.kind = "other"


_LABEL = re.compile(r'^(?:"[^"]*"|[-\w.$]+):')
_DERIVE = re.compile(r"^\s*\S+\s*=\s*(getelementptr|bitcast|addrspacecast)\b")
_NO_ESCAPE = re.compile(r"^\s*\S+\s*=\s*(getelementptr|bitcast|addrspacecast|icmp)\b")


def hoist_loads(text: str, kernel: str, disjoint):
    """``(text', written)``: ``text`` with the loads of function ``kernel`` hoisted
    above stores to other arrays (see the module docstring), and the indices in
    ``disjoint`` of the parameters the kernel writes through (stores, atomics, or
    a pointer passed to a call; when the kernel writes through a pointer whose
    array is unknown, every parameter whose pointer escapes counts as written).
    ``disjoint``: indices of the kernel's parameters that point to pairwise
    non-overlapping memory."""
    lines = text.split("\n")
    start, end = _kernel_span(lines, kernel)
    params = _params(lines[start])
    # numbered values must stay in order in LLVM text: name them
    body = [re.sub(r"^(\d+):", r"gj.v\1:", re.sub(r"%(\d+)(?![\w.])", r"%gj.v\1", line))
            for line in lines[start + 1:end]]
    joined = []                         # instructions spread over lines (switch [...])
    for line in body:
        if joined and joined[-1].count("[") > joined[-1].count("]"):
            joined[-1] += "\n" + line
        elif line.strip() and not line.strip().startswith(";"):
            joined.append(line)
    items = [(line, None) if _LABEL.match(line.strip()) else (line, _Ins(line)) for line in joined]
    root_of = _roots(items, {params[k]: k for k in disjoint if k < len(params) and params[k]})
    written, escaped, unknown_write = set(), set(), False
    for line, ins in items:
        if ins is None:
            continue
        rooted = [root_of[u] for u in ins.uses if u in root_of]
        if ins.op in ("store", "atomicrmw", "cmpxchg"):
            if ins.ptr in root_of:
                written.add(root_of[ins.ptr])
            else:
                unknown_write = True
            # a pointer stored to memory escapes
            escaped.update(root_of[u] for u in ins.uses if u in root_of and u != ins.ptr)
        elif ins.kind == "barrier" and ins.op not in ("phi", "fence"):
            # a call may write through any pointer it gets, rooted or not
            written.update(rooted)
            if any(p not in root_of for p in _PTR_OPERAND.findall(ins.text)):
                unknown_write = True
        elif ins.op != "load" and not _NO_ESCAPE.match(line):
            escaped.update(rooted)               # phi, select, ptrtoint...
    if unknown_write:
        written |= escaped
    out, block = [], []
    for line, ins in items:
        if ins is None:                          # a label starts a block
            out.extend(_schedule(block, root_of))
            block.clear()
            out.append(line)
        else:
            block.append(line)
    out.extend(_schedule(block, root_of))
    return "\n".join(lines[:start + 1] + out + lines[end:]), written


def _roots(items, root_of):
    """``{pointer name: parameter index}`` for pointers derived from the parameters
    by ``getelementptr`` and casts, wherever they appear in the function (a
    definition may come after a use in the text): repeated until nothing changes."""
    derived = []
    for line, ins in items:
        if ins is not None and ins.name and _DERIVE.match(line):
            p = _PTR_OPERAND.search(line[line.index("=") + 1:])
            if p:
                derived.append((ins.name, p.group(1)))
    changed = True
    while changed:
        changed = False
        for name, base in derived:
            if name not in root_of and base in root_of:
                root_of[name] = root_of[base]
                changed = True
    return root_of


def _schedule(block, root_of):
    """Reorder one block's lines as soon as possible (ASAP list scheduling): each
    instruction gets a level one above the highest level it depends on, and the
    block is sorted by level, ties in the original order.  Dependencies: the
    definitions of its operands; the last barrier (call, fence, phi, volatile
    access); for a load, earlier stores that may write what it reads; for a store,
    every earlier memory access; for a barrier or the terminator, everything
    before it."""
    ins_list = [_Ins(line) for line in block]
    level, by_name = [], {}
    top = fence = 0                 # highest level so far; level of the last barrier
    mem_top = 0                     # highest level of a load or store
    store_top = unknown_store = 0   # highest store level: any root; unknown root
    store_at = {}                   # root -> highest level of a store through it
    last = len(ins_list) - 1
    for k, ins in enumerate(ins_list):
        t = max([level[by_name[u]] for u in ins.uses if u in by_name], default=0)
        t = max(t, fence)
        if ins.kind in ("barrier", "fixed") or k == last:
            t = top
        elif ins.kind == "load":
            r = root_of.get(ins.ptr)
            t = max(t, store_top if r is None else max(unknown_store, store_at.get(r, 0)))
        elif ins.kind == "store":
            t = max(t, mem_top)
        t += 1
        if ins.kind in ("barrier", "fixed") or k == last:
            fence = t
        if ins.kind in ("load", "store"):
            mem_top = max(mem_top, t)
        if ins.kind == "store":
            store_top = max(store_top, t)
            r = root_of.get(ins.ptr)
            if r is None:
                unknown_store = t
            else:
                store_at[r] = max(store_at.get(r, 0), t)
        level.append(t)
        top = max(top, t)
        if ins.name:
            by_name[ins.name] = k
    order = sorted(range(len(ins_list)), key=lambda k: (level[k], k))
    return [ins_list[k].text for k in order]


def byte_extent(ptr, shape, strides, item):
    """Byte range ``(lo, hi)`` of an array at ``ptr`` (``shape``, byte ``strides``,
    ``item`` bytes per element), or None when it is empty."""
    if any(n == 0 for n in shape):
        return None
    lo = ptr + sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    hi = ptr + sum((n - 1) * s for n, s in zip(shape, strides) if s > 0) + item
    return lo, hi


def array_extent(a):
    """:func:`byte_extent` of a NumPy array."""
    return byte_extent(a.ctypes.data, a.shape, a.strides, a.itemsize)


def check_disjoint(arrays, written):
    """Raise ``ValueError`` when an array the kernel writes overlaps another array
    argument.  ``arrays``: ``[(name, array)]``; ``written``: the names written."""
    check_extents([(name, array_extent(a)) for name, a in arrays], written)


def check_extents(ext, written):
    """:func:`check_disjoint` on ``[(name, (lo, hi) or None)]`` byte extents."""
    for i, (n1, e1) in enumerate(ext):
        for n2, e2 in ext[i + 1:]:
            if e1 is None or e2 is None or (n1 not in written and n2 not in written):
                continue
            if e1[0] < e2[1] and e2[0] < e1[1]:
                raise ValueError(f"arguments {n1} and {n2} overlap in memory and the kernel "
                                 "writes one of them: the derivative kernel assumes its array "
                                 "arguments and shadows are distinct memory (pass copies)")
