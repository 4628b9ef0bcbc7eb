"""teamsift: learn good multi-agent behaviour from multi-agent data of mixed quality."""

import os as _os

__version__ = "0.1.0"

#: XLA:CPU flags teamsift adds to XLA_FLAGS before JAX starts its CPU backend. With XLA's
#: concurrency-optimised scheduler (jaxlib 0.10.2), vmapped programs such as our learners'
#: seed-batched initialisation intermittently never finish on a 2-core CPU: every worker idles
#: in its thread pool while the caller waits in `xla::Semaphore::Acquire` /
#: `tsl::BlockUntilReady`. A loop of 1,500 such calls hung in 4 runs of 4 with the default
#: scheduler (`--xla_cpu_multi_thread_eigen=false` alone did not help, nor did turning off
#: XNNPACK or the thunk runtime), and finished in 13 runs of 13 without it. The flags only touch the CPU backend. Set TEAMSIFT_KEEP_XLA_FLAGS=1 to
#: leave XLA_FLAGS as you set them.
XLA_CPU_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false", "--xla_cpu_multi_thread_eigen=false")


def add_xla_flags(flags) -> None:
    """Append `flags` ("--name=value") to XLA_FLAGS, each unless XLA_FLAGS already names it.
    Takes effect only before JAX starts its backend (the first computation)."""
    current = _os.environ.get("XLA_FLAGS", "")
    names = {flag.split("=")[0] for flag in current.split()}
    missing = [flag for flag in flags if flag.split("=")[0] not in names]
    if missing:
        _os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()


def _add_xla_cpu_flags() -> None:
    if not _os.environ.get("TEAMSIFT_KEEP_XLA_FLAGS"):
        add_xla_flags(XLA_CPU_FLAGS)


_add_xla_cpu_flags()
