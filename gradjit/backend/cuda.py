"""CUDA backend: PTX through LLVM's NVPTX target, the CPU grid emulator, and
launches on a device.

* :func:`to_ptx` links libdevice (the ``nvidia-nvvm`` wheel's ``libdevice.10.bc``
  or a CUDA toolkit's), runs O3 with the NVPTX target machine and emits PTX for a
  compute capability (sm_80 when there is no device).  :func:`ptxas_check` runs
  ``ptxas`` on it when the tool is installed.  No GPU is needed for either.
* :class:`Emulator` runs a kernel module on the CPU: the thread-index intrinsics
  read variables a driver loop sets for every thread of the grid, libdevice math
  becomes libm, and the module is JIT-compiled for the host with llvmlite.
  Kernels that call ``cuda.syncthreads()`` cannot run thread by thread and raise
  :class:`~gradjit.UnsupportedError`.
* :func:`launch` loads PTX with ``cuda.core`` and launches it.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import llvmlite.binding as llvm
import numpy as np

from ..errors import UnsupportedError
from ..ir import pipeline
from . import schedule
from ..ad.tape import TAPE_EXIT

TAPE_EXIT_DECL = "declare void @llvm.trap()"

_SREG = re.compile(r"(%[-\w.$\"]+) = (?:tail )?call (?:noundef )?(?:range\([^)]*\) )?i32 "
                   r"@llvm\.nvvm\.read\.ptx\.sreg\.(tid|ntid|ctaid|nctaid)\.([xyz])\(\)")
_SREG_DECL = re.compile(r"^declare .*@llvm\.nvvm\.read\.ptx\.sreg\..*$", re.M)
_NV = re.compile(r"@__nv_(\w+)")


@functools.lru_cache(maxsize=None)
def libdevice_path() -> str:
    """Path of ``libdevice.10.bc`` (``GRADJIT_LIBDEVICE`` overrides); raises
    ``FileNotFoundError`` with what to install when there is none."""
    env = os.environ.get("GRADJIT_LIBDEVICE")
    if env and os.path.exists(env):
        return env
    cands = []
    for base in sys.path:
        cands += glob.glob(os.path.join(base, "nvidia", "*", "nvvm", "libdevice", "libdevice*.bc"))
        cands += glob.glob(os.path.join(base, "nvidia", "cuda_nvcc", "nvvm", "libdevice", "libdevice*.bc"))
    for root in [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*")):
        if root:
            cands += glob.glob(os.path.join(root, "nvvm", "libdevice", "libdevice*.bc"))
    if not cands:
        raise FileNotFoundError("libdevice.10.bc not found: pip install nvidia-nvvm (or set "
                                "GRADJIT_LIBDEVICE)")
    return cands[0]


def sm(cc) -> str:
    return f"sm_{cc[0]}{cc[1]}"


def to_ptx(text: str, kernel: str, cc=(8, 0), disjoint=()):
    """PTX of module ``text`` whose entry ``kernel`` becomes a ``ptx_kernel``.

    ``disjoint``: indices of the kernel's pointer parameters that address pairwise
    non-overlapping memory (the caller checks this at launch for the ones written,
    :func:`~gradjit.backend.schedule.check_disjoint`); they are marked ``noalias``
    (read-only ones are then read through the non-coherent cache) and loads are
    hoisted above stores to other ones (:mod:`~gradjit.backend.schedule`).
    Returns ``(ptx, written)``, ``written`` the indices in ``disjoint`` the kernel
    writes through."""
    text = re.sub(rf"^define (internal )?void @{re.escape(kernel)}\(",
                  f"define ptx_kernel void @{kernel}(", text, count=1, flags=re.M)
    if disjoint:
        head, sep, rest = text.partition(f"define ptx_kernel void @{kernel}(")
        params = rest[:rest.index(")")].split(", ")
        for k in disjoint:
            params[k] = re.sub(r"^ptr ", "ptr noalias ", params[k])
        text = head + sep + ", ".join(params) + rest[rest.index(")"):]
    mod = llvm.parse_assembly(text)
    mod.verify()
    libdev = llvm.parse_bitcode(open(libdevice_path(), "rb").read())
    libdev.triple = mod.triple
    libdev.data_layout = str(mod.data_layout)
    mod.link_in(libdev)
    for f in mod.functions:
        if not f.is_declaration and f.name != kernel:
            f.linkage = "internal"
    tm = pipeline.nvptx_target_machine(sm(cc), 3)
    pipeline.post_ad(mod, vectorize=False, tm=tm)
    scheduled, written = schedule.hoist_loads(str(mod), kernel, disjoint)
    mod = llvm.parse_assembly(scheduled)
    mod.verify()
    return tm.emit_assembly(mod), written


def find_ptxas():
    """``ptxas`` from PATH, else from the ``nvidia-cuda-nvcc-cu12`` wheel (the
    ``cuda`` extra installs it, so PTX is checked on machines without CUDA); None
    when neither is there."""
    exe = shutil.which("ptxas")
    if exe:
        return exe
    try:
        import nvidia
    except ImportError:
        return None
    for base in getattr(nvidia, "__path__", []):
        cand = os.path.join(base, "cuda_nvcc", "bin", "ptxas")
        if os.access(cand, os.X_OK):
            return cand
    return None


def ptxas_check(ptx: str, cc=(8, 0)):
    """Run ``ptxas`` on ``ptx`` (returns its output); None when ptxas is not installed.
    Raises ``RuntimeError`` with ptxas' message if it rejects the PTX."""
    exe = find_ptxas()
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([exe, f"-arch={sm(cc)}", "-o", os.path.join(d, "k.cubin"), src],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"ptxas rejected the generated PTX: {r.stderr.strip()[:2000]}")
        return r.stdout + r.stderr


