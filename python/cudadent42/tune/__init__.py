"""Config sweeps and the tuned-config table.

- space.py: the template parameters of each kernel family, enumerated and
  pruned by each config's own validity check (reasons counted).
- table.py: problem keys and the persistent tuned table; lookup order at call
  time is user override -> tuned table in the cache dir -> table shipped in
  the package -> heuristic.
- sweep.py: build a space in parallel, time every point on the GPU (checked
  against the fp32 reference first), write CSV/JSON/PNG, rank.
"""
from .space import enumerate_space
from .table import lookup, problem_key, record

__all__ = ["enumerate_space", "lookup", "problem_key", "record"]
