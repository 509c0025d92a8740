"""The GradBench tool (python -m benchmarks.gradbench) driven by scripted
conversations: protocol shape, timings, unknown modules, and outputs checked
against each kernel's own reference for every eval present."""
import importlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.gradbench.__main__ import EVALS, main  # noqa: E402


def converse(messages):
    stdin = io.StringIO("".join(json.dumps(m) + "\n" for m in messages))
    stdout = io.StringIO()
    main(stdin, stdout)
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def small_input(mod):
    return mod.generate(**mod.SIZES["quick"][0])


def test_start_define_unknown_and_end():
    out = converse([{"id": 0, "kind": "start", "eval": "nope"},
                    {"id": 1, "kind": "define", "module": "nope"},
                    {"id": 2, "kind": "evaluate", "module": "nope", "function": "f", "input": {}},
                    {"id": 3, "kind": "frobnicate"},
                    {"id": 4, "kind": "end"},
                    {"id": 5, "kind": "start"}])
    assert [o["id"] for o in out] == [0, 1, 2, 3]
    assert out[1]["success"] is False and "nope" in out[1]["error"]
    assert out[2]["success"] is False
    assert out[3]["success"] is False


def test_bad_input_is_an_error_not_a_crash():
    out = converse([{"id": 1, "kind": "define", "module": "gmm"},
                    {"id": 2, "kind": "evaluate", "module": "gmm", "function": "objective",
                     "input": {"d": 2}},
                    {"id": 3, "kind": "evaluate", "module": "gmm", "function": "nonesuch",
                     "input": {}}])
    assert out[0]["success"] is True
    assert out[1]["success"] is False and out[1]["error"]
    assert out[2]["success"] is False


@pytest.mark.parametrize("name", EVALS)
def test_every_eval(name):
    try:
        mod = importlib.import_module(f"kernels.{name}")
    except ImportError:
        pytest.skip(f"kernel {name} not present")
    inp = small_input(mod)
    runs = dict(min_runs=3, min_seconds=0.0)
    out = converse([{"id": 0, "kind": "start", "eval": name},
                    {"id": 1, "kind": "define", "module": name},
                    {"id": 2, "kind": "evaluate", "module": name, "function": mod.PRIMAL,
                     "input": {**inp, **runs}},
                    {"id": 3, "kind": "evaluate", "module": name, "function": mod.DERIVATIVE,
                     "input": {**inp, **runs}},
                    {"id": 4, "kind": "analysis", "of": 3, "valid": True},
                    {"id": 5, "kind": "end"}])
    assert [o["id"] for o in out] == [0, 1, 2, 3, 4]
    assert out[1]["success"] is True
    for resp in out[2:4]:
        assert resp["success"] is True, resp.get("error")
        names = [t["name"] for t in resp["timings"]]
        assert names.count("evaluate") >= 3
        assert all(t["nanoseconds"] > 0 for t in resp["timings"])
    # the outputs are the kernel's results in the eval's JSON form
    prepared = mod.prepare(mod.DERIVATIVE, inp)
    want_d = flatten(mod.output(mod.DERIVATIVE, mod.evaluate(mod.DERIVATIVE, prepared)))
    np.testing.assert_allclose(flatten(out[3]["output"]), want_d, rtol=1e-12, atol=1e-12)
    f, theta0 = mod.flat_problem(prepared)
    primal = np.asarray(f(theta0), dtype=np.float64).ravel()
    got_p = flatten(out[2]["output"])
    want_p = flatten(mod.output(mod.PRIMAL, mod.evaluate(mod.PRIMAL, mod.prepare(mod.PRIMAL, inp))))
    np.testing.assert_allclose(got_p, want_p, rtol=1e-12, atol=1e-12)
    if got_p.size == primal.size:        # the primal is the function the derivative is of
        np.testing.assert_allclose(got_p, primal, rtol=1e-10, atol=1e-12)


def flatten(obj):
    """Numbers of a JSON value in document order, as a float64 array."""
    out = []

    def walk(o):
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)
        else:
            out.append(float(o))
    walk(obj)
    return np.array(out)
