"""Built-in workloads and the loader for user workloads (``package.module:factory``)."""

from bitprism.workloads.base import Workload, as_tuple
from bitprism.workloads.registry import builtin_workloads, register_workload, resolve_workload

__all__ = ["Workload", "as_tuple", "builtin_workloads", "register_workload", "resolve_workload"]
