"""Kernel configs: frozen dataclasses whose `name` reads as the config."""
from .base import ConfigError
from .gemm import GemmConfig

__all__ = ["ConfigError", "GemmConfig"]
