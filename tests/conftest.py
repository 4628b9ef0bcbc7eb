import gc
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA:CPU's multi-threaded Eigen pool can wedge on vmapped programs: a SIT benchmark cell
# (seeds vmapped) stalled with every worker idle and the caller waiting in
# xla::Semaphore::Acquire, once for over an hour in CI. Single-threaded Eigen avoids it
# (XLA still runs independent ops in parallel); see the README's "Tests" section.
_EIGEN_FLAG = "--xla_cpu_multi_thread_eigen=false"
if _EIGEN_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _EIGEN_FLAG).strip()

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after every test module: one pytest process compiles
    hundreds of programs (MaBrax, SMAX, every learner), and keeping them all resident
    has aborted XLA's compiler late in a full run on the 2-core, 24 GiB machine."""
    yield
    import jax

    jax.clear_caches()
    gc.collect()
