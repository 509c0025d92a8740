"""Natural loops (back edges to a dominating header), their nesting and trip counts."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class Loop:
    header: str
    blocks: set = field(default_factory=set)
    parent: "Loop" = None
    depth: int = 1
    exits: list = field(default_factory=list)    # (inside block, outside block) edges
    trip_count: object = None                     # int when a constant, else None

    def __repr__(self):
        return f"<Loop {self.header} depth={self.depth} n={len(self.blocks)}>"


class LoopInfo:
    """Loops of ``fn``; ``loops_of[b]`` lists the loops containing block ``b``,
    outermost first."""

    def __init__(self, fn, domtree):
        by_header = {}
        for b in domtree.rpo:
            for s in fn.block(b).succs:
                if domtree.dominates(s, b):          # back edge b -> s
                    loop = by_header.setdefault(s, Loop(s, {s}))
                    work = [b]
                    while work:
                        x = work.pop()
                        if x in loop.blocks:
                            continue
                        loop.blocks.add(x)
                        work.extend(p for p in fn.block(x).preds if p in domtree.idom)
        loops = sorted(by_header.values(), key=lambda l: len(l.blocks), reverse=True)
        for k, l in enumerate(loops):
            for outer in reversed(loops[:k]):
                if l.header in outer.blocks and l is not outer:
                    l.parent = outer
                    break
        for l in loops:
            d, p = 1, l.parent
            while p is not None:
                d, p = d + 1, p.parent
            l.depth = d
            for b in l.blocks:
                for s in fn.block(b).succs:
                    if s not in l.blocks:
                        l.exits.append((b, s))
            l.trip_count = _constant_trip_count(fn, l)
        self.loops = loops
        self.loops_of = {b: [] for b in domtree.rpo}
        for l in sorted(loops, key=lambda l: l.depth):
            for b in l.blocks:
                self.loops_of[b].append(l)

    def exited(self, src: str, dst: str) -> list:
        """Loops left by the edge src -> dst, innermost first."""
        inner = self.loops_of.get(src, [])
        return [l for l in reversed(inner) if dst not in l.blocks]


def _constant_trip_count(fn, loop):
    """Trip count of ``for i in range(a, b)``-shaped loops with constant bounds."""
    hdr = fn.block(loop.header)
    for phi in hdr.phis():
        if not phi.type.startswith("i"):
            continue
        starts = [v for v, b in phi.incoming if b not in loop.blocks]
        steps = [v for v, b in phi.incoming if b in loop.blocks]
        if len(starts) != 1 or len(steps) != 1 or starts[0].kind != "const":
            continue
        step = steps[0]
        if getattr(step, "opcode", "") != "add" or step.operands[0] is not phi:
            continue
        if step.operands[1].kind != "const" or step.operands[1].text != "1":
            continue
        for b, s in loop.exits:
            term = fn.block(b).terminator
            cond = term.operands[0] if term.opcode == "br" and len(term.operands) == 3 else None
            if cond is None or getattr(cond, "opcode", "") != "icmp":
                continue
            ops = cond.operands
            if step in ops or phi in ops:
                other = ops[1] if ops[0] in (step, phi) else ops[0]
                if other.kind == "const":
                    try:
                        return int(other.text) - int(starts[0].text)
                    except ValueError:
                        return None
    return None
