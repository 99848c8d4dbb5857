"""Dynamic batching: concurrent requests that arrive within a few milliseconds run as one model call.

    batcher = Batcher(run, max_items=64, max_padded=2048, length=len, max_wait=0.002)
    results = await batcher.submit(items)        # from many request handlers at once

`run(items) -> results` (one result per item, in order) is called in a single worker thread, so the
event loop stays free to read and answer requests while the model computes, and the model is never used
by two threads at once (the scratch engine reuses its buffers).

A batch takes whole requests, in queue order, while it holds at most `max_items` items and, if
`max_padded` is set, at most `max_padded` padded elements: items × the longest item's `length(item)`.
(A sequence batch is padded to its longest member, so one long text would otherwise make a full batch,
and everyone waiting on it, several times slower.) The queue is in arrival order, except that a request of
n items counts as arriving (n - 1) × `size_delay` seconds late: small requests are not stuck behind a queue
of large ones (under mixed load a one-text request waits for a batch or two, not for everything before
it), while a large request is overtaken only by requests that arrived within that delay after it, so none
waits for good. A batch starts as soon as it is full, or once the request at the head of the queue has
waited `max_wait` seconds: under load requests queue up while the model is busy, so batches fill without
waiting; when idle, a lone request waits at most `max_wait`. A request over the
bounds runs alone. With `enabled=False` every request is its own model call, one at a time.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from concurrent.futures import ThreadPoolExecutor


class Batcher:
    def __init__(self, run, max_items: int = 64, max_wait: float = 0.002, enabled: bool = True,
                 max_padded: int | None = None, length=len, size_delay: float = 0.0):
        if max_items < 1 or max_wait < 0 or (max_padded is not None and max_padded < 1) or size_delay < 0:
            raise ValueError(f"need max_items >= 1, max_wait >= 0, max_padded >= 1 (or None) and size_delay "
                             f">= 0, got {max_items}, {max_wait}, {max_padded} and {size_delay}")
        self.run, self.max_items, self.max_wait, self.enabled = run, max_items, max_wait, enabled
        self.max_padded, self.length, self.size_delay = max_padded, length, size_delay
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="rnnkit-model")
        self.batches = 0          # model calls made (for /model and the load benchmark)
        self.items = 0
        self._loop = self._task = self._wakeup = None
        # a heap of (queue time, arrival number, items, future, arrival time, longest item)
        self._pending: list = []
        self._arrivals = itertools.count()
        self._queued = 0                 # items in _pending

    async def submit(self, items: list) -> list:
        """`run`'s results for `items`, computed in a batch with whatever else is waiting."""
        if not items:
            return []
        if not self.enabled:
            return await self.call(self._count_and_run, items)
        loop = self._bind()
        future = loop.create_future()
        longest = max(map(self.length, items)) if self.max_padded is not None else 0
        now = loop.time()
        heapq.heappush(self._pending, (now + (len(items) - 1) * self.size_delay, next(self._arrivals), items,
                                       future, now, longest))
        self._queued += len(items)
        self._wakeup.set()
        return await future

    async def call(self, fn, *args):
        """`fn(*args)` on the model thread, after the model calls queued before it (not batched)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        """Stop the batching task and the worker thread; waiting requests get an error."""
        if self._task is not None:
            self._task.cancel()
        for request in self._pending:
            if not request[3].done():
                request[3].set_exception(RuntimeError("the server is shutting down"))
        self._pending.clear()
        self._queued = 0
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------------------ internals

    def _count_and_run(self, items: list) -> list:
        self.batches += 1
        self.items += len(items)
        return self.run(items)

    def _bind(self):
        """Start the batching task on the running event loop (again, if a test runs a new loop)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._task.done():
            self._loop, self._wakeup = loop, asyncio.Event()
            self._task = loop.create_task(self._serve())
        return loop

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._pending[0][4] + self.max_wait   # the first request in the queue waits at most this
            while self._queued < self.max_items and (left := deadline - loop.time()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            flat = [item for items, _ in batch for item in items]
            try:
                results = await loop.run_in_executor(self.executor, self._count_and_run, flat)
                if len(results) != len(flat):
                    raise RuntimeError(f"the model returned {len(results)} results for {len(flat)} inputs")
            except Exception as error:  # every request of the batch gets the error; the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for items, future in batch:
                if not future.done():   # a cancelled request (client gone) just drops its results
                    future.set_result(results[start: start + len(items)])
                start += len(items)

    def _take(self) -> list:
        """(items, future) of whole requests from the front of the queue, within the bounds (at least one)."""
        batch, count, longest = [], 0, 0
        while self._pending:
            _, _, items, future, _, request_longest = self._pending[0]
            n, widest = count + len(items), max(longest, request_longest)
            over = n > self.max_items or (self.max_padded is not None and n * widest > self.max_padded)
            if batch and over:
                break
            heapq.heappop(self._pending)
            batch.append((items, future))
            count, longest = n, widest
        self._queued -= count
        return batch
