"""Derivatives of a ``prange`` launch (the CPU parallel marker).

A launch ``%h = call ptr @gj.parallel_for(G, args, dims, steps, data, N, A, T)``
(see :mod:`gradjit.frontend.markers`) runs the gufunc ``G`` over the work items
of a parfor's schedule on Numba's threading layer.  Its derivatives are launches
of derivative versions of ``G`` through the same ``numba_parallel_for``, so they
run in parallel on the same threads:

* **forward mode**: one launch of ``G``'s tangent version.  Each thread's
  trampoline offsets the shadow ``args`` array exactly as the threading layer
  offset the primal one and calls the tangent version.
* **augmented primal**: one launch whose trampoline runs, per work item, the
  augmented ``G`` on a tape of its own and files that tape under the item's index
  (its offset into the schedule).  The launch returns a handle (``%h``) holding
  copies of ``args``/``dims``/``steps`` and the tapes; the enclosing function
  records it like any other value.
* **reverse sweep**: a launch over the same items whose trampoline runs, per item,
  the reverse of ``G`` on that item's tape.  Items may run on other threads than
  in the forward sweep: the tapes are found by item, not by thread.

Which entries of ``args`` have shadows is decided at the launch (the stores that
fill the array, :func:`launch_slots`) and carried into ``G``'s version as its
*slots* (:class:`gradjit.analysis.activity.Activity`), so an entry holding a
Const array or an integer never reaches shadow code.  ``G``'s reverse adds into
shared shadows atomically except where its accesses are private to a loop
iteration (:func:`gradjit.analysis.parallel.prange_private_slots`); this is the
scheme of Enzyme's OpenMP support (Moses et al., "Reverse-mode automatic
differentiation and optimization of GPU kernels via Enzyme", SC'21, sec. 4-5).
"""
from __future__ import annotations

from ..ir import types as T
from . import tape
from .forward_sweep import _global

_HEAD = 56     # closure header: args, dargs, dims, steps, data, tapes, nthreads


def launch_operands(ctx, ins):
    """(G, args, dims, steps, data, N, A, nthreads) of a launch; N and A as ints."""
    g, args, dims, steps, data, ndim, narr, nt = ins.operands[:-1]
    if g.kind != "func" or g.name not in ctx.defined or ndim.kind != "const" or narr.kind != "const":
        raise ctx.unsupported("a parallel launch of an unknown gufunc", ins)
    return g.name, args, dims, steps, data, int(ndim.text), int(narr.text), nt


def launch_stores(ctx, fn, args, ins) -> dict:
    """Byte offset -> value stored into that entry of the launch's ``args`` array.
    Raises UnsupportedError when the array is written any other way."""
    from ..analysis.activity import slot_offset
    key = {args.name: None}
    stored = {}
    for other in fn.instructions():
        if other.opcode == "store":
            val, ptr = other.operands
            off = slot_offset(ptr, key)
            if off is None:
                if val is args:
                    raise ctx.unsupported("a parallel launch whose argument array escapes", ins)
                continue
            stored[off[1]] = val
        elif other.opcode == "call" and other is not ins and any(o is args for o in other.operands):
            if not other.callee.startswith(("llvm.lifetime.", "llvm.memset.")):
                raise ctx.unsupported("a parallel launch whose argument array escapes", ins)
    return stored


def launch_slots(ctx, fn, act, args, ins):
    """``(active, stored)``: the byte offsets of the entries of the launch's
    ``args`` array holding active pointers, and :func:`launch_stores`."""
    stored = launch_stores(ctx, fn, args, ins)
    active = {off for off, val in stored.items() if val.type == "ptr" and act.is_active(val)}
    return frozenset(active), stored


def launched_element_types(ctx, fn) -> dict:
    """Root id -> scalar types loaded or stored by the prange bodies ``fn`` launches
    through the arrays it passes them (memory that ``fn`` itself never reads, e.g. a
    copy made for the loop, still has a known element type)."""
    from ..analysis.activity import root
    from ..analysis.calls import PARALLEL
    from ..analysis.parallel import slot_element_types
    out = {}
    for ins in fn.instructions():
        if ins.opcode != "call" or ins.callee != PARALLEL:
            continue
        g, args = ins.operands[0], ins.operands[1]
        body = ctx.module.functions.get(g.name) if g.kind == "func" else None
        if body is None or body.is_declaration or not body.args:
            continue
        by_slot = slot_element_types(body)
        for off, val in launch_stores(ctx, fn, args, ins).items():
            r = root(val) if off in by_slot else None
            if r is not None:
                out.setdefault(id(r), set()).update(by_slot[off])
    return out


