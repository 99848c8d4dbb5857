"""The scratch engine's accelerators, behind one selector (selector.py).

    packing.py        the weights packed for the fast steps; gradients put back in PyTorch's order
    steps.py          one step of each cell in place on packed weights (NumPy)
    numpy_path.py     the NumPy path: each cell over a sequence on steps.py
    kernels.py        numba-compiled steps and row loops (optional: numba)
    numba_path.py     the numba path: the LSTM and the GRU's forward on kernels.py
    gemm.py           a register-blocked GEMM in LLVM IR (the threaded LSTM's products)
    threads.py        persistent worker threads that meet at every time step; threads.matmul
    threaded_lstm.py  the threaded path: the gate-major LSTM, each thread owning a slice of the hidden units
                      (a small step: one part, and a helper thread for the input projection and the
                      weight gradients beside it)
    threaded_rnn.py   the threaded path of the RNN's forward, the same way
    threaded_gru.py   the threaded path of the GRU's forward, the same way
    thresholds.py     where the selector switches paths
    trace.py          what every path hands back: row-major states
"""
from .selector import PATHS, Implementation, describe, forced, select
from . import thresholds
from .thresholds import MIN_UNITS_PER_PART, SMALL_BATCH
from .trace import Trace

__all__ = ["MIN_UNITS_PER_PART", "PATHS", "SMALL_BATCH", "Implementation", "Trace", "describe", "forced", "select",
           "thresholds"]
