"""Exceptions raised by gradjit (see the errors table of the public API)."""
from __future__ import annotations


class ActivityError(TypeError):
    """An activity does not fit its argument (``Active`` on an array, ``Dual`` in
    reverse mode, a wrong number of activities, ...)."""


class ActivityWarning(UserWarning):
    """An argument held ``Const`` receives values that depend on the differentiated
    arguments: if the function reads them back, their derivatives are lost (Enzyme
    reports such a store as a mismatched activity).  The transforms (``grad``,
    ``jvp``, ...) give such arrays a scratch shadow instead."""


class UnsupportedError(NotImplementedError):
    """A construct the AD cannot differentiate.

    ``construct`` names it, ``location`` is the Python ``file:line`` it came from
    (``None`` until known); ``instruction`` keeps the LLVM text for the debug flags;
    ``kind`` is a short tag for the cases callers handle (``"mixed_merge"``: an
    array chosen at run time between a differentiated one and a Const one), else
    ``None``.
    """

    def __init__(self, construct: str, location: str = None, instruction: str = None,
                 function: str = None, kind: str = None):
        self.construct = construct
        self.kind = kind
        self.location = location
        self.instruction = instruction
        self.function = function
        super().__init__(self._message())

    def _message(self):
        where = f" at {self.location}" if self.location else ""
        fn = f" in {self.function}" if self.function else ""
        return f"gradjit cannot differentiate {self.construct}{fn}{where}"

    def __reduce__(self):
        # pickling (multiprocessing, pytest-xdist) keeps every field, not just the message
        return (type(self), (self.construct, self.location, self.instruction,
                             self.function, self.kind))

    def with_location(self, location: str, function: str = None):
        self.location = location
        if function:
            self.function = function
        self.args = (self._message(),)
        return self
