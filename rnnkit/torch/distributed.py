"""Distributed data parallel training: the torch engine under `torchrun`, on PyTorch's own machinery.

    torchrun --nproc_per_node 4 -m rnnkit train lm --engine torch ...

`join(engine, launch, seed)` (through rnnkit.engines.join_world, from the trainer) makes this process one
rank of the run: it joins the process group (NCCL on GPUs, gloo on the CPU; torchrun's variables say
where the others are), puts the model on this host's GPU number LOCAL_RANK (its RNN weights flattened
again for cuDNN), and routes the engine's training loss through DistributedDataParallel, which starts
every rank from rank 0's weights and averages the gradients over the ranks in backward:

    g = (1/W) Σ_r g_r,   g_r the gradient of rank r's mean loss over its own batch

so W ranks of `--batch-size B` take the step of one process with a batch of W·B (exactly so when every
rank's loss averages the same number of terms). Each rank reads its own part of the data (the tasks'
`shard(rank, world)`), and draws its own dropout masks: rank r > 0 reseeds torch from (seed, r).

TorchWorld does the exchanges the trainer needs besides the gradients: the mean loss and the total tokens
of a step, a caught signal or a due save (so every rank stops or saves at the same step), rank 0's
validation metrics (as JSON: nothing is pickled), and the carries and generator states of all ranks for
a checkpoint. Rank 0 alone writes files.
"""
from __future__ import annotations

import atexit
import json

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..engines import Launch, World


class _Loss(nn.Module):
    """The model's training loss as a module's forward, for DistributedDataParallel to wrap (DDP prepares
    its gradient hooks in forward; the engine calls `loss(batch, carry)`, not forward)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict, carry=None):
        return self.model.loss(batch, carry)


def join(engine, launch: Launch, seed: int = 0) -> "TorchWorld":
    """Make this process rank `launch.rank` of the run and `engine` a DDP engine (see the module docstring).
    Idempotent: an engine already joined keeps its world."""
    if getattr(engine, "world", None) is not None:
        return engine.world
    cuda = engine.device.type == "cuda"
    if cuda:
        device = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(device)
        if engine.device != device:
            engine.model.to(device)   # in place: the optimizer's parameters stay the model's
            engine.device = device
        for module in engine.model.modules():
            if isinstance(module, nn.RNNBase):
                module.flatten_parameters()  # moved weights lose cuDNN's single contiguous block
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_leave)
    if dist.get_world_size() != launch.size or dist.get_rank() != launch.rank:
        raise ValueError(f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, but torchrun "
                         f"says rank {launch.rank} of {launch.size}")
    skips = getattr(engine.model, "skips_parameters", False)  # a model that may leave a branch out of a step
    ddp = DistributedDataParallel(_Loss(engine.model), device_ids=[engine.device.index] if cuda else None,
                                  find_unused_parameters=skips)
    engine.loss_of = ddp
    if launch.rank > 0:
        torch.manual_seed(int(np.random.SeedSequence([seed, launch.rank]).generate_state(1)[0]))
    engine.world = TorchWorld(launch, engine.device if cuda else torch.device("cpu"))
    return engine.world


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class TorchWorld(World):
    """The world of a torchrun launch (rnnkit.engines.World): exchanges over torch.distributed on `device`
    (the GPU for NCCL, the CPU for gloo)."""

    def __init__(self, launch: Launch, device: torch.device):
        self.rank, self.size, self.local_rank, self.device = launch.rank, launch.size, launch.local_rank, device

    def barrier(self) -> None:
        dist.barrier(device_ids=[self.device.index]) if self.device.type == "cuda" else dist.barrier()

    def agree(self, loss: float, tokens: int, signum: int, save: bool) -> tuple[float, int, int, bool]:
        mine = torch.tensor([loss, tokens, signum, save], dtype=torch.float64, device=self.device)
        every = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(every, mine)  # one exchange; then the same sums, in rank order, on every rank
        rows = torch.stack(every).cpu().numpy()
        return float(rows[:, 0].sum() / self.size), int(rows[:, 1].sum()), int(rows[:, 2].max()), bool(rows[:, 3].any())

    def broadcast(self, record: dict) -> dict:
        data = json.dumps(record, default=float).encode() if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        dist.broadcast(size, 0)
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=self.device)
        if self.is_main:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, 0)
        return json.loads(bytes(buffer.cpu().numpy()).decode())

    def _gathered(self, array: np.ndarray) -> list[np.ndarray]:
        """Every rank's `array` (the same shape and dtype on all), in rank order."""
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor)
        return [p.cpu().numpy() for p in parts]

    def gather_carry(self, carry):
        if carry is None:
            return None
        if isinstance(carry, tuple):
            return tuple(self.gather_carry(c) for c in carry)
        return np.concatenate(self._gathered(carry), axis=self.CARRY_BATCH_AXIS)

    def gather_rng(self, state: dict) -> dict:
        per_key = {key: self._gathered(np.asarray(value)) for key, value in sorted(state.items())}
        return {"ranks": [{key: parts[r] for key, parts in per_key.items()} for r in range(self.size)]}

    def own_rng(self, state: dict) -> dict:
        ranks = state.get("ranks") if isinstance(state, dict) else None
        if not isinstance(ranks, list) or len(ranks) != self.size:
            raise ValueError(f"the checkpoint's generator states are not those of {self.size} processes")
        return ranks[self.rank]

