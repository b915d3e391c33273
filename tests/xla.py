"""The XLA flags every process of the test suite compiles with (tests/conftest.py sets them for pytest
and its workers; tests/multihost/harness.py for the processes it launches).

Compiling, not running, is most of this suite's CPU time: tiny models, a few thousand distinct
programs, each compiled once. These three flags make XLA:CPU's code generation cheap: LLVM at
optimisation level 0, the classic elemental emitters instead of the fusion emitters, and one codegen
module per program instead of a split for parallel compilation. They change how a program is emitted,
not what it computes, so a number can move by float32 rounding and no more. Bitwise equalities hold
between two runs under the same flags; one inside a single program depends on how it is emitted:
tests/rl/test_rollout.py's policy == reference log-probs (both computed in one jitted pass) holds under
these three flags and under XLA's defaults, not under LLVM O0 alone.

benchmarks/memory_plan.py keeps its own faster-compile flags on purpose: it reads XLA's buffer
assignment, which the emitters can change, so it keeps the fusion emitters the CLI runs with.
"""

FAST_COMPILE = " ".join(
    (
        "--xla_backend_optimization_level=0",
        "--xla_cpu_use_fusion_emitters=false",
        "--xla_cpu_parallel_codegen_split_count=1",
    )
)
