"""``gradjit.autodiff``: the Enzyme-style low-level interface (see shared/API.md)."""
from __future__ import annotations

import inspect
import os
import sys
import threading
import warnings

import numba
import numpy as np
from numba.core import types
from numba.extending import typeof_impl

from ..ad.driver import ArgPlan, Plan, differentiate
from ..analysis.cfg import has_cycle
from ..backend import cpu
from ..errors import ActivityError, ActivityWarning, UnsupportedError
from ..frontend.capture import capture, dispatcher_of
from ..frontend.typetree import float_llvm, leaves, modeled
from ..ir.reader import read_module
from . import activities as A
from . import fastpath
from .shadows import (check_tuple_members, check_writable, const_alias_error, const_array_overlaps,
                      interleaved_types, layout_checks, like_strides, overlap_raiser,
                      overlapping, trailing_arrays)

Reverse = "reverse"
Forward = "forward"
_MODES = {"reverse": "reverse", "forward": "forward", "rev": "reverse", "fwd": "forward"}


def _is_float_scalar(t):
    return t in (types.float64, types.float32)


def _caller_level() -> int:
    """``warnings.warn``'s stacklevel of the first frame outside gradjit and Numba
    (for a derivative called from @njit code: the call that compiles that code)."""
    pkgs = (numba, sys.modules[__package__.split(".")[0]])
    inside = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in pkgs)
    f, level = sys._getframe(1), 1
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(inside):
        f, level = f.f_back, level + 1
    return level


def _is_float_array(t):
    return isinstance(t, types.Array) and _is_float_scalar(t.dtype)


def _is_array_tuple(t):
    return isinstance(t, types.BaseTuple) and len(t) > 0 and all(_is_float_array(m) for m in t)


