"""Control-flow graph helpers: reverse post-order and reachability."""
from __future__ import annotations


def has_cycle(fn) -> bool:
    """Does ``fn``'s CFG (the part reachable from entry) have a cycle?  Every cycle
    has an edge to a block at or before its source in reverse post-order."""
    order = reverse_postorder(fn)
    pos = {b: k for k, b in enumerate(order)}
    return any(pos[s] <= k for k, b in enumerate(order)
               for s in fn.block(b).succs)


def reverse_postorder(fn) -> list:
    """Block names of ``fn`` reachable from entry, in reverse post-order (iterative DFS)."""
    seen, order = set(), []
    stack = [(fn.entry.name, iter(fn.entry.succs))]
    seen.add(fn.entry.name)
    while stack:
        name, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            order.append(name)
            stack.pop()
        elif nxt not in seen:
            seen.add(nxt)
            stack.append((nxt, iter(fn.block(nxt).succs)))
    order.reverse()
    return order
