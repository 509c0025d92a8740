"""Pointers into lane-interleaved shadows (vector forward mode).

In vector forward mode (``width`` N) the N tangent lanes of a ``Dual`` array
argument may be stored *interleaved*: the tangent of lane ``k`` of the element at
byte offset ``o`` lives at ``shadow + o * N + k * size``.  That is the layout of a
``(N, *x.shape)`` tangent array whose lane axis is the fastest one, e.g. the
transpose of a row-major Jacobian ``(*x.shape, N)`` as JAX's ``jacfwd`` returns
it, so the derivative writes Jacobian rows contiguously instead of N strided
streams.

The shadow of a pointer ``p`` into such an argument ``a`` is then
``shadow_k(a) + (p - a) * N``.  That is only right if every pointer derived from
``a`` is known to be derived from ``a`` alone, so :func:`interleaved_pointers`
follows all uses of the argument and reports those that would hide the
derivation (the pointer stored to memory, passed to a call, merged with another
array, turned into an integer and back); the caller then falls back to the
lane-major layout.  Linear in the size of the function.

The arrays a function allocates itself (``np.empty`` and friends: an
``NRT_MemInfo_alloc*`` call whose data pointer is loaded from the meminfo) get
the same layout when :func:`interleaved_allocations` finds that nothing but
reference counting sees the meminfo and nothing hides the derivation of the
data pointer: their shadow is then one zeroed block of N times the bytes, and
the tangent loads and stores of all lanes of an element are adjacent.
"""
from __future__ import annotations

import re

from .calls import classify

_THROUGH = {"getelementptr", "bitcast", "addrspacecast", "freeze", "phi", "select"}
# calls that may take an interleaved pointer: memory intrinsics (handled by the
# sweep) and calls that do not touch the data
_CALL_OK = {"memory", "noop", "inactive_external", "pure_int"}


def interleaved_pointers(fn, args, defined):
    """Follow the pointers derived from the roots named in ``args`` (arguments,
    or the data pointers of allocations).

    Returns ``(derived, problems)``: ``derived`` maps the name of every pointer
    instruction derived from one of them (through geps, casts, phis and selects)
    to that root's name; ``problems`` lists ``(instruction, reason, root)`` for
    uses the interleaved layout cannot follow.
    """
    users = {}
    for ins in fn.instructions():
        for o in ins.operands:
            if o.kind in ("inst", "arg"):
                users.setdefault(o.name, []).append(ins)
    derived, problems = {}, []
    ints = set()                        # integers computed from derived pointers
    stack = [(a, a) for a in args]
    seen = set()
    while stack:
        name, origin = stack.pop()
        for u in users.get(name, ()):
            key = (id(u), name)
            if key in seen:
                continue
            seen.add(key)
            op = u.opcode
            if name in ints:
                if op in ("inttoptr", "getelementptr"):
                    problems.append((u, "a pointer rebuilt from an integer", origin))
                elif op not in ("icmp", "store") and u.has_value and u.type != "ptr":
                    ints.add(u.name)
                    stack.append((u.name, origin))
                continue
            if op in _THROUGH:
                if op == "select" and u.operands[0].name == name:
                    continue
                prev = derived.get(u.name)
                if prev is not None and prev != origin:
                    problems.append((u, "two arrays merged into one pointer", origin))
                    problems.append((u, "two arrays merged into one pointer", prev))
                elif prev is None:
                    derived[u.name] = origin
                    stack.append((u.name, origin))
            elif op in ("load", "icmp"):
                continue
            elif op in ("store", "atomicrmw", "cmpxchg"):
                if u.operands[0].name == name and op == "store" or \
                        op != "store" and len(u.operands) > 1 and \
                        any(o.name == name for o in u.operands[1:]):
                    problems.append((u, "a pointer into the array stored to memory", origin))
            elif op == "ptrtoint":
                ints.add(u.name)
                stack.append((u.name, origin))
            elif op == "call":
                kind = classify(u.callee, u.callee in defined)
                if kind not in _CALL_OK or (u.has_value and u.type == "ptr"):
                    problems.append((u, f"the array passed to '{u.callee}'", origin))
            else:
                problems.append((u, f"a pointer into the array used by '{op}'", origin))
    # a merge must not also take a pointer into some other array
    for ins in fn.instructions():
        if ins.opcode in ("phi", "select") and ins.name in derived:
            ops = ins.operands[1:] if ins.opcode == "select" else ins.operands
            for o in ops:
                if o.kind == "const":
                    continue
                mine = derived[ins.name]
                if o.name in args:
                    if o.name != mine:
                        problems.append((ins, "two arrays merged into one pointer", mine))
                        problems.append((ins, "two arrays merged into one pointer", o.name))
                elif derived.get(o.name) != mine:
                    problems.append((ins, "an array merged with another pointer", mine))
                    if o.name in derived:
                        problems.append((ins, "an array merged with another pointer",
                                         derived[o.name]))
                    break
    return derived, problems


