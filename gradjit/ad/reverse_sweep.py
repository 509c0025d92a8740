"""The reverse sweep of reverse mode.

Each reachable block ``B`` of the primal gets a reverse block ``rev.B`` that pops
B's tape record, runs the adjoints of B's instructions in reverse order and then
goes to the reverse of the predecessor B was entered from (recorded on the tape
when B has several), through an edge block that moves the adjoints of B's phis to
their incoming values.  Adjoints of SSA values live in stack slots (promoted to
registers by the post-AD optimization); an adjoint is read and zeroed at its
definition, so each loop iteration starts from zero.  Memory adjoints go through
shadows: the adjoint of ``v = *p`` is ``*dp += dv``, of ``*p = v`` is
``dv += *dp; *dp = 0`` (Moses & Churavy, "Instead of Rewriting Foreign Code for
Machine Learning, Automatically Synthesize Fast Gradients", NeurIPS 2020, sec. 3).

Batched reverse mode (width N) on the CPU keeps the N adjoints of a scalar float
in one ``<N x ty>`` slot: the adjoint code of arithmetic, math calls, selects,
casts, loads and phis is emitted once on vectors, each partial computed once and
broadcast (:meth:`ReverseSweep._packed`); code that works lane by lane (memory
shadows, calls) reads and writes its lane's element.
"""
from __future__ import annotations

from ..analysis.activity import alloca_type
from ..analysis.calls import RECOMPUTE_CALLS, classify, math_name
from ..ir import types as T
from ..ir.model import local_ref, rename
from ..ir.writer import label
from . import linalg, rules, tape
from .builder import Builder
from .common import (TAPE, LaneSweep, MemoryTypes, float_outs, lane_key, out_name,
                     shadow_kind, shadow_name, shadow_params)
from .forward_sweep import _global

DRET = "%gj.dret"


def dret(lane: int) -> str:
    """The seed (adjoint of the return value) of lane ``lane``."""
    return DRET + (str(lane) if lane else "")


def _suffix(kind: str) -> str:
    """Name suffix of a recorded primal value ('v') or shadow ('s', 's1', ...)."""
    return "" if kind == "v" else "." + kind


_RECOMPUTE_INT = {"getelementptr", "add", "sub", "mul", "shl", "lshr", "ashr", "and", "or", "xor",
                  "udiv", "sdiv", "urem", "srem", "icmp", "zext", "sext", "trunc", "bitcast",
                  "ptrtoint", "inttoptr", "addrspacecast", "freeze", "select", "fptosi", "fptoui"}
_RECOMPUTE_FLOAT = {"fadd", "fsub", "fmul", "fdiv", "fneg", "fcmp", "sitofp", "uitofp", "fpext",
                    "fptrunc", "select", "freeze"}


#: Cache policies of the reverse sweep (``autodiff(..., checkpointing=...)``): which
#: primal values the reverse recomputes and which the augmented primal stores.
#: "auto": recompute integer/address code, float arithmetic on available values and
#: loads of unchanged memory; store the rest (math calls, overwritten memory).
#: "recompute": also recompute math calls (sin, exp, ...) on available values:
#: a smaller tape for more arithmetic.  "store": recompute only integer/address
#: code; store every float value the reverse needs: the largest tape, the least
#: recomputation.  All three give the same derivatives.
CHECKPOINTING = ("auto", "recompute", "store")


