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
"""
from __future__ import annotations

from ..analysis.activity import alloca_type
from ..analysis.calls import classify, math_name
from ..analysis.dominators import DominatorTree
from ..ir import types as T
from ..ir.model import local_ref
from ..ir.writer import label
from . import rules, tape
from .builder import Builder
from .common import (TAPE, MemoryTypes, float_outs, out_name, shadow_name,
                     shadow_params)
from .forward_sweep import _global

DRET = "%gj.dret"


class ReverseSweep:
    def __init__(self, ctx, version):
        self.ctx, self.v = ctx, version
        self.fn, self.act = version.fn, version.activity
        self.needs = {}                       # block -> [(name, kind, type)]
        self._need_set = {}
        self.b = Builder("gj.r", ctx.decls, ctx.counter)
        self.adj = {}                         # name -> (alloca ref, type)
        self.mem = MemoryTypes(ctx, self.fn)
        self.entry_allocas = []
        self.block = None

    # primal values and shadows in the reverse --------------------------------
    def pv(self, v) -> str:
        """The primal value ``v`` inside the reverse of the current block."""
        if v.kind != "inst":
            return v.ref
        return self._need(v.name, "v", v.type)

    def ps(self, v) -> str:
        """The shadow of active pointer ``v`` inside the reverse of the current block."""
        if v.kind == "arg":
            return shadow_name(v.name)
        return self._need(v.name, "s", "ptr")

    def _need(self, name, kind, ty):
        key = (name, kind)
        got = self._need_set.setdefault(self.block, {})
        if key not in got:
            got[key] = local_ref(f"{name}{'.s' if kind == 's' else ''}@{self.block}")
            self.needs.setdefault(self.block, []).append((name, kind, ty))
        return got[key]

    # adjoints ---------------------------------------------------------------
    def _slot(self, v):
        if v.name not in self.adj:
            ref = local_ref(v.name + ".d")
            self.adj[v.name] = (ref, v.type)
        return self.adj[v.name][0]

    def take(self, v) -> str:
        """Read and zero the adjoint of ``v``."""
        slot = self._slot(v)
        a = self.b.assign(f"load {v.type}, ptr {slot}")
        self.b.emit(f"store {v.type} {T.zero(v.type)}, ptr {slot}")
        return a

    def add(self, v, value, ty=None):
        """``adjoint(v) += value`` (nothing for constants and inactive values)."""
        if value is None or v.kind not in ("arg", "inst") or not self.act.is_active(v):
            return
        slot = self._slot(v)
        cur = self.b.assign(f"load {v.type}, ptr {slot}")
        self.b.emit(f"store {v.type} {self._sum(v.type, cur, value)}, ptr {slot}")

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

    def mem_add(self, ptr, ty, value, ins):
        """``*ptr += value`` on float leaves (atomically under a parallel marker)."""
        leaves = T.float_paths(ty) if ty not in T.FLOATS else [((), ty)]
        for path, leaf in leaves:
            x = value if not path else self.b.assign(
                f"extractvalue {ty} {value}, {', '.join(map(str, path))}")
            p = ptr if not path else self.b.assign(
                f"getelementptr inbounds {ty}, ptr {ptr}, i32 0, {', '.join('i32 %d' % k for k in path)}")
            if self.v.atomic:
                self.b.emit(f"atomicrmw fadd ptr {p}, {leaf} {x} monotonic")
            else:
                cur = self.b.assign(f"load {leaf}, ptr {p}")
                self.b.emit(f"store {leaf} {self.b.fadd(leaf, cur, x)}, ptr {p}")

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
    def text(self) -> str:
        fn, v = self.fn, self.v
        dom = DominatorTree(fn)
        reach = [fn.block(n) for n in dom.rpo]
        rets = [blk for blk in fn.blocks if blk.terminator.opcode == "ret"]
        blocks_text = []
        for blk in reach:
            if blk.terminator.opcode == "unreachable":
                continue
            blocks_text.append(self.reverse_block(blk, blk is fn.entry))
        # entry: adjoint slots, then the reverse of the return block taken
        params = [f"{a.type} {a.ref}" for a in fn.args]
        params += [f"{a.type} {shadow_name(a.name)}" for a in shadow_params(v, "reverse")]
        params.append(f"ptr {TAPE}")
        if v.ret_float:
            params.append(f"{fn.ret_type} {DRET}")
        params += [f"ptr {out_name(a)}" for a in float_outs(v)]
        head = [f"define internal void @{_global(v.names[1])}({', '.join(params)}) {{", "entry:"]
        for name, (ref, ty) in self.adj.items():
            head.append(f"  {ref} = alloca {ty}")
            head.append(f"  store {ty} {T.zero(ty)}, ptr {ref}")
        head.extend("  " + l for l in self.entry_allocas)
        reach_rets = [r for r in rets if r.name in dom.idom]
        if len(rets) > 1:
            self.b.lines = []
            x = local_ref("gj.exit")
            tape.pop_record(self.b, TAPE, [("i32", x)])
            head.extend("  " + l for l in self.b.lines)
            cases = " ".join(f"i32 {rets.index(r)}, label {local_ref('rev.' + r.name)}"
                             for r in reach_rets)
            head.append(f"  switch i32 {x}, label {local_ref('rev.' + reach_rets[0].name)} [ {cases} ]")
        elif reach_rets:
            head.append(f"  br label {local_ref('rev.' + reach_rets[0].name)}")
        else:
            head.append("  br label %rev.exit")
        tail = ["rev.exit:"]
        self.b.lines = []
        for a in float_outs(v):
            slot = self._slot(a)
            x = self.b.assign(f"load {a.type}, ptr {slot}")
            y = self.b.assign(f"load {a.type}, ptr {out_name(a)}")
            self.b.emit(f"store {a.type} {self.b.fadd(a.type, y, x)}, ptr {out_name(a)}")
        self.b.emit("ret void")
        tail.extend("  " + l for l in self.b.lines)
        # slots for float args added after the entry was written
        for a in float_outs(v):
            ref, ty = self.adj[a.name]
            line = f"  {ref} = alloca {ty}"
            if line not in head:
                head.insert(2, f"  store {ty} {T.zero(ty)}, ptr {ref}")
                head.insert(2, line)
        return "\n".join(head + sum(blocks_text, []) + tail + ["}"])

    def reverse_block(self, blk, is_entry) -> list:
        self.block = blk.name
        self.b.lines = []
        term = blk.terminator
        if term.opcode == "ret" and term.operands and self.v.ret_float:
            self.add(term.operands[0], DRET)
        for ins in reversed(blk.instructions[:-1]):
            if ins.opcode != "phi":
                self.instruction(ins)
        body = self.b.lines
        # the record: predecessor id first, then the needs in push order
        self.b.lines = []
        items = []
        from_ref = None
        if len(blk.preds) > 1:
            from_ref = local_ref(f"{blk.name}.from@rev")
            items.append(("i32", from_ref))
        for name, kind, ty in self.needs.get(blk.name, ()):
            items.append((ty, self._need_set[blk.name][(name, kind)]))
        tape.pop_record(self.b, TAPE, items)
        pops = self.b.lines
        out = [f"{label('rev.' + blk.name)}:"] + ["  " + l for l in pops + body]
        if is_entry:
            out.append("  br label %rev.exit")
            return out
        edges = []
        if from_ref is None:
            out.append(f"  br label {local_ref('edge.' + blk.preds[0] + '.' + blk.name)}")
        else:
            cases = " ".join(f"i32 {k}, label {local_ref('edge.' + p + '.' + blk.name)}"
                             for k, p in enumerate(blk.preds))
            first = local_ref('edge.' + blk.preds[0] + '.' + blk.name)
            out.append(f"  switch i32 {from_ref}, label {first} [ {cases} ]")
        for p in blk.preds:
            edges += self.edge(p, blk)
        return out + edges

    def edge(self, pred, blk) -> list:
        self.b.lines = []
        self.block = pred            # values an edge needs would be the predecessor's
        phis = [p for p in blk.phis() if self.act.is_active(p) and T.has_float(p.type)]
        taken = [(p, self.take(p)) for p in phis]
        for p, a in taken:
            for val, src in p.incoming:
                if src == pred:
                    self.add(val, a)
                    break
        self.b.emit(f"br label {local_ref('rev.' + pred)}")
        return [f"{label('edge.' + pred + '.' + blk.name)}:"] + ["  " + l for l in self.b.lines]

    # instruction adjoints --------------------------------------------------------
    def instruction(self, ins):
        op = ins.opcode
        if op == "call":
            return self.call(ins)
        if op == "store":
            return self.store(ins)
        if op == "alloca":
            if self.act.is_active(ins):
                self.b.emit(f"call void @free(ptr {self.ps(ins)})")
            return
        if not (ins.has_value and self.act.is_active(ins) and T.has_float(ins.type)):
            return
        ty = ins.type
        if op == "load":
            a = self.take(ins)
            self.mem_add(self.ps(ins.operands[0]), ty, a, ins)
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

    def by_rule(self, ins, name, fops):
        ty = ins.type
        parts = rules.partials(name)
        a = self.take(ins)
        for k, o in enumerate(fops):
            if k >= len(parts) or not self.act.is_active(o) or not T.has_float(o.type):
                continue
            p = parts[k]
            if callable(p):
                p = p(self.b, ty, lambda j: self.pv(fops[j]), lambda: self.pv(ins))
            self.add(o, rules.scale(self.b, ty, p, a))

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
        if kind == "math":
            if ins.has_value and self.act.is_active(ins):
                self.by_rule(ins, math_name(ins.callee), args)
            return
        if kind == "nrt_alloc":
            self.b.emit(f"call void @NRT_MemInfo_call_dtor(ptr {self.ps(ins)})")
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
        ver = self.ctx.version(ins.callee, "reverse", mask, ret_active)
        argtext = [f"{a.type} {self.pv(a)}" for a in args]
        argtext += [f"ptr {self.ps(a)}" for a, m in zip(args, mask) if m and a.type == "ptr"]
        argtext.append(f"ptr {TAPE}")
        if ver.ret_float:
            argtext.append(f"{ins.type} {self.take(ins)}")
        outs = []
        for a, m in zip(args, mask):
            if m and a.type != "ptr":
                slot = local_ref(f"gj.o{len(self.entry_allocas)}")
                self.entry_allocas.append(f"{slot} = alloca {a.type}")
                self.b.emit(f"store {a.type} {T.zero(a.type)}, ptr {slot}")
                argtext.append(f"ptr {slot}")
                outs.append((a, slot))
        self.b.emit(f"call void @{_global(ver.names[1])}({', '.join(argtext)})")
        for a, slot in outs:
            self.add(a, self.b.assign(f"load {a.type}, ptr {slot}"))
