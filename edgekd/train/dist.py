"""torch.distributed context: set up from torchrun's environment, a no-op in a single process.

`torchrun --nproc-per-node N -m edgekd compress ...` sets RANK, WORLD_SIZE and LOCAL_RANK; the training
stages then use DistributedDataParallel (NCCL on GPUs, gloo on CPUs). Only rank 0 writes files.

Collectives time out after EDGEKD_DIST_TIMEOUT_S seconds (default 600): a rank that dies or hangs stops
the others with an error instead of a silent wait.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from edgekd.errors import UsageError

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # "nccl" or "gloo" when distributed
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


_CTX: DistContext | None = None


def _env_int(name: str, default: str) -> int:
    raw = os.environ.get(name, default)
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not an integer: launch with torchrun, which sets it") from None


def timeout_s() -> float:
    """EDGEKD_DIST_TIMEOUT_S (seconds, > 0), default 600."""
    raw = os.environ.get("EDGEKD_DIST_TIMEOUT_S", str(DEFAULT_TIMEOUT_S))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise UsageError(f"EDGEKD_DIST_TIMEOUT_S must be a positive number of seconds, got {raw!r}")
    return value


def context() -> DistContext:
    """The process's context, initialising the process group on first use under torchrun."""
    global _CTX
    if _CTX is not None:
        return _CTX
    world = _env_int("WORLD_SIZE", "1")
    rank = _env_int("RANK", "0")
    local = _env_int("LOCAL_RANK", "0")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    backend, limit = None, timeout_s()
    if world > 1:
        backend = "nccl" if cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=limit))
            atexit.register(_shutdown)
            global _PATIENT
            _PATIENT = dist.new_group(backend="gloo", timeout=timedelta(days=7))  # every rank, at the same point
    _CTX = DistContext(rank, world, local, device, backend, limit)
    return _CTX


_PATIENT = None  # see wait_for_main


def wait_for_main() -> None:
    """Meet rank 0 after a stage it ran alone in the middle of the pipeline (the student search), however long
    that took: a barrier in a gloo group whose timeout is a week instead of EDGEKD_DIST_TIMEOUT_S. A rank 0 that
    dies closes its sockets, so the others learn it at once (and torchrun stops them anyway)."""
    if _active():
        dist.barrier(group=_PATIENT)


def _shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


@contextlib.contextmanager
def alone():
    """Run the body as if this were a single process (rank 0, world 1): for the stages that rank 0 runs by
    itself under torchrun (the PT2E pass, export, compile, bench) after the other ranks have left. Collectives
    become no-ops and context() says world 1, so a Trainer in such a stage trains on whole batches without DDP
    instead of waiting for partners that are gone."""
    global _CTX, _ALONE
    outer = context()
    saved = _CTX, _ALONE
    _CTX = DistContext(0, 1, outer.local_rank, outer.device, None, outer.timeout_s)
    _ALONE = True
    try:
        yield _CTX
    finally:
        _CTX, _ALONE = saved


_ALONE = False


def _active() -> bool:
    return not _ALONE and dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity in a single process). The result is on the caller's device."""
    if _active():
        ctx = context()
        out = values.detach().clone().to(ctx.device if ctx.backend == "nccl" else "cpu")
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(values.device)
    return values


def broadcast_object(obj):
    """Rank 0's object on every rank (identity in a single process). Tensors inside should be on the CPU."""
    if _active():
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def all_gather_object(obj) -> list:
    """Every rank's object, in rank order ([obj] in a single process)."""
    if _active():
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


@torch.no_grad()
def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers into `module` on every rank (what DDP does for the model it wraps)."""
    if _active():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of parameters that DDP does not own (e.g. hint adapters in the loss) over ranks.

    One flat all-reduce; parameters without a gradient on this rank count as zeros, so every rank takes
    part in the same collective whatever it computed.
    """
    if not _active() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    flat = all_reduce_sum(flat) / dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone()
        offset += n


def is_comm_failure(exc: BaseException) -> bool:
    """Whether an exception comes from a collective failing (a peer died, closed its socket, or timed out)."""
    if isinstance(exc, dist.DistError):
        return True
    if not isinstance(exc, RuntimeError) or not _active():
        return False
    text = str(exc).lower()
    return any(k in text for k in ("gloo", "nccl", "connection closed", "connection reset", "timed out",
                                   "broken pipe", "socket", "c10d"))