def _reload_slots(sweep, ins, stored) -> frozenset:
    """Entries pointing into the top-level function's argument arrays that nothing
    writes after the launch: the body's reverse may read them again."""
    if not sweep.v.top:
        return frozenset()
    from ..analysis.activity import root
    ra = sweep.ctx.reload_analysis(sweep.fn, sweep.v)
    out = set()
    for off, val in stored.items():
        r = root(val) if val.type == "ptr" else None
        if r is not None and r.kind == "arg" and ra.unwritten_after(id(r), ins):
            out.add(off)
    return frozenset(out)


def _version(sweep, ins, priv_slots=None):
    ctx = sweep.ctx
    g, args, *_ = launch_operands(ctx, ins)
    if not sweep.act.is_active(args):
        return None
    slots, stored = launch_slots(ctx, sweep.fn, sweep.act, args, ins)
    if not slots:
        return None
    # the body may reach its arrays only through memcpy/memset (a copy loop turned
    # into an intrinsic): it gets their element types from here
    types = frozenset((off, k) for off, k in ((off, sweep.mem.kind(stored[off])) for off in slots)
                      if k in ("double", "float"))
    width = len(sweep.lanes)
    if getattr(sweep, "sweep", None) == "forward":
        return ctx.version(g, "forward", [True, False, False, False], False, slots=slots,
                           slot_types=types, width=width)
    return ctx.version(g, "reverse", [True, False, False, False], False, atomic=True,
                       slots=slots, reload_slots=_reload_slots(sweep, ins, stored),
                       slot_types=types, priv_slots=priv_slots, width=width,
                       overlap_slots=_overlapping_slots(slots, stored, ctx.args_alias))


def _overlapping_slots(slots, stored, args_alias=False) -> frozenset:
    """Active entries whose array may share memory with another active entry's: the
    same root (two views of one array, ``x`` and ``x[n // 4:]``; with ``args_alias``
    every argument is one root) or an unknown one."""
    from ..analysis.activity import root
    by_root = {}
    for off in slots:
        r = root(stored[off])
        key = id(r) if r is not None else None
        if args_alias and r is not None and r.kind == "arg":
            key = "args"
        by_root.setdefault(key, []).append(off)
    out = set(by_root.pop(None, ()))
    if out:
        return frozenset(slots)
    for offs in by_root.values():
        if len(offs) > 1:
            out.update(offs)
    return frozenset(out)


#: A reverse launch gives each thread private zeroed copies of the shared shadows
#: (arrays the body reads at positions other iterations read too, e.g. weights used
#: by every iteration) and adds them into the real shadows afterwards, instead of
#: contended atomic adds, when their total size is at most this many bytes.
PRIVATE_SHADOW_BYTES = 1 << 20


# BLAS calls that read every pointer operand but the output one (its index)
_BLAS_READ_ONLY_INPUTS = {"numba_xxdot": 5, "numba_xxgemv": 9, "numba_xxgemm": 12,
                          "numba_xxnrm2": 4}


