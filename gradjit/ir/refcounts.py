"""Drop the reference-count operations of borrowed arguments before AD.

Numba passes arrays to a compiled function as borrowed references: the caller
holds a reference to each meminfo for the whole call.  The callee still
increments the count of an argument's meminfo when it binds it to a local and
decrements it when the local dies (``NRT_incref`` / ``NRT_decref``, atomic
read-modify-writes).  When the meminfo argument is used by nothing but these
calls, it cannot escape (it is not stored, returned or passed on), so the net
change on every normal return is zero, and the caller's reference keeps the
count above zero in between: the operations have no observable effect and are
removed.  (On a raising path Numba may leave an increment unpaired, a leak it
accepts; removing it loses nothing.)

Numba's refprune pass, run when the caller's library is finalized, did not
remove them from derivatives: the derivative module carries internal copies of
``NRT_incref``/``NRT_decref``, renamed when linked, which refprune does not
recognise, and a raising path lies between most pairs.  Six atomic operations
per call of the BA residual's derivative remained (measured: 4% of the call).

One pass over the instructions of each function: linear in the module's size.
"""
from __future__ import annotations

from .model import Module

#: Numba's reference-count runtime calls (one meminfo pointer operand each).
REFCOUNT_CALLS = frozenset({"NRT_incref", "NRT_decref"})


def drop_borrowed_refcounts(model: Module) -> int:
    """Remove, in every function of ``model`` (in place), the ``NRT_incref`` and
    ``NRT_decref`` calls whose operand is a function argument used by nothing
    else.  Returns the number of calls removed."""
    removed = 0
    for f in model.functions.values():
        if not f.is_declaration:
            removed += _drop_in_function(f)
    return removed


def _drop_in_function(f) -> int:
    args = {id(a): a for a in f.args if a.type == "ptr"}
    if not args:
        return 0
    refcount_uses = {}          # id(arg) -> [instruction]
    other_use = set()
    for ins in f.instructions():
        uses = [v for v in ins.operands if id(v) in args]
        uses += [v for v, _ in ins.incoming if id(v) in args]
        if not uses:
            continue
        if ins.opcode == "call" and ins.callee in REFCOUNT_CALLS and len(uses) == 1:
            refcount_uses.setdefault(id(uses[0]), []).append(ins)
        else:
            other_use.update(id(v) for v in uses)
    drop = {id(i) for k, calls in refcount_uses.items() if k not in other_use for i in calls}
    if not drop:
        return 0
    for b in f.blocks:
        b.instructions = [i for i in b.instructions if id(i) not in drop]
    f.index()
    return len(drop)
