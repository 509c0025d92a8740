"""The tape: a growable byte stack shared by every function of one derivative call.

The augmented primal pushes, at the end of each executed basic block, one *record*
holding what that block's reverse needs (primal values, shadow pointers and, for a
block with several predecessors, which predecessor it was entered from); the
reverse sweep pops the records in the opposite order.  Nested calls push onto the
same tape, so recursion needs nothing special.  On the CPU records are packed: a
value takes its store size (a branch flag one byte, a loop's predecessor index
four), so the tape traffic of flag-heavy loops is that of the flags, and loads and
stores state alignment 1 (x86-64 loads and stores any alignment at full speed
unless a cache line is crossed).  On the GPU every value takes an 8-byte slot, so
each access is aligned, as the hardware needs.  The stack doubles when full
(amortised O(1) per push) and starts at ``INITIAL_BYTES`` or at the size the
caller estimates from loop trip counts.

Layout of the tape object: ``{ ptr data, i64 top, i64 capacity }``.  A call
starts its tape in a stack buffer of ``STACK_BYTES`` (marked by an odd capacity),
so a small derivative call touches neither the heap nor shared state.  A tape that
outgrows it moves to the heap: to a buffer kept from an earlier call (up to 8 are
kept, taken and given back with atomic exchanges, so concurrent calls and the work
items of a prange launch each get their own) or a new one, so large calls after
the first one write to memory that is already mapped.
"""
from __future__ import annotations

import os

from ..ir import types as T

TAPE_TYPE = "{ ptr, i64, i64 }"
INITIAL_BYTES = 1 << 16
# a derivative call starts its tape in a stack buffer of this size: small calls then
# touch no heap and no shared state; a tape that outgrows it moves to the heap
STACK_BYTES = 2048

_PUSH_POP = r"""define internal void @gj.tape.reserve(ptr %t, i64 %n) alwaysinline {
entry:
  %topp = getelementptr inbounds i8, ptr %t, i64 8
  %capp = getelementptr inbounds i8, ptr %t, i64 16
  %top = load i64, ptr %topp
  %cap = load i64, ptr %capp
  %new = add i64 %top, %n
  %ok = icmp ule i64 %new, %cap
  br i1 %ok, label %done, label %slow, !prof !{!"branch_weights", i32 2000, i32 1}
slow:
  %d0 = load ptr, ptr %t
  %g = call { ptr, i64 } @gj.tape.grow(ptr %d0, i64 %cap, i64 %new)
  %gd = extractvalue { ptr, i64 } %g, 0
  %gc = extractvalue { ptr, i64 } %g, 1
  store ptr %gd, ptr %t
  store i64 %gc, ptr %capp
  br label %done
done:
  ret void
}

define internal ptr @gj.tape.push(ptr %t, i64 %n) alwaysinline {
entry:
  call void @gj.tape.reserve(ptr %t, i64 %n)
  %p = call ptr @gj.tape.push.reserved(ptr %t, i64 %n)
  ret ptr %p
}

; a push into space a reserve made
define internal ptr @gj.tape.push.reserved(ptr %t, i64 %n) alwaysinline {
entry:
  %topp = getelementptr inbounds i8, ptr %t, i64 8
  %top = load i64, ptr %topp
  %new = add i64 %top, %n
  store i64 %new, ptr %topp
  %d = load ptr, ptr %t
  %p = getelementptr inbounds i8, ptr %d, i64 %top
  ret ptr %p
}

define internal ptr @gj.tape.pop(ptr %t, i64 %n) alwaysinline {
entry:
  %topp = getelementptr inbounds i8, ptr %t, i64 8
  %top = load i64, ptr %topp
  %new = sub i64 %top, %n
  store i64 %new, ptr %topp
  %d = load ptr, ptr %t
  %p = getelementptr inbounds i8, ptr %d, i64 %new
  ret ptr %p
}

"""

