"""Loop form for the reverse sweep: dedicated exit blocks and induction variables.

* :func:`split_exit_edges` puts a new block on every edge that leaves a loop, so
  the augmented primal has one place per loop execution to record what the
  reverse of the whole loop needs (values defined before the loop, the last value
  of each induction variable), as LLVM's LoopSimplify does for dedicated exits.
* :func:`induction_variables` finds header phis advanced by a constant step each
  iteration (``i.next = add i, C`` or ``p.next = getelementptr T, ptr p, i64 C``):
  the reverse sweep runs them backwards instead of recording them, and ends the
  reversed loop when the primary one is back at its start value.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import types as T
from ..ir.model import Instruction, Value, local_ref, rename


def split_exit_edges(fn, loops) -> bool:
    """Split every loop-exit edge of ``fn`` (in place); returns True if any was split."""
    edges = []
    for l in loops.loops:
        for src, dst in l.exits:
            if (src, dst) not in edges:
                edges.append((src, dst))
    for src, dst in edges:
        _split(fn, src, dst)
    if edges:
        fn.index()
        for b in fn.blocks:
            b.preds = []
        for b in fn.blocks:
            b.succs = list(dict.fromkeys(b.terminator.successors()))
        for b in fn.blocks:
            for s in b.succs:
                fn.block(s).preds.append(b.name)
    return bool(edges)


def _split(fn, src, dst):
    name = f"{src}.x.{dst}"
    srcb, dstb = fn.block(src), fn.block(dst)
    term = srcb.terminator
    term.text = rename(term.text, {dst: local_ref(name)})
    for o in term.operands:
        if o.kind == "label" and o.name == dst:
            o.name = name
    new = _block(name, dst)
    fn.blocks.append(new)
    fn._by_name[name] = new
    for phi in dstb.phis():
        inc, seen = [], False
        for v, b in phi.incoming:
            if b == src:
                if seen:
                    continue
                seen = True
                b = name
            inc.append((v, b))
        phi.incoming = inc
        phi.operands = [v for v, _ in inc]
        phi.text = f"{phi.ref} = phi {phi.type} " + ", ".join(
            f"[ {v.ref}, {local_ref(b)} ]" for v, b in inc)


def _block(name, target):
    from ..ir.model import Block
    blk = Block(name)
    br = Instruction("inst", "void", "", opcode="br", block=blk)
    br.operands = [Value("label", "label", target)]
    br.text = f"br label {local_ref(target)}"
    blk.instructions.append(br)
    return blk


@dataclass
class Induction:
    phi: object           # the header phi
    start: object         # incoming value from outside the loop
    step: int             # constant step (elements of ``elem`` for pointers)
    elem: str = None      # pointer induction: the gep element type


@dataclass
class LoopForm:
    loop: object
    preheader: str        # the single predecessor outside the loop
    latch: str            # the single predecessor inside the loop
    ivs: list             # [Induction]; ivs[0] is the primary one
    trip: tuple = None    # (bound, start) when the loop runs bound - start times


def induction_variables(fn, loops) -> dict:
    """Header name -> :class:`LoopForm` for loops with one entering edge, one latch
    and at least one constant-step induction variable."""
    out = {}
    for l in loops.loops:
        hdr = fn.block(l.header)
        outside = [p for p in hdr.preds if p not in l.blocks]
        inside = [p for p in hdr.preds if p in l.blocks]
        if len(outside) != 1 or len(inside) != 1:
            continue
        term = fn.block(outside[0]).terminator
        if term.successors().count(hdr.name) != 1 or \
                fn.block(inside[0]).terminator.successors().count(hdr.name) != 1:
            continue
        ivs = []
        for phi in hdr.phis():
            if phi.type != "ptr" and not phi.type.startswith("i"):
                continue
            start = next(v for v, b in phi.incoming if b == outside[0])
            nxt = next(v for v, b in phi.incoming if b == inside[0])
            iv = _step(phi, start, nxt)
            if iv is not None:
                ivs.append(iv)
        ivs.sort(key=lambda iv: iv.phi.type == "ptr")        # integers first
        if ivs:
            out[l.header] = LoopForm(l, outside[0], inside[0], ivs, _trip(fn, l, ivs))
    return out


def _step(phi, start, nxt):
    if getattr(nxt, "opcode", "") == "add" and phi.type != "ptr":
        a, b = nxt.operands
        c = b if a is phi else a if b is phi else None
        if c is not None and c.kind == "const":
            try:
                k = int(c.text)
            except ValueError:
                return None
            return Induction(phi, start, k) if k else None
    if getattr(nxt, "opcode", "") == "sub" and phi.type != "ptr":
        a, b = nxt.operands
        if a is phi and b.kind == "const":
            try:
                k = -int(b.text)
            except ValueError:
                return None
            return Induction(phi, start, k) if k else None
    if getattr(nxt, "opcode", "") == "getelementptr" and phi.type == "ptr":
        ops = nxt.operands
        if len(ops) == 2 and ops[0] is phi and ops[1].kind == "const":
            elem = nxt.text.split("getelementptr", 1)[1].replace("inbounds", "").replace(
                "nuw", "").replace("nusw", "").strip().split(",")[0].strip()
            try:
                k = int(ops[1].text)
                T.size(elem)
            except ValueError:
                return None
            return Induction(phi, start, k, elem) if k else None
    return None


def _trip(fn, loop, ivs):
    """Trip count of a one-block loop ``for i in range(start, bound)`` (unit step,
    exit test ``i.next == bound``): ``(bound, start)``; None otherwise."""
    if len(loop.blocks) != 1:
        return None
    term = fn.block(loop.header).terminator
    if term.opcode != "br" or len(term.operands) != 3:
        return None
    cond = term.operands[0]
    if getattr(cond, "opcode", "") != "icmp":
        return None
    pred = cond.text.split("icmp", 1)[1].split()[0]
    exit_on_true = term.successors()[0] != loop.header
    if not ((pred == "eq" and exit_on_true) or (pred == "ne" and not exit_on_true)):
        return None
    for iv in ivs:
        if iv.elem is not None or iv.step != 1:
            continue
        nxt = next(v for v, b in iv.phi.incoming if b == loop.header)
        a, b = cond.operands
        bound = b if a is nxt else a if b is nxt else None
        if bound is None:
            continue
        if bound.kind == "inst" and bound.block.name in loop.blocks:
            continue
        if bound.type != iv.phi.type:
            continue
        return (bound, iv.start)
    return None
