"""bench.measure.memory: CPU peak RSS in a worker process, CUDA allocator peaks (skipped without a GPU).

References are closed-form: 4 bytes per float32 parameter for the weights, and the
B x heads x S x S float32 attention matrix that only the explicit backend materialises.
"""

from __future__ import annotations

import pytest
import torch

import architectures
from bench.measure import memory
from bench.schema import Case
from helpers import TINY_VIT

MiB = 2**20
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
pytestmark = pytest.mark.skipif(memory.cpu_rss_supported() is not None, reason=str(memory.cpu_rss_supported()))


@pytest.fixture(scope="module")
def worker():
    with memory.MemoryWorker() as w:
        yield w


def n_params(name: str, img_size: int, patch_size=None, **overrides) -> int:
    with torch.device("meta"):
        return sum(
            p.numel()
            for p in architectures.create(name, img_size=img_size, patch_size=patch_size, **overrides).parameters()
        )


@pytest.mark.slow
def test_weights_are_four_bytes_per_parameter(worker):
    # ViT-S/16 (22M parameters, 88 MB) built for 32 px: weights dominate, activations are tiny
    rec = worker.measure(Case("vit_s16", 32, batch=1))
    expected = 4 * n_params("vit_s16", 32)
    assert rec.method == "cpu_peak_rss"
    assert abs(rec.weights_bytes - expected) < 0.1 * expected + 4 * MiB  # plus the pages the build touches
    assert rec.peak_bytes >= rec.baseline_bytes + rec.weights_bytes
    assert rec.activation_bytes < 0.1 * expected


def test_training_activations_include_the_gradients(worker):
    # ViT-S/16 at 32 px: 22M parameters, so its gradients alone are 83 MiB; activations are tiny
    rec = worker.measure(Case("vit_s16", 32, batch=1, mode="train", threads=1))
    grads = 4 * n_params("vit_s16", 32)
    assert rec.activation_bytes >= 0.95 * grads  # RSS pages: a few may already be resident
    assert rec.activation_bytes < 2 * grads + 16 * MiB


@pytest.mark.slow
def test_explicit_attention_holds_the_s_by_s_matrix(worker):
    batch, heads, img, patch = 2, TINY_VIT["num_heads"], 128, 4
    S = (img // patch) ** 2 + 1  # 1,025 tokens with the class token
    matrix = batch * heads * S * S * 4  # one float32 attention matrix: 16.8 MB
    common = dict(model="vit_s16", img_size=img, patch_size=patch, batch=batch)
    fused = worker.measure(Case(overrides=dict(TINY_VIT, attn_backend="fused"), **common))
    explicit = worker.measure(Case(overrides=dict(TINY_VIT, attn_backend="explicit"), **common))
    assert explicit.activation_bytes >= matrix  # q k^T (and its softmax) are alive at once
    assert explicit.activation_bytes < 4 * matrix
    assert fused.activation_bytes < matrix / 2  # the fused CPU kernel works in blocks
    assert abs(explicit.weights_bytes - fused.weights_bytes) < 2 * MiB  # same weights


@pytest.mark.slow
def test_worker_reports_a_bad_case_and_keeps_serving(worker):
    with pytest.raises(RuntimeError, match="no option"):
        worker.measure(Case("vit_s16", 32, 8, batch=1, overrides={"no_such_option": 1}))
    rec = worker.measure(Case("vit_s16", 32, 8, batch=1, overrides=TINY_VIT))
    assert rec.activation_bytes >= 0


def test_peak_rss_reset_follows_a_large_allocation():
    # in this process: the kernel's peak mark sees a 200 MB tensor, and a reset forgets it
    memory.release_cpu_memory()
    memory.reset_peak_rss()
    before = memory.current_rss()
    x = torch.ones(50 * MiB)  # 200 MB, touched
    del x
    assert memory.peak_rss() - before >= 190 * MiB
    memory.release_cpu_memory()
    memory.reset_peak_rss()
    assert memory.peak_rss() - memory.current_rss() < 50 * MiB


@pytest.mark.cuda
@cuda
def test_cuda_allocator_peaks():
    common = dict(model="vit_s16", img_size=256, patch_size=4, batch=2, device="cuda")
    S = (256 // 4) ** 2 + 1
    fused = memory.measure(Case(overrides=dict(TINY_VIT, attn_backend="fused"), **common))
    explicit = memory.measure(Case(overrides=dict(TINY_VIT, attn_backend="explicit"), **common))
    assert fused.method == "cuda_max_memory_allocated"
    # the caching allocator rounds every tensor up to a multiple of 512 bytes (measured on an H200)
    with torch.device("meta"):
        tensors = len(architectures.create("vit_s16", img_size=256, patch_size=4, **TINY_VIT).state_dict())
    weights = 4 * n_params("vit_s16", 256, 4, **TINY_VIT)
    assert weights <= fused.weights_bytes < weights + 512 * tensors
    assert explicit.activation_bytes - fused.activation_bytes >= 2 * 2 * S * S * 4


def _replying(monkeypatch, worker: memory.MemoryWorker, reply: str) -> list[str]:
    """``worker`` talking to a fake child that records the request line and answers ``reply``."""
    import subprocess
    import sys

    script = f"import sys; sys.stderr.write(sys.stdin.readline()); print({reply!r}, flush=True); sys.stdin.read()"

    def start():
        worker._proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return worker._proc

    monkeypatch.setattr(worker, "_start", start)
    return []


@pytest.mark.parametrize(
    "reply, error, message",
    [
        ('{"status": "oom", "error": "out of memory: 8 GB"}', memory.WorkerOOM, r"^out of memory: 8 GB$"),
        (
            '{"status": "error", "error": "ValueError: no option x"}',
            RuntimeError,
            r"^memory worker: ValueError: no option x$",
        ),
        ('{"status": "ok"}', RuntimeError, r"unreadable reply \(reply: status 'ok' without a record\)"),
        ('{"status": "done", "error": "?"}', RuntimeError, r"unreadable reply \(reply.status: 'done' is not one of ok"),
        ("not json", RuntimeError, r"unreadable reply \(not valid JSON"),
    ],
)
def test_the_workers_reply_is_a_typed_message(monkeypatch, reply, error, message):
    worker = memory.MemoryWorker()
    _replying(monkeypatch, worker, reply)
    try:
        with pytest.raises(error, match=message) as caught:
            worker.measure(Case("vit_s16", 32, 8))
        assert type(caught.value) is error  # an unreadable reply is not an OOM
        request = worker._proc.stderr.readline() if worker._proc else ""
    finally:
        worker.close()
    from bench import schema

    sent = schema.decode_object(schema.MemoryRequest, schema.parse_line(request.encode()))
    assert sent.case == Case("vit_s16", 32, 8)


def test_a_reply_is_ok_with_a_record_or_another_status_with_an_error():
    from bench import schema

    record = memory.Memory("cpu_peak_rss", 4, 10, 6, 0)
    assert schema.decode_object(schema.MemoryReply, schema.encode(schema.MemoryReply("ok", record))).record == record
    for bad in ({"status": "ok", "error": "x"}, {"status": "oom", "record": schema.encode(record)}, {"status": "oom"}):
        with pytest.raises(ValueError, match="status '(ok|oom)' with"):
            schema.decode_object(schema.MemoryReply, bad)
