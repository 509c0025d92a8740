"""Dominator tree (Cooper, Harvey & Kennedy, "A Simple, Fast Dominance Algorithm", 2001)."""
from __future__ import annotations

from .cfg import reverse_postorder


class DominatorTree:
    """Immediate dominators of the reachable blocks of a function.

    ``idom[b]`` is the immediate dominator's name (the entry maps to itself).
    """

    def __init__(self, fn):
        self.rpo = reverse_postorder(fn)
        pos = {b: k for k, b in enumerate(self.rpo)}
        self.pos = pos
        entry = self.rpo[0]
        idom = {entry: entry}
        changed = True
        while changed:
            changed = False
            for b in self.rpo[1:]:
                new = None
                for p in fn.block(b).preds:
                    if p not in idom:
                        continue
                    new = p if new is None else self._intersect(p, new, idom, pos)
                if idom.get(b) != new:
                    idom[b] = new
                    changed = True
        self.idom = idom

    @staticmethod
    def _intersect(a, b, idom, pos):
        while a != b:
            while pos[a] > pos[b]:
                a = idom[a]
            while pos[b] > pos[a]:
                b = idom[b]
        return a

    def dominates(self, a: str, b: str) -> bool:
        """True if block ``a`` dominates block ``b``."""
        if a not in self.idom or b not in self.idom:
            return False
        while True:
            if a == b:
                return True
            nb = self.idom[b]
            if nb == b:
                return False
            b = nb
