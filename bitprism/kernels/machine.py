"""What a timing depends on besides the runtime's version: the CPU's model and flags.

Backends report it with their timings (``Backend.machine``); the latency cache keys on it.
"""

from __future__ import annotations

from pathlib import Path


def cpu_flags() -> str:
    """This CPU's model name and its int8/bf16-relevant x86 flags: record them with timings.

    Machines of one kind differ (VNNI, AVX512-BF16 or not) and int8 kernels depend on it, so
    absolute times compare only within one run on one CPU.
    """
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown CPU"
    info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    flags = set(info.get("flags", "").split())
    found = [f for f in wanted if f in flags]
    model = info.get("model name", "unknown")
    return f"{model}; {' '.join(found) or 'none of ' + '/'.join(wanted)}"


class OnCpu:
    """What a CPU runtime says of the machine: it needs no GPU, nothing it needs is missing
    (its package is a dependency), and its timings depend on the CPU (:func:`cpu_flags`)."""

    gpus = 0

    def missing(self) -> str | None:
        return None

    def machine(self) -> str:
        return cpu_flags()
