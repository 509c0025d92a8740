"""Shared state of one AD transformation: the source module, the queue of
derivative *versions* (function x mode x activity of its arguments) still to be
generated, and the declarations the generated code needs."""
from __future__ import annotations

from ..analysis.activity import Activity, carries
from ..analysis.dominators import DominatorTree
from ..analysis.loopform import induction_variables, split_exit_edges
from ..analysis.loops import LoopInfo
from ..analysis.memory import ReloadAnalysis
from ..errors import UnsupportedError
from ..ir import types as T


class Version:
    """One derivative of function ``fn``.

    ``mask[k]`` says whether argument k is active (a pointer with a shadow or a
    float with a derivative); ``ret_active`` whether the return value is.
    For mode ``"forward"`` one function ``names[0]`` is made; for ``"reverse"``
    the augmented primal ``names[0]`` and the reverse sweep ``names[1]``.
    """

    def __init__(self, fn, mode, mask, ret_active, atomic=False, top=False, slots=None,
                 reload_slots=None, width=1, slot_types=None, priv_slots=None,
                 interleaved=frozenset(), overlap_slots=None):
        self.fn, self.mode, self.mask, self.ret_active = fn, mode, mask, ret_active
        # a prange body: entries whose array may share memory with another entry's
        # (views of one array): never thread-private
        self.overlap_slots = overlap_slots or frozenset()
        # vector forward mode: names of the pointer arguments whose lanes are
        # interleaved (gradjit.analysis.interleave)
        self.interleaved = frozenset(interleaved)
        # vector mode: ``width`` tangents / adjoints per active value, one primal sweep
        self.width = width
        # a prange body: the entries of ``args`` whose memory the reverse may read again
        self.reload_slots = reload_slots
        # a prange body: frozenset of (entry offset, element type) from its launch
        self.slot_types = slot_types
        # a prange body's reverse: entries whose shadow is a per-thread buffer
        self.priv_slots = priv_slots
        self.top = top
        self.atomic = atomic
        # a prange body (gufunc): byte offsets of the active entries of its
        # ``args`` array (first argument); None for other functions
        self.slots = slots
        tag = "".join("a" if m else "c" for m in mask) + ("r" if ret_active else "") + (
            "A" if atomic else "") + ("T" if top else "")
        if slots is not None:
            tag += "P" + "_".join(str(o // 8) for o in sorted(slots))
            tag += "R" + "_".join(str(o // 8) for o in sorted(reload_slots or ()))
        if width > 1:
            tag += f"W{width}"
        if self.interleaved:
            tag += "I" + "_".join(str(k) for k, a in enumerate(fn.args) if a.name in self.interleaved)
        if slot_types:
            tag += "E" + "_".join(f"{o // 8}{t[0]}" for o, t in sorted(slot_types))
        if priv_slots:
            tag += "V" + "_".join(str(o // 8) for o in sorted(priv_slots))
        if self.overlap_slots:
            tag += "O" + "_".join(str(o // 8) for o in sorted(self.overlap_slots))
        base = f"{fn.name}.gj.{mode[0]}.{tag}"
        self.names = (base + ".fwd",) if mode == "forward" else (base + ".aug", base + ".rev")
        active = [a.name for a, m in zip(fn.args, mask) if m]
        self.activity = None
        self._active_args = active

    def analyze(self, ctx):
        if self.activity is None:
            slots = {self.fn.args[0].name: self.slots} if self.slots is not None else None
            self.activity = Activity(self.fn, self._active_args, ctx.defined, slots)
        return self.activity

    @property
    def ret_float(self):
        return self.ret_active and T.has_float(self.fn.ret_type)


class ADContext:
    """Generates versions on demand (a worklist, so recursion terminates)."""

    def __init__(self, module, arg_elem_types=None, target="cpu", checkpointing="auto",
                 args_alias=False):
        self.module = module
        # the top-level function's argument arrays may share memory (a write
        # through one may change what a load through another reads)
        self.args_alias = args_alias
        self.target = target
        # cache policy of the reverse sweep (see gradjit.ad.reverse_sweep.CHECKPOINTING)
        self.checkpointing = checkpointing
        self.defined = {n for n, f in module.functions.items() if not f.is_declaration}
        self.versions = {}
        self.queue = []
        self.decls = {}
        self.arg_elem_types = arg_elem_types or {}   # (fname, argname) -> float type
        self.extra = {}                              # name -> helper function text
        self.counter = [0]
        # names of top-level arguments without a shadow that receive derivatives
        self.const_written = set()
        self._forms = {}
        self._reload = {}

    def version(self, fname, mode, mask, ret_active, atomic=False, top=False,
                slots=None, reload_slots=None, width=1, slot_types=None,
                priv_slots=None, interleaved=frozenset(), overlap_slots=None) -> Version:
        fn = self.module.functions[fname]
        overlap_slots = frozenset(overlap_slots or ())
        key = (fname, mode, tuple(mask), bool(ret_active), atomic, top, slots, reload_slots, width,
               slot_types, priv_slots, frozenset(interleaved), overlap_slots)
        v = self.versions.get(key)
        if v is None:
            for a, m in zip(fn.args, mask):
                if m and not carries(a.type):
                    raise AssertionError(f"argument {a.name} of {fname} cannot be active")
            v = Version(fn, mode, tuple(mask), bool(ret_active), atomic, top, slots, reload_slots,
                        width, slot_types, priv_slots, interleaved, overlap_slots)
            self.versions[key] = v
            self.queue.append(v)
        return v

    def loop_form(self, fn):
        """Dominators, loops (exit edges split once per function) and induction
        variables of ``fn``."""
        got = self._forms.get(fn.name)
        if got is None:
            got = self._forms[fn.name] = _LoopForm(fn)
        return got

    def reload_analysis(self, fn, version):
        key = (fn.name, version.top, version.reload_slots)
        got = self._reload.get(key)
        if got is None:
            self.loop_form(fn)
            prange = version.reload_slots is not None
            # a prange body's args/dims/steps arrays are the same in both sweeps
            got = self._reload[key] = ReloadAnalysis(fn, self.defined, version.top or prange,
                                                     version.reload_slots,
                                                     args_alias=self.args_alias and version.top)
        return got

    def top_writes_args(self, fname) -> bool:
        """Does the top-level reverse version's primal write argument memory (so
        that argument arrays sharing memory change which loads it may repeat)?"""
        got = self._reload.get((fname, True, None))
        return got is not None and got.writes_arguments()

    def generate(self) -> list:
        """Generate every queued version; returns the function texts."""
        from .forward_sweep import ForwardSweep
        from .reverse_sweep import ReverseSweep
        out = []
        while self.queue:
            v = self.queue.pop()
            v.analyze(self)
            if v.mode == "forward":
                out.append(ForwardSweep(self, v, "forward").text())
            else:
                rev = ReverseSweep(self, v)
                rev_text = rev.text()
                out.append(ForwardSweep(self, v, "augmented", records=rev.records).text())
                out.append(rev_text)
        return out

    def unsupported(self, what, ins=None, kind=None):
        loc = None
        if ins is not None and ins.line:
            loc = f"{ins.line[0]}:{ins.line[1]}"
        return UnsupportedError(what, loc, ins.text if ins is not None else None, kind=kind)


class _LoopForm:
    def __init__(self, fn):
        dom = DominatorTree(fn)
        loops = LoopInfo(fn, dom)
        if split_exit_edges(fn, loops):
            dom = DominatorTree(fn)
            loops = LoopInfo(fn, dom)
        self.dom, self.loops = dom, loops
        self.by_header = induction_variables(fn, loops)
        self.iv_of = {}
        for form in self.by_header.values():
            for iv in form.ivs:
                self.iv_of[iv.phi.name] = (form, iv)
