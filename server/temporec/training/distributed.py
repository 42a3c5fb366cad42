"""Training in several processes started by torchrun: data parallelism, each process (a
rank) holding a whole copy of the model.

``torchrun --nproc_per_node N -m temporec train ...`` starts N processes and tells each
its place through the environment (RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous);
``joined`` reads it and joins the process group: gloo on the CPU, NCCL on CUDA, each
process on the GPU of its LOCAL_RANK. Started any other way, or with one process, training
runs as it always did: ``Ranks`` of one process, whose methods change nothing.

How the ranks stay in step (the trainers call these methods at the same points):

- every rank draws the same batches (the shuffle depends only on seed and epoch) and
  trains on its share of each (``share``): the batch size is the global batch, so N
  processes take the same steps as one, with the same learning rate;
- after each backward pass one all-reduce (``step``) sums, in one flat bucket, the
  gradients (each rank's loss weighted by its targets, so that the sum is the batch's
  mean), the targets, the losses, whether a rank's time is up and rank 0's clock: every
  rank then clips, schedules and steps alike, skips a step without targets alike, and
  stops alike. The weights stay identical without ever being sent again;
- every rank validates (the same weights, the same data, so no rank waits for another)
  and takes rank 0's score and clock (``agree``): early stopping and the time budget
  decide alike;
- rank 0 alone reads and writes checkpoints, evaluates on the test split and saves the
  artifact (``from_main``); the others wait for it and return its path.

The process group has a timeout (``TIMEOUT``), so that no rank waits forever for one that
died; torchrun itself stops every rank as soon as one exits with an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from temporec.contract.errors import InvalidArgument
from temporec.model.devices import resolve_device

log = logging.getLogger(__name__)

#: How long a rank waits in a collective. The longest wait by design is the other ranks'
#: while rank 0 evaluates on the test split and saves the artifact.
TIMEOUT = timedelta(minutes=30)

T = TypeVar("T")


@dataclass(frozen=True)
class StepTotals:
    """One optimizer step, summed over the ranks."""

    targets: int  # targets in the loss; 0: no rank had one, and no step is taken
    loss: float  # their mean loss
    stop: bool  # some rank's time is up
    clock: float | None  # rank 0's seconds since the run started; None in one process


class Ranks:
    """This process's place among the training processes, and what they do together."""

    def __init__(self, device: torch.device, rank: int = 0, world: int = 1):
        self.device, self.rank, self.world = device, rank, world

    @property
    def main(self) -> bool:
        """Rank 0: the one that reads and writes files and shows progress."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def share(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """This rank's rows of every batch. A batch with fewer rows than ranks (at most the
        last) is left out, so that every rank has rows at every step."""
        if not self.several:
            return batches
        return [rows[self.rank :: self.world] for rows in batches if len(rows) >= self.world]

    def objective(self, loss: torch.Tensor, targets: int) -> torch.Tensor:
        """What to differentiate: ``loss`` (a mean over ``targets``), or with several ranks
        the sum it stands for, which ``step`` divides by the targets of all ranks."""
        return loss * targets if self.several else loss

    def step(
        self, parameters: Iterable[torch.nn.Parameter], targets: int, loss: float, stop: bool, clock: float
    ) -> StepTotals:
        """Sum the gradients of ``parameters`` (of ``objective``) over the ranks and leave
        their mean per target in ``.grad``, with the step's totals, in one all-reduce.
        ``loss``: this rank's mean loss; ``stop``: its time is up; ``clock``: its seconds
        since the run started (rank 0's is everyone's). One process: nothing to sum."""
        if not self.several:
            return StepTotals(targets, loss, stop, None)
        parameters = list(parameters)
        pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in parameters]
        present = [float(p.grad is not None) for p in parameters]  # a parameter no rank used keeps no gradient
        totals = [float(targets), loss * targets, float(stop), clock if self.main else 0.0]
        bucket = torch.cat([*pieces, torch.tensor(present + totals, device=self.device)])
        dist.all_reduce(bucket)
        summed_targets, summed_loss, stops, main_clock = bucket[-4:].tolist()
        if summed_targets:
            self._set_gradients(parameters, bucket, summed_targets)
        return StepTotals(int(summed_targets), summed_loss / max(summed_targets, 1), stops > 0, main_clock)

    @staticmethod
    def _set_gradients(parameters: list[torch.nn.Parameter], bucket: torch.Tensor, targets: float) -> None:
        used = bucket[-4 - len(parameters) : -4]
        offset = 0
        for parameter, present in zip(parameters, used.tolist()):
            size = parameter.numel()
            grad = bucket[offset : offset + size] / targets
            parameter.grad = grad.view_as(parameter).to(parameter.dtype) if present else None
            offset += size

    def agree(self, *values: float) -> tuple[float, ...]:
        """Rank 0's ``values``, on every rank (its validation score, its clock)."""
        if not self.several:
            return values
        shared = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(shared, src=0)
        return tuple(shared.tolist())

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` run by rank 0 alone (reading a checkpoint, saving the artifact),
        its result (pickled) handed to every rank."""
        if not self.several:
            return compute()
        box = [compute() if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def same_start(self, model: torch.nn.Module) -> None:
        """Every rank starts from rank 0's weights and buffers (they are built alike from
        the seed; this makes sure of it, as DistributedDataParallel does)."""
        if self.several:
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, src=0)

    def seed(self, seed: int, epoch: int) -> None:
        """With several ranks, a random stream per (seed, epoch, rank): each rank's dropout
        and sampling differ, and a resumed run draws what the first one did."""
        if self.several:
            torch.manual_seed((seed * 100_003 + epoch) * 1_009 + self.rank)

    def report_weights(self, model: torch.nn.Module) -> None:
        """Log this rank's weights' digest: equal on every rank when they stayed in step."""
        if self.several:
            log.info("rank %d of %d: weights sha256 %s", self.rank, self.world, weights_digest(model))


def weights_digest(model: torch.nn.Module) -> str:
    """The sha256 of a model's weights and buffers, in ``state_dict`` order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 when torchrun did not start it)."""
    return int(os.environ.get("RANK", "0"))


@contextmanager
def joined(device_name: str | None) -> Iterator[Ranks]:
    """This process's ``Ranks``, on its device (``device_name`` as ``TrainConfig.device``).

    Under torchrun with several processes, joins the process group and leaves it at the
    end; a group the caller joined already is used as it is, and left to the caller."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        yield Ranks(_rank_device(device_name), dist.get_rank(), dist.get_world_size())
        return
    if world == 1:
        yield Ranks(resolve_device(device_name))
        return
    device = _rank_device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    started = time.monotonic()
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    log.info(
        "rank %d of %d joined (%s, %s) in %.1f s",
        dist.get_rank(),
        world,
        dist.get_backend(),
        device,
        time.monotonic() - started,
    )
    try:
        yield Ranks(device, dist.get_rank(), dist.get_world_size())
        # A sender's last collective may return before its peers have received it; tearing
        # the group down under a transfer still in flight aborts the process (gloo).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _rank_device(device_name: str | None) -> torch.device:
    """The device of this rank: the CPU, or the GPU of its LOCAL_RANK."""
    device = resolve_device(device_name)
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise InvalidArgument(
            f"config.device {device_name!r}: under torchrun each process takes the GPU of its LOCAL_RANK; "
            "allowed: 'auto', 'cuda', 'cpu'"
        )
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
