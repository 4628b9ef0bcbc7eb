import gc
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# teamsift adds its XLA:CPU flags (see `teamsift.XLA_CPU_FLAGS`: XLA's concurrency-optimised
# scheduler intermittently deadlocks vmapped programs on 2 cores) when imported, before JAX
# starts its backend; import it first so that no test computes without them.
import teamsift  # noqa: E402,F401

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
