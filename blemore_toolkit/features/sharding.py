"""``blemore features`` in several processes: ``torchrun --nproc_per_node N -m blemore features ...`` or
``accelerate launch --num_processes N -m blemore features ...``.

The unit of work is the prepared dataset's parquet shard (one features shard per clip shard, written atomically and
marked done, see ``extraction.py``). Every process works out the same list of shards still to do, takes every N-th
one from its rank, and writes them; when all have finished (a barrier), the first process writes the provenance
and the card's config, exactly as one process would. An interrupted run resumes shard by shard, whatever the number
of processes the next run has.

The rank comes from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, which torchrun and
accelerate both set); the barrier is a gloo process group (CPU only: it carries no tensors of the encoders), so the
same code runs on CPU-only machines and on GPUs, where ``--device cuda`` means the local rank's GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence


@dataclasses.dataclass
class FeatureProcesses:
    """This process's place among the processes of one ``blemore features`` run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence) -> list:
        """This process's part of ``items`` (every ``world_size``-th, from ``rank``); the same list everywhere."""
        return list(items[self.rank::self.world_size])

    def device(self, device: str) -> str:
        """``cuda`` (no index) means this process's GPU, ``cuda:LOCAL_RANK``, when there are several processes."""
        if device == "cuda" and self.world_size > 1:
            return f"cuda:{self.local_rank}"
        return device

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def _environment_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


@contextlib.contextmanager
def feature_processes() -> Iterator[FeatureProcesses]:
    """The processes of this run, from the launcher's environment; a gloo group for the barriers when N > 1."""
    processes = FeatureProcesses(rank=_environment_int("RANK", 0), world_size=_environment_int("WORLD_SIZE", 1),
                                 local_rank=_environment_int("LOCAL_RANK", 0))
    if processes.world_size <= 1:
        yield processes
        return
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("gloo")
    try:
        yield processes
    finally:
        if owned:
            dist.destroy_process_group()


__all__ = ["FeatureProcesses", "feature_processes"]
