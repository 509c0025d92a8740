"""Which primal loads the reverse sweep may repeat instead of recording.

A load can be re-executed in the reverse sweep when the memory it reads is still
alive and unchanged then: its allocation is an argument of the top-level function
(user memory, which nothing writes after the derivative's forward sweep) and no
instruction that may write that allocation is reachable from the load (Enzyme's
"uncacheable" analysis, Moses & Churavy, NeurIPS 2020, sec. 3.3).  Local arrays
are freed before the reverse sweep runs, so their loads are recorded instead.
"""
from __future__ import annotations

from .activity import held_pointers, loaded_pointer, root
from .calls import classify

_WRITES = {"store": 1, "atomicrmw": 0, "cmpxchg": 0}
# Numba's return slot and exception slot: never a user's array
_ABI_ARGS = ("retptr", "excinfo")


class ReloadAnalysis:
    """``can_reload(load)``: the load may be repeated in the reverse sweep."""

    def __init__(self, fn, defined, arg_roots_ok: bool, reload_slots=None, args_alias=False):
        self.fn = fn
        self.arg_roots_ok = arg_roots_ok
        # argument arrays may overlap: every argument root is one key
        self.args_alias = args_alias
        # a prange body: its arrays are keyed by their entry of ``args`` (first
        # argument); ``reload_slots`` are the entries whose memory the launching
        # function leaves unchanged until its reverse sweep
        self.slot_base = fn.args[0].name if reload_slots is not None else None
        self.reload_slots = reload_slots or frozenset()
        self.writers = {}            # root key -> set of block names (None: unknown root)
        self.writer_pos = {}         # (root key, block) -> last writer index in block
        held = held_pointers(fn, self._key)
        for ins in fn.instructions():
            for ptr in self._written(ins, defined):
                key = self._key(ptr) if ptr is not None else None
                # a pointer loaded back from memory keys to that memory (see root());
                # the write goes to whatever pointers were stored there as well
                through = held.get(key, ()) if ptr is not None and loaded_pointer(ptr) else ()
                for k in (key, *through):
                    self.writers.setdefault(k, set()).add(ins.block.name)
                    self.writer_pos[(k, ins.block.name)] = max(
                        self.writer_pos.get((k, ins.block.name), -1), ins.index)
        self._reach = _reachability(fn)

    def _key(self, ptr):
        if self.slot_base is not None:
            from .parallel import slot_of
            off = slot_of(ptr, self.slot_base)
            if off is not None:
                return ("slot", off)
        r = root(ptr)
        if r is not None and self.args_alias and r.kind == "arg" and r.name not in _ABI_ARGS:
            return "args"
        return id(r) if r is not None else None

    def writes_arguments(self) -> bool:
        """May the function write memory reached through its pointer arguments?"""
        arg_keys = {id(a) for a in self.fn.args if a.name not in _ABI_ARGS} | {"args", None}
        return any(k in arg_keys for k in self.writers)

    @staticmethod
    def _written(ins, defined):
        op = ins.opcode
        if op in _WRITES:
            return [ins.operands[_WRITES[op]]]
        if op == "call":
            kind = classify(ins.callee, ins.callee in defined)
            if kind == "parallel":
                return [None]            # writes through the pointers in its arrays
            if kind in ("noop", "pure_int", "math", "nrt_refct", "nrt_alloc", "raw_alloc"):
                return []
            if kind == "memory":
                return [ins.operands[0]]
            return [o for o in ins.operands[:-1] if o.type == "ptr"]
        return []

    def writes_in(self, ptr, blocks) -> bool:
        """May an instruction in ``blocks`` write the memory ``ptr`` points to?"""
        k = self._key(ptr)
        keys = (k, None) if k is not None else list(self.writers)
        return any(self.writers.get(k, set()) & set(blocks) for k in keys)

    def can_reload(self, load) -> bool:
        key = self._key(load.operands[0])
        if isinstance(key, tuple):        # an array of a prange body: written by no item
            return key[1] in self.reload_slots and not self.writers.get(key) and \
                not self.writers.get(None)
        if self.slot_base is not None and not self._launch_array(load.operands[0]):
            return False                  # reached through an entry it cannot name
        r = root(load.operands[0])
        if r is None:
            return False
        if r.kind != "arg" or not self.arg_roots_ok:
            return False
        return self.unwritten_after(key, load)

    def _launch_array(self, ptr) -> bool:
        """Is ``ptr`` a constant offset into one of a prange body's own argument
        arrays (``args``, ``dims``, ``steps``), which its launch keeps unchanged?"""
        from .activity import slot_offset
        names = {a.name: None for a in self.fn.args[:3]}
        return slot_offset(ptr, names) is not None

    def unwritten_after(self, key, ins) -> bool:
        """Does no instruction reachable after ``ins`` (``ins`` itself excluded) write
        memory with root key ``key``?"""
        blk = ins.block.name
        reach = self._reach.get(blk, set())
        for k in (key, None):
            for w in self.writers.get(k, ()):
                if w in reach:
                    return False
                if w == blk and self.writer_pos[(k, w)] > ins.index:
                    return False
        return True


def _reachability(fn) -> dict:
    """Block -> set of blocks reachable from it through at least one edge."""
    succ = {b.name: b.succs for b in fn.blocks}
    reach = {b: set() for b in succ}
    changed = True
    order = list(reversed([b.name for b in fn.blocks]))
    while changed:
        changed = False
        for b in order:
            new = set()
            for s in succ[b]:
                new.add(s)
                new |= reach[s]
            if len(new) != len(reach[b]):
                reach[b] = new
                changed = True
    return reach
