"""Cache policies of the reverse sweep (``autodiff(..., checkpointing=...)``).

Every policy must give the same gradients (checked against central finite
differences); the policies differ in what the tape holds, which is checked on
the generated module: "recompute" stores fewer values than "auto", "store" more.
"""

import math
import re

import numpy as np
import pytest
from numba import njit

import gradjit
from gradjit import Active, Duplicated
from conftest import assert_close, fd_grad


@njit
def wavy(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        u = math.sin(a * x[i]) * math.exp(-x[i] * x[i])
        s += u * u + math.log1p(x[i] * x[i]) * a
    return s


def _tape_bytes(df):
    """Bytes pushed per pass through the generated module's loop records."""
    text = df._cache[next(iter(df._cache))].text
    return sum(int(n) for n in re.findall(r"@gj\.tape\.push(?:\.reserved)?\(ptr [^,]+, i64 (\d+)\)", text))


@pytest.mark.parametrize("policy", ["auto", "recompute", "store"])
def test_policies_give_the_same_gradient(policy, rng):
    x, a = rng.standard_normal(40), 0.8
    df = gradjit.autodiff(wavy, "reverse", Duplicated, Active, checkpointing=policy)
    dx = np.zeros_like(x)
    val, da = df(x, dx, a, 1.0)
    assert_close(val, wavy(x, a), kind="ad")
    assert_close(dx, fd_grad(wavy, (x, a), 0))
    assert_close(da, fd_grad(wavy, (x, a), 1))


def test_policies_change_what_is_stored(rng):
    x = rng.standard_normal(10)
    sizes = {}
    for policy in ("recompute", "auto", "store"):
        df = gradjit.autodiff(wavy, "reverse", Duplicated, Active, checkpointing=policy)
        df(x, np.zeros_like(x), 0.8, 1.0)
        sizes[policy] = _tape_bytes(df)
    assert sizes["recompute"] < sizes["auto"] < sizes["store"], sizes


def test_unknown_policy():
    with pytest.raises(ValueError, match="checkpointing"):
        gradjit.autodiff(wavy, "reverse", Duplicated, Active, checkpointing="sometimes")