class ReverseSweep(LaneSweep):
    """Builds the reverse sweep of one version and decides, for every primal value
    a reverse block needs, how it gets there (cheapest first):

    1. constants and arguments are at hand;
    2. an induction variable of a loop the block is in is run backwards;
    3. integer and address arithmetic, and float arithmetic on values obtained
       without recording, are recomputed; loads of memory nothing overwrites
       later are repeated (:mod:`gradjit.analysis.memory`);
    4. a value defined outside a loop the block is in is recorded once per
       execution of that loop, at its exits, and kept in a stack slot;
    5. anything else is recorded in the block's own tape record.
    """

    def __init__(self, ctx, version):
        self.ctx, self.v = ctx, version
        self.fn, self.act = version.fn, version.activity
        self.form = ctx.loop_form(self.fn)
        self.reload = ctx.reload_analysis(self.fn, version)
        self.needs = {}                       # block -> [(name, kind, type)] own record
        self.inv = {}                         # loop header -> [(name, kind, type)]
        self.records = {}                     # block -> [(kind, payload)] final layout
        self._memo = {}
        self.b = Builder("gj.r", ctx.decls, ctx.counter, ctx.target)
        self.adj = {}                         # lane_key(name, lane) -> (alloca ref, type)
        # batched reverse mode (width N): one augmented primal, the adjoint code of
        # every instruction once per lane (lane-independent primal values are shared)
        self.lanes = range(version.width)
        # on the CPU the N adjoints of a scalar float are one <N x ty> slot, and the
        # adjoint code of arithmetic, math, selects, casts and phis runs once on
        # vectors (see _packed); the rest reads and writes its lane's element
        self.packed = version.width > 1 and ctx.target == "cpu"
        self.mem = MemoryTypes(ctx, self.fn, version)
        self.entry_allocas = [f"{tape.TAPE_COPY} = alloca {tape.TAPE_TYPE}"]
        self.slots = {}                       # (header, name, kind) -> (ref, type)
        # adjoints of loop-invariant loads summed in a register over the reverse of
        # their loop: header -> [(value slot, pointer slot, type, private, lane)]
        self.deferred = {}
        self._companions = None               # (math name, operand, type) -> call
        self.block = None
        self._private_roots = None
        self.defblock = {}
        self.values = {}
        for ins in self.fn.instructions():
            if ins.name:
                self.defblock[ins.name] = ins.block.name
                self.values[ins.name] = ins

    # where values come from ------------------------------------------------------
    def _loops(self, block):
        return self.form.loops.loops_of.get(block, [])

    def _outside_loop(self, name, block):
        """Outermost loop containing ``block`` but not the definition of ``name``."""
        d = self.defblock.get(name)
        for l in self._loops(block):             # outermost first
            if d not in l.blocks:
                return l
        return None

    def _iv(self, v, block):
        """(LoopForm, Induction) if ``v`` is an induction variable of a loop containing block."""
        hit = self.form.iv_of.get(v.name)
        if hit and block in hit[0].loop.blocks:
            return hit
        return None

    def free(self, v, block, depth=0) -> bool:
        """Can ``v`` be had in the reverse of ``block`` without recording it there?"""
        if v.kind != "inst":
            return True
        key = (v.name, block)
        got = self._memo.get(("free",) + key)
        if got is not None:
            return got
        ok = False
        policy = self.ctx.checkpointing
        floats = _RECOMPUTE_FLOAT if policy != "store" else set()
        if self._iv(v, block) or self._outside_loop(v.name, block):
            ok = True
        elif v.opcode == "call" and v.callee in RECOMPUTE_CALLS:
            ok = True
        elif depth < 12 and v.opcode in (_RECOMPUTE_INT | floats):
            ok = all(self.free(o, block, depth + 1) for o in v.operands if o.kind != "label")
        elif depth < 12 and self._recompute_math(v):
            ok = all(self.free(o, block, depth + 1) for o in v.operands[:-1])
        elif depth < 12 and v.opcode == "load" and policy != "store" and self.reload.can_reload(v):
            ok = self.free(v.operands[0], block, depth + 1)
        self._memo[("free",) + key] = ok
        return ok

    def pv(self, v) -> str:
        """The primal value ``v`` inside the reverse of the current block."""
        if v.kind != "inst":
            return v.ref
        key = ("v", v.name, self.block)
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._get(v)
        return got

    def ps(self, v) -> str:
        """The shadow of active pointer ``v`` inside the reverse of the current block
        (of the current lane)."""
        if v.kind == "arg":
            return shadow_name(v.name, self.lane)
        if v.kind == "const":
            from ..analysis.activity import shadow_const
            return shadow_const(v.text)
        key = (shadow_kind(self.lane), v.name, self.block)
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._get_shadow(v)
        return got

    def _get(self, v):
        blk = self.block
        iv = self._iv(v, blk)
        if iv:
            return self.b.assign(f"load {v.type}, ptr {self._iv_slot(iv[0], v, 'v')}")
        op = v.opcode
        policy = self.ctx.checkpointing
        if op == "call" and v.callee in RECOMPUTE_CALLS:
            return self._clone(v, {})
        recompute = op in _RECOMPUTE_INT and not T.has_float(v.type)
        if not recompute and op in _RECOMPUTE_FLOAT and policy != "store":
            recompute = all(self.free(o, blk) for o in v.operands if o.kind != "label")
        if not recompute and self._recompute_math(v):
            recompute = all(self.free(o, blk) for o in v.operands[:-1])
        if recompute:
            return self._clone(v, {o.name: self.pv(o) for o in v.operands if o.kind == "inst"})
        if op == "load" and policy != "store" and self.reload.can_reload(v) and (
                self.free(v.operands[0], blk) or not self._outside_loop(v.name, blk)):
            return self._clone(v, {o.name: self.pv(o) for o in v.operands if o.kind == "inst"})
        return self._fetch(v.name, "v", v.type)

    def _get_shadow(self, v):
        blk = self.block
        iv = self._iv(v, blk)
        if iv:
            return self.b.assign(f"load ptr, ptr {self._iv_slot(iv[0], v, shadow_kind(self.lane))}")
        if v.opcode in ("getelementptr", "bitcast", "addrspacecast", "freeze"):
            base = v.operands[0]
            mapping = {o.name: self.pv(o) for o in v.operands[1:] if o.kind == "inst"}
            if base.kind == "const":
                from ..analysis.activity import shadow_const
                r = self.b.tmp()
                text = v.text.replace(base.text, shadow_const(base.text), 1)
                self.b.emit(rename(text, dict(mapping, **{v.name: r})))
                return r
            mapping[base.name] = self.ps(base)
            return self._clone(v, mapping)
        if self.v.slots is not None and v.opcode == "load":
            # a prange body's array shadow: read again from the shadow ``args`` array,
            # which its reverse launch may point at a private buffer
            from ..analysis.activity import slot_offset
            addr = v.operands[0]
            if slot_offset(addr, {self.fn.args[0].name: None}) is not None:
                return self.b.assign(f"load ptr, ptr {self.ps(addr)}")
        return self._fetch(v.name, shadow_kind(self.lane), "ptr")

    def _recompute_math(self, v) -> bool:
        """Under the "recompute" policy: is ``v`` a pure math call (sin, exp, ...)?"""
        return (self.ctx.checkpointing == "recompute" and v.opcode == "call" and
                classify(v.callee, v.callee in self.ctx.defined) == "math")

    def _clone(self, ins, mapping):
        r = self.b.tmp()
        text = rename(ins.text, dict(mapping, **{ins.name: r}))
        self.b.emit(text)
        return r

    def _fetch(self, name, kind, ty):
        """Record ``name`` (a primal value or, kind 's', its shadow): once per loop
        execution in a slot when defined outside a loop of the block, else in the
        block's own record."""
        l = self._outside_loop(name, self.block)
        if l is None and kind == "v":
            l = self._invariant_load_loop(name)
        if l is not None:
            ref = self._inv_slot(l, name, kind, ty)
            return self.b.assign(f"load {ty}, ptr {ref}")
        lst = self.needs.setdefault(self.block, [])
        if (name, kind, ty) not in lst:
            lst.append((name, kind, ty))
        return local_ref(f"{name}{_suffix(kind)}@{self.block}")

    def _invariant_load_loop(self, name):
        """The innermost loop (containing the current block) in which load ``name``
        reads the same value every iteration: its address is loop-invariant, nothing
        in the loop may write that memory, and it runs in every iteration that can
        leave the loop.  Such a load is recorded once per loop execution."""
        v = self.values.get(name)
        if v is None or v.opcode != "load":
            return None
        loops = self._loops(v.block.name)
        if not loops or self.block not in loops[-1].blocks:
            return None
        l = loops[-1]
        if not self._invariant(v.operands[0], l):
            return None
        if not all(self.form.dom.dominates(v.block.name, x) for x, _ in l.exits):
            return None
        if self.reload.writes_in(v.operands[0], l.blocks):
            return None
        return l

    def _invariant(self, v, loop, depth=0):
        if v.kind != "inst" or v.block.name not in loop.blocks:
            return True
        if depth > 12 or v.opcode not in _RECOMPUTE_INT:
            return False
        return all(self._invariant(o, loop, depth + 1) for o in v.operands if o.kind != "label")

    def _inv_slot(self, loop, name, kind, ty):
        key = (loop.header, name, kind)
        if key not in self.slots:
            ref = local_ref(f"{name}{_suffix(kind)}@L.{loop.header}")
            self.slots[key] = (ref, ty)
            self.entry_allocas.append(f"{ref} = alloca {ty}")
            self.inv.setdefault(loop.header, []).append((name, kind, ty))
        return self.slots[key][0]

    def _iv_slot(self, form, phi, kind):
        return self._inv_slot(form.loop, phi.name, kind, phi.type)

    # adjoints ---------------------------------------------------------------
    def _is_packed(self, v) -> bool:
        """Are ``v``'s adjoints one vector slot (a scalar float, vector mode)?"""
        return self.packed and v.type in ("double", "float")

    def _vty(self, ty) -> str:
        return f"<{len(self.lanes)} x {ty}>"

    def _slot(self, v):
        if self._is_packed(v):
            key = lane_key(v.name, "v")
            if key not in self.adj:
                self.adj[key] = (local_ref(v.name + ".dv"), self._vty(v.type))
            return self.adj[key][0]
        key = lane_key(v.name, self.lane)
        if key not in self.adj:
            ref = local_ref(v.name + ".d" + (str(self.lane) if self.lane else ""))
            self.adj[key] = (ref, v.type)
        return self.adj[key][0]

    def take(self, v) -> str:
        """Read and zero the adjoint of ``v`` (current lane)."""
        slot, b = self._slot(v), self.b
        if self._is_packed(v):
            vt = self._vty(v.type)
            cur = b.assign(f"load {vt}, ptr {slot}")
            a = b.assign(f"extractelement {vt} {cur}, i64 {self.lane}")
            b.emit(f"store {vt} {b.assign(f'insertelement {vt} {cur}, {v.type} -0.0, i64 {self.lane}')}, "
                   f"ptr {slot}")
            return a
        a = b.assign(f"load {v.type}, ptr {slot}")
        b.emit(f"store {v.type} {T.additive_zero(v.type)}, ptr {slot}")
        return a

    def add(self, v, value, ty=None):
        """``adjoint(v) += value`` (current lane; nothing for constants and inactive
        values)."""
        if value is None or v.kind not in ("arg", "inst") or not self.act.is_active(v):
            return
        slot, b = self._slot(v), self.b
        if self._is_packed(v):
            vt = self._vty(v.type)
            cur = b.assign(f"load {vt}, ptr {slot}")
            x = b.assign(f"extractelement {vt} {cur}, i64 {self.lane}")
            y = b.fadd(v.type, x, value)
            b.emit(f"store {vt} {b.assign(f'insertelement {vt} {cur}, {v.type} {y}, i64 {self.lane}')}, "
                   f"ptr {slot}")
            return
        cur = b.assign(f"load {v.type}, ptr {slot}")
        b.emit(f"store {v.type} {self._sum(v.type, cur, value)}, ptr {slot}")

    def vtake(self, v) -> str:
        """Read and zero the packed adjoints of scalar float ``v`` (all lanes)."""
        slot, vt = self._slot(v), self._vty(v.type)
        a = self.b.assign(f"load {vt}, ptr {slot}")
        self.b.emit(f"store {vt} {T.additive_zero(vt)}, ptr {slot}")
        return a

    def vadd(self, v, value):
        """``adjoint(v) += value`` on all lanes (``value`` a vector)."""
        if value is None or v.kind not in ("arg", "inst") or not self.act.is_active(v):
            return
        slot, vt = self._slot(v), self._vty(v.type)
        cur = self.b.assign(f"load {vt}, ptr {slot}")
        self.b.emit(f"store {vt} {self.b.fadd(vt, cur, value)}, ptr {slot}")

    def _sum(self, ty, a, b):
        if ty in T.FLOATS:
            return self.b.fadd(ty, a, b)
        acc = a
        for path, leaf in T.float_paths(ty):
            idx = ", ".join(map(str, path))
            x = self.b.assign(f"extractvalue {ty} {a}, {idx}")
            y = self.b.assign(f"extractvalue {ty} {b}, {idx}")
            acc = self.b.assign(f"insertvalue {ty} {acc}, {leaf} {self.b.fadd(leaf, x, y)}, {idx}")
        return acc

    def mem_add(self, ptr, ty, value, ins, private=False):
        """``*ptr += value`` on float leaves (atomically under a parallel marker,
        unless the address is ``private`` to the thread)."""
        leaves = T.float_paths(ty) if ty not in T.FLOATS else [((), ty)]
        for path, leaf in leaves:
            x = value if not path else self.b.assign(
                f"extractvalue {ty} {value}, {', '.join(map(str, path))}")
            p = ptr if not path else self.b.assign(
                f"getelementptr inbounds {ty}, ptr {ptr}, i32 0, {', '.join('i32 %d' % k for k in path)}")
            if self.v.atomic and not private:
                self.b.emit(f"atomicrmw fadd ptr {p}, {leaf} {x} monotonic")
            else:
                cur = self.b.assign(f"load {leaf}, ptr {p}")
                self.b.emit(f"store {leaf} {self.b.fadd(leaf, cur, x)}, ptr {p}")

    def _defer_add(self, loop, ins, ptr, value, private):
        """``*ptr += value`` for a load ``ins`` that reads the same address in every
        iteration of ``loop`` and whose memory nothing in the loop writes
        (:meth:`_invariant_load_loop`): summed in a stack slot (a register after
        mem2reg) and added to the shadow once, where the reverse leaves the loop
        (:meth:`flush_deferred`).  Adding to memory in every iteration made a
        load-add-store chain through one address that LLVM cannot keep in a
        register (it cannot prove the other shadows do not alias it): the inner
        loop of the GMM gradient ran ~4x slower than its primal.  Only additions
        reach that shadow inside the loop (no instruction there writes the primal
        memory), so the sum is the same up to the order of additions."""
        ty = ins.type
        name = f"{ins.name}.acc{self.lane}@L.{loop.header}"
        acc, at = local_ref(name), local_ref(name + ".p")
        key = (loop.header, ins.name, self.lane)
        if key not in self.slots:
            self.slots[key] = (acc, ty)
            self.entry_allocas += [f"{acc} = alloca {ty}", f"store {ty} {T.additive_zero(ty)}, ptr {acc}",
                                   f"{at} = alloca ptr"]
            self.deferred.setdefault(loop.header, []).append((acc, at, ty, private, self.lane))
        cur = self.b.assign(f"load {ty}, ptr {acc}")
        self.b.emit(f"store {ty} {self._sum(ty, cur, value)}, ptr {acc}")
        self.b.emit(f"store ptr {ptr}, ptr {at}")

    def flush_deferred(self, header):
        """Add the sums of :meth:`_defer_add` for the loop at ``header`` to their
        shadows and zero them (on the reverse edge that leaves the loop)."""
        for acc, at, ty, private, lane in self.deferred.get(header, ()):
            value = self.b.assign(f"load {ty}, ptr {acc}")
            self.b.emit(f"store {ty} {T.additive_zero(ty)}, ptr {acc}")
            ptr = self.b.assign(f"load ptr, ptr {at}")
            self.mem_add(ptr, ty, value, None, private=private)

    def mem_take(self, ptr, ty):
        """Read ``*ptr``'s float leaves and zero them; returns a value of type ``ty``."""
        if ty in T.FLOATS:
            a = self.b.assign(f"load {ty}, ptr {ptr}")
            self.b.emit(f"store {ty} {T.zero(ty)}, ptr {ptr}")
            return a
        acc = T.zero(ty)
        for path, leaf in T.float_paths(ty):
            idx = ", ".join(map(str, path))
            p = self.b.assign(f"getelementptr inbounds {ty}, ptr {ptr}, i32 0, "
                              f"{', '.join('i32 %d' % k for k in path)}")
            x = self.b.assign(f"load {leaf}, ptr {p}")
            self.b.emit(f"store {leaf} {T.zero(leaf)}, ptr {p}")
            acc = self.b.assign(f"insertvalue {ty} {acc}, {leaf} {x}, {idx}")
        return acc

    # generation ---------------------------------------------------------------
    def exits_of(self, blk):
        """Loops whose exit is ``blk`` (an exit block made by the loop form, or a
        return inside loops), innermost first."""
        loops = self.form.loops
        if blk.terminator.opcode == "ret":
            return list(reversed(loops.loops_of.get(blk.name, [])))
        if len(blk.preds) == 1:
            return loops.exited(blk.preds[0], blk.name)
        return []

    def record_layout(self, blk):
        """The tape record of ``blk``, in push order: [(tag, name, kind, type)] with
        tag 'from' (predecessor id), 'own' (a value of this block's reverse) or a
        loop header (a value kept in that loop's slot)."""
        items = []
        if len(blk.preds) > 1 and blk.name not in self.form.by_header and \
                self._branch_sides(blk) is None:
            items.append(("from", blk.name + ".from", "v", "i32"))
        for name, kind, ty in self.needs.get(blk.name, ()):
            items.append(("own", name, kind, ty))
        for l in self.exits_of(blk):
            for name, kind, ty in self.inv.get(l.header, ()):
                items.append((l.header, name, kind, ty))
        return items

    def text(self) -> str:
        fn, v = self.fn, self.v
        reach = [fn.block(n) for n in self.form.dom.rpo]
        rets = [blk for blk in fn.blocks if blk.terminator.opcode == "ret"]
        bodies = {}
        for blk in reach:
            if blk.terminator.opcode != "unreachable":
                bodies[blk.name] = self.reverse_body(blk)
        edges = []
        for blk in reach:
            if blk.name in bodies and blk is not fn.entry:
                for p in blk.preds:
                    if p in bodies:
                        edges += self.edge(p, blk)
        out = []
        for blk in reach:
            if blk.name not in bodies:
                continue
            items = self.record_layout(blk)
            self.records[blk.name] = items
            self.b.lines = []
            refs = []
            for tag, name, kind, ty in items:
                if tag == "from":
                    refs.append((ty, local_ref(f"{blk.name}.from@rev")))
                elif tag == "own":
                    refs.append((ty, local_ref(f"{name}{_suffix(kind)}@{blk.name}")))
                else:
                    refs.append((ty, self.b.tmp()))
            tape.pop_record(self.b, TAPE, refs)
            for (tag, name, kind, ty), (_, ref) in zip(items, refs):
                if tag not in ("from", "own"):
                    self.b.emit(f"store {ty} {ref}, ptr {self.slots[(tag, name, kind)][0]}")
            out.append(f"{label('rev.' + blk.name)}:")
            out.extend("  " + l for l in self.b.lines + bodies[blk.name])
        # entry: adjoint slots, then the reverse of the return block taken
        params = [f"{a.type} {a.ref}" for a in fn.args]
        params += [f"{a.type} {shadow_name(a.name, k)}" for a in shadow_params(v, "reverse")
                   for k in self.lanes]
        params.append(f"ptr {TAPE}")
        if v.ret_float:
            params += [f"{fn.ret_type} {dret(k)}" for k in self.lanes]
        params += [f"ptr {out_name(a, k)}" for a in float_outs(v) for k in self.lanes]
        for a in float_outs(v):
            self.per_lane(lambda: self._slot(a))
        head = [f"define internal void @{_global(v.names[1])}({', '.join(params)}) {{", "entry:"]
        for name, (ref, ty) in self.adj.items():
            head.append(f"  {ref} = alloca {ty}")
            head.append(f"  store {ty} {T.additive_zero(ty)}, ptr {ref}")
        head.extend("  " + l for l in self.entry_allocas)
        reach_rets = [r for r in rets if r.name in bodies]
        self.b.lines = []
        if len(rets) > 1:
            x = local_ref("gj.exit")
            tape.pop_record(self.b, TAPE, [("i32", x)])
            cases = " ".join(f"i32 {rets.index(r)}, label {local_ref('rev.' + r.name)}"
                             for r in reach_rets)
            self.b.emit(f"switch i32 {x}, label {local_ref('rev.' + reach_rets[0].name)} [ {cases} ]")
        elif reach_rets:
            self.b.emit(f"br label {local_ref('rev.' + reach_rets[0].name)}")
        else:
            self.b.emit("br label %rev.exit")
        head.extend("  " + l for l in self.b.lines)
        tail = ["rev.exit:"]
        self.b.lines = []
        for a in float_outs(v):
            self.per_lane(lambda: self._add_out(a))
        self.b.emit("ret void")
        tail.extend("  " + l for l in self.b.lines)
        return "\n".join(head + out + edges + tail + ["}"])

    def reverse_body(self, blk) -> list:
        """Adjoints of ``blk``'s instructions and the branch to its predecessor's reverse."""
        self.block = blk.name
        self.b.lines = []
        term = blk.terminator
        if term.opcode == "ret" and term.operands and self.v.ret_float:
            self.per_lane(lambda: self.add(term.operands[0], dret(self.lane)))
        for ins in reversed(blk.instructions[:-1]):
            if ins.opcode != "phi":
                self.instruction(ins)
        if blk is self.fn.entry:
            self.b.emit("br label %rev.exit")
        elif len(blk.preds) == 1:
            self.b.emit(f"br label {self._edge_label(blk.preds[0], blk.name)}")
        elif blk.name in self.form.by_header:
            form = self.form.by_header[blk.name]
            iv = form.ivs[0]
            cur = self.pv(iv.phi)
            first = self.b.assign(f"icmp eq {iv.phi.type} {cur}, {self.pv(iv.start)}")
            self.b.emit(f"br i1 {first}, label {self._edge_label(form.preheader, blk.name)}, "
                        f"label {self._edge_label(form.latch, blk.name)}")
        elif self._branch_sides(blk) is not None:
            cond, on_true, on_false = self._branch_sides(blk)
            self.b.emit(f"br i1 {self.pv(cond)}, label {self._edge_label(on_true, blk.name)}, "
                        f"label {self._edge_label(on_false, blk.name)}")
        else:
            from_ref = local_ref(f"{blk.name}.from@rev")
            cases = " ".join(f"i32 {k}, label {self._edge_label(p, blk.name)}"
                             for k, p in enumerate(blk.preds))
            self.b.emit(f"switch i32 {from_ref}, label {self._edge_label(blk.preds[0], blk.name)} "
                        f"[ {cases} ]")
        return self.b.lines

    def _branch_sides(self, blk):
        """For a two-predecessor merge below a conditional branch (an if/else or a
        loop guard): ``(condition, pred taken when true, pred when false)``, so the
        reverse picks the predecessor from the condition instead of the tape."""
        key = ("sides", blk.name)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = None
        fn, dom = self.fn, self.form.dom
        if len(blk.preds) != 2 or blk.name not in dom.idom:
            return None
        d = fn.block(dom.idom[blk.name])
        term = d.terminator
        if term.opcode != "br" or len(term.operands) != 3:
            return None
        succ_t, succ_f = term.successors()
        if succ_t == succ_f:
            return None
        sides = {}
        for p in blk.preds:
            if fn.block(p).terminator.successors().count(blk.name) != 1:
                return None
            if p == d.name:
                side = True if succ_t == blk.name else False
            elif succ_t != blk.name and fn.block(succ_t).preds == [d.name] and dom.dominates(succ_t, p):
                side = True
            elif succ_f != blk.name and fn.block(succ_f).preds == [d.name] and dom.dominates(succ_f, p):
                side = False
            else:
                return None
            sides[side] = p
        if len(sides) != 2:
            return None
        self._memo[key] = (term.operands[0], sides[True], sides[False])
        return self._memo[key]

    @staticmethod
    def _edge_label(pred, blk):
        return local_ref("edge." + pred + "." + blk)

    def edge(self, pred, blk) -> list:
        """Move the adjoints of ``blk``'s phis to the values coming from ``pred``; on a
        loop's back edge, step its induction variables back."""
        self.b.lines = []
        phis = [p for p in blk.phis() if self.act.is_active(p) and T.has_float(p.type)]

        packed = [p for p in phis if self._is_packed(p)]
        phis = [p for p in phis if not self._is_packed(p)]

        def move(take, add, phis):
            taken = [(p, take(p)) for p in phis]
            for p, a in taken:
                for val, src in p.incoming:
                    if src == pred:
                        add(val, a)
                        break
        move(self.vtake, self.vadd, packed)
        self.per_lane(lambda: move(self.take, self.add, phis))
        form = self.form.by_header.get(blk.name)
        if form is not None and pred == form.preheader:
            self.flush_deferred(blk.name)
        if form is not None and pred == form.latch:
            for iv in form.ivs:
                for kind in ("v",) + tuple(shadow_kind(k) for k in self.lanes):
                    key = (blk.name, iv.phi.name, kind)
                    if key not in self.slots:
                        continue
                    ref = self.slots[key][0]
                    x = self.b.assign(f"load {iv.phi.type}, ptr {ref}")
                    if iv.elem is None:
                        y = self.b.assign(f"sub {iv.phi.type} {x}, {iv.step}")
                    else:
                        y = self.b.assign(f"getelementptr {iv.elem}, ptr {x}, i64 {-iv.step}")
                    self.b.emit(f"store {iv.phi.type} {y}, ptr {ref}")
        self.b.emit(f"br label {local_ref('rev.' + pred)}")
        return [f"{label('edge.' + pred + '.' + blk.name)}:"] + ["  " + l for l in self.b.lines]

    # instruction adjoints --------------------------------------------------------
    def _add_out(self, a):
        """``*out += adjoint(a)`` for float argument ``a`` (current lane)."""
        out = out_name(a, self.lane)
        if self._is_packed(a):
            vt = self._vty(a.type)
            x = self.b.assign(f"extractelement {vt} {self.b.assign(f'load {vt}, ptr {self._slot(a)}')}, "
                              f"i64 {self.lane}")
        else:
            x = self.b.assign(f"load {a.type}, ptr {self._slot(a)}")
        y = self.b.assign(f"load {a.type}, ptr {out}")
        self.b.emit(f"store {a.type} {self.b.fadd(a.type, y, x)}, ptr {out}")

    def instruction(self, ins):
        if ins.opcode == "call" and classify(ins.callee, ins.callee in self.ctx.defined) in (
                "defined", "parallel", "barrier"):
            return self.call(ins)              # one call serves every lane
        if self.packed and self._packed(ins):
            return
        self.per_lane(lambda: self.adjoint(ins))

    def _packed(self, ins) -> bool:
        """The adjoint code of ``ins`` on packed lanes, where it has one (a scalar
        float result); False leaves it to the per-lane code."""
        if not (ins.has_value and self.act.is_active(ins) and self._is_packed(ins)):
            if ins.opcode == "store" and self._is_packed(ins.operands[0]) and \
                    self.act.is_active(ins.operands[1]):
                val, ptr = ins.operands[0], ins.operands[1]
                acc = "poison"
                for k in self.lanes:        # per lane: the shadow's value, taken
                    self.lane = k
                    t = self.mem_take(self.ps(ptr), val.type)
                    acc = self.b.assign(f"insertelement {self._vty(val.type)} {acc}, "
                                        f"{val.type} {t}, i64 {k}")
                self.lane = 0
                self.vadd(val, acc)
                return True
            return False
        op, ty, b = ins.opcode, ins.type, self.b
        vt = self._vty(ty)
        if op == "call":
            if classify(ins.callee, ins.callee in self.ctx.defined) != "math":
                return False
            self.by_rule(ins, math_name(ins.callee), ins.operands[:-1], packed=True)
        elif op in rules.RULES:
            self.by_rule(ins, op, ins.operands, packed=True)
        elif op in ("fpext", "fptrunc"):
            x = ins.operands[0]
            back = "fptrunc" if op == "fpext" else "fpext"
            self.vadd(x, b.assign(f"{back} {vt} {self.vtake(ins)} to {self._vty(x.type)}"))
        elif op == "select":
            a, c = self.vtake(ins), self.pv(ins.operands[0])
            self.vadd(ins.operands[1], b.assign(f"select i1 {c}, {vt} {a}, {vt} zeroinitializer"))
            self.vadd(ins.operands[2], b.assign(f"select i1 {c}, {vt} zeroinitializer, {vt} {a}"))
        elif op == "freeze":
            self.vadd(ins.operands[0], self.vtake(ins))
        elif op == "load":
            a = self.vtake(ins)
            for k in self.lanes:            # the shadows are per lane
                self.lane = k
                self._load_adjoint(ins, b.assign(f"extractelement {vt} {a}, i64 {k}"))
            self.lane = 0
        else:
            return False
        return True

    def _load_adjoint(self, ins, a):
        """``*shadow(p) += a`` for ``ins = load p`` (current lane)."""
        ptr, private = self.ps(ins.operands[0]), self._private(ins.operands[0])
        loop = self._invariant_load_loop(ins.name)
        if loop is not None and loop.header in self.form.by_header:
            self._defer_add(loop, ins, ptr, a, private)
        else:
            self.mem_add(ptr, ins.type, a, ins, private=private)

    def adjoint(self, ins):
        """The adjoint code of ``ins`` for the current lane."""
        op = ins.opcode
        if op == "call":
            return self.call(ins)
        if op == "store":
            return self.store(ins)
        if op == "atomicrmw":
            ptr, val = ins.operands[0], ins.operands[1]
            if self.act.is_active(ptr) and self.act.is_active(val) and T.has_float(val.type):
                a = self.b.assign(f"load {val.type}, ptr {self.ps(ptr)}")
                if ins.text.split("atomicrmw", 1)[1].split()[0] == "fsub":
                    a = self.b.fneg(val.type, a)
                self.add(val, a)
            return
        if op == "alloca":
            if self.act.is_active(ins):
                self.b.emit(f"call void @free(ptr {self.ps(ins)})")
            return
        if not (ins.has_value and self.act.is_active(ins) and T.has_float(ins.type)):
            return
        ty = ins.type
        if op == "load":
            self._load_adjoint(ins, self.take(ins))
        elif op in rules.RULES:
            self.by_rule(ins, op, ins.operands)
        elif op in ("fpext", "fptrunc"):
            a = self.take(ins)
            x = ins.operands[0]
            back = "fptrunc" if op == "fpext" else "fpext"
            self.add(x, self.b.assign(f"{back} {ty} {a} to {x.type}"))
        elif op == "select":
            a = self.take(ins)
            c = self.pv(ins.operands[0])
            z = T.zero(ty)
            self.add(ins.operands[1], self.b.assign(f"select i1 {c}, {ty} {a}, {ty} {z}"))
            self.add(ins.operands[2], self.b.assign(f"select i1 {c}, {ty} {z}, {ty} {a}"))
        elif op == "freeze":
            self.add(ins.operands[0], self.take(ins))
        elif op == "extractvalue":
            agg = ins.operands[0]
            idx = ins.text.rsplit(agg.ref, 1)[1].lstrip(", ").strip()
            a = self.take(ins)
            if self.act.is_active(agg):
                z = T.zero(agg.type)
                self.add(agg, self.b.assign(f"insertvalue {agg.type} {z}, {ty} {a}, {idx}"))
        elif op == "insertvalue":
            agg, val = ins.operands[0], ins.operands[1]
            idx = ins.text.rsplit(val.ref, 1)[1].lstrip(", ").strip()
            a = self.take(ins)
            if self.act.is_active(val) and T.has_float(val.type):
                self.add(val, self.b.assign(f"extractvalue {ty} {a}, {idx}"))
            if self.act.is_active(agg):
                self.add(agg, self.b.assign(
                    f"insertvalue {ty} {a}, {val.type} {T.zero(val.type)}, {idx}"))
        else:
            raise self.ctx.unsupported(f"the instruction '{op}' on active values", ins)

    def _private(self, ptr) -> bool:
        """Is the shadow of ``ptr`` written by this thread only (top-level kernel,
        or one loop iteration of a prange body)?"""
        if self.v.atomic and self.v.slots is not None:
            from ..analysis import parallel
            if self.v.priv_slots and parallel.slot_of(ptr, self.fn.args[0].name) in self.v.priv_slots:
                return True                     # a per-thread buffer of the reverse launch
            if self._private_roots is None:
                self._private_roots = (parallel.prange_private_slots(self.fn),
                                       parallel.prange_ivs(self.fn, self.fn.args[0].name))
            slots, ivs = self._private_roots
            off = parallel.slot_of(ptr, self.fn.args[0].name)
            return off in slots and off not in self.v.overlap_slots and \
                parallel.is_iv_indexed(ptr, ivs) is not None
        if not (self.v.atomic and self.v.top):
            return False
        if self._private_roots is None:
            from ..analysis.parallel import private_roots
            self._private_roots = private_roots(self.fn)
        from ..analysis.activity import root
        r = root(ptr)
        return r is not None and id(r) in self._private_roots and \
            ptr.kind == "inst" and ptr.opcode == "getelementptr" and len(ptr.operands) == 2

    def _companion(self, ins, name):
        """The primal's call computing ``rules.COMPANIONS[name]`` of ``ins``'s
        operand in a block that dominates ``ins``'s (its value is available in the
        reverse of ``ins``'s block), or None."""
        if self._companions is None:
            self._companions = {}
            for c in self.fn.instructions():
                if c.opcode == "call" and c.has_value and \
                        classify(c.callee, c.callee in self.ctx.defined) == "math":
                    self._companions.setdefault((math_name(c.callee), id(c.operands[0]), c.type), c)
        want = rules.COMPANIONS[name][0]
        c = self._companions.get((want, id(ins.operands[0]), ins.type))
        if c is None:
            return None
        if c.block is not ins.block and not self.form.dom.dominates(c.block.name, ins.block.name):
            return None
        return c

    def by_rule(self, ins, name, fops, packed=False):
        """``adjoint(o) += partial_o * adjoint(ins)`` for each active operand ``o``;
        ``packed``: on all lanes' vectors, each partial computed once and broadcast."""
        ty = ins.type
        parts = rules.partials(name)
        comp = self._companion(ins, name) if name in rules.COMPANIONS else None
        if comp is not None:
            neg = rules.COMPANIONS[name][1]
            parts = [lambda b, ty, a, r: b.fneg(ty, self.pv(comp)) if neg else self.pv(comp)]
        a = self.vtake(ins) if packed else self.take(ins)
        sty = self._vty(ty) if packed else ty
        for k, o in enumerate(fops):
            if k >= len(parts) or not self.act.is_active(o) or not T.has_float(o.type):
                continue
            p = parts[k]
            if callable(p):
                p = p(self.b, ty, lambda j: self.pv(fops[j]), lambda: self.pv(ins))
                if packed:
                    p = self.b.splat(p, ty, len(self.lanes))
            t = rules.scale(self.b, sty, p, a, strong_zero=True)
            if packed:
                self.vadd(o, t)
            else:
                self.add(o, t)

    def store(self, ins):
        val, ptr = ins.operands[0], ins.operands[1]
        if not self.act.is_active(ptr) or not T.has_float(val.type):
            return
        t = self.mem_take(self.ps(ptr), val.type)
        self.add(val, t)

    def call(self, ins):
        kind = classify(ins.callee, ins.callee in self.ctx.defined)
        args = ins.operands[:-1]
        if kind == "defined":
            return self.call_defined(ins, args)
        if kind == "parallel":
            from . import parallel_for
            return parallel_for.reverse(self, ins)
        if kind == "math":
            if ins.has_value and self.act.is_active(ins):
                self.by_rule(ins, math_name(ins.callee), args)
            return
        if kind == "nrt_alloc":
            self.b.emit(f"call void @NRT_MemInfo_call_dtor(ptr {self.ps(ins)})")
            return
        if kind == "raw_alloc":
            self.b.emit(f"call void @NRT_Free(ptr {self.ps(ins)})")
            return
        if kind == "linalg":
            return linalg.reverse(self, ins, args)
        if kind == "barrier":
            # the reverse of a barrier is a barrier (Moses et al., SC'21, sec. 4)
            self.b.emit(ins.text)
            return
        if kind == "memory":
            dst = args[0]
            if not self.act.is_active(dst):
                return
            elem = self.mem.kind(dst)
            if elem not in ("double", "float"):
                return
            n = args[2]
            nb = self.pv(n)
            if n.type != "i64":
                nb = self.b.assign(f"zext {n.type} {nb} to i64")
            if ins.callee.startswith("llvm.memset."):
                self.b.emit(f"call void @llvm.memset.p0.i64(ptr {self.ps(dst)}, i8 0, i64 {nb}, i1 false)")
                return
            src = args[1]
            ds = self.ps(src) if self.act.is_active(src) else "null"
            fname = f"gj.memcpy.adj.{elem}"
            self.ctx.extra.setdefault(fname, tape.memcpy_adjoint(elem))
            self.b.emit(f"call void @{fname}(ptr {self.ps(dst)}, ptr {ds}, i64 {nb})")

    def call_defined(self, ins, args):
        mask = [self.act.is_active(a) for a in args]
        ret_active = ins.has_value and self.act.is_active(ins)
        ver = self.ctx.version(ins.callee, "reverse", mask, ret_active, atomic=self.v.atomic,
                               width=len(self.lanes))
        argtext = [f"{a.type} {self.pv(a)}" for a in args]
        for a, m in zip(args, mask):
            if m and a.type == "ptr":
                argtext += self.per_lane(lambda: f"ptr {self.ps(a)}")
        argtext.append(f"ptr {tape.TAPE_COPY}")
        if ver.ret_float:
            argtext += self.per_lane(lambda: f"{ins.type} {self.take(ins)}")
        outs = []                          # per float argument: one out slot per lane
        for a, m in zip(args, mask):
            if m and a.type != "ptr":
                slots = self.per_lane(lambda: self._out_slot(a))
                argtext += [f"ptr {s}" for s in slots]
                outs.append((a, slots))
        tape.call_with_copy(self.b, lambda: self.b.emit(
            f"call void @{_global(ver.names[1])}({', '.join(argtext)})"))
        for a, slots in outs:
            self.per_lane(lambda: self.add(a, self.b.assign(
                f"load {a.type}, ptr {slots[self.lane]}")))

    def _out_slot(self, a):
        """A zeroed stack slot receiving a callee's adjoint of float argument ``a``."""
        slot = local_ref(f"gj.o{len(self.entry_allocas)}")
        self.entry_allocas.append(f"{slot} = alloca {a.type}")
        self.b.emit(f"store {a.type} {T.additive_zero(a.type)}, ptr {slot}")
        return slot