def _privatizable(sweep, ins, ver):
    """[(entry offset, nitems arg, itemsize arg, element type)] of the entries whose
    shadow the reverse launch can give each thread a private copy of: a float array
    argument of the top-level function that the body only reads, not privately."""
    import re
    from ..analysis.parallel import iv_dependent_slots, prange_private_slots, slot_of
    if not sweep.v.top or not ver.slot_types:
        return []
    g, args, *_ = launch_operands(sweep.ctx, ins)
    body = sweep.ctx.module.functions[g]
    base = body.args[0].name
    written = set()
    for b in body.instructions():
        if b.opcode in ("phi", "select") and b.type == "ptr":
            # its shadow would be recorded by the forward sweep, pointing at the
            # real shadow: keep that entry's adds atomic
            written.add(slot_of(b, base))
        ptrs = []
        if b.opcode == "store":
            ptrs = [b.operands[1]]
        elif b.opcode in ("atomicrmw", "cmpxchg"):
            ptrs = [b.operands[0]]
        elif b.opcode == "call":
            ptrs = [o for o in b.operands[:-1] if o.type == "ptr"]
            if b.callee in _BLAS_READ_ONLY_INPUTS:
                # BLAS dot / gemv / gemm / nrm2 only write their output operand
                ptrs = [b.operands[_BLAS_READ_ONLY_INPUTS[b.callee]]]
        for ptr in ptrs:
            written.add(slot_of(ptr, base))
    private = prange_private_slots(body)
    # shared by every iteration: no access of the entry depends on the work item's
    # induction variable (weights read by all iterations); arrays indexed by it
    # (x[i + 1], A[i, j]) are touched by few iterations each and keep atomic adds
    varying = iv_dependent_slots(body)
    stored = launch_stores(sweep.ctx, sweep.fn, args, ins)
    names = {a.name: a for a in sweep.fn.args}
    types = dict(ver.slot_types)
    out = []
    for off in sorted(ver.slots):
        val = stored.get(off)
        if off in private or off in written or off in varying or off not in types or \
                val is None or val.kind != "arg":
            continue
        m = re.match(r"^(.*)\.4$", val.name)
        if not m or m.group(1) + ".2" not in names or m.group(1) + ".3" not in names:
            continue
        out.append((off, names[m.group(1) + ".2"], names[m.group(1) + ".3"], types[off]))
    return out


def _check_linalg_shadows(sweep, ins, ver, priv):
    """The adjoint of a BLAS/LAPACK call in a prange body adds into its operands'
    shadows with plain stores: fine for memory of one iteration (temporaries, rows
    ``x[i]``) and for the per-thread copies of read-only arrays (``priv``), a race
    for other shadowed memory every iteration shares: reported."""
    from ..analysis.calls import LINALG
    from ..analysis.parallel import iv_dependent_slots, slot_of
    g = launch_operands(sweep.ctx, ins)[0]
    body = sweep.ctx.module.functions[g]
    base = body.args[0].name
    varying = None
    for b in body.instructions():
        if b.opcode != "call" or b.callee not in LINALG:
            continue
        for o in b.operands[:-1]:
            off = slot_of(o, base) if o.type == "ptr" else None
            if off is None or off not in ver.slots or off in priv:
                continue
            if varying is None:
                varying = iv_dependent_slots(body)
            if off not in varying:
                raise sweep.ctx.unsupported(
                    f"a BLAS/LAPACK call ('{b.callee}') in a prange loop whose derivative "
                    "adds into an array every iteration shares (the adds would race); "
                    "compute it with a loop, or outside the prange", b)


def forward(sweep, ins):
    """Forward sweep (tangent launch) or augmented primal (taped launch) of ``ins``."""
    ver = _version(sweep, ins)
    if ver is None:
        sweep.b.emit(ins.text)
        return
    ctx = sweep.ctx
    g, args, dims, steps, data, n, a, nt = launch_operands(ctx, ins)
    kind = "fwd" if sweep.fwd else "aug"
    name = _launcher(ctx, ver, kind, n, a)
    shadows = sweep.per_lane(lambda: f"ptr {sweep.shadow(args)}")
    call = (f"call ptr @{_global(name)}(ptr {args.ref}, {', '.join(shadows)}, ptr {dims.ref}, "
            f"ptr {steps.ref}, ptr {data.ref}, i64 {nt.ref})")
    sweep.b.emit(f"{ins.ref} = {call}")