RUNTIME = r"""
define internal { ptr, i64 } @gj.tape.grow(ptr %d, i64 %cap, i64 %need) noinline {
entry:
  ; an odd capacity marks the caller's stack buffer (STACK_BYTES - 1: the
  ; buffer's bytes in use, all of which move)
  %stk = trunc i64 %cap to i1
  %capr = and i64 %cap, -2
  %c2 = shl i64 %capr, 1
  %c3 = call i64 @llvm.umax.i64(i64 %c2, i64 %need)
  %c4r = call i64 @llvm.umax.i64(i64 %c3, i64 65536)
  ; heap capacities stay even (packed records leave odd sizes): odd marks the stack
  %c4u = add i64 %c4r, 15
  %c4 = and i64 %c4u, -16
  br i1 %stk, label %fromstack, label %heap
heap:
  %nd = call ptr @realloc(ptr %d, i64 %c4)
  br label %done
fromstack:
  ; move to a cached heap buffer (grown if too small) or a new one
  %c = call ptr @gj.tape.take()
  %have = icmp ne ptr %c, null
  br i1 %have, label %cached, label %fresh
cached:
  %cc = load i64, ptr %c
  %big = icmp uge i64 %cc, %c4
  br i1 %big, label %copy, label %fresh
fresh:
  %nb = call ptr @realloc(ptr %c, i64 %c4)
  br label %copy
copy:
  %b = phi ptr [ %c, %cached ], [ %nb, %fresh ]
  %bc = phi i64 [ %cc, %cached ], [ %c4, %fresh ]
  call void @llvm.memcpy.p0.p0.i64(ptr %b, ptr %d, i64 %cap, i1 false)
  br label %done
done:
  %rd = phi ptr [ %nd, %heap ], [ %b, %copy ]
  %rc = phi i64 [ %c4, %heap ], [ %bc, %copy ]
  %r0 = insertvalue { ptr, i64 } undef, ptr %rd, 0
  %r1 = insertvalue { ptr, i64 } %r0, i64 %rc, 1
  ret { ptr, i64 } %r1
}

; a tape that starts in the caller's stack buffer %buf of %n bytes (%n even): its
; capacity is marked odd, %n - 1, so that packed records never pass the buffer's end
define internal void @gj.tape.init_stack(ptr %t, ptr %buf, i64 %n) alwaysinline {
entry:
  store ptr %buf, ptr %t
  %topp = getelementptr inbounds i8, ptr %t, i64 8
  store i64 8, ptr %topp
  %capp = getelementptr inbounds i8, ptr %t, i64 16
  %odd = sub i64 %n, 1
  store i64 %odd, ptr %capp
  ret void
}

""" + _PUSH_POP + r"""@gj.tape.cached = internal global [8 x ptr] zeroinitializer

; take a buffer of an earlier call (or a new one) into the local tape %t
define internal void @gj.tape.acquire(ptr %t, i64 %bytes) alwaysinline {
entry:
  %c = call ptr @gj.tape.take()
  %have = icmp ne ptr %c, null
  br i1 %have, label %reuse, label %new
reuse:
  %cap = load i64, ptr %c
  br label %done
new:
  %d = call ptr @realloc(ptr null, i64 %bytes)
  br label %done
done:
  %dd = phi ptr [ %c, %reuse ], [ %d, %new ]
  %cc = phi i64 [ %cap, %reuse ], [ %bytes, %new ]
  store ptr %dd, ptr %t
  %topp = getelementptr inbounds i8, ptr %t, i64 8
  store i64 8, ptr %topp
  %capp = getelementptr inbounds i8, ptr %t, i64 16
  store i64 %cc, ptr %capp
  ret void
}

; the first cached buffer (atomically taken out of its slot), or null
define internal ptr @gj.tape.take() noinline {
entry:
  br label %scan
scan:
  %k = phi i64 [ 0, %entry ], [ %k1, %next ]
  %slot = getelementptr [8 x ptr], ptr @gj.tape.cached, i64 0, i64 %k
  %c = atomicrmw xchg ptr %slot, ptr null acquire
  %have = icmp ne ptr %c, null
  br i1 %have, label %out, label %next
next:
  %k1 = add i64 %k, 1
  %more = icmp ult i64 %k1, 8
  br i1 %more, label %scan, label %out
out:
  %r = phi ptr [ %c, %scan ], [ null, %next ]
  ret ptr %r
}

; keep the buffer for a later call (up to 8 are kept, e.g. one per work item of
; a prange launch; one more is freed); the first 8 bytes of a buffer hold its
; capacity while it is cached
define internal void @gj.tape.release(ptr %t) alwaysinline {
entry:
  %d = load ptr, ptr %t
  %capp = getelementptr inbounds i8, ptr %t, i64 16
  %cap = load i64, ptr %capp
  %stk = trunc i64 %cap to i1
  br i1 %stk, label %done, label %keep
keep:
  call void @gj.tape.keep(ptr %d, i64 %cap)
  br label %done
done:
  ret void
}

define internal void @gj.tape.keep(ptr %d, i64 %cap) noinline {
entry:
  store i64 %cap, ptr %d
  br label %scan
scan:
  %k = phi i64 [ 0, %entry ], [ %k1, %next ]
  %slot = getelementptr [8 x ptr], ptr @gj.tape.cached, i64 0, i64 %k
  %pair = cmpxchg ptr %slot, ptr null, ptr %d acq_rel monotonic
  %ok = extractvalue { ptr, i1 } %pair, 1
  br i1 %ok, label %done, label %next
next:
  %k1 = add i64 %k, 1
  %more = icmp ult i64 %k1, 8
  br i1 %more, label %scan, label %drop
drop:
  call void @free(ptr %d)
  br label %done
done:
  ret void
}
"""

