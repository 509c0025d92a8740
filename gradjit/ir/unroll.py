"""Pre-AD full unrolling of loops that run a few, constant, times.

The pre-AD pipeline keeps loops rolled so the AD sees induction variables
(:mod:`gradjit.ir.pipeline`).  Some loops are better gone before AD: Numba lowers
``x ** 2`` with an integer exponent to ``int_power``'s square-and-multiply loop,
which runs twice; ``for j in range(3)`` over a small fixed size is another.  Left
rolled, each costs the derivative a nested loop, a tape record per iteration,
and makes the derivative "not loop-free", so it is never inlined into @njit
callers (:data:`gradjit.backend.cpu.INLINE_LIMIT`).

:func:`unroll_small_loops` finds the loops (whole nests, innermost first) whose
control runs on constants (:func:`gradjit.analysis.trips.run_loop`) at most
:data:`MAX_TRIPS` times, and whose unrolled body stays within
:data:`MAX_UNROLLED` instructions, and has LLVM's loop unroller fully unroll
exactly those: their latch branches get ``llvm.loop.unroll.full`` and every
other loop ``llvm.loop.unroll.disable`` (LLVM LangRef, "'llvm.loop.unroll'
Metadata"), so no other loop is partially or runtime unrolled.
"""
from __future__ import annotations

import os
import re

import llvmlite.binding as llvm

from ..analysis.dominators import DominatorTree
from ..analysis.loops import LoopInfo
from ..analysis.trips import run_loop
from .model import Block, Function, local_names
from .reader import read_function
from .text import DEFINE, LABEL, TERMINATORS, blocks as split_blocks, functions

#: Most iterations a loop may run to be unrolled; the environment variable
#: ``GRADJIT_UNROLL_TRIPS`` sets it at import (0 turns pre-AD unrolling off).
try:
    MAX_TRIPS = int(os.environ.get("GRADJIT_UNROLL_TRIPS", "8"))
except ValueError:
    MAX_TRIPS = 8
#: Most instructions an unrolled loop may have (those one execution of the loop runs).
MAX_UNROLLED = 160

_LOOP_MD = re.compile(r", !llvm\.loop !\d+")
_MD_ID = re.compile(r"!(\d+)\b")
_LABEL_REF = re.compile(r'label %("(?:[^"\\]|\\.)*"|[-\w.$]+)')
_DEF = re.compile(r'^\s*%(?:"((?:[^"\\]|\\.)*)"|([-\w.$]+)) = ')


def small_loops(fn):
    """``(full, other)``: latch block names of the loops of ``fn`` (a model
    :class:`~gradjit.ir.model.Function`) to unroll fully, and of all other loops.

    A loop is unrolled when every loop nested in it is, it has one latch, and
    one execution of it runs its header at most :data:`MAX_TRIPS` times and at
    most :data:`MAX_UNROLLED` instructions, on constant control flow
    (:func:`~gradjit.analysis.trips.run_loop`).  LLVM's unroller works from the
    innermost loop out, so a nest such as ``for i in range(3): for j in
    range(3)`` goes in one run.
    """
    loops = LoopInfo(fn, DominatorTree(fn)).loops
    inner = {id(l): [] for l in loops}
    for l in loops:
        if l.parent is not None:
            inner[id(l.parent)].append(l)
    ok, full, other = {}, set(), set()
    for loop in sorted(loops, key=lambda l: -l.depth):
        latches = [b for b in loop.blocks if loop.header in fn.block(b).succs]
        good = len(latches) == 1 and all(ok[id(c)] for c in inner[id(loop)])
        if good:
            good = run_loop(fn, loop, MAX_TRIPS, MAX_UNROLLED) is not None
        ok[id(loop)] = good
        (full if good else other).update(latches)
    # a latch shared with a loop that stays (one block closing two loops) stays too
    return full - other, other


def _mark(text: str, marks: dict):
    """``(text, marked)``: ``text`` with the terminators of the blocks in ``marks``
    ({function name: {block name: metadata id}}) carrying ``!llvm.loop`` that id,
    and the set of ``(function, block)`` marked."""
    out, fn, name, block, marked, pending = [], None, None, None, set(), False
    for line in text.split("\n"):
        m = DEFINE.match(line)
        if m:
            name, block = m.group(1).strip('"'), None
            fn = marks.get(name)
        elif fn is not None:
            lab = LABEL.match(line)
            if lab:
                block = lab.group(1).strip('"')
            elif line.startswith("}"):
                fn = None
            elif block in fn and (line.lstrip().startswith(TERMINATORS) or pending):
                if ("[" in line or pending) and "]" not in line:
                    pending = True          # a switch: the attachment goes after its "]"
                else:
                    line = _LOOP_MD.sub("", line) + f", !llvm.loop !{fn[block]}"
                    marked.add((name, block))
                    pending = False
        out.append(line)
    return "\n".join(out), marked