class Derivative:
    """The derivative ``df`` made by :func:`autodiff`.

    Call it with NumPy arrays and scalars from Python, or from inside ``@njit``
    code (Numba types it as its compiled dispatcher).  Compiled lazily and cached
    per argument-type signature.  ``df.signatures`` lists the compiled ones.
    :func:`autodiff` hands out one object per function and configuration, so the
    transforms built on it compile once however often they are created.

    From Python, a shadow strided differently from its primal is copied into a
    same-strided temporary and back; inside ``@njit`` code it cannot be, so there a
    shadow whose shape or strides differ from its primal's raises ``ValueError``
    (checked on entry, a few compares per argument).
    """

    def __init__(self, fn, mode, acts, ret, width, checkpointing="auto", has_aux=False):
        self.fn = fn
        self.checkpointing = checkpointing
        self.has_aux = has_aux
        self.dispatcher = dispatcher_of(fn)
        self.mode = mode
        self.activities = acts
        self.ret = ret
        self.width = width
        self.params = list(inspect.signature(self.dispatcher.py_func).parameters)
        self._cache = {}
        self._writes = {}                     # call pattern -> (const_written, writes_args)
        self._alias_cache = {}
        self._lock = threading.RLock()
        # positions in df's arguments of the primals of each activity
        self._primal_pos = []
        k = 0
        for a in acts:
            self._primal_pos.append(k)
            k += 2 if a.shadowed else 1
        self._const_pos = [p for p, a in zip(self._primal_pos, acts) if a is A.Const]
        call = cpu.make_intrinsic(self._resolve, self._overlap_check)
        # shadows passed from @njit code are checked there (from Python, __call__
        # has already checked or copied them); in vector forward mode an
        # F-contiguous (N, n) shadow of a 1-D array is taken as interleaved lanes
        checks = layout_checks(self.params, acts, width if width > 1 else 0,
                               lambda t: self._interleaved_types(t), mode=mode)

        def df_checked(*args):     # the Python entry, whose shadows are already checked
            return call(args)

        name = f"d_{getattr(self.dispatcher.py_func, '__name__', 'fn')}"
        df_checked.__name__ = name
        # called from @njit code: an intrinsic taking the arguments as they are (a
        # compiled wrapper function would take a new reference to every array: for
        # the BA residual's derivative, called once per observation, the wrapper
        # and its checks took 6.6 of 12.4 ms)
        star = cpu.make_intrinsic(
            self._resolve, lambda t: checks(t, self._ret_dtype(t)) + self._overlap_check(t),
            star=True, name=name)

        def df(*args):             # passed to @njit code as an argument: a dispatcher
            return star(*args)

        df.__name__ = name
        self.jit = star
        self._jit_arg = numba.njit(df)
        self._jit_checked = numba.njit(df_checked)
        self._jit_alias = None

    def __repr__(self):
        acts = ", ".join(a.__name__ for a in self.activities)
        return f"<gradjit derivative of {self.params and self.dispatcher.py_func.__name__} ({self.mode}; {acts})>"

    def _interleaved_types(self, argtys) -> tuple:
        """Activities whose lanes arrive interleaved from ``@njit`` code (vector
        forward mode only, see :func:`gradjit.api.shadows.interleaved_types`)."""
        if self.mode != "forward" or self.width < 2:
            return ()
        return interleaved_types(self.activities, argtys, self.width)

    @property
    def signatures(self):
        return list(self._cache)

    # Python entry point -----------------------------------------------------------
    def __call__(self, *args):
        args = list(args)
        if args and isinstance(args[-1], np.ndarray) and args[-1].ndim == 0 and \
                len(args) == sum(2 if a.shadowed else 1 for a in self.activities) + 1:
            args[-1] = args[-1][()]                # a 0-d array seed is a scalar
        writebacks = self._check_shadows(args)
        writes = self._may_write(args)
        if writes[0]:
            self._check_const_aliases(args)
        out = self.call_unchecked(args, writes)
        for user, tmp in writebacks:
            user[...] = tmp
        if self._unwarned:
            self._warn_const_written(self.compile(fastpath.argument_types(args)))
        return out

    _unwarned = 0        # compiled signatures whose ActivityWarning is still to come

    def _warn_const_written(self, compiled):
        """The :class:`~gradjit.ActivityWarning` of a compiled signature whose Const
        arguments receive differentiated values, once, on the first call the user
        makes (from Python or @njit code; the transforms, which give such arrays
        scratch shadows, call past it)."""
        if compiled.const_written and not getattr(compiled, "warned", False):
            compiled.warned = True
            self._unwarned -= 1
            names = ", ".join(f"'{self.params[k]}'" for k in compiled.const_written
                              if k < len(self.params))
            warnings.warn(
                f"argument {names} of {self.dispatcher.py_func.__name__} is Const but the "
                "function stores values depending on the differentiated arguments into it: "
                "if it reads them back, their derivatives are lost (make it Duplicated/Dual "
                "with a zero shadow)", ActivityWarning, stacklevel=_caller_level())

    def _check_const_aliases(self, args):
        """Raise ``ValueError`` where a Const array the function writes derivatives
        through shares memory with a differentiated array (see
        :func:`gradjit.api.shadows.const_alias_error`).  The argument types are
        looked up only when some Const array overlaps one (a few compares per
        call otherwise)."""
        for k in self._const_pos:
            if k < len(args) and isinstance(args[k], (np.ndarray, tuple)):
                break
        else:
            return                          # no Const array: nothing to check
        if const_array_overlaps(self.params, self.activities, args):
            _raise_const_alias(self, args, self.compile(fastpath.argument_types(args)))

    def _may_write(self, args):
        """``(const_written, writes_args)`` of the compiled signature of ``args``, as
        far as the memory checks need them: kept per call pattern
        (:func:`gradjit.api.fastpath.pattern`), so a call whose pattern writes no
        argument memory skips the pairwise overlap tests; ``(True, True)`` (check)
        for arguments outside the patterns or before the first compile."""
        key = fastpath.pattern(args)
        if key is None or not self._cache:
            return (True, True)
        got = self._writes.get(key)
        if got is None:
            c = self.compile(fastpath.argument_types(args))
            got = self._writes[key] = (bool(c.const_written), bool(c.writes_args))
        return got

    def call_unchecked(self, args, writes=None):
        """Call with ``args`` (a sequence) whose shadows are known to match their
        primals (shape, dtype and strides), skipping :meth:`_check_shadows`; the
        transforms, which make the shadows themselves, call this.  ``writes``:
        :meth:`_may_write` of ``args`` where the caller has it already."""
        if not self._cache:
            # first call: compile here so errors reach the user as gradjit's own
            self.compile(fastpath.argument_types(args))
        try:
            return self._entry_for(args, writes)(*args)
        except numba.core.errors.TypingError:
            # a new signature whose derivative failed to build: raise the real error
            self.compile(fastpath.argument_types(args))
            raise

    def _check_shadows(self, args):
        """Shape/dtype checks of shadows; shadows laid out differently from their
        primal are swapped for a same-strided temporary (copied back after)."""
        writebacks = []
        k = 0
        for name, act in zip(self.params, self.activities):
            if k >= len(args):
                break
            if act.shadowed and k + 1 < len(args):
                x, dx = args[k], args[k + 1]
                if isinstance(x, tuple) or isinstance(dx, tuple):
                    args[k], args[k + 1] = self._tuple_shadow(name, act, x, dx, writebacks, args, k)
                elif isinstance(x, np.ndarray) or isinstance(dx, np.ndarray):
                    args[k], args[k + 1] = self._array_shadow(name, act, x, dx, writebacks)
                elif isinstance(x, np.floating) and isinstance(dx, (int, float)) and \
                        not isinstance(dx, np.floating):
                    args[k + 1] = x.dtype.type(dx)      # a Python number as a float32 tangent
                k += 2
            else:
                k += 1
        return writebacks

    def _array_shadow(self, name, act, x, dx, writebacks):
        """``(x, dx)`` checked (shape, dtype, writable) and laid out alike: a broadcast
        ``x`` is replaced by a distinct copy, a ``dx`` strided differently by a
        same-strided temporary (both copied back after the call)."""
        if not (isinstance(x, np.ndarray) and isinstance(dx, np.ndarray)):
            raise ActivityError(
                f"argument '{name}': {act.__name__} takes the primal and its shadow, "
                f"both arrays (got {type(x).__name__} and {type(dx).__name__}); "
                "is a shadow missing?")
        if x.shape != dx.shape:
            raise ValueError(f"argument '{name}': shadow shape {dx.shape} differs from "
                             f"the primal's shape {x.shape}")
        if x.dtype != dx.dtype:
            raise ValueError(f"argument '{name}': shadow dtype {dx.dtype} differs from "
                             f"the primal's dtype {x.dtype}")
        check_writable(name, dx, self.mode)
        if overlapping(x):
            # a broadcast view (stride 0): its entries are one memory location, so a
            # shadow laid out like it would sum their gradients; differentiate a
            # distinct copy instead
            xc = np.ascontiguousarray(x)
            if x.flags.writeable:
                writebacks.append((x, xc))
            x = xc
        if x.strides != dx.strides and x.size > 1:
            tmp = like_strides(x)
            tmp[...] = dx
            writebacks.append((dx, tmp))
            dx = tmp
        return x, dx

    def _tuple_shadow(self, name, act, x, dx, writebacks, args, k):
        """A tuple of float arrays and its shadow tuple, member by member (see
        :meth:`_array_shadow`).  Its members may share memory neither with each
        other nor with another argument's arrays (raises ``ValueError``): the
        aliasing checks of separate array arguments do not look into tuples."""
        if not (isinstance(x, tuple) and isinstance(dx, tuple) and len(x) == len(dx)):
            raise ActivityError(
                f"argument '{name}': {act.__name__} of a tuple takes the tuple and a shadow "
                f"tuple of the same length (got {type(x).__name__} and {type(dx).__name__})")
        pairs = [self._array_shadow(f"{name}[{i}]", act, m, dm, writebacks)
                 for i, (m, dm) in enumerate(zip(x, dx))]
        xs = tuple(p[0] for p in pairs)
        check_tuple_members(name, xs, [a for j, a in enumerate(args) if j not in (k, k + 1)])
        return xs, tuple(p[1] for p in pairs)

    # arguments sharing memory ---------------------------------------------------------
    def _entry_for(self, args, writes=None):
        """The compiled entry for ``args``: the usual one, or in reverse mode, where
        primal arrays share memory and the function writes argument memory, the
        one generated for aliased arguments (it records loads a write through
        another argument may change, instead of repeating them in the reverse)."""
        if self.mode == "reverse" and (writes or self._may_write(args))[1]:
            arrays = [args[k] for k in self._primal_pos
                      if k < len(args) and isinstance(args[k], np.ndarray)]
            if len(arrays) > 1 and any(np.may_share_memory(a, b) for i, a in enumerate(arrays)
                                       for b in arrays[i + 1:]):
                argtys = fastpath.argument_types(args)
                if self.compile(argtys).writes_args:
                    if self._jit_alias is None:
                        call = cpu.make_intrinsic(lambda t: self._resolve(t, alias=True))
                        name = f"d_{getattr(self.dispatcher.py_func, '__name__', 'fn')}_aliased"
                        self._jit_alias = numba.njit(_named(lambda *a: call(a), name))
                    return self._jit_alias
        return self._jit_checked

    def _ret_dtype(self, argtys):
        """Numba float type of ``fn``'s return for ``df`` argument types ``argtys``
        (None when it returns no float): the dtype of a vector forward call's
        return tangents."""
        rf = getattr(self.compile(argtys), "ret_float", None)
        return {"float": types.float32, "double": types.float64}.get(rf)

    def _overlap_check(self, argtys):
        """Entry check of ``df`` called from ``@njit`` code (``cpu.make_intrinsic``):
        ``[]``, or ``[(indices, check)]`` with a function of the primal arrays
        raising ValueError when two of them share memory and the derivative writes
        argument memory (from @njit code the aliased variant cannot be picked at
        run time)."""
        if self.mode != "reverse":
            return []
        idx = [k for k in self._primal_pos if k < len(argtys) and isinstance(argtys[k], types.Array)]
        if len(idx) < 2 or not self.compile(argtys).writes_args:
            return []
        names = [self.params[self._primal_pos.index(k)] for k in idx]
        return [(idx, overlap_raiser(names))]

    # compilation ---------------------------------------------------------------------
    def _resolve(self, argtys, alias=False):
        c = self.compile(argtys, alias)
        self._warn_const_written(c)
        return c.restype, c.library, c.entry

    def compile(self, argtys, alias=False):
        """Compile for ``df`` argument types ``argtys`` (Numba types); cached.  With
        ``alias``, for primal arrays that may share memory (reverse mode)."""
        argtys = tuple(argtys)
        cache = self._alias_cache if alias else self._cache
        with self._lock:
            got = cache.get(argtys)
            if got is None:
                got = self._build(argtys, alias)
                cache[argtys] = got
            return got

    def _build(self, argtys, alias=False):
        plan, primal_types = self._plan(argtys)
        plan.args_alias = alias
        try:
            return self._generate(plan, primal_types, argtys, debug=False)
        except UnsupportedError as e:
            if e.location is None:
                try:
                    self._generate(plan, primal_types, argtys, debug=True)
                except UnsupportedError as e2:
                    if e2.location:
                        raise e2 from None
                code = self.dispatcher.py_func.__code__
                e.with_location(f"{code.co_filename}:{code.co_firstlineno}")
            if e.function is None:
                e.with_location(e.location, self.dispatcher.py_func.__qualname__)
            raise

    def _plan(self, argtys):
        plan, primal_types = plan_arguments(self.dispatcher.py_func.__name__, self.params,
                                            self.activities, self.mode, argtys, self.width)
        plan.checkpointing = self.checkpointing
        return plan, primal_types

    def _generate(self, plan, primal_types, argtys, debug):
        cap = capture(self.dispatcher, primal_types, debug=debug)
        rt = full_rt = cap.restype
        name = self.dispatcher.py_func.__name__
        if self.has_aux:
            if not (isinstance(full_rt, types.BaseTuple) and len(full_rt) >= 2
                    and _is_float_scalar(full_rt[0])):
                raise TypeError(f"{name} returns {full_rt}: with has_aux it must return a "
                                "tuple (value, aux...) whose first element is a float scalar")
            rt = full_rt[0]
        ret = self.ret
        if ret is None:
            if self.mode == "reverse":
                ret = A.Active if _is_float_scalar(rt) else A.Const
            else:
                ret = A.Dual if _is_float_scalar(rt) else A.Const
        if ret.modes and self.mode not in ret.modes:
            raise ActivityError(f"return activity {ret.__name__} is not valid in {self.mode} mode")
        self._resolved_ret = ret
        if self.has_aux and (ret in (A.ActiveOnly, A.DualOnly) or
                             (ret is A.Const and self.mode == "reverse")):
            raise ActivityError(f"has_aux needs the return's primal, which return activity "
                                f"{ret.__name__} drops in {self.mode} mode: use "
                                f"{'Active' if self.mode == 'reverse' else 'Dual or Const'}")
        if ret is not A.Const and not _is_float_scalar(rt):
            raise TypeError(f"{name} returns {rt}, not a float scalar: "
                            f"its return cannot be {ret.__name__}")
        needs_seed = self.mode == "reverse" and ret is not A.Const
        if needs_seed != plan.seed:
            msg = ("reverse mode with an Active return takes the seed as the last argument"
                   if needs_seed else f"too many arguments for return activity {ret.__name__}")
            if self.width > 1:
                msg += "; " + _vector_trailing_args(self.mode, self.width, self.activities)
            raise ActivityError(msg)
        plan.ret_float = float_llvm(rt)
        if full_rt is not types.none:
            ctx = cpu.context()
            plan.ret_bytes = ctx.get_abi_sizeof(ctx.get_value_type(full_rt))
        plan.ret_meminfos = cpu.meminfo_offsets(full_rt)
        plan.ret_array = bool(plan.ret_meminfos)
        plan.ret_active = ret is not A.Const
        if self.has_aux:
            plan.ret_aux = cpu.return_llvm(full_rt)
        parts, rtypes = [], []
        if self.mode == "reverse":
            if ret is A.Active:
                parts.append(("primal",))
                rtypes.append(full_rt)
            j = 0
            for a in plan.args:
                if a.active_float and self.width == 1:
                    parts.append(("grad", j))
                    rtypes.append(a.numba_type)
                    j += 1
        else:
            if ret is A.Dual or (ret is A.Const and rt is not types.none):
                parts.append(("primal",))
                rtypes.append(full_rt)
            if ret is not A.Const and self.width == 1:
                parts.append(("tangent",))
                rtypes.append(rt)
        if not rtypes:
            restype = types.none
        elif len(rtypes) == 1:
            restype = rtypes[0]
        else:
            restype = types.Tuple(tuple(rtypes))
        entry = cpu.new_entry_name(self.dispatcher.py_func.__name__)
        model = read_module(cap.module)
        loop_free = not any(has_cycle(f) for f in model.functions.values()
                            if not f.is_declaration and f.blocks)
        text = differentiate(model, cap.name, plan, cpu.flat_param_types(argtys),
                             cpu.return_llvm(restype), parts, entry)
        for k in plan.const_written:
            if k < len(primal_types) and not modeled(primal_types[k]):
                code = self.dispatcher.py_func.__code__
                raise UnsupportedError(
                    f"stores of values depending on the differentiated arguments into "
                    f"argument '{self.params[k]}' ({primal_types[k]}), held constant: only "
                    "NumPy float arrays can get a shadow for them",
                    f"{code.co_filename}:{code.co_firstlineno}", self.dispatcher.py_func.__name__)
        lib = cpu.build_library(text, entry, inline=loop_free)
        compiled = _Compiled(restype, lib, entry, text)
        compiled.writes_args = plan.writes_args
        compiled.const_written = plan.const_written
        if plan.const_written:
            self._unwarned += 1
        return compiled