# ---------------------------------------------------------------------------
# CPU grid emulator
# ---------------------------------------------------------------------------

def emulator_text(text: str, call: str, params, has_retptr: bool, threaded: bool = False) -> str:
    """Host version of kernel module ``text`` plus a driver
    ``gj.emu.run(<params>, gx, gy, gz, bx, by, bz)`` that calls ``@call`` for every
    thread of the grid.

    Without ``threaded`` the threads of a block run one after another and barriers
    are dropped (right only with one thread per block).  With ``threaded`` the
    blocks run one after another and the threads of a block run as POSIX threads
    that meet at ``cuda.syncthreads()`` (:data:`_THREADED_RUNTIME`); a thread that
    has returned no longer takes part in barriers, so a kernel whose threads skip
    a barrier cannot hang the emulator.
    """
    if threaded:
        text = re.sub(r"call void @llvm\.nvvm\.barrier[\w.]*\([^)]*\)", "call void @gj.emu.barrier()", text)
    else:
        # a barrier is a no-op when every block has one thread; Emulator.run checks that
        text = re.sub(r"^\s*(?:tail )?call void @llvm\.nvvm\.barrier[\w.]*\([^)]*\)\s*$", "", text, flags=re.M)
    text = re.sub(r"^declare void @llvm\.nvvm\.barrier[\w.]*\(.*$", "", text, flags=re.M)
    # memory fences (cuda.threadfence*): a host fence
    text = re.sub(r"(?:tail )?call void @llvm\.nvvm\.membar\.\w+\(\)", "fence seq_cst", text)
    text = re.sub(r"^declare void @llvm\.nvvm\.membar\.\w+\(.*$", "", text, flags=re.M)
    tm = pipeline.target_machine()
    text = re.sub(r'^target triple = ".*"$', f'target triple = "{tm.triple}"', text, flags=re.M)
    text = re.sub(r'^target datalayout = ".*"$', f'target datalayout = "{tm.target_data}"',
                  text, flags=re.M)

    def sreg(m):
        if threaded and m.group(2) == "tid":
            return f"{m.group(1)} = call i32 @gj.emu.tid(i64 {'xyz'.index(m.group(3))})"
        return f"{m.group(1)} = load i32, ptr @gj.emu.{m.group(2)}.{m.group(3)}"

    text = text.replace(TAPE_EXIT, "call void @llvm.trap()")
    if TAPE_EXIT_DECL not in text:
        text += "\n" + TAPE_EXIT_DECL + "\n"
    text = _SREG.sub(sreg, text)
    text = _SREG_DECL.sub("", text)
    text = _NV.sub(lambda m: "@" + m.group(1), text)
    text = re.sub(r"define ptx_kernel ", "define ", text)
    if re.search(r"@llvm\.nvvm\.", text):
        what = re.search(r"@(llvm\.nvvm\.[\w.]+)", text).group(1)
        raise UnsupportedError(f"emulating the NVVM intrinsic {what}")
    glob_lines = [f"@gj.emu.{r}.{a} = internal global i32 0"
                  for r in ("tid", "ntid", "ctaid", "nctaid") for a in "xyz"]
    ps = [f"{t} %p{k}" for k, t in enumerate(params)]
    args = [f"{t} %p{k}" for k, t in enumerate(params)]
    if has_retptr:
        args = ["ptr %ret"] + args
    loop = ["define void @gj.emu.run(" + ", ".join(ps + [f"i64 %{d}" for d in
                                                         ("gx", "gy", "gz", "bx", "by", "bz")]) + ") {",
            "entry:", "  %ret = alloca i64"]
    for d, n in (("x", "g"), ("y", "g"), ("z", "g")):
        loop.append(f"  %n{n}{d} = trunc i64 %{n}{d} to i32")
        loop.append(f"  store i32 %n{n}{d}, ptr @gj.emu.nctaid.{d}")
    for d in "xyz":
        loop.append(f"  %nb{d} = trunc i64 %b{d} to i32")
        loop.append(f"  store i32 %nb{d}, ptr @gj.emu.ntid.{d}")
    ret = "i32" if has_retptr else "void"
    if threaded:
        # the block's threads read the kernel's parameters from globals
        for k, t in enumerate(params):
            glob_lines.append(f"@gj.emu.p{k} = internal global {t} {_zero(t)}")
            loop.append(f"  store {t} %p{k}, ptr @gj.emu.p{k}")
        dims = [("cz", "gz", "ctaid.z"), ("cy", "gy", "ctaid.y"), ("cx", "gx", "ctaid.x")]
        inner = ["  call void @gj.emu.block(i64 %bx, i64 %by, i64 %bz)"]
        worker = ["define internal ptr @gj.emu.worker(ptr %ctx) {", "entry:",
                  "  %key = load i32, ptr @gj.emu.key",
                  "  %ok = call i32 @pthread_setspecific(i32 %key, ptr %ctx)", "  %ret = alloca i64"]
        for k, t in enumerate(params):
            worker.append(f"  %p{k} = load {t}, ptr @gj.emu.p{k}")
        worker += [f"  call {ret} @{call}(" + ", ".join(args) + ")",
                   "  call void @gj.emu.exit()", "  ret ptr null", "}"]
        runtime = "\n".join(
            l for l in _THREADED_RUNTIME.splitlines()
            if not (l.startswith("declare ") and re.search(
                r"^(?:declare|define)[^\n]*@" + re.escape(l.split("@", 1)[1].split("(")[0]) + r"\(",
                text, re.M)))
        extra = runtime + "\n" + "\n".join(worker) + "\n"
    else:
        # six nested counted loops: ctaid z, y, x, then tid z, y, x
        dims = [("cz", "gz", "ctaid.z"), ("cy", "gy", "ctaid.y"), ("cx", "gx", "ctaid.x"),
                ("tz", "bz", "tid.z"), ("ty", "by", "tid.y"), ("tx", "bx", "tid.x")]
        inner = [f"  call {ret} @{call}(" + ", ".join(args) + ")"]
        extra = ""

    def nest(k, prev):
        if k == len(dims):
            return inner
        v, bound, reg = dims[k]
        return ([f"  br label %h.{v}", f"h.{v}:",
                 f"  %{v} = phi i64 [ 0, %{prev} ], [ %{v}.n, %l.{v} ]",
                 f"  %{v}.c = icmp slt i64 %{v}, %{bound}",
                 f"  br i1 %{v}.c, label %b.{v}, label %e.{v}",
                 f"b.{v}:", f"  %{v}.t = trunc i64 %{v} to i32",
                 f"  store i32 %{v}.t, ptr @gj.emu.{reg}"]
                + nest(k + 1, f"b.{v}")
                + [f"  br label %l.{v}", f"l.{v}:", f"  %{v}.n = add i64 %{v}, 1",
                   f"  br label %h.{v}", f"e.{v}:"])
    loop += nest(0, "entry") + ["  ret void", "}"]
    return text + "\n" + "\n".join(glob_lines) + "\n" + extra + "\n".join(loop) + "\n"


