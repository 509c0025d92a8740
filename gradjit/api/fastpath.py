"""The fast path of ``grad`` / ``value_and_grad`` / ``vjp`` calls.

A reverse-mode transform call decides, from its arguments, the activities, the
scratch shadows of constant arrays the function writes, how each shadow is laid
out and which derivative variant to call; that bookkeeping costs about 10 us a
call in Python, several times the derivative itself for small inputs.  The
decisions depend only on the call's *pattern*: the number of arguments (and how
many were passed by position) and, per argument, its Python type or, for an
array, its dtype, rank, writability and alignment.  After the first call of a
pattern this module keeps them as a :class:`Plan`; the next calls of that
pattern make zeroed shadows, call the derivative's compiled entry and pick the
gradients out of its result (a few microseconds of Python; nothing is compiled).

Only C-contiguous arrays of rank >= 1, numbers and bools take the fast path;
tuples, other layouts, other objects, ``has_aux`` and array-returning functions
keep the slow one, as does a pattern whose constant arrays get scratch shadows.
Where the derivative writes argument memory, a call whose arrays share memory
takes the slow path (which picks the variant made for aliased arguments).
"""
from __future__ import annotations

import numba
import numpy as np

from . import activities as A

#: Set to False to route every call through the slow path (tests compare both).
ENABLED = True

_SCALARS = (bool, int, float, np.bool_, np.integer, np.floating)


def arg_key(a):
    """The part of a call pattern one argument decides, or None when the argument
    keeps the call on the slow path."""
    if type(a) is np.ndarray:
        f = a.flags
        if not f.c_contiguous or a.ndim == 0:
            return None
        return (a.dtype, a.ndim, f.writeable, f.aligned)
    if type(a) is int:
        # Numba types an int beyond int64 as uint64
        return int if -(1 << 63) <= a < (1 << 63) else None
    if isinstance(a, _SCALARS):
        return type(a)
    return None


_ARRAY_TYPES = {}


def argument_types(args) -> tuple:
    """``tuple(numba.typeof(a) for a in args)``, with the types of plain ndarrays
    of numbers kept per (dtype, rank, layout, writability): ``numba.typeof``
    builds a new ``types.Array`` each time (about 8 us; 0.15 ms a call for the
    13 arrays of the HT derivative).  Same types as Numba's (layout ``C`` before
    ``F`` before ``A``, as ``numba.np.numpy_support.map_layout``); record dtypes
    and other objects go to ``numba.typeof``."""
    out = []
    for a in args:
        if type(a) is np.ndarray and a.dtype.kind in "biufc":
            f = a.flags
            key = (a.dtype, a.ndim, "C" if f.c_contiguous else "F" if f.f_contiguous else "A",
                   f.writeable)
            t = _ARRAY_TYPES.get(key)
            if t is None:
                t = _ARRAY_TYPES[key] = numba.typeof(a)
            out.append(t)
        else:
            out.append(numba.typeof(a))
    return tuple(out)


def pattern(args):
    """The call pattern of ``args`` (a tuple of :func:`arg_key`), or None when an
    argument keeps the call on the slow path (or the fast path is off)."""
    if not ENABLED:
        return None
    keys = tuple(map(arg_key, args))
    return None if None in keys else keys


class Plan:
    """The decisions of one call pattern.

    ``entry``: the derivative's compiled entry (an ``@njit`` dispatcher taking
    each argument followed, for a Duplicated one, by its shadow, then the seed);
    ``acts``: the activities (which arguments get a shadow); ``gather``: per
    gradient asked for, ``(is_scalar, k)``, its place among the derivative's
    scalar results or the shadows;
    ``single``: return that one gradient bare; ``check_overlap``: the derivative
    writes argument memory (arrays sharing memory take the slow path).
    """

    def __init__(self, entry, acts, gather, single, check_overlap):
        self.entry, self.gather, self.single = entry, gather, single
        self.check_overlap = check_overlap
        self.shadowed = tuple(a is A.Duplicated for a in acts)
        arrays = [k for is_scalar, k in gather if not is_scalar]
        self.repeated = len(set(arrays)) < len(arrays)     # argnums naming one twice

    def run(self, args, seed):
        """``(value, grads)`` as the slow path returns them, or None where this
        call needs the slow path: its arrays share memory and the derivative
        writes argument memory, or Numba types a value differently within the
        pattern (an int beyond int64) and the new derivative does not build."""
        if self.check_overlap:
            arrays = [a for a in args if type(a) is np.ndarray]
            if any(np.may_share_memory(a, b) for i, a in enumerate(arrays)
                   for b in arrays[i + 1:]):
                return None
        dfargs, shadows = [], []
        for a, shadowed in zip(args, self.shadowed):
            dfargs.append(a)
            if shadowed:
                d = np.zeros(a.shape, a.dtype)
                dfargs.append(d)
                shadows.append(d)
        dfargs.append(seed)
        try:
            res = self.entry(*dfargs)
        except numba.core.errors.TypingError:
            return None
        if isinstance(res, tuple):
            value, scalars = res[0], res[1:]
        else:
            value, scalars = res, ()
        grads = [float(scalars[k]) if is_scalar else shadows[k] for is_scalar, k in self.gather]
        if self.repeated:
            grads = own_arrays(grads)
        return value, (grads[0] if self.single else tuple(grads))


def own_arrays(grads):
    """``grads`` with each array that appears again replaced by a copy (argnums
    naming an argument twice get two gradient arrays, as JAX gives two values)."""
    seen, out = set(), []
    for g in grads:
        if isinstance(g, np.ndarray) and id(g) in seen:
            g = g.copy()
        seen.add(id(g))
        out.append(g)
    return out


class Patterns:
    """Per transform: the plans by call pattern."""

    def __init__(self):
        self._plans = {}

    def key(self, args, npos):
        keys = pattern(args)
        return None if keys is None else (npos, keys)

    def run(self, key, args, seed):
        """``(value, grads)`` from the plan of pattern ``key``, or None (no plan
        yet, none possible, or this call needs the slow path)."""
        plan = self._plans.get(key)
        return None if plan is None else plan.run(args, seed)

    def note_slow_call(self, key, make):
        """After a slow call of pattern ``key``: ``make()`` builds its plan (or
        None, kept too: the pattern then always takes the slow path)."""
        if key not in self._plans:
            self._plans[key] = make()
