"""Which training steps may update the weights, decided without the host waiting for the device.

The trainer's rule (rnnkit/train.py): a step whose loss or gradient norm is not finite is not applied, and the
run stops there. Checking that on the host means reading the loss every step: `loss.item()` waits until the
GPU has finished the step, so the host cannot queue the next one meanwhile, and the GPU idles between steps.

`StepGuard` keeps the rule on the device when `deferred` (the torch engine on a GPU): each step leaves a
0-d boolean `skip` tensor that the optimizer step obeys on the device (fused optimizers' `found_inf`
argument: torch.amp's mechanism, with which GradScaler skips an fp16 step that overflowed), and the first
fatal step since the last read is recorded on the device (its index, loss and norm); from it on every update
is skipped ("halted"), so the weights stay those before it, as when the host checks every step. `settle()`
reads the record: one synchronisation, which the trainer makes at its log steps and before saving.
Not deferred (the CPU, the default there), the same rule is checked on the host after every step.

With the fp16 gradient scaler, a non-finite gradient norm is an overflow of the scaled gradients: that step is
skipped (the scaler lowers its scale) but is not fatal; a non-finite loss still is.
"""
from __future__ import annotations

import math

import torch


class StepGuard:
    """The finite-step rule for one optimizer; see the module docstring."""

    def __init__(self, deferred: bool, overflow_is_fatal: bool = True):
        self.deferred, self.overflow_is_fatal = deferred, overflow_is_fatal
        self.pending = 0               # steps since the last settle()
        self._bad: dict | None = None  # not deferred: the first fatal step since the last settle()
        self._record: torch.Tensor | None = None   # deferred: [halted, index, loss, norm] on the device

    def check(self, loss: torch.Tensor, norm: torch.Tensor):
        """Note one step's 0-d `loss` and `norm`. Returns (skip, loss, norm): deferred, `skip` a 0-d bool
        tensor and loss, norm the tensors, all on the device (nothing read); else a bool and two floats."""
        index = self.pending
        self.pending += 1
        if self.deferred:
            finite_loss, finite_norm = torch.isfinite(loss), torch.isfinite(norm)
            fatal = ~finite_loss if not self.overflow_is_fatal else ~(finite_loss & finite_norm)
            if self._record is None:
                self._record = torch.zeros(4, dtype=torch.float64, device=loss.device)
            halted = self._record[0] != 0
            here = torch.stack([torch.ones_like(loss, dtype=torch.float64),
                                torch.full_like(loss, index, dtype=torch.float64), loss.double(), norm.double()])
            self._record = torch.where(fatal & ~halted, here, self._record)
            return (halted | fatal) | ~(finite_loss & finite_norm), loss, norm
        loss, norm = torch.stack([loss, norm.to(loss)]).tolist()  # one device sync
        finite = math.isfinite(loss) and math.isfinite(norm)
        fatal = not math.isfinite(loss) if not self.overflow_is_fatal else not finite
        if fatal and self._bad is None:
            self._bad = {"index": index, "loss": loss, "norm": norm}
        return self._bad is not None or not finite, loss, norm

    def step(self, optimizer: torch.optim.Optimizer, skip) -> None:
        """optimizer.step() unless `skip`: a host decision, or on the device through a fused optimizer's
        `found_inf` (the update, and Adam's step count, left as they were where it is nonzero)."""
        if not self.deferred:
            if not skip:
                optimizer.step()
            return
        optimizer.found_inf = skip.to(torch.float32)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf

    def settle(self) -> dict | None:
        """None if every step since the last call was fine; else the first fatal one: {"steps_ago": how many
        steps came after it, "loss", "norm"}. Deferred, this reads the device (one synchronisation). The
        record starts afresh (and the updates resume)."""
        pending, self.pending = self.pending, 0
        if self.deferred:
            record, self._record = self._record, None
            if record is None:
                return None
            halted, index, loss, norm = record.tolist()
            bad = {"index": int(index), "loss": loss, "norm": norm} if halted else None
        else:
            bad, self._bad = self._bad, None
        if bad is None:
            return None
        return {"steps_ago": pending - 1 - bad["index"], "loss": bad["loss"], "norm": bad["norm"]}
