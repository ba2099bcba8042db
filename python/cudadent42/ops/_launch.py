"""Per-call launch helpers of the eager fast paths (ops/attention*.py): each is a few
hundred nanoseconds where the general torch API costs microseconds."""
from __future__ import annotations

import torch

from .. import env

try:  # the raw cudaStream_t of a device's current stream (what inductor's generated code uses)
    from torch._C import _cuda_getCurrentRawStream as _raw_stream
except ImportError:  # a CPU-only torch build: nothing can launch, but keep importable
    _raw_stream = None

_profiler = torch.autograd.profiler


def raw_stream(device_index: int) -> int:
    """torch.cuda.current_stream(device).cuda_stream without building a Stream object (~3 us)."""
    return _raw_stream(device_index)


def eager_ok(device: torch.device) -> bool:
    """Whether calls on `device` may take the eager fast path (the kernels run on CUDA devices only;
    CPU and meta tensors go through the custom op: its fake impl, or a clear device error)."""
    return device.type == "cuda"


def nvtx_requested() -> bool:
    """CUDADENT42_NVTX, read when a call plan is built (runtime.kernel_range reads it per launch)."""
    return env.get("CUDADENT42_NVTX")


def profiling() -> bool:
    return _profiler._is_profiler_enabled


def plain_eager() -> bool:
    """No dispatch mode (fake tensors, FlopCounterMode, ...) and no functorch transform is active:
    a call may bypass the dispatcher. torch.compile is checked by the caller (it traces the op)."""
    return not torch._C._len_torch_dispatch_stack() and torch._C._functorch.peek_interpreter_stack() is None


def device_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()
