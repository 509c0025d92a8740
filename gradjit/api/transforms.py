"""JAX-style transforms built on :func:`gradjit.autodiff`: ``grad``,
``value_and_grad``, ``jvp`` and ``vjp`` (argument and return conventions of
``jax.grad`` / ``jax.jvp`` / ``jax.vjp``; see shared/API.md)."""
from __future__ import annotations

import functools
import inspect

import numba
import numpy as np
from numba.core import types

from ..errors import UnsupportedError
from ..frontend.capture import dispatcher_of
from . import activities as A
from . import fastpath
from .autodiff import autodiff
from .shadows import check_tuple_members, distinct, like_strides

_wrappers = {}


def _return_type(disp, args):
    argtys = fastpath.argument_types(args)
    disp.compile(argtys)
    return disp.overloads[argtys].signature.return_type


def _with_out(disp):
    """``w(*args, out)``: calls ``disp`` and writes its array result, flattened in C
    order, into the 1-D ``out`` (the way an array-returning function is
    differentiated: the result becomes an argument the derivative can shadow)."""
    w = _wrappers.get(disp)
    if w is None:
        params = list(inspect.signature(disp.py_func).parameters)
        names = [f"a{k}" for k in range(len(params))]
        # keyword-only parameters too are passed by position: Numba's typing binds
        # them that way (and fails to bind them by keyword: "missing a required
        # argument")
        # an element loop: ``out[...] = r`` would compile Numba's shape-error path
        src = (f"def _gradjit_out({', '.join(names + ['out'])}):\n"
               f"    r = _fn({', '.join(names)})\n"
               f"    k = 0\n"
               f"    for v in r.flat:\n"
               f"        out[k] = v\n"
               f"        k += 1\n")
        ns = {"_fn": disp}
        exec(src, ns)
        w = _wrappers[disp] = numba.njit(ns["_gradjit_out"])
    return w


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _binder(disp):
    """``bind(args, kwargs) -> args``: the arguments of a call of ``disp``'s Python
    function, keywords and defaults included, as one tuple in parameter order
    (JAX's convention: ``argnums`` count positional parameters; keyword arguments
    are passed through and never differentiated unless named by ``argnums``).
    Keyword-only parameters (``def f(x, *, scale=1.0)``) come last, in their
    order, as Numba's compiled function takes them.

    Raises ``TypeError`` as Python does for a call that does not bind, and for
    ``*args`` / ``**kwargs`` parameters.
    """
    py = disp.py_func
    sig = inspect.signature(py)
    params = list(sig.parameters.values())
    plain = all(p.kind in _POSITIONAL for p in params)
    var = [p.name for p in params if p.kind in (inspect.Parameter.VAR_POSITIONAL,
                                                inspect.Parameter.VAR_KEYWORD)]
    n = len(params)

    def bind(args, kwargs):
        if plain and not kwargs and len(args) == n:
            return args
        if var:
            raise TypeError(f"{py.__name__}(): variable parameters ({', '.join(var)}) "
                            "are not supported")
        try:
            b = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{py.__name__}(): {e}") from None
        b.apply_defaults()
        return b.args + tuple(b.kwargs.values())
    return bind


def _copy(a):
    """A copy of an array argument (of each array of a tuple); others as they are."""
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, tuple):
        return tuple(_copy(m) for m in a)
    return a


def _float_scalar(a):
    return isinstance(a, (float, np.floating)) and not isinstance(a, bool)


