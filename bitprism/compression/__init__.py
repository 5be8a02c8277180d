"""Compression methods and the compressed-layer data they produce.

Below the backends: evaluators and kernels import this package, it imports neither (only
``spaces`` and ``workloads``' input types).
"""
