"""The forward sweep, shared by forward mode and the augmented primal of reverse
mode: the primal instructions, the shadow of every active pointer (same address
arithmetic on the shadow base), and

* in forward mode, the tangent of every active float, ``sum_i partial_i * dx_i``
  from the rule table (:mod:`gradjit.ad.rules`);
* in the augmented primal, one tape record per executed block holding what the
  reverse sweep of that block needs (:mod:`gradjit.ad.tape`).

Calls to functions defined in the module call their derivative versions.
"""
from __future__ import annotations

import re

from ..analysis.activity import alloca_type, root
from ..analysis.calls import RAW_FREE, classify, math_name
from ..analysis.cfg import has_cycle
from ..ir import types as T
from ..ir.model import local_ref, rename
from ..ir.writer import label
from . import linalg, rules, tape
from .builder import Builder, fconst
from .common import (TAPE, LaneSweep, MemoryTypes, lane_key, placeholder, resolve,
                     shadow_name, shadow_params)

_SHADOW_BY_RENAME = {"getelementptr", "bitcast", "addrspacecast", "freeze", "extractvalue",
                     "insertvalue", "fpext", "fptrunc", "select", "load", "phi"}
_LOSES_DERIVATIVE = {"bitcast", "ptrtoint", "fptosi", "fptoui", "fcmp", "store", "ret",
                     "call", "extractelement", "insertelement", "shufflevector"}


