"""asv benchmark suites for mixerbench (``benchmark_dir`` in asv.conf.json).

One module per area, thin classes that call ``bench/``; nothing is measured by hand here.

- ``flops``: parameters and GMACs per model and resolution (``track_``, deterministic);
- ``scaling``: per family, the two-term fit of MACs against tokens (``track_``, deterministic);
- ``throughput``: forward pass and training step (``time_``, noisy; CUDA cases skipped without a GPU);
- ``memory``: process peak memory on CPU (``peakmem_``) and CUDA allocator peak (``track_``).
- ``cost``: bytes moved, peak activation bytes and operators of a step (``track_``, deterministic; docs/methodology/cost-model.md);
- ``fvcore_count``: fvcore's own MACs and activations of the small models (``track_``, deterministic).
"""