def reverse(sweep, ins):
    """Reverse sweep of launch ``ins``: the reverse launch over the taped items."""
    ver = _version(sweep, ins)
    if ver is None:
        return
    _, _, _, _, _, n, a, _ = launch_operands(sweep.ctx, ins)
    name = _launcher(sweep.ctx, ver, "rev", n, a)
    priv = _privatizable(sweep, ins, ver) if ver.width == 1 else []
    _check_linalg_shadows(sweep, ins, ver, {off for off, *_ in priv})
    if not priv:
        sweep.b.emit(f"call void @{_global(name)}(ptr {sweep.pv(ins)})")
        return
    ver_p = _version(sweep, ins, priv_slots=frozenset(off for off, *_ in priv))
    pname = _private_launcher(sweep.ctx, ver_p, name, n, a, priv)
    sizes = [sweep.b.assign(f"mul i64 {ni.ref}, {isz.ref}") for _, ni, isz, _ in priv]
    sweep.b.emit(f"call void @{_global(pname)}(ptr {sweep.pv(ins)}, "
                 + ", ".join(f"i64 {x}" for x in sizes) + ")")


# runtime text ------------------------------------------------------------------

def _launcher(ctx, ver, kind, n, a) -> str:
    base = ver.names[0] if kind != "rev" else ver.names[1]
    name = f"{base}.launch"
    if name in ctx.extra:
        return name
    ctx.decls.setdefault("malloc", "declare ptr @malloc(i64)")
    ctx.decls.setdefault("numba_parallel_for", "declare void @numba_parallel_for"
                         "(ptr, ptr, ptr, ptr, ptr, i64, i64, i64)")
    ctx.decls.setdefault("llvm.memcpy.p0.p0.i64",
                         "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)")
    w = ver.width
    save = _save(ctx, n, a, w)
    item = f"{name}.item"
    ctx.extra[item] = _trampoline(ver, kind, item, n, a)
    launch = (f"  call void @numba_parallel_for(ptr @{_global(item)}, ptr %ca, ptr %cm, ptr %cs, "
              f"ptr %c, i64 {n}, i64 {a}, i64 %nt)")
    loads = ["  %ca = load ptr, ptr %c", "  %cmp = getelementptr i8, ptr %c, i64 16",
             "  %cm = load ptr, ptr %cmp", "  %csp = getelementptr i8, ptr %c, i64 24",
             "  %cs = load ptr, ptr %csp"]
    if kind == "rev":
        text = [f"define internal void @{_global(name)}(ptr %c) {{", "entry:", *loads,
                "  %ntp = getelementptr i8, ptr %c, i64 48", "  %nt = load i64, ptr %ntp",
                launch, "  call void @free(ptr %c)", "  ret void", "}"]
    else:
        taped = "1" if kind == "aug" else "0"
        lanes = ", ".join(f"ptr %dargs{k}" for k in range(w))
        text = [f"define internal ptr @{_global(name)}(ptr %args, {lanes}, ptr %dims, "
                "ptr %steps, ptr %data, i64 %nt) {", "entry:",
                f"  %dargs = alloca [{w * a} x ptr]"]
        for k in range(w):           # the lanes' shadow arrays, one after another
            text += [f"  %dl{k} = getelementptr i8, ptr %dargs, i64 {8 * a * k}",
                     f"  call void @llvm.memcpy.p0.p0.i64(ptr %dl{k}, ptr %dargs{k}, i64 {8 * a}, i1 false)"]
        text += [f"  %c = call ptr @{save}(ptr %args, ptr %dargs, ptr %dims, ptr %steps, "
                 f"ptr %data, i64 %nt, i1 {taped})", *loads, launch]
        if kind == "fwd":
            text += ["  call void @free(ptr %c)", "  ret ptr null", "}"]
        else:
            text += ["  ret ptr %c", "}"]
    ctx.extra[name] = "\n".join(text)
    return name