def _vector_trailing_args(mode, n, acts) -> str:
    """What a width-``n`` derivative called from @njit code takes after the
    activities' arguments (from Python these are made by the call)."""
    if mode == "forward":
        return (f"called from @njit code, a width-{n} forward derivative takes after the "
                f"activities' arguments an output array of shape ({n},) for the return's tangents")
    rows = max(1, sum(1 for a in acts if a is A.Active))
    return (f"called from @njit code, a width-{n} reverse derivative takes after the "
            f"activities' arguments the seeds (shape ({n},), with an Active return), then an "
            f"output array of shape ({rows}, {n}) for the gradients of the Active arguments")


def plan_arguments(fname, params, acts, mode, argtys, width=1):
    """Check ``df``'s argument types against the activities; returns the
    :class:`~gradjit.ad.driver.Plan` and the primal argument types.  With
    ``width`` > 1 (vector forward mode) each shadow has a leading axis of N lanes."""
    n = sum(2 if a.shadowed else 1 for a in acts)
    if width > 1:
        n += 1                                  # the return tangents' output array
    if len(argtys) not in (n, n + 1):
        if width > 1:
            raise ActivityError(f"the derivative of {fname} got {len(argtys)} arguments; "
                                + _vector_trailing_args(mode, width, acts))
        raise ActivityError(f"the derivative of {fname} takes {n} "
                            f"arguments (+1 seed in reverse mode with an Active return) for "
                            f"activities {[a.__name__ for a in acts]}; got {len(argtys)}")
    plan = Plan(mode)
    primal_types = []
    flat = [len(cpu.flat_param_types([t])) for t in argtys]
    pos = k = 0
    for name, act in zip(params, acts):
        t = argtys[k]
        a = ArgPlan(t, leaves(t), shadowed=act.shadowed,
                    active_float=(act is A.Active or act is A.ActiveOnly))
        if act.scalar_only and not _is_float_scalar(t):
            raise ActivityError(f"argument '{name}': {act.__name__} needs a float64/float32 "
                                f"scalar, got {t}; use Duplicated for arrays")
        if act.array_only and not (_is_float_array(t) or _is_array_tuple(t)):
            raise ActivityError(f"argument '{name}': {act.__name__} needs a float array or a "
                                f"tuple of float arrays, got {t}")
        if act.shadowed and not (_is_float_scalar(t) or _is_float_array(t) or _is_array_tuple(t)):
            raise ActivityError(f"argument '{name}': {act.__name__} needs a float scalar, a "
                                f"float array or a tuple of float arrays, got {t}")
        a.primal_slots = (pos, pos + flat[k])
        pos += flat[k]
        primal_types.append(t)
        k += 1
        if act.shadowed:
            s = argtys[k]
            if width > 1 and _is_array_tuple(t):
                raise ActivityError(f"argument '{name}': a tuple of arrays cannot be "
                                    f"{act.__name__} in vector mode (width {width}); pass its "
                                    "arrays as arguments of their own")
            if width > 1:
                nd = t.ndim if isinstance(t, types.Array) else 0
                dt = t.dtype if isinstance(t, types.Array) else t
                ok = isinstance(s, types.Array) and s.dtype == dt and s.ndim == nd + 1
            else:
                ok = (s == t) if not isinstance(t, types.Array) else (
                    isinstance(s, types.Array) and s.dtype == t.dtype and s.ndim == t.ndim)
            if not ok and width > 1:
                want = (f"a 1-D {dt} array of its {width} tangents" if nd == 0 else
                        f"a {dt} array of shape ({width}, *{name}.shape)")
                raise ValueError(f"argument '{name}': in vector mode (width {width}) its shadow "
                                 f"is {want}; got {s}")
            if not ok:
                raise ValueError(f"argument '{name}': shadow type {s} does not match the primal "
                                 f"type {t}")
            a.shadow_slots = (pos, pos + flat[k])
            pos += flat[k]
            k += 1
        plan.args.append(a)
    if width > 1:
        # the arrays after the activities' arguments (made by the call from Python,
        # the user's from @njit code): checked before any code is generated
        if mode == "reverse":
            try:
                trailing_arrays("reverse", width, acts, argtys, k)
            except ActivityError as e:
                raise ActivityError(f"{e}; {_vector_trailing_args(mode, width, acts)}") from None
        elif not (k < len(argtys) and isinstance(argtys[k], types.Array) and
                  isinstance(argtys[k].dtype, types.Float) and argtys[k].ndim == 1):
            raise ActivityError(f"the tangents of the return: got "
                                f"{argtys[k] if k < len(argtys) else None}; "
                                + _vector_trailing_args(mode, width, acts))
    plan.seed = len(argtys) == n + 1
    if plan.seed and width == 1:
        st = argtys[-1]
        if isinstance(st, (types.Integer, types.Boolean)):
            # an int or bool seed (df(x, dx, 1)) is converted to the return's type
            plan.seed_int = "unsigned" if isinstance(st, types.Boolean) or not st.signed else "signed"
        elif not isinstance(st, types.Float):
            raise TypeError(f"the seed of {fname}'s return (the last argument) must be a "
                            f"float scalar, got {st}")
    plan.width = width
    return plan, tuple(primal_types)




