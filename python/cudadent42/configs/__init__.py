"""Kernel configs: frozen dataclasses whose `name` reads as the config."""
from .attention import AttnFwdConfig
from .base import ConfigError
from .gemm import GemmConfig

__all__ = ["AttnFwdConfig", "ConfigError", "GemmConfig"]
