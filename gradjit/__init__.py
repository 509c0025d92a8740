"""gradjit: compiler-level automatic differentiation for Numba.

gradjit captures the LLVM IR of ``@numba.njit`` functions, differentiates it after
optimization (the approach of Enzyme, Moses & Churavy, NeurIPS 2020), optimizes the
result again and compiles it with Numba's JIT, so derivatives are callable from
Python and from other ``@njit`` functions.
"""
from .frontend.capture import install_hook as _install_hook

_install_hook()

from .api.activities import (Active, ActiveOnly, Const, Dual, DualOnly,  # noqa: E402
                             Duplicated, DuplicatedNoNeed)
from .api.autodiff import Derivative, Forward, Reverse, autodiff  # noqa: E402
from .api.kernels import emulate  # noqa: E402
from .api.sparsity import JacobianColoring  # noqa: E402
from .api.transforms import grad, jvp, value_and_grad, vjp  # noqa: E402
from .errors import ActivityError, ActivityWarning, UnsupportedError  # noqa: E402

__all__ = ["autodiff", "grad", "value_and_grad", "jvp", "vjp", "Const", "Active",
           "ActiveOnly", "Duplicated", "DuplicatedNoNeed", "Dual", "DualOnly",
           "Reverse", "Forward", "ActivityError", "ActivityWarning", "UnsupportedError", "Derivative", "emulate",
           "JacobianColoring"]
__version__ = "0.1.0"