def _zero(t):
    return "null" if t == "ptr" else ("0.0" if t in ("double", "float") else "0")


# One block's threads as POSIX threads.  Each thread's context is
# {i32 tid.x, tid.y, tid.z} found through a pthread key; the barrier is a
# generation counter under a mutex, released when every thread still running
# has arrived (threads that returned count as arrived).
_THREADED_RUNTIME = r"""
@gj.emu.key = internal global i32 0
@gj.emu.keyed = internal global i1 false
@gj.emu.mutex = internal global [64 x i8] zeroinitializer, align 16
@gj.emu.cond = internal global [64 x i8] zeroinitializer, align 16
@gj.emu.n = internal global i64 0
@gj.emu.arrived = internal global i64 0
@gj.emu.exited = internal global i64 0
@gj.emu.gen = internal global i64 0

declare i32 @pthread_key_create(ptr, ptr)
declare i32 @pthread_setspecific(i32, ptr)
declare ptr @pthread_getspecific(i32)
declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_join(i64, ptr)
declare i32 @pthread_mutex_lock(ptr)
declare i32 @pthread_mutex_unlock(ptr)
declare i32 @pthread_cond_wait(ptr, ptr)
declare i32 @pthread_cond_broadcast(ptr)
declare ptr @malloc(i64)
declare void @free(ptr)

define internal i32 @gj.emu.tid(i64 %axis) {
entry:
  %key = load i32, ptr @gj.emu.key
  %ctx = call ptr @pthread_getspecific(i32 %key)
  %p = getelementptr i32, ptr %ctx, i64 %axis
  %v = load i32, ptr %p
  ret i32 %v
}

; all threads still running have arrived: open the barrier (mutex held)
define internal void @gj.emu.release_if_full() {
entry:
  %a = load i64, ptr @gj.emu.arrived
  %e = load i64, ptr @gj.emu.exited
  %n = load i64, ptr @gj.emu.n
  %s = add i64 %a, %e
  %full = icmp sge i64 %s, %n
  %some = icmp sgt i64 %a, 0
  %go = and i1 %full, %some
  br i1 %go, label %open, label %done
open:
  store i64 0, ptr @gj.emu.arrived
  %g = load i64, ptr @gj.emu.gen
  %g1 = add i64 %g, 1
  store i64 %g1, ptr @gj.emu.gen
  %r = call i32 @pthread_cond_broadcast(ptr @gj.emu.cond)
  br label %done
done:
  ret void
}

define internal void @gj.emu.barrier() {
entry:
  %l = call i32 @pthread_mutex_lock(ptr @gj.emu.mutex)
  %gen = load i64, ptr @gj.emu.gen
  %a = load i64, ptr @gj.emu.arrived
  %a1 = add i64 %a, 1
  store i64 %a1, ptr @gj.emu.arrived
  call void @gj.emu.release_if_full()
  br label %wait
wait:
  %g = load i64, ptr @gj.emu.gen
  %same = icmp eq i64 %g, %gen
  br i1 %same, label %sleep, label %out
sleep:
  %w = call i32 @pthread_cond_wait(ptr @gj.emu.cond, ptr @gj.emu.mutex)
  br label %wait
out:
  %u = call i32 @pthread_mutex_unlock(ptr @gj.emu.mutex)
  ret void
}

define internal void @gj.emu.exit() {
entry:
  %l = call i32 @pthread_mutex_lock(ptr @gj.emu.mutex)
  %e = load i64, ptr @gj.emu.exited
  %e1 = add i64 %e, 1
  store i64 %e1, ptr @gj.emu.exited
  call void @gj.emu.release_if_full()
  %u = call i32 @pthread_mutex_unlock(ptr @gj.emu.mutex)
  ret void
}

; run one block of bx*by*bz threads and wait for all of them
define internal void @gj.emu.block(i64 %bx, i64 %by, i64 %bz) {
entry:
  %keyed = load i1, ptr @gj.emu.keyed
  br i1 %keyed, label %go, label %mk
mk:
  %kr = call i32 @pthread_key_create(ptr @gj.emu.key, ptr null)
  store i1 true, ptr @gj.emu.keyed
  br label %go
go:
  %bxy = mul i64 %bx, %by
  %n = mul i64 %bxy, %bz
  store i64 %n, ptr @gj.emu.n
  store i64 0, ptr @gj.emu.arrived
  store i64 0, ptr @gj.emu.exited
  %cb = mul i64 %n, 12
  %ctxs = call ptr @malloc(i64 %cb)
  %hb = mul i64 %n, 8
  %hs = call ptr @malloc(i64 %hb)
  br label %spawn
spawn:
  %t = phi i64 [ 0, %go ], [ %t1, %spawn ]
  %tx = urem i64 %t, %bx
  %tq = udiv i64 %t, %bx
  %ty = urem i64 %tq, %by
  %tz = udiv i64 %tq, %by
  %c = getelementptr [3 x i32], ptr %ctxs, i64 %t
  %cx = trunc i64 %tx to i32
  store i32 %cx, ptr %c
  %cyp = getelementptr i32, ptr %c, i64 1
  %cy = trunc i64 %ty to i32
  store i32 %cy, ptr %cyp
  %czp = getelementptr i32, ptr %c, i64 2
  %cz = trunc i64 %tz to i32
  store i32 %cz, ptr %czp
  %h = getelementptr i64, ptr %hs, i64 %t
  %cr = call i32 @pthread_create(ptr %h, ptr null, ptr @gj.emu.worker, ptr %c)
  %t1 = add i64 %t, 1
  %more = icmp ult i64 %t1, %n
  br i1 %more, label %spawn, label %join
join:
  %j = phi i64 [ 0, %spawn ], [ %j1, %join ]
  %hj = getelementptr i64, ptr %hs, i64 %j
  %hv = load i64, ptr %hj
  %jr = call i32 @pthread_join(i64 %hv, ptr null)
  %j1 = add i64 %j, 1
  %jmore = icmp ult i64 %j1, %n
  br i1 %jmore, label %join, label %done
done:
  call void @free(ptr %ctxs)
  call void @free(ptr %hs)
  ret void
}
"""