# bytes of a GPU thread's tape kept in its stack (local memory, which the hardware
# interleaves across the threads of a warp, so equal offsets coalesce); beyond it
# the tape moves to the device malloc heap (per-thread blocks: slow).  A kernel
# whose tape fits reserves this much local memory per resident thread.
DEFAULT_KERNEL_BYTES = 2048


def kernel_bytes() -> int:
    """``GRADJIT_CUDA_TAPE_STACK`` (bytes, an integer >= 0; default 2048); raises
    ``ValueError`` for anything else."""
    raw = os.environ.get("GRADJIT_CUDA_TAPE_STACK", str(DEFAULT_KERNEL_BYTES))
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"GRADJIT_CUDA_TAPE_STACK must be a number of bytes >= 0, got {raw!r}")
    return n

# GPU threads: the tape starts in a per-thread stack buffer and moves to device
# malloc memory if it outgrows it (the buffer is recognised by its capacity).  When
# the device heap is exhausted the thread sets TAPE_OVERFLOW_FLAG and exits (PTX
# ``exit``; barriers no longer wait for it); the launcher reads the flag and raises.
TAPE_OVERFLOW_FLAG = "gradjit_tape_overflow"
TAPE_EXIT = 'call void asm sideeffect "exit;", ""()'
_KERNEL_RUNTIME = r"""
@gradjit_tape_overflow = global i32 0, align 4

; zeroed device heap memory (the shadow of a thread's local array, which outlives
; the augmented primal); an exhausted heap stops the thread as in gj.tape.grow
define internal ptr @gj.zalloc(i64 %n) {
entry:
  %p = call ptr @malloc(i64 %n)
  %ok = icmp ne ptr %p, null
  br i1 %ok, label %fill, label %overflow
overflow:
  store volatile i32 1, ptr @gradjit_tape_overflow, align 4
  """ + TAPE_EXIT + r"""
  unreachable
fill:
  call void @llvm.memset.p0.i64(ptr %p, i8 0, i64 %n, i1 false)
  ret ptr %p
}

define internal { ptr, i64 } @gj.tape.grow(ptr %d, i64 %cap, i64 %need) noinline {
entry:
  %c2 = shl i64 %cap, 1
  %c3 = call i64 @llvm.umax.i64(i64 %c2, i64 %need)
  %c4 = call i64 @llvm.umax.i64(i64 %c3, i64 4096)
  %nd = call ptr @malloc(i64 %c4)
  %ok = icmp ne ptr %nd, null
  br i1 %ok, label %copy, label %overflow
overflow:
  store volatile i32 1, ptr @gradjit_tape_overflow, align 4
  %was_stack = icmp eq i64 %cap, @STACK@
  br i1 %was_stack, label %stop, label %release_stop
release_stop:
  call void @free(ptr %d)
  br label %stop
stop:
  """ + TAPE_EXIT + r"""
  unreachable
copy:
  call void @llvm.memcpy.p0.p0.i64(ptr %nd, ptr %d, i64 %cap, i1 false)
  %onstack = icmp eq i64 %cap, @STACK@
  br i1 %onstack, label %done, label %release
release:
  call void @free(ptr %d)
  br label %done
done:
  %r0 = insertvalue { ptr, i64 } undef, ptr %nd, 0
  %r1 = insertvalue { ptr, i64 } %r0, i64 %c4, 1
  ret { ptr, i64 } %r1
}
""" + _PUSH_POP + r"""
define internal void @gj.tape.init(ptr %t, ptr %buf) alwaysinline {
entry:
  store ptr %buf, ptr %t
  %topp = getelementptr inbounds i8, ptr %t, i64 8
  store i64 0, ptr %topp
  %capp = getelementptr inbounds i8, ptr %t, i64 16
  store i64 @STACK@, ptr %capp
  ret void
}

define internal void @gj.tape.fini(ptr %t) alwaysinline {
entry:
  %capp = getelementptr inbounds i8, ptr %t, i64 16
  %cap = load i64, ptr %capp
  %onstack = icmp eq i64 %cap, @STACK@
  br i1 %onstack, label %done, label %release
release:
  %d = load ptr, ptr %t
  call void @free(ptr %d)
  br label %done
done:
  ret void
}
"""


