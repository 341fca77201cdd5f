"""Shared pieces of the benchmark drivers: the Keras/TF subprocess, interleaved rounds, FLOP counts, output,
and a model's a*b* over a whole split."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from autocolor.errors import positive_int  # noqa: F401  (the scripts' argparse type, imported from here)

ROOT = Path(__file__).resolve().parent.parent
KERAS_PY = ROOT / ".venv-keras" / "bin" / "python"
KERAS_SCRIPT = ROOT / "benchmarks" / "keras_seed.py"
GEMM_N = 2048


def load() -> str:
    """The 1/5/15-minute load averages and the core count: timings on a shared machine need this note."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


class KerasServer:
    """``benchmarks/keras_seed.py --serve`` in the separate Keras venv; ``run('train', steps)`` -> JSON result."""

    def __init__(self, batch: int, threads: int) -> None:
        if not KERAS_PY.exists():
            raise FileNotFoundError(f"{KERAS_PY} missing: python3 -m venv .venv-keras && "
                                    ".venv-keras/bin/pip install tensorflow-cpu keras numpy")
        self.proc = subprocess.Popen([str(KERAS_PY), str(KERAS_SCRIPT), "--serve", "--batch", str(batch),
                                      "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        self.info = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the Keras benchmark process ended unexpectedly")
            if line.startswith("{"):
                return json.loads(line)

    def run(self, mode: str, steps: int) -> dict:
        self.proc.stdin.write(f"{mode} {steps}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def start_keras(batch: int, threads: int, enabled: bool = True) -> KerasServer | None:
    """The Keras server, or None (with a note) when it is disabled or its venv is missing."""
    if not enabled:
        return None
    try:
        server = KerasServer(batch, threads)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"# Keras/TF skipped: {exc}", file=sys.stderr)
        return None
    print(f"# Keras {server.info['keras']}, TensorFlow {server.info['tensorflow']}, "
          f"{server.info['params']:,} parameters (incl. BN moving statistics)")
    return server


Rate = tuple[float, float]  # (images per wall second, images per CPU second of the process)


def interleave(contenders: dict[str, Callable[[], Rate]], rounds: int) -> dict[str, list[Rate]]:
    """Run every contender once per round, the order rotated each round; returns its rates per round."""
    names = list(contenders)
    rates: dict[str, list[Rate]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            rates[name].append(contenders[name]())
    return rates


def wall(rates: list[Rate]) -> list[float]:
    return [r[0] for r in rates]


def cpu(rates: list[Rate]) -> list[float]:
    return [r[1] for r in rates]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b measured in the same round (robust to load changing between rounds)."""
    return median([x / y for x, y in zip(a, b, strict=True)])


def gemm_rate(dtype: torch.dtype, n: int = GEMM_N, reps: int = 5) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype`` (best of ``reps``)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def forward_flops(model: torch.nn.Module, size: int = 32) -> float:
    """Convolution FLOPs (2 x multiply-adds) of one forward pass of one ``size`` x ``size`` image."""
    flops = [0.0]

    def hook(mod, inp, out) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        cin = mod.in_channels // mod.groups
        flops[0] += 2.0 * out.shape[1] * out.shape[2] * out.shape[3] * cin * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return flops[0]


def timed(fn: Callable[[], object], images: int) -> Rate:
    """Images per wall second and per CPU second (all threads of this process) of one call of ``fn``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return images / (time.perf_counter() - t0), images / max(time.process_time() - c0, 1e-9)


def keras_rate(result: dict) -> Rate:
    return result["images_per_s"], result["images_per_cpu_s"]


def omp_note() -> str:
    """How torch's OpenMP threads wait: PASSIVE (sleep) matters a lot on a machine shared with other jobs."""
    return f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp default: spin, then sleep)')}"


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def chroma_all(model: torch.nn.Module, images: torch.Tensor, precision: str,
               desc: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, a*b*) of a loaded model on uint8 ``images``, decoded as ``evaluate`` decodes (the card's options);
    with ``desc``, a progress bar of that name."""
    from tqdm import tqdm

    from autocolor.inference import predict_all

    Ls, abs_ = [], []
    with tqdm(total=len(images), desc=desc, unit="img", leave=False, disable=desc is None) as bar:
        for _, L, raw in predict_all(model, images, "cpu", precision, progress=bar):
            Ls.append(L)
            abs_.append(model.chroma(L, raw).float())
    return torch.cat(Ls), torch.cat(abs_)
