"""DistributedDataParallel plumbing for ``torchrun``: process group setup/teardown and small collectives.

``torchrun --nproc-per-node=N -m autocolor train ...`` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK and MASTER_ADDR/PORT in the environment; ``setup`` turns those into a process group
(NCCL on CUDA, gloo on CPU). Without those variables everything here is a cheap single-process no-op,
so the same training code runs alone or under torchrun.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from autocolor.errors import AutocolorError
from autocolor.runtime import pick_device

_OWNED = False  # whether setup() created the process group (then teardown() destroys it)
DUMP_ENV = "AUTOCOLOR_DDP_DUMP"  # test hook: every rank writes its final state_dict to $DIR/rank{R}.pt


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when running as one of several processes in an initialised process group."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, checkpoints, samples and weights."""
        return self.rank == 0


def env_info() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun (defaults: one process)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise AutocolorError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}",
                             rank_local=True) from None
    if world < 1 or not 0 <= rank < world:
        raise AutocolorError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}",
                             rank_local=True)
    return DistInfo(rank, world, local)


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group from torchrun's variables and pick this rank's device.

    CUDA: each rank uses ``cuda:LOCAL_RANK`` and the NCCL backend; CPU: gloo. One process: no group.
    """
    info = env_info()
    dev = pick_device(device)
    if not info.enabled:
        return info, dev
    if dev.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise AutocolorError(f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} GPU(s) here; "
                                 f"use --nproc-per-node <= the number of GPUs", rank_local=True)
        dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        global _OWNED
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend, rank=info.rank, world_size=info.world, timeout=timedelta(minutes=30),
                                **kwargs)
        _OWNED = True
    return info, dev


def teardown() -> None:
    """Destroy the process group, if ``setup`` created it."""
    global _OWNED
    if _OWNED and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op alone)."""
    if info.enabled:
        dist.barrier()


def run_on_main(info: DistInfo, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and hand its result (or its AutocolorError) to every rank."""
    if not info.enabled:
        return fn()
    box: list[Any] = [None]
    if info.is_main:
        try:
            box[0] = ("ok", fn())
        except AutocolorError as exc:
            box[0] = ("error", str(exc))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise AutocolorError(value)
    return value


def all_gather(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` alone)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place; returned for convenience)."""
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_buffers(info: DistInfo, model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so all ranks hold one model."""
    if info.enabled:
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper (state_dict without 'module.')."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def wrap(info: DistInfo, model: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when running under torchrun (else return it as is).

    ``sync_bn`` converts BatchNorm layers to SyncBatchNorm (batch statistics over the global batch);
    PyTorch supports that on GPUs only, so on CPU BatchNorm statistics stay per rank.
    """
    if not info.enabled:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise AutocolorError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)


def dump_state(info: DistInfo, model: nn.Module) -> None:
    """Test hook: with $AUTOCOLOR_DDP_DUMP set, each rank saves its final state_dict as rank{R}.pt there."""
    folder = os.environ.get(DUMP_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}
        torch.save(state, Path(folder) / f"rank{info.rank}.pt")
