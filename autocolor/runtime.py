"""Device and precision choices: CUDA when asked or available, bf16 autocast where the CPU has it."""

from __future__ import annotations

import contextlib
import math
import platform
import subprocess
from pathlib import Path

import torch

from autocolor.errors import AutocolorError


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a user error. A ``torch.device`` is
    taken by its name."""
    name = str(name)
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise AutocolorError(f"unknown device {name!r}; use auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AutocolorError(f"--device {name} asked for, but no CUDA GPU is available", rank_local=True)
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 instructions: AVX512-BF16 or AMX on x86, the BF16 extension on Arm
    (Linux's ``bf16`` feature; on macOS ``hw.optional.arm.FEAT_BF16``, which M1 lacks and M2 and later have)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        if platform.system() != "Darwin":
            return False
        try:
            got = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                 timeout=5)
        except (OSError, subprocess.SubprocessError):
            return False
        return got.stdout.strip() == "1"
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def pick_precision(name: str, device: torch.device) -> str:
    """Resolve ``auto`` to ``bf16`` where the hardware runs it natively, else ``fp32``."""
    if name not in ("auto", "fp32", "bf16"):
        raise AutocolorError(f"unknown precision {name!r}; use auto, fp32 or bf16")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for ``bf16``; a no-op for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def machine_name() -> str:
    """Short description of the compute used, for model cards and benchmark tables."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads"


def warmup_fraction(total_steps: int, pct_start: float) -> float:
    """``pct_start`` for ``OneCycleLR`` over ``total_steps``, moved off the one value it cannot take: a warm-up
    that ends at step 0 (``pct_start * total_steps == 1``, e.g. 0.2 of 5 steps) divides by zero there."""
    if math.isclose(pct_start * total_steps, 1.0) and total_steps > 1:
        return 1.5 / total_steps  # a warm-up of 1.5 steps: neither phase has zero length (2 steps: 0.75, not 1)
    return pct_start
