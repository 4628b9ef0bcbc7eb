import gc
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# teamsift adds its XLA:CPU flags (see `teamsift.XLA_CPU_FLAGS`: XLA's concurrency-optimised
# scheduler intermittently deadlocks vmapped programs on 2 cores) when imported, before JAX
# starts its backend; import it first so that no test computes without them.
import teamsift  # noqa: E402,F401

# The fast tier compiles hundreds of small programs and runs each for a second or two: on a
# fresh CI machine (cold compilation cache) XLA:CPU's LLVM optimisation took most of its
# time. Its tests (and the processes they start, which inherit the environment) compile
# without it: the same functions, 28% less wall clock for the tier (docs/development.md).
# TEAMSIFT_TEST_FULL_XLA_OPT=1 compiles as users' programs are; the slow tier sets it for
# its files whose learners train for minutes (`FULL_XLA_OPT` in tests/run_slow_tier.py).
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
if not os.environ.get("TEAMSIFT_TEST_FULL_XLA_OPT"):
    teamsift.add_xla_flags(TEST_XLA_FLAGS)  # importing teamsift computes nothing: JAX's backend has not started

import pytest  # noqa: E402

import jax  # noqa: E402

# A persistent compilation cache shared by every test process of a run (the fast tier's
# workers, the slow tier's one process per file) and kept between runs: the same programs
# (dataset generation, environments, learners on the shared fixtures) are compiled by many
# modules, and `_release_compiled_programs` below drops the in-memory ones after each
# module. Only programs that took at least half a second to compile are stored (`make clean`
# removes them). TEAMSIFT_TEST_COMPILE_CACHE="" turns it off.
_CACHE_DIR = os.environ.get("TEAMSIFT_TEST_COMPILE_CACHE",
                            os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                         ".pytest_cache", "jax-compile"))
if _CACHE_DIR:
    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after every test module: one pytest process compiles
    hundreds of programs (MaBrax, SMAX, every learner), and keeping them all resident
    has aborted XLA's compiler late in a full run on the 2-core, 24 GiB machine."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def benchmark_script():
    """`load(name)`: benchmarks/<name>.py as a module (the benchmark scripts are not a package)."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, "benchmarks", f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