# the meminfo field holding the data pointer (NRT's MemInfo: refct, dtor,
# dtor_info, data, size)
_DATA_FIELD = 24


def allocation_data_pointers(fn, is_active):
    """Candidates for interleaved allocations: ``{data load name: allocation}``
    for every active ``NRT_MemInfo_alloc*`` call whose meminfo is only reference
    counted, compared and read for its data pointer (``load ptr`` of the field at
    byte 24), also through phis and selects that merge it with null (an inlined
    constructor's error paths).  A meminfo stored or passed on keeps the
    lane-major layout (another function would read the lanes' data pointers
    from their meminfos)."""
    users = {}
    for ins in fn.instructions():
        for o in ins.operands:
            if o.kind == "inst":
                users.setdefault(o.name, []).append(ins)
    out = {}
    for ins in fn.instructions():
        if ins.opcode != "call" or classify(ins.callee, False) != "nrt_alloc" or \
                not is_active(ins):
            continue
        aliases, loads, ok = {ins.name}, [], True
        work = [ins.name]
        while work and ok:
            for u in users.get(work.pop(), ()):
                if u.opcode == "icmp" or u.opcode == "call" and (
                        classify(u.callee, False) == "nrt_refct" or
                        u.callee == "NRT_MemInfo_call_dtor"):
                    continue
                if u.opcode in ("phi", "select"):
                    if u.name not in aliases:
                        aliases.add(u.name)
                        work.append(u.name)
                    continue
                if u.opcode == "getelementptr" and _byte_offset(u) == _DATA_FIELD and \
                        u.operands[0].name in aliases:
                    got = users.get(u.name, ())
                    if all(g.opcode == "load" and g.type == "ptr" for g in got):
                        loads += got
                        continue
                ok = False
                break
        # a merge must take nothing but this meminfo and constants (null)
        for name in aliases - {ins.name}:
            m = next(u for us in users.values() for u in us if u.name == name)
            ops = m.operands[1:] if m.opcode == "select" else m.operands
            ok = ok and all(o.kind == "const" or o.name in aliases for o in ops)
        if ok:
            out.update((ld.name, ins) for ld in loads)
    return out


def _byte_offset(gep):
    """The constant byte offset of ``getelementptr i8, ptr %p, i64 C``, else None."""
    m = re.search(r"getelementptr (?:inbounds |nuw |nusw )*i8, ptr [^,]+, i64 (-?\d+)\s*$",
                  gep.text)
    return int(m.group(1)) if m else None


def interleaved_allocations(fn, args, candidates, defined, conflicts=None):
    """Which allocation data pointers in ``candidates`` (from
    :func:`allocation_data_pointers`) can take the interleaved layout next to the
    interleaved arguments ``args``: those none of whose derived pointers hides its
    derivation, and none of which ``conflicts(derived, roots)`` (the sweep's own
    limits: a copy from a lane-major array) returns.  Returns ``(derived,
    problems, roots)``: as :func:`interleaved_pointers` does for ``args``, and the
    chosen ``roots``.  Dropping a root may expose another (a merge or a copy of
    the two), so this repeats until nothing changes (at most once per candidate)."""
    roots = set(candidates)
    while True:
        derived, problems = interleaved_pointers(fn, set(args) | roots, defined)
        bad = {p[2] for p in problems if p[2] in roots}
        if not bad and conflicts is not None:
            bad = set(conflicts(derived, roots)) & roots
        if not bad:
            return derived, [p for p in problems if p[2] in args], roots
        roots -= bad
