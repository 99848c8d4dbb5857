"""Parts that meet at every step, each part's step run by whichever thread comes to it first.

A split of the hidden units (threaded_lstm.py) gives each thread a part, and every part's step t needs every
part's step t-1 done. With each thread bound to its part, a thread the scheduler has put behind a busy
neighbour stops them all until its next time slice (milliseconds: dozens of steps). Here a part's steps are
units that any thread may run:

    unit u of part k      may start once unit u-1 of every part is computed ("done", the step's meeting)
                          and unit u-1 of part k has finished its after-work ("finished", below);
    each thread           runs its own part's units in order, and at each meeting takes the unit of a part
                          that nobody has claimed: at once where that part's thread is a step or more behind,
                          after STEP_PATIENCE_SPINS turns where it is at the meeting (it claims in a
                          microsecond when it runs), START_PATIENCE_SPINS at the first;
    a unit                its computation, then "done" (the others go on), then its after-work (copying the
                          step's states out while the others compute), then "finished".

A unit computes the same thing on any thread (the split is fixed, each part's arrays are its own whoever runs
it), so the bits do not depend on who ran what. Each claim is a compare-and-swap of the part's next unit:
each unit runs once. The board, int64 entries FLAG_STRIDE apart, holds four counts a part, from 0: its next
unit to claim, units done, units finished, and the meeting its own thread is at (`position`); and, last,
whether part 0's thread (threads.run_shared's caller) has left.

    run_steps(part, argument_sets, units)   compute(u, *argument_sets[k]) and then after(u, *argument_sets[k])
                                            for every unit u and part k (`part`: their loop, see there)

Part 0's thread returns once every unit is finished, so the calling thread does not wait for a worker that
the scheduler holds (threads.run_shared's `settled`). The others return after it, LEAVE_GRACE_SPINS turns
after it has left: a worker going back to Python for the GIL at the moment the caller did found it taken
and slept, and woke 20-30 us later (once a call: the LSTM's inference at hidden 128, batch 8, T 16 took 15 %
longer than with each thread bound to its part).
"""
from __future__ import annotations

import numpy as np

from . import threads
from .kernels import AVAILABLE

STEP_PATIENCE_SPINS = 500  # turns a thread waits at a meeting for a part's thread that is there to claim its unit
# turns it waits at the first meeting for a part's thread that has not come yet: a worker's start from the pool
# (threads.run_shared) takes 10-40 us, and taking its first unit meanwhile ran two units one after the other
START_PATIENCE_SPINS = 5000
LEAVE_GRACE_SPINS = threads.GRACE_SPINS  # turns a worker's share waits, once the caller has left, to return
_CLAIMED, _DONE, _FINISHED, _POSITION = range(4)  # a part's counts on the board (then: the caller has left)


def new_board(parts: int) -> np.ndarray:
    """The board of one `run_steps` of `parts` parts: every count 0."""
    return threads.new_flags(4 * parts + 1)


