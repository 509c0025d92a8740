"""From a captured function to the text of a derivative module.

:func:`differentiate` picks the derivative version of the captured function for
the user's activities, generates it and everything it calls, and writes an *entry*
function with Numba's CPU calling convention for the derivative's own Numba
signature, so the derivative is called like any Numba-compiled function::

    i32 entry(ptr retptr, ptr excinfo, <flattened arguments of df>)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UnsupportedError
from ..frontend.typetree import leaves
from ..ir import types as T
from ..ir.model import local_ref
from ..ir.refcounts import drop_borrowed_refcounts
from ..ir.writer import function_text
from . import tape
from .common import float_outs, shadow_params
from .context import ADContext
from .forward_sweep import _global

_ENV = re.compile(r"^(@\S+) = (?:common |weak |linkonce_odr |internal )?(?:local_unnamed_addr |unnamed_addr )*global ptr null")


@dataclass
class ArgPlan:
    """How one argument of the primal appears in ``df``.

    ``slots``: flattened index ranges ``(start, stop)`` of ``df``'s parameters for
    the primal and, when shadowed, the shadow; ``active_float``: it is an Active
    float scalar whose gradient ``df`` returns; ``tangent``: a forward-mode float
    tangent.
    """
    numba_type: object
    leaves: list
    shadowed: bool = False
    active_float: bool = False
    primal_slots: tuple = ()
    shadow_slots: tuple = ()
    interleaved: bool = False        # vector forward mode: lanes interleaved (lane axis fastest)


@dataclass
class Plan:
    mode: str
    args: list = field(default_factory=list)
    ret_float: str = None            # LLVM float type of the primal return, if any
    ret_bytes: int = 8               # size of the primal's return value (its retptr buffer)
    ret_array: bool = False          # the primal's return holds arrays (references to drop)
    ret_meminfos: tuple = ()         # ... byte offsets of their meminfo pointers in it
    ret_active: bool = False         # the return has a derivative (seed / tangent)
    return_primal: bool = True
    return_derivative: bool = False  # forward: the tangent of the return
    seed: bool = False               # reverse: df takes a trailing seed
    seed_int: str = ""               # ... given as an int: "signed" / "unsigned" (bool)
    ret_shadow_array: bool = False   # forward: the returned array's tangent array comes back
    ret_aux: str = None              # has_aux: LLVM type of the returned tuple, whose first
                                     # member (a float) is the differentiated value
    width: int = 1                   # vector mode: lanes per sweep
    checkpointing: str = "auto"      # reverse sweep cache policy ("auto", "recompute", "store")
    args_alias: bool = False         # reverse: argument arrays may share memory
    writes_args: bool = False        # set by differentiate: the reverse's primal writes
                                     # argument memory (so aliasing changes its tape)
    const_written: tuple = ()        # set by differentiate: indices of arguments without a
                                     # shadow that derivatives are stored into (dropped)


def _version_args(plan: Plan, p, prefix):
    """The version's primal arguments (``prefix`` then the entry parameters ``p``
    of each primal argument) and, by version argument index, the entry parameter
    holding each shadow (data pointers and float tangents)."""
    primal, shadows = list(prefix), {}
    idx = len(prefix)
    for a in plan.args:
        lo, hi = a.primal_slots
        primal.extend(p[lo:hi])
        if a.shadowed:
            slo, _ = a.shadow_slots
            for k, leaf in enumerate(a.leaves):
                if leaf[0] in ("data", "float"):
                    shadows[idx + k] = p[slo + k]
        idx += len(a.leaves)
    return primal, shadows


def top_module_functions(top):
    return getattr(top, "_module_functions", ())


def entry_text(plan: Plan, top, version, df_params, ret_llvm, result_parts, name) -> str:
    """Numba-ABI entry that runs the derivative version of ``top``.

    ``df_params``: LLVM types of df's flattened parameters; ``ret_llvm``: the LLVM
    type Numba stores through ``retptr`` (None for no result); ``result_parts``:
    what goes in the result, in order: ``("primal",)``, ``("tangent",)`` or
    ``("grad", k)`` for the k-th float out.
    """
    p = [f"%p{k}" for k in range(len(df_params))]
    lines = [f"define i32 @{name}(ptr noalias %retptr, ptr noalias %excinfo, "
             + ", ".join(f"{t} {r}" for t, r in zip(df_params, p)) + ") {", "entry:"]
    rty = plan.ret_float or "i8"
    nbytes = max(8, plan.ret_bytes)
    lines.append(f"  %gj.ret = alloca [{nbytes} x i8], align 16")
    if plan.ret_aux:
        # the shadow of the whole returned tuple: the seed / tangent of its first
        # member at offset 0, zeros (and the shadows of its arrays) after it
        lines += [f"  %gj.dret = alloca [{nbytes} x i8], align 16",
                  f"  call void @llvm.memset.p0.i64(ptr %gj.dret, i8 0, i64 {nbytes}, i1 false)"]
    else:
        lines += [f"  %gj.dret = alloca {rty}", f"  store {rty} {T.zero(rty)}, ptr %gj.dret"]
    # arguments of the version: retptr, excinfo, the primal's flattened args
    primal, shadows = _version_args(plan, p, ["%gj.ret", "%excinfo"])
    if plan.ret_active or plan.ret_aux:
        shadows[0] = "%gj.dret"
    elif plan.ret_shadow_array:
        lines += [f"  %gj.dretarr = alloca [{nbytes} x i8], align 16",
                  f"  call void @llvm.memset.p0.i64(ptr %gj.dretarr, i8 0, i64 {nbytes}, i1 false)"]
        shadows[0] = "%gj.dretarr"
    fargs = top.args
    call_args = [f"{x.type} {v}" for x, v in zip(fargs, primal)]
    sweep = "forward" if plan.mode == "forward" else "reverse"
    for a in shadow_params(version, sweep):
        k = fargs.index(a)
        call_args.append(f"{a.type} {shadows[k]}")
    outs = float_outs(version)
    if plan.mode == "forward":
        lines.append(f"  %st = call i32 @{_global(version.names[0])}({', '.join(call_args)})")
    else:
        lines.append("  %gj.tape = alloca " + tape.TAPE_TYPE)
        lines.append(f"  %gj.stk = alloca [{tape.STACK_BYTES} x i8], align 16")
        lines.append(f"  call void @gj.tape.init_stack(ptr %gj.tape, ptr %gj.stk, i64 {tape.STACK_BYTES})")
        lines.append(f"  %st = call i32 @{_global(version.names[0])}({', '.join(call_args)}, ptr %gj.tape)")
    lines += ["  %ok = icmp eq i32 %st, 0", "  br i1 %ok, label %done, label %fail", "fail:"]
    if plan.mode != "forward":
        lines.append("  call void @gj.tape.release(ptr %gj.tape)")
    lines += ["  ret i32 %st", "done:"]
    if plan.mode != "forward":
        rargs = list(call_args) + ["ptr %gj.tape"]
        for k, a in enumerate(outs):
            lines += [f"  %out{k} = alloca {a.type}", f"  store {a.type} {T.zero(a.type)}, ptr %out{k}"]
            rargs.append(f"ptr %out{k}")
        if plan.seed:
            seed, sty = f"%p{len(df_params) - 1}", df_params[-1]
            if plan.seed_int:
                conv = "uitofp" if plan.seed_int == "unsigned" else "sitofp"
                lines.append(f"  %seed = {conv} {sty} {seed} to {rty}")
                seed = "%seed"
            elif sty != rty:
                conv = "fptrunc" if T.size(sty) > T.size(rty) else "fpext"
                lines.append(f"  %seed = {conv} {sty} {seed} to {rty}")
                seed = "%seed"
            lines.append(f"  store {rty} {seed}, ptr %gj.dret")
        lines.append(f"  call void @{_global(version.names[1])}({', '.join(rargs)})")
        lines.append("  call void @gj.tape.release(ptr %gj.tape)")
    returned = plan.ret_array and ("primal",) in result_parts
    has_decref = "NRT_decref" in {f.name for f in top_module_functions(top)}
    if plan.ret_shadow_array and has_decref:
        # the returned arrays' tangent arrays: nobody receives them
        lines += _release_arrays(plan, "%gj.dretarr", "dretmi", primal="%gj.ret")
    if plan.ret_aux and plan.ret_array and plan.mode == "forward" and has_decref:
        # the tangents of the auxiliary arrays: nobody receives them either (the
        # reverse sweep frees the shadows of allocations itself)
        lines += _release_arrays(plan, "%gj.dret", "dretmi", primal="%gj.ret")
    if plan.ret_array and not returned and has_decref:
        # nobody receives the primal's returned arrays: drop their references
        lines += _release_arrays(plan, "%gj.ret", "retmi")
    values = []
    for part in result_parts:
        if part[0] == "primal":
            # a float, or the whole return value (an array's struct, its reference
            # kept; an int, a tuple: forward mode with a Const return, the only part)
            ty = plan.ret_aux or (rty if plan.ret_float else ret_llvm)
            values.append((ty, local_ref(f"r.primal")))
            lines.append(f"  %r.primal = load {ty}, ptr %gj.ret")
        elif part[0] == "tangent":
            values.append((rty, "%r.tangent"))
            lines.append(f"  %r.tangent = load {rty}, ptr %gj.dret")
        else:
            a = outs[part[1]]
            values.append((a.type, f"%r.g{part[1]}"))
            lines.append(f"  %r.g{part[1]} = load {a.type}, ptr %out{part[1]}")
    if ret_llvm is not None:
        if len(values) == 1 and (ret_llvm in T.FLOATS or returned or
                                 (result_parts[0] == ("primal",) and
                                  (plan.ret_aux or not plan.ret_float))):
            lines.append(f"  store {ret_llvm} {values[0][1]}, ptr %retptr")
        else:
            acc = "undef"
            for k, (ty, v) in enumerate(values):
                lines.append(f"  %agg{k} = insertvalue {ret_llvm} {acc}, {ty} {v}, {k}")
                acc = f"%agg{k}"
            lines.append(f"  store {ret_llvm} {acc}, ptr %retptr")
    lines += ["  ret i32 0", "}"]
    return "\n".join(lines)


def _args_of_leaves(plan: Plan, top, prefix, names) -> tuple:
    """Indices (in ``plan.args``) of the arguments some leaf of which is named in
    ``names`` (parameter names of the top-level function)."""
    out, k = [], prefix
    for i, a in enumerate(plan.args):
        if any(top.args[k + j].name in names for j in range(len(a.leaves))):
            out.append(i)
        k += len(a.leaves)
    return tuple(out)


def _release_arrays(plan: Plan, buf, tag, primal=None) -> list:
    """Entry code dropping a reference to each array of a return value held in
    ``buf`` (at the byte offsets ``plan.ret_meminfos`` of their meminfos).

    With ``primal`` (the buffer of the primal return, for tangent arrays): not
    where the tangent array has the primal's meminfo.  That is a view of an
    argument's shadow (``return x[1:]``): arguments' shadows come without a meminfo
    of their own, so the tangent view carries the primal's, without a reference
    of its own (dropping one freed the argument's buffer early)."""
    lines = []
    for j, off in enumerate(plan.ret_meminfos):
        lines += [f"  %gj.{tag}.p{j} = getelementptr i8, ptr {buf}, i64 {off}",
                  f"  %gj.{tag}.{j} = load ptr, ptr %gj.{tag}.p{j}"]
        mi = f"%gj.{tag}.{j}"
        if primal is not None:
            lines += [f"  %gj.{tag}.pp{j} = getelementptr i8, ptr {primal}, i64 {off}",
                      f"  %gj.{tag}.pm{j} = load ptr, ptr %gj.{tag}.pp{j}",
                      f"  %gj.{tag}.same{j} = icmp eq ptr {mi}, %gj.{tag}.pm{j}",
                      f"  %gj.{tag}.own{j} = select i1 %gj.{tag}.same{j}, ptr null, ptr {mi}"]
            mi = f"%gj.{tag}.own{j}"
        lines.append(f"  call fastcc void @NRT_decref(ptr {mi})")
    return lines


def vector_entry_text(plan: Plan, top, version, df_params, ret_llvm, result_parts, name) -> str:
    """Numba-ABI entry of a vector derivative (``plan.width`` = N lanes).

    ``df``'s arguments are the primal's, each shadowed one followed by its N shadows
    stacked on a leading axis (an array of ndim + 1 whose lanes have the primal's
    strides; for a float scalar a 1-D array of N), then

    * forward mode: a 1-D output array of N receiving the return's tangents;
    * reverse mode: the N seeds (a 1-D array, when the return is Active), then an
      output array ``(max(1, number of Active args), N)`` receiving the gradients
      of the Active float arguments.

    The result holds the primal return (if ``result_parts`` asks for it).
    """
    n = plan.width
    p = [f"%p{k}" for k in range(len(df_params))]
    lines = [f"define i32 @{name}(ptr noalias %retptr, ptr noalias %excinfo, "
             + ", ".join(f"{t} {r}" for t, r in zip(df_params, p)) + ") {", "entry:"]
    rty = plan.ret_float or "i8"
    nbytes = max(8, plan.ret_bytes)
    lines.append(f"  %gj.ret = alloca [{nbytes} x i8], align 16")
    primal, _ = _version_args(plan, p, ["%gj.ret", "%excinfo"])
    lanes = {}                       # version argument index -> N lane refs
    idx = 2
    for a in plan.args:
        if a.shadowed:
            slo, _ = a.shadow_slots
            data = p[slo + 4]
            if a.leaves[0][0] == "float":
                ty = a.leaves[0][1]
                refs = []
                for k in range(n):
                    lines += [f"  %ln{idx}.{k}.p = getelementptr {ty}, ptr {data}, i64 {k}",
                              f"  %ln{idx}.{k} = load {ty}, ptr %ln{idx}.{k}.p"]
                    refs.append(f"%ln{idx}.{k}")
                lanes[idx] = refs
            else:
                nd = a.numba_type.ndim
                stride0 = p[slo + 5 + nd + 1]
                j = next(i for i, leaf in enumerate(a.leaves) if leaf[0] == "data")
                refs = []
                for k in range(n):
                    lines += [f"  %ln{idx}.{k}.o = mul i64 {stride0}, {k}",
                              f"  %ln{idx}.{k} = getelementptr i8, ptr {data}, i64 %ln{idx}.{k}.o"]
                    refs.append(f"%ln{idx}.{k}")
                lanes[idx + j] = refs
        idx += len(a.leaves)
    reverse = plan.mode != "forward"
    if plan.ret_active and not reverse:
        dret = p[len(df_params) - 3]              # data pointer of the trailing 1-D array
        lanes[0] = []
        for k in range(n):
            lines.append(f"  %ln0.{k} = getelementptr {rty}, ptr {dret}, i64 {k}")
            lanes[0].append(f"%ln0.{k}")
    if plan.ret_shadow_array:
        # the returned array's tangent arrays, one per lane, released below
        lanes[0] = []
        for k in range(n):
            lines += [f"  %ln0.{k} = alloca [{nbytes} x i8], align 16",
                      f"  call void @llvm.memset.p0.i64(ptr %ln0.{k}, i8 0, i64 {nbytes}, i1 false)"]
            lanes[0].append(f"%ln0.{k}")
    if plan.ret_active and reverse:
        # the seeds: one slot per lane in the return value's shadow
        seeds = p[len(df_params) - 9 - 3]         # data of the 1-D array before the gradients
        lanes[0] = []
        for k in range(n):
            lines += [f"  %ln0.{k} = alloca {rty}",
                      f"  %sd.{k}.p = getelementptr double, ptr {seeds}, i64 {k}",
                      f"  %sd.{k} = load double, ptr %sd.{k}.p"]
            sv = f"%sd.{k}"
            if rty == "float":
                lines.append(f"  %sd.{k}.t = fptrunc double %sd.{k} to float")
                sv = f"%sd.{k}.t"
            lines.append(f"  store {rty} {sv}, ptr %ln0.{k}")
            lanes[0].append(f"%ln0.{k}")
    fargs = top.args
    call_args = [f"{x.type} {v}" for x, v in zip(fargs, primal)]
    for a in shadow_params(version, "reverse" if reverse else "forward"):
        for ref in lanes[fargs.index(a)]:
            call_args.append(f"{a.type} {ref}")
    if reverse:
        lines.append("  %gj.tape = alloca " + tape.TAPE_TYPE)
        lines.append(f"  %gj.stk = alloca [{tape.STACK_BYTES} x i8], align 16")
        lines.append(f"  call void @gj.tape.init_stack(ptr %gj.tape, ptr %gj.stk, i64 {tape.STACK_BYTES})")
        lines.append(f"  %st = call i32 @{_global(version.names[0])}({', '.join(call_args)}, ptr %gj.tape)")
    else:
        lines.append(f"  %st = call i32 @{_global(version.names[0])}({', '.join(call_args)})")
    lines += ["  %ok = icmp eq i32 %st, 0", "  br i1 %ok, label %done, label %fail", "fail:"]
    if reverse:
        lines.append("  call void @gj.tape.release(ptr %gj.tape)")
    lines += ["  ret i32 %st", "done:"]
    if reverse:
        outs = float_outs(version)
        gout, gstride = p[len(df_params) - 5], p[len(df_params) - 2]   # data, stride of axis 0
        rargs = list(call_args) + ["ptr %gj.tape"]
        for j, a in enumerate(outs):
            for k in range(n):
                lines += [f"  %out{j}.{k} = alloca {a.type}",
                          f"  store {a.type} {T.zero(a.type)}, ptr %out{j}.{k}"]
                rargs.append(f"ptr %out{j}.{k}")
        lines.append(f"  call void @{_global(version.names[1])}({', '.join(rargs)})")
        lines.append("  call void @gj.tape.release(ptr %gj.tape)")
        for j, a in enumerate(outs):
            lines.append(f"  %go{j} = mul i64 {gstride}, {j}")
            lines.append(f"  %gr{j} = getelementptr i8, ptr {gout}, i64 %go{j}")
            for k in range(n):
                lines += [f"  %gv{j}.{k} = load {a.type}, ptr %out{j}.{k}"]
                v = f"%gv{j}.{k}"
                if a.type == "float":
                    lines.append(f"  %gv{j}.{k}.e = fpext float {v} to double")
                    v = f"%gv{j}.{k}.e"
                lines += [f"  %gp{j}.{k} = getelementptr double, ptr %gr{j}, i64 {k}",
                          f"  store double {v}, ptr %gp{j}.{k}"]
    if plan.ret_shadow_array and "NRT_decref" in {f.name for f in top_module_functions(top)}:
        for k in range(n):
            lines += _release_arrays(plan, f"%ln0.{k}", f"dretmi.{k}", primal="%gj.ret")
    if plan.ret_array and ret_llvm is None and \
            "NRT_decref" in {f.name for f in top_module_functions(top)}:
        lines += _release_arrays(plan, "%gj.ret", "retmi")
    if ret_llvm is not None:
        assert list(result_parts) == [("primal",)], result_parts
        lines += [f"  %r.primal = load {ret_llvm}, ptr %gj.ret",
                  f"  store {ret_llvm} %r.primal, ptr %retptr"]
    lines += ["  ret i32 0", "}"]
    return "\n".join(lines)


def differentiate(model, top_name, plan: Plan, df_params, ret_llvm, result_parts, entry_name,
                  target="cpu"):
    """Generate the derivative module text for ``plan``; returns the text.

    ``target`` is ``"cpu"`` (Numba's CPU ABI ``i32 f(retptr, excinfo, args...)`` and
    a Numba-callable entry) or ``"cuda"`` (numba-cuda's device ABI
    ``i32 f(retptr, args...)`` and a ``ptx_kernel`` entry running the derivative
    per thread).  Raises :class:`~gradjit.UnsupportedError` for constructs without
    derivative.
    """
    drop_borrowed_refcounts(model)
    top = model.functions[top_name]
    top._module_functions = list(model.functions.values())
    top._model = model
    nleaves = sum(len(a.leaves) for a in plan.args)
    prefix = 2 if target == "cpu" else 1
    if len(top.args) != prefix + nleaves:
        raise UnsupportedError(f"a function whose compiled signature has {len(top.args)} "
                               f"arguments where {prefix + nleaves} were expected")
    # forward mode of a function returning an array: the version hands out the
    # tangent array too (through a shadow of retptr), so the entry can release it
    plan.ret_shadow_array = (plan.mode == "forward" and plan.ret_array and target == "cpu"
                             and not plan.ret_aux)
    mask = [plan.ret_active or plan.ret_shadow_array or bool(plan.ret_aux), False][:prefix]
    elem, interleaved = {}, set()
    for a in plan.args:
        for leaf in a.leaves:
            k = len(mask)
            if leaf[0] == "data":
                mask.append(a.shadowed and leaf[1] is not None)
                if leaf[1]:
                    elem[(top_name, top.args[k].name)] = leaf[1]
                if a.interleaved and a.shadowed:
                    interleaved.add(top.args[k].name)
            elif leaf[0] == "float":
                mask.append(a.shadowed or a.active_float)
            else:
                mask.append(False)
    ctx = ADContext(model, elem, target=target, checkpointing=plan.checkpointing,
                    args_alias=plan.args_alias)
    mode = "forward" if plan.mode == "forward" else "reverse"
    version = ctx.version(top_name, mode, mask, False, atomic=(target == "cuda"), top=True,
                          width=plan.width, interleaved=interleaved)
    bodies = ctx.generate()
    plan.writes_args = ctx.top_writes_args(top_name)
    plan.const_written = _args_of_leaves(plan, top, prefix, ctx.const_written)
    if target == "cpu" and plan.width > 1:
        parts = [x for x in result_parts if x[0] == "primal"]
        entry = vector_entry_text(plan, top, version, df_params, ret_llvm, parts, entry_name)
    elif target == "cpu":
        entry = entry_text(plan, top, version, df_params, ret_llvm, result_parts, entry_name)
    else:
        entry = kernel_entry_text(plan, top, version, df_params, entry_name)
    return assemble(model, ctx, bodies + [entry])


_SHARED_DEF = re.compile(r"^@(\"[^\"]+\"|[-\w.$]+) = .*?addrspace\(3\) global (.+?) "
                         r"(?:undef|zeroinitializer|poison)(, align \d+)?$")


def shared_shadow_global(text):
    """For a CUDA shared-memory global definition: (shadow definition, shadow name,
    size in bytes); None for other globals."""
    m = _SHARED_DEF.match(text.strip())
    if not m:
        return None
    from ..analysis.activity import _shadow_global
    name = _shadow_global(m.group(1))
    ty = m.group(2).strip()
    return (f"@{name} = internal addrspace(3) global {ty} undef{m.group(3) or ''}", name,
            T.size(ty))


def _zero_shared_shadows(model) -> list:
    """Kernel-entry code: the block's threads zero every shadow shared array, then
    synchronize (shadows start at zero, as seeds and adjoints need)."""
    shadows = [s for s in (shared_shadow_global(g) for g in model.globals_text) if s]
    if not shadows:
        return []
    sreg = "llvm.nvvm.read.ptx.sreg"
    lines = [f"  %zt.x = call i32 @{sreg}.tid.x()", f"  %zt.y = call i32 @{sreg}.tid.y()",
             f"  %zt.z = call i32 @{sreg}.tid.z()", f"  %zn.x = call i32 @{sreg}.ntid.x()",
             f"  %zn.y = call i32 @{sreg}.ntid.y()", f"  %zn.z = call i32 @{sreg}.ntid.z()",
             "  %zl0 = mul i32 %zt.z, %zn.y", "  %zl1 = add i32 %zl0, %zt.y",
             "  %zl2 = mul i32 %zl1, %zn.x", "  %zl3 = add i32 %zl2, %zt.x",
             "  %zlin = zext i32 %zl3 to i64", "  %zm0 = mul i32 %zn.x, %zn.y",
             "  %zm1 = mul i32 %zm0, %zn.z", "  %zstep = zext i32 %zm1 to i64"]
    prev = "entry"
    for k, (_, name, size) in enumerate(shadows):
        lines += [f"  br label %zh{k}", f"zh{k}:",
                  f"  %zi{k} = phi i64 [ %zlin, %{prev} ], [ %zn{k}, %zb{k} ]",
                  f"  %zc{k} = icmp ult i64 %zi{k}, {size}",
                  f"  br i1 %zc{k}, label %zb{k}, label %ze{k}", f"zb{k}:",
                  f"  %zp{k} = getelementptr i8, ptr addrspacecast (ptr addrspace(3) @{name} to ptr), i64 %zi{k}",
                  f"  store i8 0, ptr %zp{k}", f"  %zn{k} = add i64 %zi{k}, %zstep",
                  f"  br label %zh{k}", f"ze{k}:"]
        prev = f"ze{k}"
    lines.append("  call void @llvm.nvvm.barrier0()")
    return lines


def kernel_entry_text(plan: Plan, top, version, df_params, name) -> str:
    """``ptx_kernel`` entry of a CUDA derivative: each thread runs the derivative of
    the kernel body (in reverse mode its augmented primal, then its reverse sweep,
    with a tape of its own)."""
    p = [f"%p{k}" for k in range(len(df_params))]
    lines = [f"define void @{name}(" + ", ".join(f"{t} {r}" for t, r in zip(df_params, p)) + ") {",
             "entry:", "  %gj.ret = alloca i64", "  %gj.dret = alloca i64"]
    lines += _zero_shared_shadows(top._model)
    primal, shadows = _version_args(plan, p, ["%gj.ret"])
    call_args = [f"{x.type} {v}" for x, v in zip(top.args, primal)]
    sweep = "forward" if plan.mode == "forward" else "reverse"
    for a in shadow_params(version, sweep):
        call_args.append(f"{a.type} {shadows[top.args.index(a)]}")
    if plan.mode == "forward":
        lines.append(f"  %st = call i32 @{_global(version.names[0])}({', '.join(call_args)})")
    else:
        outs = float_outs(version)
        lines.append("  %gj.tape = alloca " + tape.TAPE_TYPE)
        lines.append(f"  %gj.stk = alloca [{tape.kernel_bytes()} x i8], align 8")
        lines.append("  call void @gj.tape.init(ptr %gj.tape, ptr %gj.stk)")
        lines.append(f"  %st = call i32 @{_global(version.names[0])}({', '.join(call_args)}, ptr %gj.tape)")
        rargs = list(call_args) + ["ptr %gj.tape"]
        for k, a in enumerate(outs):
            lines += [f"  %out{k} = alloca {a.type}", f"  store {a.type} {T.zero(a.type)}, ptr %out{k}"]
            rargs.append(f"ptr %out{k}")
        lines.append(f"  call void @{_global(version.names[1])}({', '.join(rargs)})")
        lines.append("  call void @gj.tape.fini(ptr %gj.tape)")
    lines += ["  ret void", "}"]
    return "\n".join(lines)


def assemble(model, ctx, bodies) -> str:
    out = [f'target datalayout = "{model.datalayout}"', f'target triple = "{model.triple}"', ""]
    for g in model.globals_text:
        m = _ENV.match(g)
        out.append(f"{m.group(1)} = external global ptr" if m else g)
        sh = shared_shadow_global(g)
        if sh is not None:
            out.append(sh[0])
    defined, declared = set(), set()
    from ..frontend.markers import PARALLEL_FOR, PRIMAL
    for f in model.functions.values():
        if f.is_declaration and f.name == PARALLEL_FOR:
            defined.add(f.name)
            out.append(PRIMAL)
        elif f.is_declaration:
            declared.add(f.name)
            out.append(f.header)
        else:
            defined.add(f.name)
            out.append(_internal(function_text(f)))
    runtime_decls = {"realloc": "declare ptr @realloc(ptr, i64)", "free": "declare void @free(ptr)",
                     "NRT_Free": "declare void @NRT_Free(ptr)",
                     "calloc": "declare ptr @calloc(i64, i64)",
                     "llvm.memset.p0.i64": "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)",
                     "NRT_MemInfo_call_dtor": "declare void @NRT_MemInfo_call_dtor(ptr)",
                     "llvm.umax.i64": "declare i64 @llvm.umax.i64(i64, i64)",
                     "llvm.memcpy.p0.p0.i64":
                         "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)"}
    if ctx.target == "cuda":
        runtime_decls = {
                         "llvm.nvvm.barrier0": "declare void @llvm.nvvm.barrier0()",
                         **{f"llvm.nvvm.read.ptx.sreg.{r}.{a}": f"declare i32 @llvm.nvvm.read.ptx.sreg.{r}.{a}()"
                            for r in ("tid", "ntid") for a in "xyz"},"malloc": "declare ptr @malloc(i64)", "free": "declare void @free(ptr)",
                         "llvm.memset.p0.i64": "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)",
                         "llvm.memcpy.p0.p0.i64":
                             "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
                         "llvm.umax.i64": "declare i64 @llvm.umax.i64(i64, i64)"}
    for name, text in {**runtime_decls, **ctx.decls}.items():
        if name not in declared and name not in defined:
            declared.add(name)
            out.append(text)
    out.append(_strip_declares(tape.RUNTIME if ctx.target == "cpu" else tape.kernel_runtime()))
    out.extend(ctx.extra.values())
    out.extend(bodies)
    return "\n".join(out) + "\n"


def _internal(text: str) -> str:
    if text.startswith(("define internal ", "define private ")):
        return text
    return re.sub(r"^define\s+(?:(?:external|linkonce_odr|weak_odr|available_externally|linkonce|weak|dso_local)\s+)*",
                  "define internal ", text, count=1)


def _strip_declares(text: str) -> str:
    return "\n".join(l for l in text.splitlines() if not l.startswith("declare "))