def kernel_runtime() -> str:
    """The GPU tape runtime for a :func:`kernel_bytes` stack buffer per thread (the
    kernel's entry allocates the buffer, so it lives as long as the kernel)."""
    return _KERNEL_RUNTIME.replace("@STACK@", str(kernel_bytes()))



def memcpy_adjoint(ty: str) -> str:
    """``gj.memcpy.adj.<ty>(ddst, dsrc, nbytes)``: the adjoint of ``memcpy`` on
    ``ty`` elements, ``dsrc[i] += ddst[i]; ddst[i] = 0`` (``dsrc`` may be null)."""
    sz = T.FLOATS[ty]
    return f"""
define internal void @gj.memcpy.adj.{ty}(ptr %dd, ptr %ds, i64 %nb) {{
entry:
  %n = udiv i64 %nb, {sz}
  %has = icmp ne ptr %ds, null
  %z = icmp eq i64 %n, 0
  br i1 %z, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %next ]
  %pd = getelementptr inbounds {ty}, ptr %dd, i64 %i
  %v = load {ty}, ptr %pd
  store {ty} 0.0, ptr %pd
  br i1 %has, label %acc, label %next
acc:
  %ps = getelementptr inbounds {ty}, ptr %ds, i64 %i
  %w = load {ty}, ptr %ps
  %s = fadd {ty} %w, %v
  store {ty} %s, ptr %ps
  br label %next
next:
  %i1 = add i64 %i, 1
  %c = icmp ult i64 %i1, %n
  br i1 %c, label %loop, label %done
done:
  ret void
}}
"""


def slot(ty: str, target: str = "cpu") -> int:
    """Bytes a value of type ``ty`` takes in a tape record: its store size on the
    CPU (records are packed), a multiple of 8 on the GPU (8-byte slots)."""
    n = T.size(ty)
    return n if target == "cpu" else (n + 7) // 8 * 8


def _layout(items, target):
    """``(order, offsets, total)`` of one record: the items by decreasing alignment
    (stable, so a push and its pop agree), so each lies at an offset that is a
    multiple of its alignment from the record's start."""
    order = sorted(range(len(items)), key=lambda k: -T.align(items[k][0]))
    offsets, off = {}, 0
    for k in order:
        offsets[k] = off
        off += slot(items[k][0], target)
    return order, offsets, off


def _record(b, tape, items, op, access):
    """Emit one record's push or pop (``op``) and a load/store per item (``access``
    gets the alignment to state: 1 for the CPU's packed records, whose start is
    not aligned, the type's own on the GPU, whose records stay 8-byte aligned)."""
    if not items:
        return
    order, offsets, total = _layout(items, b.target)
    p = b.assign(f"call ptr @gj.tape.{op}(ptr {tape}, i64 {total})")
    for k in order:
        ty, ref = items[k]
        off = offsets[k]
        q = p if off == 0 else b.assign(f"getelementptr inbounds i8, ptr {p}, i64 {off}")
        align = 1 if b.target == "cpu" else min(T.align(ty), 8)
        b.emit(access(ty, ref, q) + f", align {align}")


def push_record(b, tape: str, items, reserved=False) -> None:
    """Emit the push of one record; ``items`` = [(type, ref)]; ``reserved``: the
    space was reserved before the loop (no capacity check)."""
    _record(b, tape, items, "push.reserved" if reserved else "push",
            lambda ty, ref, q: f"store {ty} {ref}, ptr {q}")


def record_bytes(types, target: str = "cpu") -> int:
    """Bytes of one record holding values of ``types``."""
    return _layout([(t, None) for t in types], target)[2]


def pop_record(b, tape: str, items) -> None:
    """Emit the pop of one record into the names given; ``items`` = [(type, ref)]."""
    _record(b, tape, items, "pop", lambda ty, ref, q: f"{ref} = load {ty}, ptr {q}")


TAPE_COPY = "%gj.tc"


def call_with_copy(b, emit_call):
    """Emit a call that takes the tape through a copy ``%gj.tc``: the function's own
    tape object then never escapes, so after inlining its fields live in registers."""
    v = b.assign(f"load {TAPE_TYPE}, ptr %gj.tape")
    b.emit(f"store {TAPE_TYPE} {v}, ptr {TAPE_COPY}")
    emit_call()
    w = b.assign(f"load {TAPE_TYPE}, ptr {TAPE_COPY}")
    b.emit(f"store {TAPE_TYPE} {w}, ptr %gj.tape")