_CTYPE = {"ptr": ctypes.c_void_p, "i64": ctypes.c_int64, "i32": ctypes.c_int32,
          "i8": ctypes.c_int8, "i1": ctypes.c_bool, "double": ctypes.c_double,
          "float": ctypes.c_float}
# kernel arguments for cuda.core's launch (it takes NumPy scalars, not c_void_p)
_NPTYPE = {"ptr": np.uintp, "i64": np.int64, "i32": np.int32, "i8": np.int8, "i1": np.bool_,
           "double": np.float64, "float": np.float32}


class Emulator:
    """A kernel module compiled for the host; call :meth:`run`.

    Kernels without barriers, and kernels launched with one thread per block, run
    their threads one after another; kernels with ``cuda.syncthreads()`` and more
    threads per block run each block's threads as POSIX threads (compiled on first
    use, see :func:`emulator_text`).
    """

    def __init__(self, text: str, call: str, params, has_retptr: bool):
        self.params = list(params)
        self.has_barrier = re.search(r"call void @llvm\.nvvm\.barrier", text) is not None
        self._src = (text, call, has_retptr)
        self._fn, self._keep = self._compile(threaded=False)
        self._threaded = None

    def _compile(self, threaded):
        text, call, has_retptr = self._src
        src = emulator_text(text, call, self.params, has_retptr, threaded=threaded)
        mod = llvm.parse_assembly(src)
        mod.verify()
        pipeline.post_ad(mod, vectorize=False)
        # the engine owns its target machine: give it a new one
        engine = llvm.create_mcjit_compiler(mod, pipeline.target_machine.__wrapped__(3))
        engine.finalize_object()
        addr = engine.get_function_address("gj.emu.run")
        fn = ctypes.CFUNCTYPE(None, *[_CTYPE[t] for t in self.params], *[ctypes.c_int64] * 6)(addr)
        return fn, (engine, mod)

    def run(self, grid, block, flat_args):
        g = tuple(grid) + (1,) * (3 - len(grid))
        b = tuple(block) + (1,) * (3 - len(block))
        if self.has_barrier and b != (1, 1, 1):
            if int(np.prod(b)) > 1024:
                raise ValueError(f"a block of {int(np.prod(b))} threads (CUDA allows 1024)")
            if self._threaded is None:
                self._threaded = self._compile(threaded=True)
            self._threaded[0](*flat_args, *g, *b)
            return
        self._fn(*flat_args, *g, *b)