def _private_launcher(ctx, ver_p, atomic_launcher, n, a, priv) -> str:
    """Reverse launcher that runs ``ver_p`` (plain adds into per-thread shadow copies
    of the ``priv`` entries) when the copies are small, else ``atomic_launcher``."""
    name = f"{ver_p.names[1]}.launch"
    if name in ctx.extra:
        return name
    ctx.decls.setdefault("calloc", "declare ptr @calloc(i64, i64)")
    item = f"{name}.item"
    ctx.extra[item] = _trampoline(ver_p, "rev", item, n, a, priv=[(off, ty) for off, _, _, ty in priv])
    k = len(priv)
    lines = [f"define internal void @{_global(name)}(ptr %c, "
             + ", ".join(f"i64 %b{q}" for q in range(k)) + ") {", "entry:"]
    tot = "%b0"
    for q in range(1, k):
        lines.append(f"  %t{q} = add i64 {tot}, %b{q}")
        tot = f"%t{q}"
    lines += [f"  %small = icmp ule i64 {tot}, {PRIVATE_SHADOW_BYTES}",
              "  br i1 %small, label %priv, label %shared", "shared:",
              f"  call void @{_global(atomic_launcher)}(ptr %c)", "  ret void", "priv:",
              f"  %w = alloca [{1 + k} x i64]", "  store ptr %c, ptr %w"]
    for q in range(k):
        lines += [f"  %wp{q} = getelementptr i64, ptr %w, i64 {q + 1}", f"  store i64 %b{q}, ptr %wp{q}"]
    lines += ["  %ca = load ptr, ptr %c", "  %cmp = getelementptr i8, ptr %c, i64 16",
              "  %cm = load ptr, ptr %cmp", "  %csp = getelementptr i8, ptr %c, i64 24",
              "  %cs = load ptr, ptr %csp", "  %ntp = getelementptr i8, ptr %c, i64 48",
              "  %nt = load i64, ptr %ntp",
              f"  call void @numba_parallel_for(ptr @{_global(item)}, ptr %ca, ptr %cm, ptr %cs, "
              f"ptr %w, i64 {n}, i64 {a}, i64 %nt)",
              "  call void @free(ptr %c)", "  ret void", "}"]
    ctx.extra[name] = "\n".join(lines)
    return name


def _save(ctx, n, a, w=1) -> str:
    """Helper that copies a launch's arrays (``w`` lanes of shadow arrays) into a
    heap closure (with room for one tape per work item when ``taped``)."""
    name = f"gj.par.save.{n}.{a}" + (f".w{w}" if w > 1 else "")
    if name in ctx.extra:
        return name
    sizes = [8 * a, 8 * a * w, 8 * (1 + n), 8 * (a + n)]
    offs, o = [], _HEAD
    for s in sizes:
        offs.append(o)
        o += s
    tape_off = o
    lines = [f"define internal ptr @{name}(ptr %args, ptr %dargs, ptr %dims, ptr %steps, "
             "ptr %data, i64 %nt, i1 %taped) {", "entry:",
             "  %items = load i64, ptr %dims",
             f"  %tb = mul i64 %items, {T.size(tape.TAPE_TYPE)}",
             "  %tb2 = select i1 %taped, i64 %tb, i64 0",
             f"  %tot = add i64 %tb2, {tape_off}",
             "  %c = call ptr @malloc(i64 %tot)"]
    for k, (src, off, size) in enumerate(zip(("%args", "%dargs", "%dims", "%steps"), offs, sizes)):
        lines += [f"  %d{k} = getelementptr i8, ptr %c, i64 {off}",
                  f"  call void @llvm.memcpy.p0.p0.i64(ptr %d{k}, ptr {src}, i64 {size}, i1 false)",
                  f"  %h{k} = getelementptr i8, ptr %c, i64 {8 * k}",
                  f"  store ptr %d{k}, ptr %h{k}"]
    lines += ["  %h4 = getelementptr i8, ptr %c, i64 32", "  store ptr %data, ptr %h4",
              f"  %tp = getelementptr i8, ptr %c, i64 {tape_off}",
              "  %h5 = getelementptr i8, ptr %c, i64 40", "  store ptr %tp, ptr %h5",
              "  %h6 = getelementptr i8, ptr %c, i64 48", "  store i64 %nt, ptr %h6",
              "  ret ptr %c", "}"]
    ctx.extra[name] = "\n".join(lines)
    return name