class ForwardSweep(LaneSweep):
    def __init__(self, ctx, version, sweep, records=None):
        assert sweep in ("forward", "augmented")
        self.ctx, self.v, self.sweep = ctx, version, sweep
        self.fn, self.act = version.fn, version.activity
        self.records = records or {}
        self.b = Builder("gj.t", ctx.decls, ctx.counter, ctx.target)
        self.table = {}                  # lane_key(name, lane) -> shadow ref
        # vector mode (width N): one primal sweep, the tangent / shadow code once per lane
        self.lanes = range(version.width)
        self.mem = MemoryTypes(ctx, self.fn, version)
        self._forms, self._reserve_in = {}, {}
        if sweep == "augmented":
            form = ctx.loop_form(self.fn)
            for h, f in form.by_header.items():
                if f.trip is not None:
                    self._forms[h] = f
                    self._reserve_in.setdefault(f.preheader, []).append(h)
        self.values = {a.name: a for a in self.fn.args}
        for ins in self.fn.instructions():
            if ins.name:
                self.values[ins.name] = ins
        # vector forward mode: pointer -> the argument or allocation (its data
        # pointer) with interleaved lanes it points into; root -> element type
        self._inter, self._inter_elem, self._alloc_roots = {}, {}, {}
        self._interleaved_allocs = set()
        if self.fwd and version.width > 1:
            self._inter = self._interleaved(version)
        # vector forward mode on the CPU: the N tangents of a scalar float are one
        # <N x ty> value (see _packed)
        self.packed = self.fwd and version.width > 1 and ctx.target == "cpu"
        self._lane_native = self._lane_native_values() if self.packed else set()

    @property
    def fwd(self):
        return self.sweep == "forward"

    # shadows --------------------------------------------------------------
    def shadow(self, v) -> str:
        """Shadow (pointer) or tangent (float) of ``v``; zero / the primal when inactive."""
        if v.kind in ("arg", "inst") and self.act.is_active(v):
            return placeholder(v.name, self.lane)
        if v.kind == "const" and self.act.is_active(v):
            from ..analysis.activity import shadow_const
            return shadow_const(v.text)
        if T.has_float(v.type):
            return T.zero(v.type)
        return v.ref

    def wants_shadow(self, ins) -> bool:
        if not (ins.has_value and self.act.is_active(ins)):
            return False
        return self.fwd or ins.type == "ptr"

    def _set(self, name, ref):
        self.table[lane_key(name, self.lane)] = ref

    # lane-interleaved arguments (gradjit.analysis.interleave) ---------------------
    def _interleaved(self, version):
        """Pointers into interleaved arguments (the caller asked for them: an
        UnsupportedError makes it fall back to lane-major tangents) and into the
        allocations that can take the layout (:mod:`gradjit.analysis.interleave`)."""
        from ..analysis.interleave import allocation_data_pointers, interleaved_allocations
        cands = {}
        for name, alloc in allocation_data_pointers(self.fn, self.act.is_active).items():
            elem = self.mem.kind(self.values[name])
            if elem in ("double", "float"):
                cands[name] = (alloc, elem)
        args = set(version.interleaved)
        if not args and not cands:
            return {}
        derived, problems, roots = interleaved_allocations(
            self.fn, args, cands, self.ctx.defined,
            lambda d, r: self._allocation_conflicts(d, r, args, cands))
        if problems:
            ins, why, _ = problems[0]
            raise self.ctx.unsupported(f"lane-interleaved tangents: {why}", ins)
        self._alloc_roots = {r: cands[r] for r in roots}
        self._interleaved_allocs = {cands[r][0].name for r in roots}
        self._inter_elem = {a: self.ctx.arg_elem_types.get((self.fn.name, a)) for a in args}
        self._inter_elem.update((r, cands[r][1]) for r in roots)
        return {**derived, **{a: a for a in args | roots}}

    def _allocation_conflicts(self, derived, roots, args, cands):
        """Interleaved allocations (of ``roots``) this sweep could not follow: a
        tangent access of another float type than the allocation's, or a copy to
        or from an array with the other layout."""
        inter = set(args) | roots

        def origin(v):
            return v.name if v.name in inter else derived.get(v.name)

        bad = set()
        for ins in self.fn.instructions():
            if ins.opcode in ("load", "store"):
                ptr = ins.operands[0] if ins.opcode == "load" else ins.operands[1]
                o = origin(ptr)
                ty = ins.type if ins.opcode == "load" else ins.operands[0].type
                if o in roots and T.has_float(ty):
                    elem = cands[o][1]
                    if ty != elem and not re.fullmatch(rf"<\d+ x {elem}>", ty):
                        bad.add(o)
            elif ins.opcode == "call" and ins.callee.startswith(("llvm.memcpy.", "llvm.memmove.")):
                ends = [origin(a) for a in ins.operands[:2]]
                if None in ends and self.act.is_active(ins.operands[1]):
                    bad.update(e for e in ends if e in roots)
        return bad

    def _interleaved_allocation(self, ins, args):
        """The shadow of an allocation whose tangents are interleaved: one zeroed
        block of N times its bytes, held by lane 0 (the other lanes' meminfo
        shadows are null: their reference counting is skipped, and their data
        pointers are lane 0's plus k elements, see :meth:`_data_pointer`)."""
        if self.lane:
            self._set(ins.name, "null")
            return
        b, s = self.b, shadow_name(ins.name)
        size = args[0]
        n = b.assign(f"mul {size.type} {size.ref}, {len(self.lanes)}")
        rest = "".join(f", {a.type} {a.ref}" for a in args[1:])
        b.emit(f"{s} = call ptr @{ins.callee}({size.type} {n}{rest})")
        data, nbytes = self._allocated(s, "nrt_alloc", args)
        b.emit(f"call void @llvm.memset.p0.i64(ptr {data}, i8 0, i64 {nbytes}, i1 false)")
        self._set(ins.name, s)

    def _data_pointer(self, ins):
        """Data pointer of an interleaved allocation in the current lane: lane 0's
        is loaded from the shadow meminfo, lane k's is k elements on."""
        if not self.lane:
            return False
        elem = self._alloc_roots[ins.name][1]
        self._set(ins.name, self.b.assign(
            f"getelementptr i8, ptr {placeholder(ins.name, 0)}, i64 {self.lane * T.size(elem)}"))
        return True

    def _interleaved_shadow(self, ins):
        """Shadow of pointer ``ins`` into interleaved memory in the current lane,
        from the shadow of the pointer it is computed from: a gep moves N times
        as far (``shadow(base) + (ins - base) * N``), a cast keeps the address.
        (Phis and selects take their operands' shadows, as elsewhere: an
        allocation's pointers are merged with null on an inlined constructor's
        error paths, where the allocation itself is not defined.)"""
        b, base = self.b, ins.operands[0]
        if ins.opcode != "getelementptr":
            return self.shadow(base)
        off = b.assign(f"sub i64 {b.assign(f'ptrtoint ptr {ins.ref} to i64')}, "
                       f"{b.assign(f'ptrtoint ptr {base.ref} to i64')}")
        scaled = b.assign(f"mul i64 {off}, {len(self.lanes)}")
        return b.assign(f"getelementptr i8, ptr {self.shadow(base)}, i64 {scaled}")

    def _interleaved_access(self, ins, ptr, arg):
        """Tangent load / store through a pointer into an interleaved argument; a
        vector of c elements is c scalar accesses N elements apart."""
        b, load = self.b, ins.opcode == "load"
        val = None if load else ins.operands[0]
        ty = ins.type if load else val.type
        if load and not self.wants_shadow(ins):
            return
        if not load and not (T.has_float(ty) and self.act.is_active(ptr)):
            return self.store(ins)
        elem = self._inter_elem.get(arg)
        base = self.shadow(ptr)
        if ty == elem:
            if load:
                self._set(ins.name, b.assign(f"load {ty}, ptr {base}"))
            else:
                b.emit(f"store {ty} {self.shadow(val)}, ptr {base}")
            return
        m = re.fullmatch(r"<(\d+) x (\w+)>", ty)
        if not (m and m.group(2) == elem):
            raise self.ctx.unsupported(f"lane-interleaved tangents: a {ty} access to {elem} "
                                       "elements", ins)
        step = T.size(elem) * len(self.lanes)
        acc = "poison"
        for e in range(int(m.group(1))):
            p = base if e == 0 else b.assign(f"getelementptr i8, ptr {base}, i64 {e * step}")
            if load:
                x = b.assign(f"load {elem}, ptr {p}")
                acc = b.assign(f"insertelement {ty} {acc}, {elem} {x}, i64 {e}")
            else:
                x = b.assign(f"extractelement {ty} {self.shadow(val)}, i64 {e}")
                b.emit(f"store {elem} {x}, ptr {p}")
        if load:
            self._set(ins.name, acc)

    def _interleaved_memory(self, ins, args):
        """memset / memcpy of an interleaved range: once (lane 0) over N times the
        bytes, which holds every lane of the range."""
        if self.lane:
            return
        b, dst, n = self.b, args[0], args[2]
        nw = b.assign(f"mul {n.type} {n.ref}, {len(self.lanes)}")
        src = None if ins.callee.startswith("llvm.memset.") else args[1]
        if src is not None and self.act.is_active(src):
            if dst.name not in self._inter or src.name not in self._inter:
                raise self.ctx.unsupported("lane-interleaved tangents: a copy between an "
                                           "interleaved and a lane-major array", ins)
            b.emit(f"call void @{ins.callee}(ptr {self.shadow(dst)}, ptr {self.shadow(src)}, "
                   f"{n.type} {nw}, i1 false)")
            return
        if dst.name not in self._inter:
            return
        b.decls.setdefault("llvm.memset.p0.i64",
                           "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)")
        if n.type != "i64":
            nw = b.assign(f"zext {n.type} {nw} to i64")
        b.emit(f"call void @llvm.memset.p0.i64(ptr {self.shadow(dst)}, i8 0, i64 {nw}, i1 false)")

    def _rename_shadow(self, ins, ops):
        op, ty, out = ins.opcode, ins.type, shadow_name(ins.name, self.lane)
        if ins.name in self._alloc_roots and self._data_pointer(ins):
            return
        if ty == "ptr" and ins.name in self._inter and ins.name not in self._alloc_roots and \
                op not in ("phi", "select"):
            self._set(ins.name, self._interleaved_shadow(ins))
            return
        consts = [o for o in ops if o.kind == "const" and self.act.is_active(o)]
        if consts and op not in ("phi", "select", "insertvalue"):
            from ..analysis.activity import shadow_const
            text = ins.text
            for c in consts:
                text = text.replace(c.text, shadow_const(c.text))
            self.b.emit(rename(text, {ins.name: out, **{o.name: self.shadow(o) for o in ops
                                                          if o.kind in ("arg", "inst") and
                                                          (o.type == "ptr" or T.has_float(o.type))}}))
            self._set(ins.name, out)
            return
        if op in ("phi", "select") and ty == "ptr" and ins.name in self._mixed_merges():
            from ..analysis.activity import MIXED_MERGE
            raise self.ctx.unsupported(
                MIXED_MERGE + " (the Const one has no shadow to hold its derivative); make "
                "both Duplicated/Dual", ins, kind="mixed_merge")
        if op == "phi":
            inc = ", ".join(f"[ {self.shadow(v)}, {local_ref(b)} ]" for v, b in ins.incoming)
            self.b.emit(f"{out} = phi {ty} {inc}")
            self._set(ins.name, out)
            return
        if op == "select":
            c, a, b = ins.operands
            self.b.emit(f"{out} = select i1 {c.ref}, {ty} {self.shadow(a)}, {ty} {self.shadow(b)}")
            self._set(ins.name, out)
            return
        if op == "insertvalue":
            agg, val = ins.operands[0], ins.operands[1]
            idx = ins.text.rsplit(val.ref, 1)[1].lstrip(", ").strip()
            self.b.emit(f"{out} = insertvalue {ty} {self.shadow(agg)}, {val.type} "
                        f"{self.shadow(val)}, {idx}")
            self._set(ins.name, out)
            return
        mapping = {ins.name: out}
        for o in ops:
            if o.kind in ("arg", "inst") and (o.type == "ptr" or T.has_float(o.type)):
                mapping[o.name] = self.shadow(o)
        self.b.emit(rename(ins.text, mapping))
        self._set(ins.name, out)

    # text -------------------------------------------------------------------
    def header(self) -> str:
        v, fn = self.v, self.fn
        params = [f"{a.type} {a.ref}" for a in fn.args]
        params += [f"{a.type} {shadow_name(a.name, k)}" for a in shadow_params(v, self.sweep)
                   for k in self.lanes]
        ret = fn.ret_type
        if self.fwd:
            if v.ret_float:
                ret = "{ " + ", ".join([ret] * (1 + len(self.lanes))) + " }"
            name = v.names[0]
        else:
            params.append(f"ptr {TAPE}")
            name = v.names[0]
        return f"define internal {ret} @{_global(name)}({', '.join(params)})"

    def text(self) -> str:
        fn = self.fn
        for a in shadow_params(self.v, self.sweep):
            for k in self.lanes:
                self.table[lane_key(a.name, k)] = shadow_name(a.name, k)
        rets = [blk for blk in fn.blocks if blk.terminator.opcode == "ret"]
        lines = [self.header() + " {"]
        for blk in fn.blocks:
            self.b.lines = []
            if blk is fn.entry and self.packed:
                for a in shadow_params(self.v, self.sweep):
                    if a.type in ("double", "float"):
                        self._both_forms_of(a.name, a.type)
            for ins in blk.instructions[:-1]:
                if ins.opcode == "phi":
                    self.b.emit(ins.text)
                    if self.wants_shadow(ins) and not (self.packed and self._packed(ins)):
                        self.per_lane(lambda: self._rename_shadow(ins, ins.operands))
                else:
                    self.instruction(ins)
                if self.packed:
                    self._both_forms(ins)
            phis = [l for l in self.b.lines if _is_phi(l)]
            body = [l for l in self.b.lines if not _is_phi(l)]
            self.b.lines = []
            if not self.fwd:
                items = []
                for tag, name, kind, ty in self.records.get(blk.name, ()):
                    if tag == "from":
                        items.append((ty, self._from_phi(blk, phis)))
                    elif kind == "v":
                        items.append((ty, self.values[name].ref))
                    else:
                        items.append((ty, placeholder(name, int(kind[1:] or 0))))
                form = self._forms.get(blk.name)
                reserved = form is not None and form.trip is not None
                tape.push_record(self.b, TAPE, items, reserved=reserved and bool(items))
                for h in self._reserve_in.get(blk.name, ()):
                    self._reserve(h)
                if blk.terminator.opcode == "ret" and len(rets) > 1:
                    tape.push_record(self.b, TAPE, [("i32", str(rets.index(blk)))])
            self.terminator(blk.terminator)
            lines.append(f"{label(blk.name)}:")
            if blk is fn.entry and not self.fwd:
                phis.append(f"{tape.TAPE_COPY} = alloca {tape.TAPE_TYPE}")
            lines.extend("  " + l for l in phis + body + self.b.lines)
        lines.append("}")
        table = dict(self.table)
        return resolve("\n".join(lines), _Resolver(table, self))

    def _reserve(self, header):
        """At a loop's preheader: reserve the tape space of all its iterations."""
        form = self._forms[header]
        n = tape.record_bytes([ty for _, _, _, ty in self.records.get(header, ())], self.ctx.target)
        if not n:
            return
        bound, start = form.trip
        ty = bound.type
        tc = self.b.assign(f"sub {ty} {bound.ref}, {start.ref}")
        if ty != "i64":
            tc = self.b.assign(f"sext {ty} {tc} to i64")
        pos = self.b.assign(f"call i64 @llvm.smax.i64(i64 {tc}, i64 0)")
        self.b.decls.setdefault("llvm.smax.i64", "declare i64 @llvm.smax.i64(i64, i64)")
        total = self.b.assign(f"mul i64 {pos}, {n}")
        self.b.emit(f"call void @gj.tape.reserve(ptr {TAPE}, i64 {total})")

    def _from_phi(self, blk, phis) -> str:
        ref = local_ref(blk.name + ".from")
        entries = []
        for k, p in enumerate(blk.preds):
            term = self.fn.block(p).terminator
            mult = max(1, term.successors().count(blk.name))
            entries += [f"[ {k}, {local_ref(p)} ]"] * mult
        phis.append(f"{ref} = phi i32 " + ", ".join(entries))
        return ref

    # instructions -----------------------------------------------------------
    def instruction(self, ins):
        op = ins.opcode
        if op == "call":
            return self.call(ins)
        self.b.emit(ins.text)
        if not (self.packed and self._packed(ins)):
            self.per_lane(lambda: self.derivative(ins))

    # packed lanes ------------------------------------------------------------
    # In vector forward mode the N tangents of a scalar float are also kept as
    # one <N x ty> vector, and the tangent code of arithmetic, math calls, phis,
    # selects, casts and the loads and stores of interleaved memory is emitted
    # once on those vectors instead of once per lane: SIMD code across the
    # lanes (Enzyme's vector mode, Moses et al. 2021, sec. on batching, keeps
    # its batched shadows as arrays of lanes; the vector form is what lets
    # LLVM's code generator use vector registers without an SLP pass).  Each
    # value's shadow exists in both forms: lane k as ``extractelement`` of the
    # vector, or the vector built by ``insertelement`` from lanes made per lane
    # (lane-major loads, calls); LLVM drops the form nobody uses.
    #
    # A float loaded from lane-major memory (shadows shaped (N, *shape), C order)
    # has its N tangents N strides apart.  In a function with loops its code
    # stays per lane: LLVM's loop vectorizer then vectorizes each lane's code
    # across iterations, which beats building vectors (an elementwise ``sin``
    # loop, N = 8: 1.7 ms per lane vs 3.7 ms packed; a vector made before a loop
    # and taken apart in it: +17%).  A loop-free function (a small residual
    # whose Jacobian a caller's loop takes per element, say) has nothing to
    # vectorize per-lane code, so there each such load's lanes are gathered into
    # a vector (N loads and inserts) and what is computed from it is packed: the
    # width-15 BA residual Jacobian, 17-27 ms per lane, 8-12 ms gathered
    # (benchmarks/lanes.py).

    def _vty(self, ty) -> str:
        return f"<{len(self.lanes)} x {ty}>"

    def vshadow(self, v) -> str:
        """The packed tangents of scalar float ``v`` (zero when inactive)."""
        if v.kind in ("arg", "inst") and self.act.is_active(v):
            return placeholder(v.name, "v")
        return "zeroinitializer"

    def _packed(self, ins, kind=None) -> bool:
        """Emit the packed tangent code of ``ins`` where it has one; False leaves
        ``ins`` to the per-lane code."""
        op = ins.opcode
        if op in ("load", "store"):
            ptr = ins.operands[0] if op == "load" else ins.operands[1]
            if ptr.name in self._inter:
                return self._packed_access(ins, ptr, self._inter[ptr.name])
            return False
        if not (ins.has_value and ins.type in ("double", "float") and self.wants_shadow(ins)):
            return False
        if ins.name in self._lane_native:
            return False
        if any(o.kind not in ("arg", "inst") and self.act.is_active(o) for o in ins.operands):
            return False
        if kind == "math":
            self.tangent(ins, math_name(ins.callee), ins.operands[:-1], packed=True)
        elif kind is None and op in rules.RULES:
            self.tangent(ins, op, ins.operands, packed=True)
        elif kind is None and op in ("phi", "select", "fpext", "fptrunc", "freeze"):
            self._packed_rename(ins)
        else:
            return False
        return True

    def _packable(self, ins, gather=False) -> str:
        """'load' for a tangent load of interleaved memory (packed at its source),
        'gather' for a float load of lane-major memory in a loop-free function
        (``gather``: its lanes are gathered into a vector), 'op' for code
        :meth:`_packed` can emit on vectors, '' for the rest."""
        op = ins.opcode
        if op == "load":
            arg = self._inter.get(ins.operands[0].name)
            if arg is not None:
                return "load" if self._inter_elem.get(arg) == ins.type else ""
            return "gather" if gather and ins.type in ("double", "float") else ""
        if op == "call":
            kind = classify(ins.callee, ins.callee in self.ctx.defined)
            return "op" if kind == "math" else ""
        return "op" if op in rules.RULES or op in ("phi", "select", "fpext", "fptrunc",
                                                    "freeze") else ""

    def _lane_native_values(self) -> set:
        """Scalar floats whose tangents are made lane by lane: those read from
        lane-major memory (in functions with loops, where LLVM vectorizes the
        per-lane code across iterations; in loop-free ones they are gathered, see
        above) or returned by calls, and what is computed from them; the rest is
        packed.  A forward closure over the uses (phis included): linear in the
        function."""
        gather = not has_cycle(self.fn)
        users, native = {}, set()
        for ins in self.fn.instructions():
            for o in ins.operands:
                if o.kind == "inst":
                    users.setdefault(o.name, []).append(ins)
            if ins.has_value and ins.type in ("double", "float") and self.wants_shadow(ins) \
                    and not self._packable(ins, gather):
                native.add(ins.name)
        work = list(native)
        while work:
            for u in users.get(work.pop(), ()):
                if u.name and u.name not in native and self._packable(u) == "op" and \
                        u.type in ("double", "float"):
                    native.add(u.name)
                    work.append(u.name)
        return native

    def _packed_rename(self, ins):
        op, vt = ins.opcode, self._vty(ins.type)
        out = local_ref(ins.name + ".sv")
        if op == "phi":
            inc = ", ".join(f"[ {self.vshadow(v)}, {local_ref(b)} ]" for v, b in ins.incoming)
            self.b.emit(f"{out} = phi {vt} {inc}")
        elif op == "select":
            c, x, y = ins.operands
            self.b.emit(f"{out} = select i1 {c.ref}, {vt} {self.vshadow(x)}, {vt} {self.vshadow(y)}")
        elif op == "freeze":
            self.b.emit(f"{out} = freeze {vt} {self.vshadow(ins.operands[0])}")
        else:                                   # fpext / fptrunc
            o = ins.operands[0]
            self.b.emit(f"{out} = {op} {self._vty(o.type)} {self.vshadow(o)} to {vt}")
        self.table[lane_key(ins.name, "v")] = out

    def _packed_access(self, ins, ptr, arg) -> bool:
        """A tangent load or store of one element of interleaved memory: its N
        lanes are adjacent, one vector access at lane 0's address."""
        load = ins.opcode == "load"
        val = None if load else ins.operands[0]
        ty = ins.type if load else val.type
        elem = self._inter_elem.get(arg)
        if ty != elem:
            return False
        if load and not self.wants_shadow(ins):
            return True
        if not load and (not self.act.is_active(ptr) or val.name in self._lane_native):
            return False
        vt, align = self._vty(ty), T.size(ty)
        base = self.shadow(ptr)                   # lane 0's address
        if load:
            out = local_ref(ins.name + ".sv")
            self.b.emit(f"{out} = load {vt}, ptr {base}, align {align}")
            self.table[lane_key(ins.name, "v")] = out
        else:
            self.b.emit(f"store {vt} {self.vshadow(val)}, ptr {base}, align {align}")
        return True

    def _both_forms(self, ins):
        """After ``ins``: its shadow as lanes and as a vector (see above)."""
        if not (ins.has_value and ins.type in ("double", "float") and self.wants_shadow(ins)):
            return
        self._both_forms_of(ins.name, ins.type)

    def _both_forms_of(self, name, ty):
        vkey, vt, b = lane_key(name, "v"), self._vty(ty), self.b
        if vkey in self.table and lane_key(name, 0) not in self.table:
            for k in self.lanes:
                out = shadow_name(name, k)
                b.emit(f"{out} = extractelement {vt} {placeholder(name, 'v')}, i64 {k}")
                self.table[lane_key(name, k)] = out
        elif vkey not in self.table and lane_key(name, 0) in self.table:
            acc = "poison"
            for k in self.lanes:
                acc = b.assign(f"insertelement {vt} {acc}, {ty} {placeholder(name, k)}, i64 {k}")
            self.table[vkey] = acc

    def derivative(self, ins):
        """The shadow / tangent code of non-call instruction ``ins`` (current lane)."""
        op = ins.opcode
        if self._inter and op in ("load", "store"):
            ptr = ins.operands[0] if op == "load" else ins.operands[1]
            if ptr.name in self._inter:
                return self._interleaved_access(ins, ptr, self._inter[ptr.name])
        if op == "store":
            return self.store(ins)
        if op == "atomicrmw":
            return self.atomic(ins)
        if op == "alloca":
            if self.act.is_active(ins):
                self.alloca(ins)
            return
        if not self.wants_shadow(ins):
            if (not ins.has_value or not self.act.is_active(ins)) and op in ("bitcast", "ptrtoint") \
                    and any(self.act.is_active(o) and T.has_float(o.type) for o in ins.operands):
                from ..analysis.activity import float_bits_escape
                if op == "ptrtoint" or float_bits_escape(self.fn, ins):
                    raise self.ctx.unsupported(f"a bit cast of an active float ({op})", ins)
            return
        if op in _SHADOW_BY_RENAME:
            ops = ins.operands[1:] if op == "select" else ins.operands
            return self._rename_shadow(ins, ops)
        if op in rules.RULES:
            return self.tangent(ins, op, ins.operands)
        raise self.ctx.unsupported(f"the instruction '{op}' on active values", ins)

    def tangent(self, ins, name, fops, packed=False):
        """``sum_i partial_i * tangent(op_i)`` of ``ins`` (current lane); ``packed``:
        on all lanes' vectors, each partial computed once and broadcast."""
        ty, b = ins.type, self.b
        sty = self._vty(ty) if packed else ty
        parts = rules.partials(name)
        terms = []
        for k, o in enumerate(fops):
            if k >= len(parts) or not self.act.is_active(o) or not T.has_float(o.type):
                continue
            p = parts[k]
            if callable(p):
                p = p(b, ty, lambda j: fops[j].ref, lambda: ins.ref)
                if packed:
                    p = b.splat(p, ty, len(self.lanes))
            # strong zero where a partial may be infinite at finite inputs (sqrt,
            # log, acos at the ends of their domains): a zero tangent there (a
            # clamped input, sqrt(max(x, 0))) gives 0, not NaN.  Elsewhere plain
            # products: the untaken arm of a select is dropped with its tangent in
            # forward mode anyway, and a select on every product (divisions
            # included) cost ~30% of the hand-tracking Jacobian
            t = rules.scale(b, sty, p, self.vshadow(o) if packed else self.shadow(o),
                            strong_zero=name in rules.SINGULAR)
            if t is not None:
                terms.append(t)
        if packed:
            acc = terms[0] if terms else "zeroinitializer"
        else:
            acc = terms[0] if terms else fconst(0.0, ty)
        for t in terms[1:]:
            acc = b.fadd(sty, acc, t)
        if packed:
            self.table[lane_key(ins.name, "v")] = acc
        else:
            self._set(ins.name, acc)

    def alloca(self, ins):
        aty = alloca_type(ins)
        rest = ins.text.split("alloca", 1)[1].replace(aty, "", 1)
        if re.match(r"\s*,\s*i\d+\s+(?!1\b)", rest):
            raise self.ctx.unsupported("an alloca with a dynamic element count", ins)
        size = T.size(aty) if aty != "ptr" else 8
        s = shadow_name(ins.name, self.lane)
        if self.fwd:
            self.b.emit(rename(ins.text, {ins.name: s}))
            self.b.call("llvm.memset.p0.i64", "void", [("ptr", s),
                        ("i8", "0"), ("i64", str(size)), ("i1", "false")])
        elif self.ctx.target == "cuda":          # no calloc on the device
            self.b.emit(f"{s} = call ptr @gj.zalloc(i64 {size})")
        else:
            self.b.emit(f"{s} = call ptr @calloc(i64 1, i64 {size})")
        self._set(ins.name, s)

    def atomic(self, ins):
        """``atomicrmw fadd/fsub p, v`` (``cuda.atomic.add``): ``*p += v`` done atomically."""
        ptr, val = ins.operands[0], ins.operands[1]
        if not T.has_float(val.type):
            return
        kind = ins.text.split("atomicrmw", 1)[1].split()[0]
        if kind not in ("fadd", "fsub") and self.act.is_active(val):
            raise self.ctx.unsupported(f"an atomic {kind} of an active value", ins)
        if self.act.is_active(val) and not self.act.is_active(ptr):
            raise self.ctx.unsupported("an atomic add of an active value into memory without "
                                       "a shadow (a Const array or shared memory)", ins)
        if self.fwd and self.act.is_active(ptr):
            self.b.emit(f"atomicrmw {kind} ptr {self.shadow(ptr)}, {val.type} {self.shadow(val)} monotonic")

    def store(self, ins):
        val, ptr = ins.operands[0], ins.operands[1]
        if not self.act.is_active(ptr):
            # an active float, or a pointer to float memory (an array stored into a
            # list): memory without a shadow would lose its derivative
            if self.act.is_active(val) and (T.has_float(val.type) or (
                    val.type == "ptr" and self.mem.kind(val) in ("double", "float", "unknown"))):
                if _global_root(ptr):
                    raise self.ctx.unsupported("a store of an active value into a global or "
                                               "shared-memory array", ins)
                src = _external_root(ptr, self.ctx.defined)
                if src:
                    raise self.ctx.unsupported(
                        f"a store of an active value or array into memory from '{src}' (for "
                        "example a list or dict, or np.broadcast_arrays and functions using it; "
                        "use NumPy arrays or tuples instead), which has no shadow", ins)
                self._note_const_written(ptr)
            return
        vt = val.type
        if vt == "ptr":
            self.b.emit(f"store ptr {self.shadow(val)}, ptr {self.shadow(ptr)}")
        elif T.has_ptr(vt) and T.has_float(vt):
            raise self.ctx.unsupported("a store of an aggregate holding pointers and floats", ins)
        elif T.has_ptr(vt):
            if self.act.is_active(val):
                raise self.ctx.unsupported("a store of an aggregate of pointers", ins)
        elif T.has_float(vt) and self.fwd:
            self.b.emit(f"store {vt} {self.shadow(val)}, ptr {self.shadow(ptr)}")

    def call(self, ins):
        kind = classify(ins.callee, ins.callee in self.ctx.defined)
        args = ins.operands[:-1]
        if kind == "defined":
            return self.call_defined(ins, args)
        if kind == "parallel":
            from . import parallel_for
            return parallel_for.forward(self, ins)
        if kind == "linalg":
            linalg.before(self, ins, args)
        self.b.emit(ins.text)
        if not (self.packed and kind == "math" and self._packed(ins, kind)):
            self.per_lane(lambda: self.call_derivative(ins, kind, args))

    def call_derivative(self, ins, kind, args):
        """The shadow / tangent code of a call that is not to a defined function."""
        active = [a for a in args if self.act.is_active(a)]
        if kind in ("noop", "pure_int", "barrier"):
            return
        if kind == "math":
            if self.wants_shadow(ins):
                self.tangent(ins, math_name(ins.callee), args)
            return
        if kind == "nrt_alloc" and ins.name in self._interleaved_allocs:
            return self._interleaved_allocation(ins, args)
        if kind in ("nrt_alloc", "raw_alloc"):
            # a zeroed shadow allocation of the same size (a raw temporary's is freed
            # with it in forward mode, by the reverse of this call in reverse mode)
            s = shadow_name(ins.name, self.lane)
            self.b.emit(rename(ins.text, {ins.name: s}))
            data, nbytes = self._allocated(s, kind, args)
            self.b.emit(f"call void @llvm.memset.p0.i64(ptr {data}, i8 0, i64 {nbytes}, i1 false)")
            self._set(ins.name, s)
            return
        if ins.callee == RAW_FREE:
            if active and self.fwd:
                self.b.emit(f"call void @{RAW_FREE}(ptr {self._own_shadow(args[0])})")
            return
        if kind == "nrt_refct" or ins.callee == "NRT_MemInfo_call_dtor":
            if active and self.fwd:
                self.b.emit(rename(self._dtor_text(ins), {a.name: self._own_shadow(a)
                                                          for a in active}))
            return
        if kind == "memory":
            return self.memory(ins, args)
        if kind == "linalg":
            return linalg.forward(self, ins, args)
        if active and kind != "inactive_external":
            raise self.ctx.unsupported(_active_call_message(ins.callee), ins)

    def _allocated(self, s, kind, args):
        """(data pointer, byte size) of allocation ``s``: a meminfo's data and size
        fields (``NRT_MemInfo_alloc*``), or a raw buffer and its requested size
        (``NRT_Allocate``; 0 when it returned null)."""
        b = self.b
        if kind == "nrt_alloc":
            data = b.assign(f"load ptr, ptr {b.assign(f'getelementptr inbounds i8, ptr {s}, i64 24')}")
            return data, b.assign(f"load i64, ptr {b.assign(f'getelementptr inbounds i8, ptr {s}, i64 32')}")
        ok = b.assign(f"icmp ne ptr {s}, null")
        return s, b.assign(f"select i1 {ok}, i64 {args[0].ref}, i64 0")

    def _mixed_merges(self):
        got = getattr(self, "_mixed", None)
        if got is None:
            from ..analysis.activity import mixed_data_merges
            got = self._mixed = mixed_data_merges(self.fn, self.act)
        return got

    def _own_shadow(self, a):
        """The shadow of meminfo ``a`` for mirroring its reference counting, or null
        where it is ``a`` itself (a phi or select that merges a meminfo without a
        shadow, such as a list's, takes the primal there): counting that one
        twice would free it twice."""
        s = self.shadow(a)
        same = self.b.assign(f"icmp eq ptr {s}, {a.ref}")
        return self.b.assign(f"select i1 {same}, ptr null, ptr {s}")

    def _dtor_text(self, ins):
        """``ins`` with ``NRT_MemInfo_call_dtor`` replaced by a null-safe helper
        (``NRT_incref`` / ``NRT_decref`` check for null themselves)."""
        text = re.sub(r"\bptr (?:nonnull |noundef |dereferenceable\(\d+\) )+", "ptr ", ins.text)
        if ins.callee != "NRT_MemInfo_call_dtor":
            return text
        self.ctx.extra.setdefault("gj.call_dtor.nonnull", _CALL_DTOR_NONNULL)
        return text.replace("@NRT_MemInfo_call_dtor(", "@gj.call_dtor.nonnull(", 1)

    def memory(self, ins, args):
        dst = args[0]
        if not self.act.is_active(dst):
            if not ins.callee.startswith("llvm.memset.") and self.act.is_active(args[1]):
                self._note_const_written(dst)
            return
        if self._inter and any(a.name in self._inter for a in args[:2]):
            return self._interleaved_memory(ins, args)
        elem = self.mem.kind(dst)
        is_float = elem in ("double", "float")
        if self.sweep == "augmented" and is_float:
            return                      # float shadows hold adjoints: the reverse handles it
        n = args[2]
        if ins.callee.startswith("llvm.memset."):
            self.b.emit(f"call void @{ins.callee}(ptr {self.shadow(dst)}, i8 0, "
                        f"{n.type} {n.ref}, i1 false)")
            return
        src = args[1]
        if self.act.is_active(src):
            self.b.emit(f"call void @{ins.callee}(ptr {self.shadow(dst)}, ptr {self.shadow(src)}, "
                        f"{n.type} {n.ref}, i1 false)")
        else:
            self.b.call("llvm.memset.p0.i64", "void", [("ptr", self.shadow(dst)), ("i8", "0"),
                        ("i64", n.ref if n.type == "i64" else self.b.assign(f"zext {n.type} {n.ref} to i64")),
                        ("i1", "false")])

    def call_defined(self, ins, args):
        callee = self.ctx.module.functions[ins.callee]
        mask = [self.act.is_active(a) for a in args]
        ret_active = ins.has_value and self.act.is_active(ins)
        if ret_active and not T.has_float(ins.type):
            raise self.ctx.unsupported("a call returning an active pointer", ins)
        self._pass_element_types(callee, args, mask)
        ver = self.ctx.version(callee.name, "forward" if self.fwd else "reverse", mask, ret_active,
                               atomic=self.v.atomic, width=len(self.lanes))
        argtext = [f"{a.type} {a.ref}" for a in args]
        for a, m in zip(args, mask):
            if m and (self.fwd or a.type == "ptr"):
                argtext += self.per_lane(lambda: f"{a.type} {self.shadow(a)}")
        if not self.fwd:
            argtext.append(f"ptr {tape.TAPE_COPY}")
        call = f"call {ins.type} @{_global(ver.names[0])}({', '.join(argtext)})"
        if self.fwd and ret_active:
            pair = "{ " + ", ".join([ins.type] * (1 + len(self.lanes))) + " }"
            t = self.b.assign(f"call {pair} @{_global(ver.names[0])}({', '.join(argtext)})")
            self.b.emit(f"{ins.ref} = extractvalue {pair} {t}, 0")
            for k in self.lanes:
                self.b.emit(f"{shadow_name(ins.name, k)} = extractvalue {pair} {t}, {k + 1}")
                self.table[lane_key(ins.name, k)] = shadow_name(ins.name, k)
        else:
            text = f"{ins.ref} = {call}" if ins.has_value else call
            if self.fwd:
                self.b.emit(text)
            else:
                tape.call_with_copy(self.b, lambda: self.b.emit(text))

    def _note_const_written(self, ptr):
        """A derivative stored into memory without a shadow: when it is an argument
        of the top-level function (a Const array the function writes), note it, so
        that the transforms (grad, jvp, ...) can give the array a scratch shadow."""
        if self.v.top:
            from ..analysis.activity import root
            r = root(ptr)
            if r is not None and r.kind == "arg":
                self.ctx.const_written.add(r.name)

    def _pass_element_types(self, callee, args, mask):
        """Tell the callee the float element type of the memory its active pointer
        arguments point to, where this function knows it: the callee may only copy
        that memory (``a.flatten()``: a ``memcpy`` into an array it returns), and
        the copy's adjoint needs the type."""
        for k, (a, m) in enumerate(zip(args, mask)):
            if m and a.type == "ptr" and k < len(callee.args):
                key = (callee.name, callee.args[k].name)
                if key not in self.ctx.arg_elem_types:
                    t = self.mem.kind(a)
                    if t in ("double", "float"):
                        self.ctx.arg_elem_types[key] = t

    def terminator(self, term):
        if term.opcode == "ret" and self.fwd and self.v.ret_float and term.operands:
            val = term.operands[0]
            ty = val.type
            pair = "{ " + ", ".join([ty] * (1 + len(self.lanes))) + " }"
            c = self.b.assign(f"insertvalue {pair} undef, {ty} {val.ref}, 0")
            for k, t in enumerate(self.per_lane(lambda: self.shadow(val))):
                c = self.b.assign(f"insertvalue {pair} {c}, {ty} {t}, {k + 1}")
            self.b.emit(f"ret {pair} {c}")
        else:
            self.b.emit(term.text)