def _float_array(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _array_tuple(a):
    """A non-empty tuple of float arrays (differentiated member by member)."""
    return isinstance(a, tuple) and len(a) > 0 and all(_float_array(m) for m in a)


def _holds_float_array(a):
    return isinstance(a, tuple) and any(_float_array(m) for m in a)


def _layout_key(args):
    """What decides the scratch shadows besides the activities: each argument's
    dtype, rank and contiguity, tuples member by member, other values by type."""
    def key(a):
        if isinstance(a, np.ndarray):
            return (a.dtype.char, a.ndim, a.flags.c_contiguous, a.flags.f_contiguous)
        if isinstance(a, tuple):
            return ("tuple",) + tuple(key(m) for m in a)
        return type(a)
    return tuple(key(a) for a in args)


def _with_scratch_shadows(cache, acts, args, shadowed, build):
    """``acts`` with ``shadowed`` (Duplicated / Dual) for the float arrays held
    constant that the function stores derivatives into (an output or scratch
    argument of a function whose gradient is asked for): as Const their derivative
    would be dropped; with a scratch shadow it flows.  Also for all of them when the
    function picks an array at run time between a differentiated one and one held
    constant (``a = x if c else y``).  ``build(acts)`` returns
    ``(derivative, its arguments, ...)``; decided once per activities and layout."""
    for a, act in zip(args, acts):
        if act is A.Const and (_float_array(a) or _holds_float_array(a)):
            break
    else:
        return acts
    key = (acts, _layout_key(args))
    got = cache.get(key)
    if got is None:
        def const_written(acts):
            df, dfargs = build(acts)[:2]
            return df.compile(fastpath.argument_types(dfargs)).const_written
        try:
            base, written = acts, const_written(acts)
        except UnsupportedError as e:
            if e.kind != "mixed_merge":
                raise
            # an array chosen at run time between a differentiated argument and one
            # held constant: the float arrays held constant get scratch shadows (those
            # sharing memory with a differentiated array excepted: their shadow would
            # take the other's derivative)
            active = [a for a, act in zip(args, acts) if act is not A.Const]
            base = tuple(shadowed if (act is A.Const and _float_array(a) and not any(
                _shares(a, b) for b in active)) else act for a, act in zip(args, acts))
            written = const_written(base)
        for k in written:
            if k < len(args) and base[k] is A.Const and _holds_float_array(args[k]):
                raise ValueError(
                    f"argument {k} is a tuple holding an array the function stores values "
                    "depending on the differentiated arguments into: their derivative would "
                    "be lost there (an array inside a tuple cannot get a scratch shadow); "
                    "pass that array as an argument of its own")
        got = tuple(shadowed if (k in written and act is A.Const and _float_array(a)) else act
                    for k, (a, act) in enumerate(zip(args, base)))
        if got != base:
            const_written(got)
        cache[key] = got
    return got


def _shares(a, b) -> bool:
    """Does array ``a`` share memory with ``b`` (an array or a tuple of arrays)?"""
    members = b if isinstance(b, tuple) else (b,)
    return any(isinstance(m, np.ndarray) and np.may_share_memory(a, m) for m in members)


def _check_scratch_aliases(args, acts, upgraded):
    """Raise ``ValueError`` where an array held constant that the function stores
    derivatives into (given a scratch shadow in ``upgraded``) shares memory with a
    differentiated argument: its scratch shadow would take what belongs to the
    other's (see :func:`gradjit.api.shadows.const_alias_error`)."""
    for k, (a, act, up) in enumerate(zip(args, acts, upgraded)):
        if act is A.Const and up is not A.Const and isinstance(a, np.ndarray):
            for j, (x, xact) in enumerate(zip(args, acts)):
                if xact is not A.Const and isinstance(x, np.ndarray) and np.may_share_memory(a, x):
                    raise ValueError(
                        f"argument {k} is held constant but shares memory with argument {j}, "
                        "and the function stores values depending on the differentiated "
                        "arguments through it: the result would be wrong.  Pass a copy")


class _Reverse:
    """Reverse-mode gradients of ``fn`` for the arguments ``argnums``."""

    def __init__(self, fn, argnums, has_aux=False):
        self.disp = dispatcher_of(fn)
        self.has_aux = bool(has_aux)
        self.single = isinstance(argnums, (int, np.integer))
        self.argnums = (int(argnums),) if self.single else tuple(int(a) for a in argnums)
        self._dfs = {}
        self._gathers = {}
        self._upgrades = {}
        self._wrt = {}                  # (bound, positional arguments) -> argnums' indices
        self.bind = _binder(self.disp)
        self._patterns = fastpath.Patterns()

    def activities(self, args, npos=None):
        """Activities of the bound ``args``; ``npos``: how many arguments the caller
        passed positionally (a negative ``argnums`` counts back from the last of
        them, as in JAX; default: all of ``args``)."""
        wrt = self.order(len(args), npos)
        acts = []
        for i, a in enumerate(args):
            if i in wrt:
                if _float_array(a) or _array_tuple(a):
                    acts.append(A.Duplicated)
                elif _float_scalar(a):
                    acts.append(A.Active)
                else:
                    raise TypeError(f"argument {i} ({type(a).__name__}) is not a float scalar, a "
                                    "float array or a tuple of float arrays and cannot be "
                                    "differentiated")
            else:
                acts.append(A.Const)
        return tuple(acts)

    def derivative(self, fn, acts, ret):
        key = (fn, acts, ret)
        df = self._dfs.get(key)
        if df is None:
            aux = self.has_aux and fn is self.disp
            df = self._dfs[key] = autodiff(fn, "reverse", *acts, ret=ret, has_aux=aux)
        return df

    def split(self, value):
        """``(value, aux)`` of what a ``has_aux`` function returned; ``TypeError``
        unless it is a pair (as ``jax.grad`` requires)."""
        if not (isinstance(value, tuple) and len(value) == 2):
            what = (f"a tuple of {len(value)}" if isinstance(value, tuple)
                    else type(value).__name__)
            raise TypeError(f"with has_aux, {self.disp.py_func.__name__} must return a pair "
                            f"(value, aux); it returned {what}")
        return value

    def order(self, nargs, npos=None):
        """``argnums`` as indices into the ``nargs`` bound arguments, of which the
        caller passed ``npos`` (default: all) by position: a negative one counts
        back from the last positional argument, as in JAX.  Raises ``TypeError``
        for one out of range."""
        npos = nargs if npos is None else npos
        got = self._wrt.get((nargs, npos))
        if got is None:
            for i in self.argnums:
                if not -npos <= i < nargs:
                    raise TypeError(f"argnums {i} is out of range for {nargs} arguments"
                                    + (f" ({npos} passed by position)" if i < 0 else ""))
            got = self._wrt[(nargs, npos)] = tuple(i + npos if i < 0 else i
                                                   for i in self.argnums)
        return got

    def _gather(self, acts, nargs, order):
        """For each of ``argnums`` (``order``: as argument indices): ``(is_scalar,
        k)``, the place of its gradient among the derivative's scalar results
        (``True``) or among the shadows (``False``); cached per activity tuple."""
        key = (acts, nargs, order)
        got = self._gathers.get(key)
        if got is None:
            place, ns, na = {}, 0, 0
            for i, act in enumerate(acts[:nargs]):
                if act is A.Active:
                    place[i], ns = (True, ns), ns + 1
                elif act is A.Duplicated:
                    place[i], na = (False, na), na + 1
            got = self._gathers[key] = tuple(place[i] for i in order)
        return got

    def run(self, args, seed=1.0, out=None, npos=None):
        """Returns ``(value or None, grads)``; ``out`` = (array, seed array) for an
        array-returning function; ``npos``: see :meth:`order`.  A call pattern seen
        before reuses its decisions (:mod:`gradjit.api.fastpath`)."""
        key = None
        if out is None and not self.has_aux:
            key = self._patterns.key(args, npos)
            if key is not None:
                got = self._patterns.run(key, args, seed)
                if got is not None:
                    return got
        asked = self.activities(args, npos)
        acts = _with_scratch_shadows(self._upgrades, asked, args,
                                     A.Duplicated, lambda a: self._build(args, a, seed, out))
        if acts is not asked:
            _check_scratch_aliases(args, asked, acts)
        built = self._build(args, acts, seed, out)
        order = self.order(len(args), npos)
        result = self._finish(acts, order, *built)
        if key is not None:
            self._patterns.note_slow_call(key, lambda: self._plan(asked, acts, order, built))
        return result

    def _plan(self, asked, acts, order, built):
        """The :class:`fastpath.Plan` of the call just made, or None where the
        pattern needs the slow path's scratch shadows."""
        if acts != asked:
            return None
        df, dfargs = built[0], built[1]
        compiled = df.compile(fastpath.argument_types(dfargs))
        return fastpath.Plan(df._jit_checked, acts, self._gather(acts, len(acts), order),
                             self.single, check_overlap=bool(compiled.writes_args))

    def _build(self, args, acts, seed, out):
        """(derivative, its arguments, the shadows made for Duplicated arguments)."""
        dfargs, shadows = [], []
        for k, (a, act) in enumerate(zip(args, acts)):
            if act is A.Duplicated and isinstance(a, tuple):
                a = tuple(distinct(m) for m in a)
                check_tuple_members(f"argument {k}", a, args[:k] + args[k + 1:])
                dx = tuple(like_strides(m) for m in a)
            elif act is A.Duplicated:
                a = distinct(a)
                dx = like_strides(a)
            dfargs.append(a)
            if act is A.Duplicated:
                dfargs.append(dx)
                shadows.append(dx)
        if out is not None:
            dfargs += out
            df = self.derivative(_with_out(self.disp), acts + (A.Duplicated,), A.Const)
        else:
            dfargs.append(seed)
            df = self.derivative(self.disp, acts, A.Active)
        return df, dfargs, shadows, out is not None

    def _finish(self, acts, order, df, dfargs, shadows, has_out):
        return self._results(acts, order, df.call_unchecked(dfargs), shadows, has_out)

    def _results(self, acts, order, res, shadows, has_out):
        """``(value, grads)`` from the derivative's result ``res`` and the shadows
        of the Duplicated arguments (those made as views of a larger buffer, see
        :func:`like_strides`, returned as arrays of their own)."""
        if has_out:
            value, scalars = None, (res if isinstance(res, tuple) else
                                    () if res is None else (res,))
        elif self.has_aux and A.Active not in acts:
            value, scalars = res, ()            # the (value, aux) tuple, returned bare
        else:
            value, scalars = (res[0], res[1:]) if isinstance(res, tuple) else (res, ())
        grads = []
        for is_scalar, k in self._gather(acts, len(acts), order):
            if is_scalar:
                grads.append(float(scalars[k]))
            else:
                g = shadows[k]
                if isinstance(g, tuple):
                    grads.append(tuple(m if m.base is None else np.array(m) for m in g))
                else:
                    grads.append(g if g.base is None else np.array(g))
        return value, (grads[0] if self.single else tuple(fastpath.own_arrays(grads)))


def grad(fn=None, argnums=0, has_aux=False):
    """Gradient of ``fn`` (which returns a float scalar) with respect to ``argnums``.

    ``grad(fn, argnums)(*args)`` returns, for an int ``argnums``, the gradient of
    that argument, and for a tuple a tuple in the same order: a Python float for a
    float scalar argument, a new ndarray of the argument's shape and dtype for a
    float array.  Usable as ``@gradjit.grad`` above ``@njit``.  Keyword arguments
    and parameter defaults work as in a call of ``fn``; ``argnums`` counts the
    parameters in order (keyword-only ones after the others), so a keyword-passed
    parameter it names is differentiated too (``jax.grad`` raises there instead);
    a negative ``argnums`` counts back from the last argument passed by position,
    as in JAX.  ``*args`` / ``**kwargs`` parameters raise ``TypeError``.

    With ``has_aux=True`` (JAX's), ``fn`` returns a pair ``(value, aux)`` with a
    float scalar ``value``; the call returns ``(grads, aux)``, ``aux`` as ``fn``
    returned it (any Numba value: arrays, tuples, ints), from the same evaluation.

    Raises ``TypeError`` if ``fn`` does not return a float scalar (a pair led by
    one, with ``has_aux``), an
    ``argnums`` argument is not a float scalar/array, or the arguments do not bind
    to ``fn``'s parameters; see :func:`gradjit.autodiff` for the rest.  Reverse
    mode (one augmented primal and one reverse sweep).
    """
    if fn is None:
        return functools.partial(grad, argnums=argnums, has_aux=has_aux)
    rev = _Reverse(fn, argnums, has_aux)

    @functools.wraps(rev.disp.py_func)
    def g(*args, **kwargs):
        value, grads = rev.run(rev.bind(args, kwargs), npos=len(args))
        return (grads, rev.split(value)[1]) if rev.has_aux else grads
    g.derivative_cache = rev._dfs
    g._gradjit_transform = True
    return g


def value_and_grad(fn=None, argnums=0, has_aux=False):
    """Like :func:`grad`, returning ``(value, grads)``; with ``has_aux``,
    ``((value, aux), grads)`` as ``jax.value_and_grad`` does."""
    if fn is None:
        return functools.partial(value_and_grad, argnums=argnums, has_aux=has_aux)
    rev = _Reverse(fn, argnums, has_aux)

    @functools.wraps(rev.disp.py_func)
    def vg(*args, **kwargs):
        value, grads = rev.run(rev.bind(args, kwargs), npos=len(args))
        return (rev.split(value) if rev.has_aux else value), grads
    vg._gradjit_transform = True
    return vg


def vjp(fn, argnums=0, has_aux=False):
    """``vjp(fn, argnums)(*args) -> (primal_out, pullback)``.

    ``pullback(cotangent)`` returns the gradients as :func:`grad` does; the
    cotangent is a float when ``fn`` returns a float scalar, else an array of the
    result's shape.  With ``has_aux=True`` (JAX's), ``fn`` returns a pair ``(value,
    aux)`` with a float scalar ``value``; the call returns ``(value, pullback, aux)``.
    """
    rev = _Reverse(fn, argnums, has_aux)

    def run(*args, **kwargs):
        npos = len(args)
        args = rev.bind(args, kwargs)
        rev.activities(args, npos)
        # the pullback differentiates at the arguments as they are now, whatever the
        # function (or the caller, before calling the pullback) writes into them
        saved = tuple(_copy(a) for a in args)

        def at_call():
            return tuple(_copy(a) for a in saved)

        out = rev.disp(*args)
        aux = None
        if has_aux:
            out, aux = rev.split(out)
        if isinstance(out, np.ndarray) and not has_aux:
            def pullback(ct):
                ct = np.asarray(ct, dtype=out.dtype)
                if ct.shape != out.shape:
                    raise ValueError(f"cotangent shape {ct.shape} differs from the output's {out.shape}")
                buf = np.empty(out.size, out.dtype)
                seed = np.ascontiguousarray(ct, dtype=out.dtype).reshape(out.size).copy()
                return rev.run(at_call(), out=(buf, seed), npos=npos)[1]
        elif _float_scalar(out):
            def pullback(ct):
                return rev.run(at_call(), seed=float(ct), npos=npos)[1]
        else:
            raise TypeError(f"vjp needs a function returning a float or a float array"
                            f"{' (a float with has_aux)' if has_aux else ''}, got "
                            f"{type(out).__name__}")
        return (out, pullback, aux) if has_aux else (out, pullback)
    run._gradjit_transform = True
    return run


def jvp(fn, has_aux=False):
    """``jvp(fn)(primals, tangents) -> (primal_out, tangent_out)`` in forward mode.

    One tangent per argument (``None`` for an argument held constant, and for
    ints), of its primal's shape (else ``ValueError``); parameters left out take
    their defaults and are held constant.
    ``tangent_out`` is a float when ``fn`` returns a float scalar, else an
    array of the result's shape.  With ``has_aux=True`` (JAX's), ``fn`` returns a
    pair ``(value, aux)`` with a float scalar ``value`` and the call returns
    ``(value, tangent_out, aux)``.
    """
    disp = dispatcher_of(fn)
    bind = _binder(disp)
    cache, upgrades, returns = {}, {}, {}

    def return_type(primals):
        """``fn``'s Numba return type for ``primals``, kept per call pattern (the
        lookup through Numba's dispatcher takes ~0.1 ms)."""
        key = fastpath.pattern(primals)
        rt = returns.get(key) if key is not None else None
        if rt is None:
            rt = _return_type(disp, primals)
            if key is not None:
                returns[key] = rt
        return rt

    def derivative(acts, array_out):
        key = (tuple(acts), array_out)
        df = cache.get(key)
        if df is None:
            df = cache[key] = (autodiff(_with_out(disp), "forward", *acts, A.Dual, ret=A.Const)
                               if array_out else
                               autodiff(disp, "forward", *acts, ret=A.Dual, has_aux=has_aux))
        return df

    def arguments(primals, tangents, acts):
        args = []
        for k, (x, t, act) in enumerate(zip(primals, tangents, acts)):
            if act is A.Dual and _float_array(x):
                x = distinct(x)
            args.append(x)
            if act is A.Const:
                continue
            if _array_tuple(x):
                if not (isinstance(t, tuple) and len(t) == len(x)):
                    raise ValueError(f"tangent {k} must be a tuple of {len(x)} arrays, as its "
                                     "primal is")
                x = tuple(distinct(m) for m in x)
                args[-1] = x
                check_tuple_members(f"argument {k}", x, primals[:k] + primals[k + 1:])
                tx = []
                for j, (m, tm) in enumerate(zip(x, t)):
                    if np.shape(tm) != m.shape:
                        raise ValueError(f"tangent {k}[{j}] has shape {np.shape(tm)} but its "
                                         f"primal has shape {m.shape}")
                    b = like_strides(m)
                    b[...] = tm
                    tx.append(b)
                args.append(tuple(tx))
                continue
            if t is not None and np.shape(t) != np.shape(x):
                raise ValueError(f"tangent {k} has shape {np.shape(t)} but its primal has "
                                 f"shape {np.shape(x)}")
            if _float_array(x):
                tx = like_strides(x)
                if t is None:
                    tx[...] = 0                   # a scratch tangent (see below)
                else:
                    tx[...] = t
                args.append(tx)
            elif _float_scalar(x):
                args.append(type(x)(t) if isinstance(x, np.floating) else float(t))
            else:
                raise TypeError(f"argument {k} ({type(x).__name__}) cannot have a tangent")
        return args

    def run(primals, tangents):
        primals, tangents = tuple(primals), tuple(tangents)
        if len(primals) != len(tangents):
            raise ValueError(f"{len(primals)} primals but {len(tangents)} tangents")
        full = bind(primals, {})
        # parameters left to their defaults are held constant
        primals, tangents = full, tangents + (None,) * (len(full) - len(tangents))
        acts = tuple(A.Const if t is None else A.Dual for t in tangents)
        rt = return_type(primals)
        if has_aux:
            if not (isinstance(rt, types.BaseTuple) and len(rt) == 2
                    and rt[0] in (types.float64, types.float32)):
                raise TypeError(f"with has_aux, {disp.py_func.__name__} must return a pair "
                                f"(value, aux) whose value is a float scalar, got {rt}")
            rt = rt[0]
        array_out = isinstance(rt, types.Array)
        if array_out and not isinstance(rt.dtype, types.Float):
            raise TypeError(f"jvp needs a function returning a float or a float array, got {rt}")
        if array_out:
            # the output's shape, from a run on copies (the function may write its inputs)
            out = disp(*(x.copy() if isinstance(x, np.ndarray) else x for x in primals))
            buf = np.empty(out.size, out.dtype)
            dbuf = np.zeros(out.size, out.dtype)
            extra = [buf, dbuf]
        elif rt not in (types.float64, types.float32):
            raise TypeError(f"jvp needs a function returning a float or a float array, got {rt}")
        else:
            extra = []
        # Const float arrays the function stores derivatives into get a zero tangent
        asked = acts
        acts = _with_scratch_shadows(
            upgrades, acts, primals, A.Dual,
            lambda a: (derivative(a, array_out), arguments(primals, tangents, a) + extra))
        if acts is not asked:
            _check_scratch_aliases(primals, asked, acts)
        args = arguments(primals, tangents, acts)
        df = derivative(acts, array_out)
        if array_out:
            df(*args, buf, dbuf)
            return buf.reshape(out.shape), dbuf.reshape(out.shape)
        p, t = df(*args)
        return (p[0], t, p[1]) if has_aux else (p, t)
    run._gradjit_transform = True
    return run
