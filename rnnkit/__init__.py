"""rnnkit: recurrent neural networks from scratch (NumPy, hand-written BPTT) and on PyTorch."""
from . import allocator as _allocator
from . import blas_kernels as _blas_kernels

_blas_kernels.choose()  # before anything imports NumPy: OpenBLAS's faster kernels on AMD Zen 4
_blas_kernels.choose_thread_timeout()  # and idle OpenBLAS threads that soon stop spinning
_allocator.tune()  # large arrays stay in the heap between calls instead of faulting in anew each time

__version__ = "0.1.0"
