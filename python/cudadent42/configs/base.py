"""What every kernel config shares: validation errors and Hopper limits."""

# Hopper (sm_90) per-block limits that decide whether a config can exist.
SMEM_LIMIT_BYTES = 227 * 1024  # max dynamic shared memory per block (opt-in)
MAX_ACCUMULATOR_REGS = 128  # fp32 accumulators per consumer thread that leave room for the rest

DTYPES = {"bf16": "cutlass::bfloat16_t", "fp16": "cutlass::half_t"}


class ConfigError(ValueError):
    """A config that cannot be built (it names the config and the reason)."""


def round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m