class _Compiled:
    writes_args = False
    const_written = ()

    def __init__(self, restype, library, entry, text):
        self.restype, self.library, self.entry, self.text = restype, library, entry, text


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return fn


@typeof_impl.register(Derivative)
def _typeof_derivative(val, c):
    """Named in ``@njit`` code (a global or closure variable): the type of the
    intrinsic ``val.jit``; passed as an argument: a dispatcher calling it."""
    from numba.core.registry import cpu_target
    from numba.core.typing.typeof import Purpose
    if c.purpose == Purpose.argument:
        return types.Dispatcher(val._jit_arg)
    return cpu_target.typing_context.resolve_value_type(val.jit)


def autodiff(fn, mode, *activities, ret=None, width=1, checkpointing="auto", has_aux=False):
    """Differentiate ``fn`` (a ``@numba.njit`` dispatcher or a Python function).

    Parameters
    ----------
    fn : numba dispatcher or function
    mode : ``"reverse"`` / ``"forward"`` (or ``gradjit.Reverse`` / ``gradjit.Forward``)
    *activities : one activity class or instance per argument of ``fn``
        (``Const``, ``Active``, ``Duplicated``, ``DuplicatedNoNeed`` in reverse mode;
        ``Const``, ``Dual``, ``DualOnly`` in forward mode).
    ret : activity of the return value (default ``Active`` / ``Dual`` when ``fn``
        returns a float scalar, else ``Const``).
    width : vector width N: every shadow, tangent and seed gets a leading axis of N
        and one primal sweep serves all N lanes (:class:`VectorForward`,
        :class:`VectorReverse`).
    checkpointing : reverse mode's cache policy, ``"auto"`` (default),
        ``"recompute"`` (recompute math calls such as ``sin``/``exp`` in the reverse
        sweep instead of storing them: a smaller tape) or ``"store"`` (store every
        float value the reverse sweep needs: the least recomputation).  The
        derivatives are the same; see ``gradjit.ad.reverse_sweep.CHECKPOINTING``.
    has_aux : ``fn`` returns a tuple ``(value, aux...)``: ``ret`` is the activity of
        ``value`` (a float scalar), the rest is auxiliary data that is returned, not
        differentiated (JAX's ``has_aux``).  ``df``'s primal return is the whole
        tuple; in forward mode the tangent is ``value``'s.  Not in vector mode.

    Returns
    -------
    Derivative
        ``df`` taking the arguments expanded per activity (see shared/API.md):
        ``x`` for ``Const``/``Active``, ``x, dx`` for shadowed activities, plus the
        seed last in reverse mode with an ``Active`` return.  Reverse mode returns
        ``(primal, *grads of Active args)``; forward mode ``(primal, tangent)``.

    Raises
    ------
    ActivityError
        an activity does not fit its argument or the mode, or the count is wrong
        (some checks happen at the first call, when argument types are known).
    ValueError
        a shadow's shape or dtype differs from its primal (at call time).
    TypeError
        ``ret`` asks for a derivative of a return value that is not a float scalar
        (with ``has_aux``: ``fn`` does not return a tuple led by a float scalar).
    UnsupportedError
        ``fn`` contains a construct without derivative (at the first call).

    The transformation is Enzyme's (Moses & Churavy, NeurIPS 2020) applied to
    Numba's optimized LLVM IR.
    """
    m = _MODES.get(str(mode).lower()) if isinstance(mode, str) else None
    if m is None:
        raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}")
    from ..frontend.cuda_capture import is_cuda_kernel
    if is_cuda_kernel(fn):
        if has_aux:
            raise ActivityError("CUDA kernels return nothing: has_aux does not apply")
        return _kernel_autodiff(fn, m, activities, ret, width)
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    has_aux = bool(has_aux)
    if has_aux and width > 1:
        raise ValueError("has_aux is not supported in vector mode (width > 1)")
    disp = dispatcher_of(fn)
    params = list(inspect.signature(disp.py_func).parameters)
    if len(activities) != len(params):
        raise ActivityError(f"{disp.py_func.__name__} takes {len(params)} arguments "
                            f"({', '.join(params)}) but {len(activities)} activities were given")
    acts = []
    for name, a in zip(params, activities):
        c = A.as_class(a)
        if c is None:
            raise ActivityError(f"argument '{name}': {a!r} is not an activity")
        if c is A.ActiveOnly:
            raise ActivityError(f"argument '{name}': ActiveOnly is only a return activity")
        if m not in c.modes:
            raise ActivityError(f"argument '{name}': {c.__name__} is not valid in {m} mode")
        acts.append(c)
    r = None
    if ret is not None:
        r = A.as_class(ret)
        if r is None or m not in r.modes or r in (A.Duplicated, A.DuplicatedNoNeed):
            raise ActivityError(f"return activity {ret!r} is not valid in {m} mode")
    from ..ad.reverse_sweep import CHECKPOINTING
    if checkpointing not in CHECKPOINTING:
        raise ValueError(f"checkpointing must be one of {CHECKPOINTING}, got {checkpointing!r}")
    # one derivative object per dispatcher and configuration, kept on the dispatcher
    # (so it lives as long as the function): ``gradjit.grad(f)(x)`` written inline
    # in a loop compiles once, as ``jax.grad`` does
    key = (m, tuple(acts), r, int(width), checkpointing, has_aux)
    made = getattr(disp, "_gradjit_derivatives", None)
    if made is None:
        made = {}
        try:
            disp._gradjit_derivatives = made
        except AttributeError:            # a dispatcher without a __dict__: no reuse
            pass
    df = made.get(key)
    if df is None:
        cls = Derivative if width == 1 else VectorForward if m == "forward" else VectorReverse
        df = made.setdefault(key, cls(fn, m, tuple(acts), r, int(width), checkpointing,
                                      has_aux))
    return df