def flatten_args(values, argtys):
    """Python/NumPy values -> flat C arguments of Numba's data model (arrays as
    ``meminfo, parent, nitems, itemsize, data, shape..., strides...``)."""
    from numba.core import types
    out = []
    for v, t in zip(values, argtys):
        if isinstance(t, types.Array):
            a = v
            out += [None, None, a.size, a.dtype.itemsize, _data_ptr(a)] + list(a.shape) + list(a.strides)
        elif isinstance(t, types.BaseTuple):
            out += flatten_args(list(v), list(t))
        elif isinstance(t, types.Boolean):
            out.append(int(bool(v)))
        elif isinstance(t, types.Integer):
            out.append(int(v))
        else:
            out.append(float(v))
    return out


def _data_ptr(a):
    if isinstance(a, np.ndarray):
        return a.ctypes.data
    iface = getattr(a, "__cuda_array_interface__", None)
    if iface is not None:
        return iface["data"][0]
    raise TypeError(f"expected an array, got {type(a).__name__}")


# ---------------------------------------------------------------------------
# device launch
# ---------------------------------------------------------------------------

def have_device() -> bool:
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


class _StreamHandle:
    def __init__(self, ptr):
        self.ptr = ptr

    def __cuda_stream__(self):
        return (0, self.ptr)


