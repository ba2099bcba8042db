"""Device checks and the ctypes launch plumbing shared by every op."""
from __future__ import annotations

import ctypes
import functools

import torch

from . import env


class UnsupportedDeviceError(RuntimeError):
    """No sm_90 (Hopper) GPU where a kernel was asked to run."""


class KernelLaunchError(RuntimeError):
    """A kernel object refused or failed a launch; the message names the config."""


@functools.lru_cache(maxsize=None)
def _device_info(index: int) -> tuple[int, int, str, int]:
    props = torch.cuda.get_device_properties(index)
    return props.major, props.minor, props.name, props.multi_processor_count


def hopper_available() -> bool:
    """True when the current CUDA device is sm_90 (what the kernels are built for)."""
    if not torch.cuda.is_available():
        return False
    major, minor, _, _ = _device_info(torch.cuda.current_device())
    return (major, minor) == (9, 0)


def require_hopper(t: torch.Tensor, op: str) -> int:
    """Checks `t` lives on an sm_90 GPU; returns its SM count."""
    if t.device.type != "cuda":
        raise UnsupportedDeviceError(f"{op}: tensors must be on a CUDA device, got {t.device}")
    major, minor, name, sms = _device_info(t.device.index if t.device.index is not None else torch.cuda.current_device())
    if (major, minor) != (9, 0):
        raise UnsupportedDeviceError(
            f"{op}: cudadent42 kernels are built for sm_90a (H100/H200); {name} is sm_{major}{minor}")
    return sms


def gpu_name(device: torch.device) -> str:
    """The device's name (the tuned table is per GPU model)."""
    return _device_info(device.index if device.index is not None else torch.cuda.current_device())[2]


def stream_handle(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def check_rc(rc: int, kernel, what: str) -> None:
    if rc != 0:
        msg = kernel.fn("cd42_last_error", ctypes.c_char_p, [])().decode(errors="replace")
        raise KernelLaunchError(f"{what} [{kernel.name}] failed (code {rc}): {msg}")


def kernel_range(name: str):
    """A range named after the kernel config around its launch: a
    torch.profiler record_function while the profiler is on (so traces show
    `cudadent42::<config>`), an NVTX range when CUDADENT42_NVTX=1 (Nsight),
    nothing otherwise (the hot path stays free of both)."""
    import contextlib

    import torch

    if torch.autograd.profiler._is_profiler_enabled:
        return torch.profiler.record_function(f"cudadent42::{name}")
    if env.get("CUDADENT42_NVTX"):
        return torch.cuda.nvtx.range(f"cudadent42::{name}")
    return contextlib.nullcontext()