def _kernel_autodiff(kernel, mode, activities, ret, width):
    from .kernels import KernelDerivative
    if width != 1:
        raise NotImplementedError("vector mode is not implemented for CUDA kernels")
    if ret not in (None, A.Const):
        raise ActivityError("CUDA kernels return nothing: ret must be Const")
    params = list(inspect.signature(getattr(kernel, "py_func", kernel)).parameters)
    if len(activities) != len(params):
        raise ActivityError(f"the kernel takes {len(params)} arguments but {len(activities)} "
                            "activities were given")
    acts = []
    for name, a in zip(params, activities):
        c = A.as_class(a)
        if c is None or mode not in c.modes:
            raise ActivityError(f"argument '{name}': {a!r} is not valid in {mode} mode")
        acts.append(c)
    return KernelDerivative(kernel, mode, acts)


class VectorForward(Derivative):
    """Vector forward mode (``width=N``): one primal sweep carries N tangents.

    Each ``Dual`` shadow has a leading axis of N (``dx.shape == (N, *x.shape)``;
    a float scalar's tangents are a 1-D array of N); the tangent of the return is
    a 1-D array of N.  The derivative is generated with the tangent code of every
    instruction repeated per lane next to a single copy of the primal code, so the
    primal work is shared and LLVM can vectorize across lanes (the vector mode of
    Enzyme, Moses et al., "Enzyme: fast, vectorized derivatives", sec. on batching).

    Lane layout: lane ``k`` of ``dx`` normally has ``x``'s strides (``dx[k]`` laid
    out like ``x``; other layouts are copied into such a temporary and back).
    A ``dx`` whose lane axis is the fastest one, ``dx.strides == (itemsize,
    *(N * s for s in x.strides))`` -- for example ``J.T`` of a row-major Jacobian
    ``J = np.empty((*x.shape, N))``, the layout of JAX's ``jacfwd`` -- is used in
    place: the derivative addresses the tangent of lane ``k`` of an element at
    byte offset ``o`` as ``dx + o * N + k * itemsize``
    (:mod:`gradjit.analysis.interleave`), so each element's N tangents are written
    together.  Where the function hides which array a pointer belongs to (it
    passes the array to another compiled function, for example) the copies are
    used instead.  Same derivatives either way.  The arrays the function
    allocates itself get that layout whenever it can follow them, whatever the
    arguments' layout.

    On the CPU the N tangents of a scalar float are one ``<N x double>`` vector
    wherever they come from interleaved memory, or from lane-major memory in a
    loop-free function (gathered), so the tangent code runs as SIMD instructions
    across the lanes; values read lane by lane in functions with loops (from
    lane-major tangents, where LLVM vectorizes each lane's code across iterations
    instead) or returned by calls keep per-lane code.

    Called from Python; within ``@njit`` code pass the trailing output array
    yourself, ``df(*args, dret)``, with lanes laid out like their primal
    (``dret`` contiguous, of length N); other layouts raise ``ValueError`` there.
    """

    #: per activity: are this variant's lanes interleaved (see ``__call__``)
    interleave = ()

    def __call__(self, *args):
        args = list(args)
        mask = _interleaved_lanes(self, args)
        if any(mask):
            variants = self.__dict__.setdefault("_variants", {})
            v = variants.get(mask, False)
            if v is False:
                v = VectorForward(self.fn, self.mode, self.activities, self.ret, self.width,
                                  self.checkpointing)
                v.interleave = mask
                variants[mask] = v
            if v is not None:
                try:
                    return v._run(list(args))
                except UnsupportedError:
                    # the layout cannot be followed through this function (e.g. the
                    # array is passed to another compiled function): lane-major copies
                    variants[mask] = None
        return self._run(args)

    def _run(self, args):
        n = self.width
        writebacks = _vector_shadows(self, args, skip=self.interleave)
        dret = np.zeros(n)                    # the return's tangents (always passed)
        args.append(dret)
        compiled = self.compile(fastpath.argument_types(args))
        self._warn_const_written(compiled)
        _raise_const_alias(self, args, compiled)
        out = self._entry_for(args)(*args)
        for user, tmp in writebacks:
            user[...] = tmp
        if compiled.ret_float == "float":
            dret = dret.view(np.float32)[:n].copy()
        ret = compiled.ret
        if ret is A.Dual:
            return (out, dret)
        if ret is A.DualOnly:
            return dret
        return out

    def _plan(self, argtys):
        plan, primal_types = super()._plan(argtys)
        for a, inter in zip(plan.args, self.interleave or self._interleaved_types(argtys)):
            a.interleaved = bool(inter)
        return plan, primal_types

    def _generate(self, plan, primal_types, argtys, debug):
        compiled = super()._generate(plan, primal_types, argtys, debug)
        compiled.ret_float = plan.ret_float
        compiled.ret = self._resolved_ret
        return compiled