def _may_have_constant_loop(lines) -> bool:
    """A cheap filter on a function's text (no model, no LLVM calls): does some
    innermost loop of at most :data:`MAX_UNROLLED` / 2 instructions branch only on
    values it computes itself from constants?  (Every value such a branch
    depends on, followed through operands, is defined in the loop.)"""
    order, blocks = split_blocks(lines)
    for name, blk in blocks.items():
        blk[:] = [l for l in blk if l.strip() and not l.lstrip().startswith("#dbg_")]
        # a switch's case list runs over several lines: one terminator line per block
        at = len(blk) - 1
        while at > 0 and not blk[at].lstrip().startswith(TERMINATORS):
            at -= 1
        blk[at:] = [" ".join(blk[at:])]
    fn = Function("f", "", [], blocks=[Block(b) for b in order])
    for b in fn.blocks:
        term = blocks[b.name][-1]
        b.succs = list(dict.fromkeys(n.strip('"') for n in _LABEL_REF.findall(term)))
    fn.index()
    for b in fn.blocks:
        for s in b.succs:
            if s in blocks:
                fn.block(s).preds.append(b.name)
            else:
                return False                 # unexpected text: leave it to the model
    loops = LoopInfo(fn, DominatorTree(fn)).loops
    parents = {id(l.parent) for l in loops}
    for loop in loops:
        size = sum(len(blocks[b]) for b in loop.blocks)
        if id(loop) in parents or 2 * size > MAX_UNROLLED:
            continue
        defs = {}
        for b in loop.blocks:
            for line in blocks[b]:
                m = _DEF.match(line)
                if m:
                    defs[m.group(1) or m.group(2)] = line
        work = [t for b, _ in loop.exits for t in local_names(blocks[b][-1])]
        seen, ok = set(), True
        while work and ok:
            t = work.pop()
            if t in seen or t in blocks:
                continue
            seen.add(t)
            if t not in defs:
                ok = False
            else:
                work.extend(local_names(defs[t]))
        if ok:
            return True
    return False


def unroll_small_loops(mod, tm=None):
    """Return ``mod`` (an llvmlite ModuleRef after the pre-AD pipeline) with the
    loops chosen by :func:`small_loops` fully unrolled: a new, verified module
    when there were any, else ``mod`` itself.  Functions are read into the model
    only when a cheap text filter finds a candidate loop in them.  A loop whose
    trip count is constant only once the loop around it is unrolled (``for j in
    range(i)`` in ``for i in range(3)``) stays, and so does that outer loop."""
    if MAX_TRIPS <= 0:
        return mod
    text = str(mod)
    names = {name for name, lines in functions(text) if _may_have_constant_loop(lines)}
    if not names:
        return mod
    plan = {}
    for f in mod.functions:
        if f.name in names and not f.is_declaration:
            full, other = small_loops(read_function(f))
            if full:
                plan[f.name] = (full, other)
    if not plan:
        return mod
    text = str(mod)                      # the reader named unnamed blocks
    next_id = max((int(k) for k in _MD_ID.findall(text)), default=-1) + 1
    full_md, off_md = next_id, next_id + 1
    nodes = [f'!{full_md} = !{{!"llvm.loop.unroll.full"}}',
             f'!{off_md} = !{{!"llvm.loop.unroll.disable"}}']
    marks, n = {}, next_id + 2
    for name, (full, other) in plan.items():
        marks[name] = {}
        for blocks, md in ((full, full_md), (other, off_md)):
            for b in sorted(blocks):
                nodes.append(f"!{n} = distinct !{{!{n}, !{md}}}")
                marks[name][b] = n
                n += 1
    text, marked = _mark(text, marks)
    try:
        new = llvm.parse_assembly(text + "\n" + "\n".join(nodes) + "\n")
        new.verify()
    except RuntimeError:                 # text this does not edit right: keep the loops
        return mod
    # a function with a loop left unmarked (a label this does not read) is not run
    # through the unroller, whose own heuristics would unroll that loop partially
    run = {f for f, m in marks.items() if all((f, b) in marked for b in m)}
    if not run:
        return mod
    from .pipeline import target_machine
    pb = llvm.create_pass_builder(tm or target_machine(), llvm.create_pipeline_tuning_options(2))
    fpm = llvm.create_new_function_pass_manager()
    fpm.add_loop_unroll_pass()
    fpm.add_instruction_combine_pass()
    fpm.add_simplify_cfg_pass()
    fpm.add_dead_code_elimination_pass()
    for f in new.functions:
        if f.name in run and not f.is_declaration:
            fpm.run(f, pb)
    return new