def _trampoline(ver, kind, name, n, a, priv=None) -> str:
    """The gufunc a derivative launch runs: ``(args, dims, steps, closure)``.

    With ``priv`` ([(entry offset, element type)], reverse only) its data is
    ``{closure, sizes...}`` and those entries' shadows are per-call zeroed copies,
    added atomically into the real shadows after the call's items."""
    tt = tape.TAPE_TYPE
    w = ver.width
    lane_args = ", ".join(f"ptr %da.l{k}" for k in range(w))
    lane_ptrs = [f"  %da.l{k} = getelementptr i8, ptr %da, i64 {8 * a * k}" for k in range(w)]
    head = f"define internal void @{_global(name)}(ptr %args, ptr %dims, ptr %steps, ptr %c) {{"
    pre = []
    if priv:
        head = f"define internal void @{_global(name)}(ptr %args, ptr %dims, ptr %steps, ptr %w) {{"
        pre = ["  %c = load ptr, ptr %w"]
        for q, (off, ty) in enumerate(priv):
            pre += [f"  %szp{q} = getelementptr i64, ptr %w, i64 {q + 1}", f"  %sz{q} = load i64, ptr %szp{q}",
                    f"  %pv{q} = call ptr @calloc(i64 1, i64 %sz{q})"]
    lines = [head, "entry:", *pre, "  %oa = load ptr, ptr %c", "  %odp = getelementptr i8, ptr %c, i64 8",
             "  %od = load ptr, ptr %odp", "  %datap = getelementptr i8, ptr %c, i64 32",
             "  %data = load ptr, ptr %datap", "  %tpp = getelementptr i8, ptr %c, i64 40",
             "  %tapes = load ptr, ptr %tpp", f"  %da = alloca [{a * w} x ptr]"]
    if kind == "fwd":
        # the whole run of items at once: shadows offset like the primal entries
        for k in range(w):
            for j in range(a):
                lines += _shadow_entry(j, "%args", f"0.{k}", k, a)
        lines += lane_ptrs
        lines += [f"  call void @{_global(ver.names[0])}(ptr %args, ptr %dims, ptr %steps, "
                  f"ptr %data, {lane_args})", "  ret void", "}"]
        return "\n".join(lines)
    # one work item at a time, each on its own tape
    lines += [f"  %ia = alloca [{a} x ptr]", f"  %idims = alloca [{1 + n} x i64]",
              f"  %tp = alloca {tt}",
              f"  call void @llvm.memcpy.p0.p0.i64(ptr %idims, ptr %dims, i64 {8 * (1 + n)}, i1 false)",
              "  store i64 1, ptr %idims", "  %cnt = load i64, ptr %dims",
              "  %a0 = load ptr, ptr %args", "  %o0 = load ptr, ptr %oa",
              "  %a0i = ptrtoint ptr %a0 to i64", "  %o0i = ptrtoint ptr %o0 to i64",
              "  %off0 = sub i64 %a0i, %o0i", "  %s0 = load i64, ptr %steps",
              "  %s0z = icmp eq i64 %s0, 0", "  %s0d = select i1 %s0z, i64 1, i64 %s0",
              "  %k0 = sdiv i64 %off0, %s0d", "  %any = icmp sgt i64 %cnt, 0",
              "  br i1 %any, label %item, label %done", "item:",
              "  %k = phi i64 [ 0, %entry ], [ %k1, %item ]"]
    priv_at = {off // 8: q for q, (off, _) in enumerate(priv or ())}
    for j in range(a):
        lines += [f"  %ap{j} = getelementptr i8, ptr %args, i64 {8 * j}",
                  f"  %a{j}x = load ptr, ptr %ap{j}",
                  f"  %sp{j} = getelementptr i8, ptr %steps, i64 {8 * j}",
                  f"  %s{j}x = load i64, ptr %sp{j}",
                  f"  %m{j} = mul i64 %k, %s{j}x",
                  f"  %i{j} = getelementptr i8, ptr %a{j}x, i64 %m{j}",
                  f"  %iap{j} = getelementptr i8, ptr %ia, i64 {8 * j}",
                  f"  store ptr %i{j}, ptr %iap{j}"]
        for k in range(w):
            lines += _shadow_entry(j, "%ia", f"{j}" + (f".{k}" if k else ""), k, a)
        if j in priv_at:
            q = priv_at[j]
            lines += [f"  %pd{q} = getelementptr i8, ptr %pv{q}, i64 %df{j}.{j}",
                      f"  store ptr %pd{q}, ptr %dap{j}.{j}"]
    lines += lane_ptrs
    lines += ["  %idx = add i64 %k0, %k",
              f"  %slot = getelementptr {tt}, ptr %tapes, i64 %idx"]
    if kind == "aug":
        lines += [f"  call void @gj.tape.acquire(ptr %tp, i64 {tape.INITIAL_BYTES})",
                  f"  call void @{_global(ver.names[0])}(ptr %ia, ptr %idims, ptr %steps, "
                  f"ptr %data, {lane_args}, ptr %tp)",
                  f"  %t = load {tt}, ptr %tp", f"  store {tt} %t, ptr %slot"]
    else:
        lines += [f"  %t = load {tt}, ptr %slot", f"  store {tt} %t, ptr %tp",
                  f"  call void @{_global(ver.names[1])}(ptr %ia, ptr %idims, ptr %steps, "
                  f"ptr %data, {lane_args}, ptr %tp)",
                  "  call void @gj.tape.release(ptr %tp)"]
    lines += ["  %k1 = add i64 %k, 1", "  %more = icmp slt i64 %k1, %cnt",
              "  br i1 %more, label %item, label %done", "done:"]
    for q, (off, ty) in enumerate(priv or ()):
        es = 8 if ty == "double" else 4
        j = off // 8
        lines += [f"  %rd{q} = getelementptr i8, ptr %od, i64 {off}", f"  %rb{q} = load ptr, ptr %rd{q}",
                  f"  %rn{q} = udiv i64 %sz{q}, {es}", f"  %rz{q} = icmp sgt i64 %rn{q}, 0",
                  f"  br i1 %rz{q}, label %red{q}, label %fin{q}", f"red{q}:",
                  f"  %e{q} = phi i64 [ 0, %{'done' if q == 0 else f'fin{q - 1}'} ], [ %e{q}n, %nx{q} ]",
                  f"  %sp{q}x = getelementptr {ty}, ptr %pv{q}, i64 %e{q}",
                  f"  %sv{q} = load {ty}, ptr %sp{q}x", f"  %nz{q} = fcmp une {ty} %sv{q}, 0.0",
                  f"  br i1 %nz{q}, label %add{q}, label %nx{q}", f"add{q}:",
                  f"  %dp{q}x = getelementptr {ty}, ptr %rb{q}, i64 %e{q}",
                  f"  %old{q} = atomicrmw fadd ptr %dp{q}x, {ty} %sv{q} monotonic",
                  f"  br label %nx{q}", f"nx{q}:", f"  %e{q}n = add i64 %e{q}, 1",
                  f"  %em{q} = icmp slt i64 %e{q}n, %rn{q}",
                  f"  br i1 %em{q}, label %red{q}, label %fin{q}", f"fin{q}:",
                  f"  call void @free(ptr %pv{q})"]
    lines += ["  ret void", "}"]
    return "\n".join(lines)


def _shadow_entry(j, primal_array, tag, lane=0, a=0) -> list:
    """Shadow entry j (of lane ``lane``; ``a`` entries per lane) = the launch's
    shadow entry moved by as many bytes as the primal entry j was moved from the
    launch's (the threading layer's offset)."""
    at = 8 * (lane * a + j)
    return [f"  %pp{j}.{tag} = getelementptr i8, ptr {primal_array}, i64 {8 * j}",
            f"  %pv{j}.{tag} = load ptr, ptr %pp{j}.{tag}",
            f"  %op{j}.{tag} = getelementptr i8, ptr %oa, i64 {8 * j}",
            f"  %ov{j}.{tag} = load ptr, ptr %op{j}.{tag}",
            f"  %dp{j}.{tag} = getelementptr i8, ptr %od, i64 {at}",
            f"  %dv{j}.{tag} = load ptr, ptr %dp{j}.{tag}",
            f"  %pi{j}.{tag} = ptrtoint ptr %pv{j}.{tag} to i64",
            f"  %oi{j}.{tag} = ptrtoint ptr %ov{j}.{tag} to i64",
            f"  %df{j}.{tag} = sub i64 %pi{j}.{tag}, %oi{j}.{tag}",
            f"  %ds{j}.{tag} = getelementptr i8, ptr %dv{j}.{tag}, i64 %df{j}.{tag}",
            f"  %dap{j}.{tag} = getelementptr i8, ptr %da, i64 {at}",
            f"  store ptr %ds{j}.{tag}, ptr %dap{j}.{tag}"]