class VectorReverse(Derivative):
    """Batched reverse mode (``width=N``): one augmented primal sweep, N adjoints.

    Each ``Duplicated`` shadow has a leading axis of N (lane k receives the
    gradient for seed k and its output lanes are consumed as seeds); the seed of
    an Active return is a 1-D array of N (a scalar is broadcast); each returned
    gradient of an ``Active`` argument is a 1-D array of N.  The reverse sweep
    repeats the adjoint code of every instruction per lane and shares all primal
    values and the tape between lanes (Enzyme's batched reverse mode).
    """

    def __call__(self, *args):
        args = list(args)
        n = self.width
        expected = sum(2 if a.shadowed else 1 for a in self.activities)
        if len(args) not in (expected, expected + 1):
            raise ActivityError(f"the derivative takes {expected} arguments (+1 seed), got {len(args)}")
        writebacks = _vector_shadows(self, args)
        if len(args) == expected + 1:
            args[-1] = np.ascontiguousarray(np.broadcast_to(
                np.asarray(args[-1], dtype=np.float64), (n,)))
        rows = sum(1 for a in self.activities if a is A.Active)
        gout = np.zeros((max(1, rows), n))
        args.append(gout)
        compiled = self.compile(fastpath.argument_types(args))
        self._warn_const_written(compiled)
        _raise_const_alias(self, args, compiled)
        out = self._entry_for(args)(*args)
        for user, tmp in writebacks:
            user[...] = tmp
        grads = [gout[j].copy() for j in range(rows)]
        res = ([out] if compiled.restype is not types.none else []) + grads
        if not res:
            return None
        return res[0] if len(res) == 1 else tuple(res)