def as_stream(device, stream):
    """A ``cuda.core`` stream for a launch's stream argument: a ``cuda.core``
    ``Stream``, anything with ``__cuda_stream__``, a CuPy stream (``.ptr``) or a
    Numba stream (``.handle``); raises ``TypeError`` otherwise."""
    from cuda.core import Stream
    if isinstance(stream, Stream):
        return stream
    if hasattr(stream, "__cuda_stream__"):
        return device.create_stream(stream)
    handle = getattr(stream, "ptr", None)
    if handle is None:
        h = getattr(stream, "handle", None)
        handle = getattr(h, "value", h)
    if handle is None:
        raise TypeError(f"not a CUDA stream: {type(stream).__name__}")
    return device.create_stream(_StreamHandle(int(handle)))


DEFAULT_HEAP_MB = 1024
_heap_checked = set()


def ensure_heap(device_id):
    """Raise the device's ``malloc`` heap (8 MiB by default in CUDA) to
    ``GRADJIT_CUDA_HEAP_MB`` (default 1024) MiB for tapes that outgrow a thread's
    stack buffer (``GRADJIT_CUDA_TAPE_STACK``).  CUDA accepts this only before the first kernel that
    calls ``malloc`` runs in the context; later it stays as it is."""
    if device_id in _heap_checked:
        return
    _heap_checked.add(device_id)
    from cuda.bindings import driver
    want = int(float(os.environ.get("GRADJIT_CUDA_HEAP_MB", DEFAULT_HEAP_MB)) * 2**20)
    limit = driver.CUlimit.CU_LIMIT_MALLOC_HEAP_SIZE
    err, have = driver.cuCtxGetLimit(limit)
    if err == driver.CUresult.CUDA_SUCCESS and have < want:
        driver.cuCtxSetLimit(limit, want)


