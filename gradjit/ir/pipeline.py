"""LLVM pass pipelines around AD (through llvmlite's new pass manager).

* pre-AD: O2 with loop unrolling and (loop, SLP) vectorization off, so the AD
  sees scalar loops with their induction variables intact (Enzyme's rule, see
  shared/seeds: "If you selected a release build, we will disable vectorization
  and loop unrolling").  Only loops that run a few constant times are unrolled
  after it (:mod:`gradjit.ir.unroll`).
* post-AD: O3 with unrolling and vectorization on.
"""
from __future__ import annotations

import functools

import llvmlite.binding as llvm


@functools.lru_cache(maxsize=None)
def target_machine(opt: int = 3):
    """Host target machine (host CPU name and features)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=opt, jit=True)


@functools.lru_cache(maxsize=None)
def nvptx_target_machine(cc: str = "sm_80", opt: int = 3):
    """NVPTX target machine for compute capability ``cc`` (no GPU needed)."""
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    target = llvm.Target.from_triple("nvptx64-nvidia-cuda")
    return target.create_target_machine(cpu=cc, features="", opt=opt)


def _run(mod, speed: int, unroll: bool, vectorize: bool, tm=None):
    pto = llvm.create_pipeline_tuning_options(speed_level=speed)
    pto.loop_unrolling = unroll
    pto.loop_vectorization = vectorize
    pto.slp_vectorization = vectorize
    pb = llvm.create_pass_builder(tm or target_machine(), pto)
    pm = pb.getModulePassManager()
    pm.run(mod, pb)
    return mod


def pre_ad(mod, tm=None):
    """Run the pre-AD pipeline (O2, no unroll, no vectorize) on ``mod`` in place."""
    return _run(mod, 2, False, False, tm)


def run_passes(mod, *passes, tm=None, speed: int = 2):
    """Run the module passes named ``passes`` (llvmlite's ``add_<name>_pass``
    methods, e.g. ``"sroa"``, ``"instruction_combine"``) on ``mod`` in place, in
    order: the short clean-up pipelines of the IR passes around AD."""
    pb = llvm.create_pass_builder(tm or target_machine(),
                                  llvm.create_pipeline_tuning_options(speed_level=speed))
    pm = llvm.create_new_module_pass_manager()
    for name in passes:
        getattr(pm, f"add_{name}_pass")()
    pm.run(mod, pb)
    return mod


def inline_marked(mod, tm=None):
    """Inline the ``alwaysinline`` functions of ``mod`` and clean up after them
    (SROA of the callee's ``%retptr`` struct, instcombine, GVN, CFG
    simplification, dead functions) in place: a short pipeline for a module the
    pre-AD pipeline has already optimized."""
    return run_passes(mod, "always_inliner", "sroa", "instruction_combine", "new_gvn",
                      "simplify_cfg", "dead_code_elimination", "global_dead_code_eliminate",
                      tm=tm)


def post_ad(mod, vectorize: bool = True, tm=None):
    """Run the post-AD pipeline (O3 with unroll and vectorize) on ``mod`` in place.
    (CPU derivatives get theirs from Numba's library finalization instead.)"""
    return _run(mod, 3, vectorize, vectorize, tm)


def parse(text: str, name: str = "gradjit"):
    """Parse and verify LLVM text with llvmlite; raises ``RuntimeError`` on bad IR."""
    mod = llvm.parse_assembly(text)
    mod.name = name
    mod.verify()
    return mod