def _raise_const_alias(d, args, compiled):
    """:meth:`Derivative._check_const_aliases` for a vector-mode call whose
    derivative is compiled already."""
    err = const_alias_error(d.params, d.activities, args, compiled.const_written)
    if err is not None:
        raise err


def _vector_shadows(d, args, skip=()):
    """Check the stacked shadows of a vector-mode call (``(N, *x.shape)``, same
    dtype); lanes laid out differently from their primal are swapped for
    temporaries, except for the activities marked in ``skip`` (interleaved lanes
    the derivative follows itself).  Returns the ``(user array, temporary)``
    pairs to copy back."""
    n = d.width
    writebacks = []
    k = 0
    for j, (name, act) in enumerate(zip(d.params, d.activities)):
        if k >= len(args):
            break
        if act.shadowed and k + 1 < len(args):
            x, dx = args[k], args[k + 1]
            if isinstance(x, tuple):
                raise ActivityError(f"argument '{name}': a tuple of arrays cannot be "
                                    f"{act.__name__} in vector mode (width {n}); pass its "
                                    "arrays as arguments of their own")
            if not (isinstance(x, (np.ndarray, float, np.floating)) and
                    (not isinstance(x, np.ndarray) or x.dtype.kind == "f")):
                raise ActivityError(f"argument '{name}': {act.__name__} needs a float scalar or "
                                    f"float array, got {type(x).__name__}")
            want = (n,) + np.shape(x)
            if not isinstance(dx, np.ndarray) or dx.shape != want:
                raise ValueError(f"argument '{name}': vector-mode shadow shape "
                                 f"{np.shape(dx)} differs from {want}")
            dt = x.dtype if isinstance(x, np.ndarray) else np.dtype(
                np.float32 if isinstance(x, np.float32) else np.float64)
            if dx.dtype != dt:
                raise ValueError(f"argument '{name}': shadow dtype {dx.dtype} differs from "
                                 f"the primal's dtype {dt}")
            check_writable(name, dx, d.mode)
            if not isinstance(x, np.ndarray) and not dx.flags.c_contiguous:
                args[k + 1] = np.ascontiguousarray(dx)      # a scalar's N tangents (read only)
            if isinstance(x, np.ndarray) and (not _lanes_match(x, dx) or overlapping(x)) and \
                    not (j < len(skip) and skip[j]):
                if not (x.flags.c_contiguous or x.flags.f_contiguous):
                    xc = np.ascontiguousarray(x)
                    if x.flags.writeable:
                        writebacks.append((x, xc))
                    args[k] = x = xc
                tmp = _lane_stack_like(x, n)
                tmp[...] = dx
                writebacks.append((dx, tmp))
                args[k + 1] = tmp
            k += 2
        else:
            k += 1
    return writebacks