def heap_size() -> int:
    """Bytes of the current context's device ``malloc`` heap."""
    from cuda.bindings import driver
    return int(driver.cuCtxGetLimit(driver.CUlimit.CU_LIMIT_MALLOC_HEAP_SIZE)[1])


class TapeOverflowError(RuntimeError):
    """A reverse-mode kernel's tape outgrew the device ``malloc`` heap."""


class DeviceKernel:
    """PTX loaded on the current device with ``cuda.core``.  Kernels whose tape
    can move to device ``malloc`` memory (loops) launch synchronously and raise
    :class:`TapeOverflowError` when a thread found the heap exhausted."""

    def __init__(self, ptx: str, name: str, params):
        from cuda.core import Device, ObjectCode
        self.device = Device()
        self.device.set_current()
        self.uses_heap = "call.uni (retval0), malloc," in ptx
        if self.uses_heap:
            ensure_heap(self.device.device_id)
        self.module = ObjectCode.from_ptx(ptx.encode() if isinstance(ptx, str) else ptx)
        self.kernel = self.module.get_kernel(name)
        self.params = list(params)
        self._flag = None

    def _overflow_flag(self):
        if self._flag is None:
            from cuda.bindings import driver
            name = b"gradjit_tape_overflow"
            handle = self.module.handle
            if isinstance(handle, driver.CUmodule):
                err, ptr, _ = driver.cuModuleGetGlobal(handle, name)
            else:
                err, ptr, _ = driver.cuLibraryGetGlobal(handle, name)
            if err != driver.CUresult.CUDA_SUCCESS:
                raise RuntimeError(f"reading the tape-overflow flag: {err}")
            self._flag = int(ptr)
        return self._flag

    def launch(self, grid, block, flat_args, stream=None):
        from cuda.core import LaunchConfig, launch
        from cuda.core import LEGACY_DEFAULT_STREAM
        # like a Numba launch: asynchronous, on the legacy default stream (the one
        # Numba and CuPy use) unless a stream is given
        s = LEGACY_DEFAULT_STREAM if stream is None else as_stream(self.device, stream)
        args = [_NPTYPE[t](0 if a is None else a) for t, a in zip(self.params, flat_args)]
        launch(s, LaunchConfig(grid=tuple(grid), block=tuple(block)), self.kernel, *args)
        if self.uses_heap:
            self._check_overflow(s)

    def _check_overflow(self, stream):
        from cuda.bindings import driver
        stream.sync()
        flag = self._overflow_flag()
        out = np.zeros(1, np.int32)
        (err,) = driver.cuMemcpyDtoH(out.ctypes.data, flag, 4)
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"reading the tape-overflow flag: {err}")
        if out[0]:
            driver.cuMemsetD32(flag, 0, 1)
            raise TapeOverflowError(
                f"the derivative kernel's tape outgrew the device malloc heap "
                f"({heap_size() >> 20} MiB): some threads stopped early and the shadows hold "
                "partial results.  Set GRADJIT_CUDA_HEAP_MB before the first launch in the "
                "process, or launch fewer threads at a time")
