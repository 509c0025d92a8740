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
"""
from __future__ import annotations

from .calls import classify

_THROUGH = {"getelementptr", "bitcast", "addrspacecast", "freeze", "phi", "select"}
# calls that may take an interleaved pointer: memory intrinsics (handled by the
# sweep) and calls that do not touch the data
_CALL_OK = {"memory", "noop", "inactive_external", "pure_int"}


def interleaved_pointers(fn, args, defined):
    """Follow the pointers derived from the arguments named in ``args``.

    Returns ``(derived, problems)``: ``derived`` maps the name of every pointer
    instruction derived from one of them (through geps, casts, phis and selects)
    to that argument's name; ``problems`` lists ``(instruction, reason)`` for uses
    the interleaved layout cannot follow.
    """
    users = {}
    for ins in fn.instructions():
        for o in ins.operands:
            if o.kind in ("inst", "arg"):
                users.setdefault(o.name, []).append(ins)
    derived, problems = {}, []
    ints = set()                        # integers computed from derived pointers
    stack = [(a.name, a.name) for a in fn.args if a.name in args]
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
                    problems.append((u, "a pointer rebuilt from an integer"))
                elif op not in ("icmp", "store") and u.has_value and u.type != "ptr":
                    ints.add(u.name)
                    stack.append((u.name, origin))
                continue
            if op in _THROUGH:
                if op == "select" and u.operands[0].name == name:
                    continue
                prev = derived.get(u.name)
                if prev is not None and prev != origin:
                    problems.append((u, "two arrays merged into one pointer"))
                elif prev is None:
                    derived[u.name] = origin
                    stack.append((u.name, origin))
            elif op in ("load", "icmp"):
                continue
            elif op in ("store", "atomicrmw", "cmpxchg"):
                if u.operands[0].name == name and op == "store" or \
                        op != "store" and len(u.operands) > 1 and \
                        any(o.name == name for o in u.operands[1:]):
                    problems.append((u, "a pointer into the array stored to memory"))
            elif op == "ptrtoint":
                ints.add(u.name)
                stack.append((u.name, origin))
            elif op == "call":
                kind = classify(u.callee, u.callee in defined)
                if kind not in _CALL_OK or (u.has_value and u.type == "ptr"):
                    problems.append((u, f"the array passed to '{u.callee}'"))
            else:
                problems.append((u, f"a pointer into the array used by '{op}'"))
    # a merge must not also take a pointer into some other array
    for ins in fn.instructions():
        if ins.opcode in ("phi", "select") and ins.name in derived:
            ops = ins.operands[1:] if ins.opcode == "select" else ins.operands
            for o in ops:
                if o.kind == "const":
                    continue
                if o.kind == "arg" and o.name in args:
                    if o.name != derived[ins.name]:
                        problems.append((ins, "two arrays merged into one pointer"))
                elif derived.get(o.name) != derived[ins.name]:
                    problems.append((ins, "an array merged with another pointer"))
                    break
    return derived, problems