def _interleaved_lanes(d, args) -> tuple:
    """Per activity of a vector forward call: is ``dx`` laid out with its lane axis
    fastest (``dx.strides == (itemsize, *(N * s for s in x.strides))``, e.g. the
    transpose of a row-major ``(*x.shape, N)`` Jacobian)?"""
    n, out, k = d.width, [], 0
    for act in d.activities:
        hit = False
        if act.shadowed and k + 1 < len(args):
            x, dx = args[k], args[k + 1]
            if isinstance(x, np.ndarray) and isinstance(dx, np.ndarray) and x.size > 1 \
                    and dx.shape == (n,) + x.shape and dx.dtype == x.dtype:
                hit = dx.strides == (x.itemsize,) + tuple(n * s for s in x.strides)
            k += 2
        else:
            k += 1
        out.append(hit)
    return tuple(out)


def _lanes_match(x, dx) -> bool:
    """Do the lanes ``dx[k]`` have the strides of ``x`` (as the derivative assumes)?"""
    return dx.shape[0] == 0 or dx[0].strides == x.strides or x.size <= 1


def _lane_stack_like(x, n):
    """An uninitialized ``(n, *x.shape)`` array whose lanes have ``x``'s strides
    (``x`` C- or F-contiguous)."""
    if x.flags.c_contiguous:
        return np.empty((n,) + x.shape, dtype=x.dtype)
    a = np.empty(x.shape + (n,), dtype=x.dtype, order="F")
    return np.moveaxis(a, -1, 0)


