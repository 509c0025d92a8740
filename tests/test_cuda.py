"""CUDA kernels: derivatives checked on the CPU grid emulator against finite
differences and analytic results, PTX generated for every kernel and accepted by
ptxas; GPU runs only when a device is present (never in CI)."""
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

cuda = pytest.importorskip("numba.cuda")

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gradjit  # noqa: E402
from gradjit import Const, Dual, Duplicated  # noqa: E402
from gradjit.backend import cuda as cuda_backend  # noqa: E402
from kernels.cuda_kernels import axpy_sin, dot, iterate, stencil  # noqa: E402

try:
    cuda_backend.libdevice_path()
    HAVE_LIBDEVICE = True
except FileNotFoundError:
    HAVE_LIBDEVICE = False


@cuda.jit
def grid2d(a, b):
    i, j = cuda.grid(2)
    if i < a.shape[0] and j < a.shape[1]:
        b[i, j] = math.exp(-a[i, j] * a[i, j]) * (i + 1) + math.tanh(a[i, j])


@cuda.jit
def looped(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        s = 0.0
        for k in range(i % 5 + 1):
            s += math.sqrt(1.0 + x[i] * k)
        out[i] = s


@cuda.jit
def with_barrier(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] * x[i]
    cuda.syncthreads()
    if i < x.shape[0]:
        out[i] = out[i] * 2.0


@cuda.jit
def shared_sum(x, out):
    buf = cuda.shared.array(32, dtype=np.float64)
    t = cuda.threadIdx.x
    buf[t] = x[cuda.grid(1)]
    cuda.syncthreads()
    if t == 0:
        s = 0.0
        for k in range(32):
            s += buf[k]
        out[cuda.blockIdx.x] = s


def rng_arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.1, 1.0, s) for s in shapes]


# kernel, launch, inputs factory, index of the differentiated input, index of the output
CASES = {
    "axpy_sin": (axpy_sin, (2, 32), lambda: [1.7] + rng_arrays(50, 50) + [np.zeros(50)], 1, 3),
    "stencil": (stencil, (2, 32), lambda: rng_arrays(50) + [np.zeros(50)], 0, 1),
    "dot": (dot, (2, 32), lambda: rng_arrays(50, 50) + [np.zeros(1)], 0, 2),
    "grid2d": (grid2d, ((2, 2), (8, 8)), lambda: rng_arrays((13, 11)) + [np.zeros((13, 11))], 0, 1),
    "looped": (looped, (2, 32), lambda: rng_arrays(40) + [np.zeros(40)], 0, 1),
}


def run_primal(kernel, launch, args):
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    gradjit.emulate(kernel)[launch](*args)
    return args


def fd_jacobian_vector(kernel, launch, args, k_in, k_out, tangent, eps=1e-6):
    plus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    minus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    plus[k_in] = plus[k_in] + eps * tangent
    minus[k_in] = minus[k_in] - eps * tangent
    return (run_primal(kernel, launch, plus)[k_out] - run_primal(kernel, launch, minus)[k_out]) / (2 * eps)


def activities(n, k_in, k_out, shadow):
    return [shadow if k in (k_in, k_out) else Const for k in range(n)]


def expand(args, k_in, k_out, shadows):
    out = []
    for k, a in enumerate(args):
        out.append(a)
        if k in (k_in, k_out):
            out.append(shadows[k])
    return out


