"""Measuring one case: the case spec and result types, counting (MACs on the meta device),
timing (torch.utils.benchmark), memory (CUDA allocator / CPU worker RSS) and the environment.

Nothing here knows about sweeps, files or command-line flags.
"""
