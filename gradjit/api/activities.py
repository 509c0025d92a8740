"""Activities (seed document 003, "Activities"): how each argument and the return
value take part in differentiation.  Pass the class or an instance."""
from __future__ import annotations


class Activity:
    """Base class.  ``modes``: the modes it is valid in; ``shadowed``: ``df``
    takes a shadow/tangent argument after the primal; ``scalar_only``: only for
    float scalars."""
    modes = ()
    shadowed = False
    scalar_only = False
    array_only = False
    differentiated = True

    def __repr__(self):
        return type(self).__name__


class Const(Activity):
    """Not differentiated (both modes); as ``ret``: no derivative of the return."""
    modes = ("reverse", "forward")
    differentiated = False


class Active(Activity):
    """Reverse mode, float scalars: the gradient is returned by ``df``; as ``ret``:
    ``df`` takes the seed and returns the primal result first."""
    modes = ("reverse",)
    scalar_only = True


class ActiveOnly(Active):
    """As ``ret`` in reverse mode: like ``Active`` without returning the primal."""


class Duplicated(Activity):
    """Reverse mode, arrays: ``df`` takes ``x, dx``; the gradient is added to ``dx``
    and seeds in ``dx`` for values ``fn`` writes are consumed (zeroed)."""
    modes = ("reverse",)
    shadowed = True
    array_only = True


class DuplicatedNoNeed(Duplicated):
    """Like ``Duplicated``; ``x``'s contents are unspecified afterwards."""


class Dual(Activity):
    """Forward mode: ``df`` takes ``x, dx``, ``dx`` the tangent (floats and arrays);
    as ``ret``: ``df`` returns ``(primal, tangent)``."""
    modes = ("forward",)
    shadowed = True


class DualOnly(Dual):
    """Like ``Dual``; the primal may be left unspecified (as ``ret``: only the
    tangent is returned)."""


ALL = (Const, Active, ActiveOnly, Duplicated, DuplicatedNoNeed, Dual, DualOnly)


def as_class(a):
    """The activity class of ``a`` (a class or an instance); ``None`` if not one."""
    if isinstance(a, type) and issubclass(a, Activity):
        return a
    if isinstance(a, Activity):
        return type(a)
    return None