_CALL_DTOR_NONNULL = r"""
define internal void @gj.call_dtor.nonnull(ptr %m) alwaysinline {
entry:
  %z = icmp eq ptr %m, null
  br i1 %z, label %done, label %go
go:
  call void @NRT_MemInfo_call_dtor(ptr %m)
  br label %done
done:
  ret void
}
"""


def _external_root(ptr, defined):
    """The callee when ``ptr`` addresses memory returned by an unknown external call
    (a list's storage from ``NRT_MemInfo_varsize_realloc``), else None."""
    r = root(ptr)
    if r is not None and r.kind == "inst" and r.opcode == "call" and \
            classify(r.callee, r.callee in defined) == "external":
        return r.callee
    return None


def _global_root(ptr):
    """Does ``ptr`` address a global variable (e.g. CUDA shared memory)?"""
    v, steps = ptr, 0
    while v.kind == "inst" and v.opcode in ("getelementptr", "addrspacecast", "bitcast") and steps < 64:
        v, steps = v.operands[0], steps + 1
    return v.kind == "global" or (v.kind == "const" and "@" in v.text)


class _Resolver(dict):
    """Placeholder table: a value whose shadow was never made (e.g. defined in an
    unreachable block) resolves to zero / null."""

    def __init__(self, table, sweep):
        super().__init__(table)
        self.sweep = sweep

    def __missing__(self, name):
        base, _, lane = name.partition("\x03")
        if lane == "v":
            return "zeroinitializer"
        return T.zero(self.sweep.values[base].type)


def _is_phi(line: str) -> bool:
    return " = phi " in line and line.lstrip().startswith("%") and line.split(" = ", 1)[1].startswith("phi ")


def _global(name: str) -> str:
    from ..ir.model import _PLAIN
    return name if _PLAIN.match(name) else '"' + name + '"'


def _active_call_message(callee: str) -> str:
    """What an UnsupportedError says of a call with active arguments that has no rule.

    Calls into the CPython API come from Numba boxing a value into a Python object,
    which nopython code does for ``print`` (and ``str``/``repr``/objmode) of it."""
    if callee.startswith(("Py", "_Py", "NRT_adapt_", "numba_box")):
        return (f"print() (or another conversion to a Python object, here '{callee}') "
                "of a differentiated value; print it outside the function, or print "
                "a value that does not depend on the active arguments")
    if not callee:
        return ("an indirect call (a ctypes or cffi function, or another function "
                "pointer) with active arguments")
    return f"a call to '{callee}' with active arguments"

