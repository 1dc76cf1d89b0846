"""Benchmarks: each prints ratios against a baseline measured in the same process.

Importing this package first sets PyTorch's huge-page allocation as ``bigearth_spark`` does
(PyTorch reads it before its first allocation, and the benchmarks import torch early).
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
