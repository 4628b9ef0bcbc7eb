"""What machine a benchmark ran on: recorded beside every result file."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import jax


def machine() -> dict:
    """CPU model, core count, JAX version and device, Python version."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    device = jax.devices()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__, "device": f"{device.platform}:{device.device_kind}",
            "python": platform.python_version()}


def describe(info: dict) -> str:
    return f"{info['cpu']}, {info['cores']} cores, JAX {info['jax']} on {info['device']}"
