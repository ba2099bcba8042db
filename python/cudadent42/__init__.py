"""cudadent42: Hopper (sm_90a) training kernels from CuTe templates.

Kernels are JIT-built per config with nvcc on first use and cached on disk;
importing this package needs neither a GPU nor nvcc.
"""
__version__ = "0.1.0"

from .env import EnvError  # noqa: E402
from .configs import AttnFwdConfig, ConfigError, GemmConfig  # noqa: E402
from .ops import flash_attn_func, flash_attn_varlen_func, gemm, scaled_dot_product_attention  # noqa: E402
from .ops.grouped_gemm import grouped_gemm  # noqa: E402
from .ops.moe import moe_experts, moe_route  # noqa: E402
from .ops.moe_up import moe_up_swiglu  # noqa: E402
from .runtime import KernelLaunchError, UnsupportedDeviceError, hopper_available  # noqa: E402

__all__ = ["gemm", "grouped_gemm", "moe_route", "moe_experts", "moe_up_swiglu", "flash_attn_func",
           "flash_attn_varlen_func", "scaled_dot_product_attention", "AttnFwdConfig", "GemmConfig", "ConfigError", "EnvError",
           "KernelLaunchError", "UnsupportedDeviceError", "hopper_available"]
