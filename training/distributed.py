"""Running as one of several processes (``torchrun --nproc_per_node=N -m training train ...``).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them the run is
a single process and every helper here is a no-op. Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process logs and writes files."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Processes":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    def start(self, device: torch.device) -> None:
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank, world_size=self.world)

    def stop(self, finished: bool) -> None:
        """Tear the process group down. After a ``finished`` run every process first waits for the
        others (so none closes its connections while a peer still talks to it), and objects that
        hold the group (the DistributedDataParallel wrapper and its gradient reducer) are freed
        while it is alive: gloo aborts the process when they outlive it. After a failure the
        peers may never arrive, so there is no wait."""
        if self.world > 1 and dist.is_initialized():
            if finished:
                dist.barrier()
            gc.collect()
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        """``value`` averaged over the processes (every process must call it)."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is true on any process (every process must call it)."""
        if self.world == 1:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def from_main(self, value: float, device: torch.device) -> float:
        """The main process's ``value``, on every process (for decisions all must share)."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, 0)
        return float(tensor)
