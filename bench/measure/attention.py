"""Which attention backends a device can run (``--attention``), checked before anything is measured."""

from __future__ import annotations


def check_backend(device: str, backend: str, dtype: str = "float32") -> None:
    """Raise ValueError when ``device`` cannot run attention ``backend`` in ``dtype`` (tries a tiny call)."""
    import torch

    from architectures.vit import ATTENTION_BACKENDS, SDPA_PINNED, sdpa
    from bench.measure.timing import DTYPES

    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose from {', '.join(ATTENTION_BACKENDS)}")
    if backend not in SDPA_PINNED:
        return
    q = torch.randn(1, 2, 16, 8, device=device, dtype=DTYPES[dtype])
    try:
        sdpa(q, q, q, backend)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"attention backend {backend}: {device} ({dtype}) cannot run this kernel ({reason[:120]})"
        ) from None
