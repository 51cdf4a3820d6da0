"""Measuring the cluster: the only package that touches NVML, torch and Ray.

- :mod:`.nvml`: one adapter over NVIDIA's NVML bindings (``pynvml`` from nvidia-ml-py): a report of
  every GPU of this host and a background power/utilisation sampler.
- :mod:`.probes`: matmul FLOP/s and memory-bandwidth micro-benchmarks (numpy or torch on CPU,
  torch on CUDA).
- :mod:`.cluster`: Ray, runs the probes on every node and GPU of a cluster.
- :mod:`.mfu`: MFU meter for a real training loop.

Importing this package imports nothing heavy: pynvml, torch and ray load inside the functions that
use them, so the planner core can import the result models without paying for them.
"""