def test_emulated_primal_matches_numpy():
    a, x, y, out = CASES["axpy_sin"][2]()
    gradjit.emulate(axpy_sin)[2, 32](a, x, y, out)
    np.testing.assert_allclose(out, a * np.sin(x) + y * x, rtol=1e-14)
    (u,) = rng_arrays((13, 11))
    b = np.zeros_like(u)
    gradjit.emulate(grid2d)[(2, 2), (8, 8)](u, b)
    ii = np.arange(13)[:, None]
    np.testing.assert_allclose(b, np.exp(-u * u) * (ii + 1) + np.tanh(u), rtol=1e-13)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_finite_differences(name):
    kernel, launch, make, k_in, k_out = CASES[name]
    args = make()
    tangent = np.random.default_rng(1).normal(size=args[k_in].shape)
    want = fd_jacobian_vector(kernel, launch, args, k_in, k_out, tangent)
    shadows = {k_in: tangent.copy(), k_out: np.zeros_like(args[k_out])}
    df = gradjit.autodiff(kernel, "forward", *activities(len(args), k_in, k_out, Dual))
    df.emulate[launch](*expand([a.copy() if isinstance(a, np.ndarray) else a for a in args],
                               k_in, k_out, shadows))
    np.testing.assert_allclose(shadows[k_out], want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reverse_matches_forward_and_consumes_seed(name):
    kernel, launch, make, k_in, k_out = CASES[name]
    args = make()
    rng = np.random.default_rng(2)
    seed = rng.normal(size=args[k_out].shape)
    tangent = rng.normal(size=args[k_in].shape)
    jv = fd_jacobian_vector(kernel, launch, args, k_in, k_out, tangent)
    shadows = {k_in: np.zeros_like(args[k_in]), k_out: seed.copy()}
    df = gradjit.autodiff(kernel, "reverse", *activities(len(args), k_in, k_out, Duplicated))
    df.emulate[launch](*expand([a.copy() if isinstance(a, np.ndarray) else a for a in args],
                               k_in, k_out, shadows))
    # <seed, J t> == <J^T seed, t>
    assert np.sum(shadows[k_in] * tangent) == pytest.approx(np.sum(seed * jv), rel=1e-6, abs=1e-9)
    if name != "dot":            # an atomic add reads its seed without consuming it
        assert not np.any(shadows[k_out][1:-1] if name == "stencil" else shadows[k_out])


@pytest.mark.skipif(not HAVE_LIBDEVICE, reason="libdevice not installed")
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_ptx_generated_and_accepted_by_ptxas(name, mode):
    kernel, launch, make, k_in, k_out = CASES[name]
    args = make()
    shadow = Duplicated if mode == "reverse" else Dual
    df = gradjit.autodiff(kernel, mode, *activities(len(args), k_in, k_out, shadow))
    shadows = {k_in: np.zeros_like(args[k_in]), k_out: np.zeros_like(args[k_out])}
    ptx = df.ptx(*expand(args, k_in, k_out, shadows))
    assert ".entry" in ptx and ".target sm_80" in ptx
    if mode == "reverse" and name in ("stencil", "dot"):
        assert "atom." in ptx or "red." in ptx        # shared addresses: atomic adds
    if mode == "reverse" and name == "axpy_sin":
        assert "atom." not in ptx and "red." not in ptx   # x[i] is private to thread i
    if cuda_backend.find_ptxas():
        cuda_backend.ptxas_check(ptx)



@cuda.jit
def _scale_rows_2d(A, b, out):
    i, j = cuda.grid(2)
    if i < A.shape[0] and j < A.shape[1]:
        out[i, j] = A[i, j] * b[i]


@cuda.jit
def _rows_by_thread_y(x, out):
    i = cuda.grid(1)                 # the same for every threadIdx.y of a 2-D block
    r = cuda.threadIdx.y
    if i < x.shape[0]:
        out[r, i] = x[i] * (r + 1.0)


@pytest.mark.skipif(not HAVE_LIBDEVICE, reason="libdevice not installed")
def test_x_indexed_array_of_a_2d_kernel_gets_atomic_adds():
    # b[i] / x[i] are read by every thread with the same x id and another y id:
    # their shadows' adds must be atomic (they were plain stores)
    A = np.ones((13, 11))
    df = gradjit.autodiff(_scale_rows_2d, "reverse", Const, Duplicated, Duplicated)
    ptx = df.ptx(A, np.ones(13), np.zeros(13), np.zeros((13, 11)), np.zeros((13, 11)))
    assert "atom." in ptx or "red." in ptx
    df = gradjit.autodiff(_rows_by_thread_y, "reverse", Duplicated, Duplicated)
    ptx = df.ptx(np.ones(64), np.zeros(64), np.zeros((4, 64)), np.zeros((4, 64)))
    assert "atom." in ptx or "red." in ptx

def test_barrier_is_mirrored_and_emulated_with_threads():
    x = rng_arrays(64)[0]
    out = np.zeros(64)
    df = gradjit.autodiff(with_barrier, "reverse", Duplicated, Duplicated)
    if HAVE_LIBDEVICE:
        ptx = df.ptx(x, np.zeros(64), out, np.zeros(64))
        assert ptx.count("bar.sync") >= 2 or ptx.count("barrier") >= 2
    # 32 threads per block meet at the barriers (POSIX threads on the emulator)
    seed = np.random.default_rng(1).normal(size=64)
    dx = np.zeros(64)
    df.emulate[2, 32](x, dx, out, seed.copy())
    np.testing.assert_allclose(out, 2 * x * x, rtol=1e-14)
    np.testing.assert_allclose(dx, 4 * x * seed, rtol=1e-12)


@cuda.jit
def shared_neighbours(x, out):
    buf = cuda.shared.array(32, dtype=np.float64)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return                       # leaves before the barrier
    buf[t] = math.sin(x[i])
    cuda.syncthreads()
    nxt = t + 1 if t + 1 < cuda.blockDim.x and i + 1 < x.shape[0] else t
    out[i] = buf[t] * buf[nxt]


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_shared_memory_with_many_threads_against_fd(mode):
    """Threads exchange values through shared memory across a barrier; some
    threads of the last block return before it (the emulator must not hang)."""
    n = 50
    x = rng_arrays(n)[0]
    rng = np.random.default_rng(2)
    seed = rng.normal(size=n)

    def phi(xx):
        o = np.zeros(n)
        gradjit.emulate(shared_neighbours)[2, 32](xx, o)
        return float(seed @ o)

    if mode == "reverse":
        dx = np.zeros(n)
        gradjit.autodiff(shared_neighbours, "reverse", Duplicated, Duplicated).emulate[2, 32](
            x, dx, np.zeros(n), seed.copy())
        for k in (0, 30, 31, 32, 49):
            e = np.zeros(n)
            e[k] = 1e-6
            fd = (phi(x + e) - phi(x - e)) / 2e-6
            assert abs(dx[k] - fd) < 1e-7 * max(1.0, abs(fd)), k
    else:
        direction = rng.normal(size=n)
        tout = np.zeros(n)
        gradjit.autodiff(shared_neighbours, "forward", Dual, Dual).emulate[2, 32](
            x, direction.copy(), np.zeros(n), tout)
        fd = (phi(x + 1e-6 * direction) - phi(x - 1e-6 * direction)) / 2e-6
        assert abs(float(seed @ tout) - fd) < 1e-7 * max(1.0, abs(fd))


@cuda.jit
def shared_scale(x, out):
    buf = cuda.shared.array(1, dtype=np.float64)
    i = cuda.grid(1)
    if cuda.threadIdx.x == 0:
        buf[0] = math.sin(x[i]) * x[i]
    cuda.syncthreads()
    if i < x.shape[0]:
        out[i] = buf[0] * buf[0] + x[i]


def test_shared_memory_has_shadows():
    # one thread per block: the emulator can run the barrier as a no-op
    n = 7
    x = np.linspace(0.2, 1.4, n)
    want = 2 * np.sin(x) * x * (np.cos(x) * x + np.sin(x)) + 1
    dx, dout = np.zeros(n), np.ones(n)
    gradjit.autodiff(shared_scale, "reverse", Duplicated, Duplicated).emulate[n, 1](
        x, dx, np.zeros(n), dout)
    np.testing.assert_allclose(dx, want, rtol=1e-12)
    tout = np.zeros(n)
    gradjit.autodiff(shared_scale, "forward", Dual, Dual).emulate[n, 1](x, np.ones(n), np.zeros(n), tout)
    np.testing.assert_allclose(tout, want, rtol=1e-12)
    if HAVE_LIBDEVICE:
        x64 = rng_arrays(64)[0]
        df = gradjit.autodiff(shared_sum, "reverse", Duplicated, Duplicated)
        ptx = df.ptx(x64, np.zeros(64), np.zeros(2), np.zeros(2))
        assert ptx.count(".shared") >= 2             # the buffer and its shadow
        if cuda_backend.find_ptxas():
            cuda_backend.ptxas_check(ptx)


def test_kernel_activity_errors():
    with pytest.raises(gradjit.ActivityError):
        gradjit.autodiff(axpy_sin, "reverse", gradjit.Active, Duplicated, Const, Duplicated)
    with pytest.raises(gradjit.ActivityError):
        gradjit.autodiff(axpy_sin, "reverse", Const, Duplicated, Const)
    df = gradjit.autodiff(stencil, "reverse", Duplicated, Duplicated)
    with pytest.raises(ValueError, match="shadow shape"):
        df.emulate[1, 32](np.zeros(8), np.zeros(9), np.zeros(8), np.zeros(8))


@pytest.mark.skipif(not cuda_backend.have_device(), reason="no CUDA device")
@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_matches_emulator(name):
    kernel, launch, make, k_in, k_out = CASES[name]
    args = make()
    rng = np.random.default_rng(3)
    seed = rng.normal(size=args[k_out].shape)
    df = gradjit.autodiff(kernel, "reverse", *activities(len(args), k_in, k_out, Duplicated))
    host = {k_in: np.zeros_like(args[k_in]), k_out: seed.copy()}
    df.emulate[launch](*expand([a.copy() if isinstance(a, np.ndarray) else a for a in args],
                               k_in, k_out, host))
    dev_args = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
    dev = {k_in: cuda.to_device(np.zeros_like(args[k_in])), k_out: cuda.to_device(seed.copy())}
    df[launch](*expand(dev_args, k_in, k_out, dev))
    np.testing.assert_allclose(dev[k_in].copy_to_host(), host[k_in], rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not HAVE_LIBDEVICE, reason="libdevice not installed")
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("kernel", [with_barrier, shared_sum, shared_scale, shared_neighbours],
                         ids=lambda k: k.py_func.__name__)
def test_barrier_and_shared_kernels_ptx(kernel, mode):
    """PTX of the kernels with barriers and shared memory, accepted by ptxas."""
    n = 64
    act = Duplicated if mode == "reverse" else Dual
    df = gradjit.autodiff(kernel, mode, act, act)
    nout = 2 if kernel is shared_sum else n
    ptx = df.ptx(np.zeros(n), np.zeros(n), np.zeros(nout), np.zeros(nout))
    assert "bar.sync" in ptx or "barrier" in ptx
    if cuda_backend.find_ptxas():
        cuda_backend.ptxas_check(ptx)


# ---------------------------------------------------------------------------
# on a device (skipped without one; CI has none)
# ---------------------------------------------------------------------------

needs_gpu = pytest.mark.skipif(not cuda_backend.have_device(), reason="no CUDA device")


def _to_device(args):
    return [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]


@needs_gpu
@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_forward_matches_emulator(name):
    kernel, launch, make, k_in, k_out = CASES[name]
    args = make()
    tangent = np.random.default_rng(4).normal(size=args[k_in].shape)
    df = gradjit.autodiff(kernel, "forward", *activities(len(args), k_in, k_out, Dual))
    host = {k_in: tangent.copy(), k_out: np.zeros_like(args[k_out])}
    df.emulate[launch](*expand([a.copy() if isinstance(a, np.ndarray) else a for a in args],
                               k_in, k_out, host))
    dev = {k_in: cuda.to_device(tangent), k_out: cuda.to_device(np.zeros_like(args[k_out]))}
    dev_args = _to_device(args)
    df[launch](*expand(dev_args, k_in, k_out, dev))
    np.testing.assert_allclose(dev[k_out].copy_to_host(), host[k_out], rtol=1e-12, atol=1e-12)
    # the primal outputs of the derivative kernel equal Numba's own kernel's
    ref = _to_device(args)
    kernel[launch](*ref)
    np.testing.assert_allclose(dev_args[k_out].copy_to_host(), ref[k_out].copy_to_host(),
                               rtol=1e-13, atol=1e-13)


@needs_gpu
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_gpu_shared_memory_and_barriers_against_emulator(mode):
    """Real concurrency: 32 threads per block exchange values through shared
    memory across a barrier (the last block's extra threads return before it)."""
    n = 50
    x = rng_arrays(n)[0]
    s = np.random.default_rng(5).normal(size=n)
    act = Duplicated if mode == "reverse" else Dual
    df = gradjit.autodiff(shared_neighbours, mode, act, act)
    if mode == "reverse":
        host = [x.copy(), np.zeros(n), np.zeros(n), s.copy()]
        k = 1
    else:
        host = [x.copy(), s.copy(), np.zeros(n), np.zeros(n)]
        k = 3
    dev = [cuda.to_device(a) for a in host]
    df.emulate[2, 32](*host)
    df[2, 32](*dev)
    np.testing.assert_allclose(dev[k].copy_to_host(), host[k], rtol=1e-12, atol=1e-13)
    # the block sum through shared memory: d out[b] / d x[i] = 1
    xs = rng_arrays(128)[0]
    dx, dout = cuda.to_device(np.zeros(128)), cuda.to_device(np.array([1.5, -2.0, 0.5, 3.0]))
    gradjit.autodiff(shared_sum, "reverse", Duplicated, Duplicated)[4, 32](
        cuda.to_device(xs), dx, cuda.to_device(np.zeros(4)), dout)
    np.testing.assert_allclose(dx.copy_to_host(), np.repeat([1.5, -2.0, 0.5, 3.0], 32), rtol=1e-15)
    # a value written by thread 0 and read by all after the barrier
    xb = rng_arrays(64)[0]
    dxb, seed = cuda.to_device(np.zeros(64)), np.random.default_rng(6).normal(size=64)
    gradjit.autodiff(with_barrier, "reverse", Duplicated, Duplicated)[2, 32](
        cuda.to_device(xb), dxb, cuda.to_device(np.zeros(64)), cuda.to_device(seed))
    np.testing.assert_allclose(dxb.copy_to_host(), 4 * xb * seed, rtol=1e-12)


@needs_gpu
def test_gpu_many_blocks_atomic_reduction():
    """2^20 threads add into one output: the adjoint of each x[i] is y[i] * seed."""
    n = 1 << 20
    x, y = rng_arrays(n, n, seed=7)
    dx = cuda.to_device(np.zeros(n))
    stream = cuda.stream()            # a Numba stream
    out, dout = cuda.to_device(np.zeros(1)), cuda.to_device(np.array([0.75]))
    gradjit.autodiff(dot, "reverse", Duplicated, Const, Duplicated)[(n + 255) // 256, 256, stream](
        cuda.to_device(x), dx, cuda.to_device(y), out, dout)
    stream.synchronize()
    np.testing.assert_allclose(dx.copy_to_host(), 0.75 * y, rtol=1e-15)
    assert out.copy_to_host()[0] == pytest.approx(float(x @ y), rel=1e-12)


@needs_gpu
def test_gpu_float32_and_cupy_arrays_on_a_stream():
    cp = pytest.importorskip("cupy")
    n = 1000
    x, y = (a.astype(np.float32) for a in rng_arrays(n, n, seed=8))
    seed = np.random.default_rng(9).normal(size=n).astype(np.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        dx, dout = cp.zeros(n, np.float32), cp.asarray(seed)
        out = cp.zeros(n, np.float32)
    df = gradjit.autodiff(axpy_sin, "reverse", Const, Duplicated, Const, Duplicated)
    df[(n + 127) // 128, 128, stream](np.float32(1.5), cp.asarray(x), dx, cp.asarray(y), out, dout)
    stream.synchronize()
    want = (1.5 * np.cos(x.astype(np.float64)) + y) * seed
    np.testing.assert_allclose(cp.asnumpy(dx), want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(out), 1.5 * np.sin(x) + y * x, rtol=2e-6)


@needs_gpu
def test_gpu_training_loop_converges():
    pytest.importorskip("cupy")
    from examples import gpu_fit
    history, params = gpu_fit.fit(steps=300, samples=1 << 14, log=None)
    assert history[-1] < 0.05 * history[0]
    np.testing.assert_allclose(np.asarray(params.get()), [1.3, 2.0, 0.3, 0.4], atol=0.05)


@pytest.mark.skipif(not HAVE_LIBDEVICE, reason="libdevice not installed")
def test_reverse_kernel_loads_before_stores():
    """The elementwise adjoint reads x, y, the seed and the old adjoint before its
    first store (a load after a store to a line just read stalls on the GPU)."""
    n = 64
    df = gradjit.autodiff(axpy_sin, "reverse", Const, Duplicated, Const, Duplicated)
    ptx = df.ptx(1.5, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))
    body = ptx[ptx.index(".entry"):]
    body = body[:body.index("\n}")]
    first_store = body.index("st.global")
    assert body.count("ld.global.b64", 0, first_store) == 2      # seed and old adjoint
    assert "ld.global.b64" not in body[first_store:]
    assert body.count("ld.global.nc.b64", 0, first_store) >= 2   # x, y: read-only cache
    if cuda_backend.find_ptxas():
        cuda_backend.ptxas_check(ptx)


@needs_gpu
def test_gpu_overlapping_arguments():
    n = 256
    x, y = rng_arrays(n, n, seed=10)
    df = gradjit.autodiff(axpy_sin, "reverse", Const, Duplicated, Const, Duplicated)
    dx = cuda.to_device(x)
    with pytest.raises(ValueError, match="overlap"):      # out is x: written and read
        df[1, n](1.5, dx, cuda.to_device(np.zeros(n)), cuda.to_device(y), dx,
                 cuda.to_device(np.ones(n)))
    with pytest.raises(TypeError, match="device arrays"):  # NumPy arrays: use df.emulate
        df[1, n](1.5, x, np.zeros(n), y, np.zeros(n), np.ones(n))
    # the same array read twice is fine: d/dx sum x_i x_i through dot(x, x)
    xd = cuda.to_device(x)
    g, out, seed = cuda.to_device(np.zeros(n)), cuda.to_device(np.zeros(1)), cuda.to_device(np.ones(1))
    gradjit.autodiff(dot, "reverse", Duplicated, Const, Duplicated)[1, n](xd, g, xd, out, seed)
    np.testing.assert_allclose(g.copy_to_host(), x, rtol=1e-15)


# iterate: the reverse sweep needs an 8-byte tape entry per step; beyond the stack
# buffer (2 KiB) the tape moves to the device malloc heap


def _iterate_gradient(x, seed, steps):
    s, g = x.copy(), np.ones_like(x)
    for _ in range(steps):
        g *= 1.01 * np.cos(s)
        s = np.sin(s) * 1.01
    return s, g * seed


def test_loop_tape_on_the_emulator_and_in_ptx():
    n = 40
    x = rng_arrays(n, seed=11)[0]
    seed = np.random.default_rng(12).normal(size=n)
    df = gradjit.autodiff(iterate, "reverse", Duplicated, Duplicated, Const)
    for steps in (3, 200, 700):                     # 700: past the stack buffer
        dx, out = np.zeros(n), np.zeros(n)
        df.emulate[2, 32](x, dx, out, seed.copy(), steps)
        want_out, want = _iterate_gradient(x, seed, steps)
        np.testing.assert_allclose(out, want_out, rtol=1e-12)
        np.testing.assert_allclose(dx, want, rtol=1e-9, atol=1e-14)
    if HAVE_LIBDEVICE:
        ptx = df.ptx(x, dx, out, seed, 700)
        assert "malloc" in ptx and "gradjit_tape_overflow" in ptx and "exit;" in ptx
        if cuda_backend.find_ptxas():
            cuda_backend.ptxas_check(ptx)


@needs_gpu
@pytest.mark.parametrize("steps", [200, 1000])     # stack buffer; device heap (8 KiB)
def test_gpu_loop_tape(steps):
    n = 1 << 15
    x = rng_arrays(n, seed=13)[0]
    seed = np.random.default_rng(14).normal(size=n)
    dx, out = cuda.to_device(np.zeros(n)), cuda.device_array(n)
    gradjit.autodiff(iterate, "reverse", Duplicated, Duplicated, Const)[n // 128, 128](
        cuda.to_device(x), dx, out, cuda.to_device(seed), steps)
    want_out, want = _iterate_gradient(x, seed, steps)
    np.testing.assert_allclose(out.copy_to_host(), want_out, rtol=1e-11)
    np.testing.assert_allclose(dx.copy_to_host(), want, rtol=1e-8, atol=1e-14)


_OVERFLOW = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
from numba import cuda
import gradjit
from gradjit import Const, Duplicated
from gradjit.backend.cuda import TapeOverflowError
from kernels.cuda_kernels import axpy_sin, iterate

n = 1 << 20
df = gradjit.autodiff(iterate, "reverse", Duplicated, Duplicated, Const)
try:
    df[n // 128, 128](cuda.to_device(np.full(n, 0.5)), cuda.to_device(np.zeros(n)),
                      cuda.device_array(n), cuda.to_device(np.ones(n)), 1000)
    print("no error")
except TapeOverflowError as e:
    print("overflow:", e)
# the context is still usable
x = np.linspace(0.1, 1.0, 256)
dx = cuda.to_device(np.zeros(256))
gradjit.autodiff(axpy_sin, "reverse", Const, Duplicated, Const, Duplicated)[2, 128](
    1.5, cuda.to_device(x), dx, cuda.to_device(x), cuda.device_array(256), cuda.to_device(np.ones(256)))
print("after:", np.abs(dx.copy_to_host() - (1.5 * np.cos(x) + x)).max())
"""


@needs_gpu
def test_gpu_tape_overflow_raises_and_leaves_the_context_usable():
    import os
    import subprocess
    env = dict(os.environ, GRADJIT_CUDA_HEAP_MB="8")
    r = subprocess.run([sys.executable, "-c", _OVERFLOW.format(root=_ROOT)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert "overflow: the derivative kernel's tape outgrew the device malloc heap (8 MiB)" \
        in r.stdout, r.stdout + r.stderr
    after = float(r.stdout.split("after:")[1])
    assert after < 1e-12


@pytest.mark.skipif(not HAVE_LIBDEVICE, reason="libdevice not installed")
def test_written_arguments_of_a_loop_kernel():
    """The launch-time overlap check covers every array the kernel writes: in the
    reverse of ``looped`` the adjoint of x is accumulated in a loop whose address
    LICM hoists into a block printed after it."""
    from gradjit.api.kernels import typeof_value
    args = (np.zeros(40), np.zeros(40), np.zeros(40), np.zeros(40))
    df = gradjit.autodiff(looped, "reverse", Duplicated, Duplicated)
    df.ptx(*args)
    c = df.compile(tuple(typeof_value(a) for a in args))
    assert c.written == {1, 2, 3}            # dx, out, dout (x is only read)


@cuda.jit
def local_products(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        buf = cuda.local.array(4, dtype=np.float64)
        for j in range(4):
            buf[j] = math.sin(x[i] * (j + 1))
        s = 0.0
        for j in range(4):
            s += buf[j] * buf[3 - j]
        out[i] = s


def test_local_array_reverse_against_fd():
    """The shadow of a cuda.local.array outlives the augmented primal: on the device
    it is zeroed heap memory (there is no calloc there); checked on the emulator."""
    n = 40
    x = np.linspace(0.1, 1.0, n)
    seed = np.random.default_rng(15).normal(size=n)
    df = gradjit.autodiff(local_products, "reverse", Duplicated, Duplicated)
    dx = np.zeros(n)
    df.emulate[2, 32](x.copy(), dx, np.zeros(n), seed.copy())

    def phi(xx):
        o = np.zeros(n)
        gradjit.emulate(local_products)[2, 32](xx, o)
        return float(seed @ o)

    for k in (0, 17, 39):
        e = np.zeros(n)
        e[k] = 1e-6
        fd = (phi(x + e) - phi(x - e)) / 2e-6
        assert abs(dx[k] - fd) < 1e-7 * max(1.0, abs(fd)), k
    if HAVE_LIBDEVICE:
        ptx = df.ptx(x, dx, np.zeros(n), seed)
        assert "calloc" not in ptx
        if cuda_backend.find_ptxas():
            cuda_backend.ptxas_check(ptx)


@needs_gpu
def test_gpu_local_array_matches_emulator():
    n = 4096
    x = np.linspace(0.1, 1.0, n)
    seed = np.random.default_rng(16).normal(size=n)
    df = gradjit.autodiff(local_products, "reverse", Duplicated, Duplicated)
    host = np.zeros(n)
    df.emulate[n // 128, 128](x.copy(), host, np.zeros(n), seed.copy())
    dev = cuda.to_device(np.zeros(n))
    df[n // 128, 128](cuda.to_device(x), dev, cuda.device_array(n), cuda.to_device(seed))
    np.testing.assert_allclose(dev.copy_to_host(), host, rtol=1e-12, atol=1e-14)


@cuda.jit
def _fenced_square(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] * x[i]
        cuda.threadfence()              # a memory fence: a host fence on the emulator
        out[i] = out[i] * 2.0


def test_threadfence_on_the_emulator():
    x = np.linspace(0.1, 1.0, 40)
    out = np.zeros(40)
    gradjit.emulate(_fenced_square)[2, 32](x, out)
    np.testing.assert_allclose(out, 2 * x * x, rtol=1e-15)
    dx, seed = np.zeros(40), np.ones(40)
    gradjit.autodiff(_fenced_square, "reverse", Duplicated, Duplicated).emulate[2, 32](
        x, dx, np.zeros(40), seed)
    np.testing.assert_allclose(dx, 4 * x, rtol=1e-15)