if AVAILABLE:
    from .kernels import jit
    from .threads import FLAG_STRIDE, _compare_and_swap, _load_acquire, _relax, _store_release

    @jit
    def _count(board, part, which):
        return _load_acquire(board, (4 * part + which) * FLAG_STRIDE)

    @jit
    def _wait_finished(board, part, units, yield_address):
        """Until part `part` has finished `units` units (their after-work written)."""
        spins = 0
        while _count(board, part, _FINISHED) < units:
            spins += 1
            _relax(yield_address, spins)

    @jit
    def next_unit(board, me, parts, units, k, u, patience, yield_address):
        """The next (part, unit) that the thread of part `me` runs, claimed for it, or (-1, units) once every
        part has finished all `units` units (for part 0's thread; the others after it has left: see the
        module's text); (k, u): the unit it ran last, whose after-work is now finished (k = -1: none). One
        part alone (`alone`) takes its units in order, with no claim and no wait: nobody else takes them."""
        if parts == 1:
            u = u + 1 if k >= 0 else 0
            return (0, u) if u < units else (-1, units)
        if k >= 0:
            _store_release(board, (4 * k + _FINISHED) * FLAG_STRIDE, u + 1)
        while True:
            u = _count(board, me, _POSITION)  # this thread's meeting: every part's unit u-1 done
            for j in range(parts):
                spins = 0
                while _count(board, j, _DONE) < u:
                    # (now and then: reading its lines while it writes them slowed every step)
                    if spins % 32 == 0 and _count(board, j, _CLAIMED) == u - 1:  # nobody has it: not come
                        behind = _count(board, j, _POSITION) < u - 1
                        waited = spins >= (START_PATIENCE_SPINS if u == 1 else patience)
                        if (behind or waited) and _compare_and_swap(
                                board, (4 * j + _CLAIMED) * FLAG_STRIDE, u - 1, u):
                            _wait_finished(board, j, u - 1, yield_address)
                            return j, u - 1
                    spins += 1
                    _relax(yield_address, spins)
            if u == units:  # all done here: part 0's thread (the caller) leaves once all is finished
                left = 4 * parts * FLAG_STRIDE
                if me == 0:
                    for j in range(parts):
                        _wait_finished(board, j, units, yield_address)
                    _store_release(board, left, 1)
                else:
                    spins = 0
                    while _load_acquire(board, left) == 0:
                        spins += 1
                        _relax(yield_address, spins)
                    for turn in range(LEAVE_GRACE_SPINS):
                        _relax(0, 1)
                return -1, units
            _store_release(board, (4 * me + _POSITION) * FLAG_STRIDE, u + 1)
            if _compare_and_swap(board, (4 * me + _CLAIMED) * FLAG_STRIDE, u, u + 1):
                _wait_finished(board, me, u, yield_address)
                return me, u

    @jit
    def computed(board, k, u):
        """Say that unit u of part k is computed: the others may go on (its after-work follows)."""
        _store_release(board, (4 * k + _DONE) * FLAG_STRIDE, u + 1)


def run_steps(part, argument_sets, units: int) -> None:
    """Every part's `units` units, each once, unit u of any part only once unit u-1 of every part is
    computed: one part a thread, any thread taking the units of a part whose thread is behind (see the
    module's text). part(me, sets, parts, units, board, patience, relax_yield): a compiled function (nogil)
    that runs, for part `me`'s thread,

        k, u = shared_steps.next_unit(board, me, parts, units, -1, 0, patience, relax_yield)
        while k >= 0:
            a, j = sets[k], k  # (taken from the tuple once for a run of one part's units)
            while k == j:
                compute(u, *a)  # (one inlined copy of the step, whichever part's)
                shared_steps.computed(board, k, u)
                after(u, *a)
                k, u = shared_steps.next_unit(board, me, parts, units, k, u, patience, relax_yield)

    (numba caches no function that takes another as an argument: each user writes this loop around its own
    two). The argument sets must be of one numba type (a tuple indexed at run time); `sets` holds them padded
    to at least two (`padded`), so that one part alone (`alone`) and two parts run one compiled function."""
    board, sets = new_board(len(argument_sets)), padded(argument_sets)
    threads.run_shared(part, [(k, sets, len(argument_sets), units, board, STEP_PATIENCE_SPINS, threads.YIELD)
                              for k in range(len(argument_sets))], settled=True)


def alone(arguments, units: int) -> tuple:
    """`part`'s arguments (`run_steps`) for one part's units on one thread, meeting no other: its steps in
    order, part(*alone(arguments, units))."""
    return 0, padded([arguments]), 1, units, new_board(1), STEP_PATIENCE_SPINS, threads.YIELD


def padded(argument_sets) -> tuple:
    """The argument sets as a tuple of at least two, the first repeated: each compiled function that runs
    parts (`run_steps`) takes one numba type for one part and for two. Each compile of such a function
    costs seconds (numba optimizes it with every function it calls linked in: the whole step)."""
    return tuple(argument_sets) + (argument_sets[0],) * (2 - len(argument_sets))
