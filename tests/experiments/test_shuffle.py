"""The patch-shuffle experiment: the data, the exact Mixer claim, determinism and the command.

The claim checked exactly: a Mixer started from the permuted initialisation and trained
on patch-shuffled images follows the original Mixer's trajectory on the original images
(float64: to 1e-9; float32 over a short run: to 1e-4). The ResNet's drop and the pixel
shuffle's harm are statistical outcomes of the full run, reported by `mixerbench shuffle`,
not asserted here.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from bench.experiments.properties import permute_patches, permute_token_order
from bench.experiments.shuffle import (
    ALL_CONDITIONS,
    CONDITIONS,
    SEGMENTS,
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    accuracy,
    batch_order,
    check_claim,
    make_dataset,
    markdown_table,
    plot,
    run_experiment,
    seven_segment_digits,
    summarize,
    tiny_model,
    train_model,
)
from helpers import main_code

SMALL = ExperimentConfig(
    data=DataConfig(train_size=256, test_size=128),
    train=TrainConfig(steps=8, batch_size=32),
    seeds=(0, 1),
)


# ---------------------------------------------------------------------------- data


def test_segment_table_is_the_standard_seven_segment_display():
    # lit segments per digit 0-9 on a seven-segment display
    assert [len(s) for s in SEGMENTS] == [6, 2, 5, 5, 4, 5, 6, 3, 7, 6]
    assert set(SEGMENTS[8]) == set("abcdefg") and set(SEGMENTS[1]) == set("bc") and set(SEGMENTS[7]) == set("abc")


def test_digits_are_deterministic_and_drawn_where_the_segments_say():
    x, y = seven_segment_digits(400, 16, jitter=1, noise=0.0, seed=3)
    assert x.shape == (400, 1, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) == set(range(10))
    again, _ = seven_segment_digits(400, 16, jitter=1, noise=0.0, seed=3)
    assert torch.equal(x, again)
    lit = x[:, 0] > 0
    pixels = x[:, 0]
    assert torch.all(pixels[lit] >= 0.5) and torch.all(pixels[lit] <= 1.0) and torch.all(pixels[~lit] == 0)
    ones = lit[y == 1]  # segments b and c only: one vertical stroke of thickness <= 2 px
    assert all(int(img.any(dim=0).sum()) <= 2 for img in ones)
    eights, sevens = lit[y == 8].sum(dim=(1, 2)).float().mean(), lit[y == 7].sum(dim=(1, 2)).float().mean()
    assert eights > 1.5 * sevens  # 7 segments against 3


def test_noise_has_the_configured_spread():
    x, _ = seven_segment_digits(200, 16, jitter=1, noise=0.25, seed=0)
    clean, _ = seven_segment_digits(200, 16, jitter=1, noise=0.0, seed=0)
    assert abs((x - clean).std().item() - 0.25) < 0.01


def test_batch_order_is_a_sequence_of_epochs():
    train = TrainConfig(steps=10, batch_size=30)
    order = batch_order(100, train, seed=0)
    assert order.shape == (10, 30)
    flat = order.flatten()
    assert sorted(flat[:100].tolist()) == list(range(100))  # the first epoch sees every image once
    assert torch.equal(order, batch_order(100, train, seed=0)) and not torch.equal(
        order, batch_order(100, train, seed=1)
    )


# ---------------------------------------------------------------------------- the exact claim


def trajectory(kind, x, y, train, seed, perm=None, dtype=torch.float32):
    model = tiny_model(kind, 16, 4, seed)
    if perm is not None:
        model = permute_token_order(model, perm)
    model = model.to(dtype)
    losses = train_model(model, x.to(dtype), y, train, seed)
    return model, torch.tensor(losses, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["mixer", "vit"])
def test_permuted_init_on_shuffled_patches_trains_to_identical_results(kind):
    data = make_dataset(DataConfig(train_size=256, test_size=200), patch_size=4)
    train = TrainConfig(steps=25, batch_size=32)
    perm = data.patch_perm
    shuffled_train, shuffled_test = (permute_patches(x, perm, 4) for x in (data.train_x, data.test_x))
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        reference, ref_losses = trajectory(kind, data.train_x, data.train_y, train, 0, dtype=dtype)
        permuted, losses = trajectory(kind, shuffled_train, data.train_y, train, 0, perm=perm, dtype=dtype)
        assert (losses - ref_losses).abs().max().item() <= tol
        ref_logits = reference.eval()(data.test_x.to(dtype))
        logits = permuted.eval()(shuffled_test.to(dtype))
        assert (logits - ref_logits).abs().max().item() <= 10 * tol
        assert torch.equal(logits.argmax(1), ref_logits.argmax(1))
    # control: the plain (unpermuted) initialisation on shuffled patches takes another path,
    # outside both tolerances above
    _, plain = trajectory(kind, shuffled_train, data.train_y, train, 0)
    assert (plain - ref_losses).abs().max().item() > 1e-4


def test_training_is_deterministic():
    data = make_dataset(DataConfig(train_size=128, test_size=64), patch_size=4)
    train = TrainConfig(steps=5, batch_size=32)
    runs = [trajectory("resnet", data.train_x, data.train_y, train, 7)[1] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training


# ---------------------------------------------------------------------------- the experiment


def test_small_experiment_runs_every_condition_and_the_claim_holds(tmp_path):
    records = run_experiment(SMALL)
    assert len(records) == len(SMALL.seeds) * (len(ALL_CONDITIONS) + 2 * len(CONDITIONS))
    assert all(0.0 <= r.accuracy <= 1.0 and len(r.losses) == SMALL.train.steps for r in records)
    claim = check_claim(records)
    assert claim is not None and claim.passed and claim.seeds == (0, 1)
    assert claim.max_accuracy_diff == 0.0 and claim.max_loss_diff <= 1e-9
    summaries = summarize(records)
    mixer = next(s for s in summaries if (s.model, s.condition) == ("mixer", "original"))
    accs = [r.accuracy for r in records if (r.model, r.condition) == ("mixer", "original")]
    assert mixer.n == 2 and mixer.mean == pytest.approx(sum(accs) / 2) and mixer.min == min(accs)
    assert mixer.std == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    table = markdown_table(summaries)
    assert table.splitlines()[0] == "| model | " + " | ".join(ALL_CONDITIONS) + " |"
    assert table.count("\n") == 4 and "| vit |" in table
    png = tmp_path / "plot.png"
    plot(records, summaries, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claim_check_catches_a_diverging_pair():
    records = run_experiment(replace(SMALL, seeds=(0,), models=("mixer",)))
    broken = [replace(r, accuracy=r.accuracy + 0.01) if r.condition == ALL_CONDITIONS[-1] else r for r in records]
    assert not check_claim(broken).passed
    assert check_claim([r for r in records if r.condition in CONDITIONS]) is None


def test_accuracy_counts_correct_predictions():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3, 4))
    x = torch.eye(4)[[0, 1, 2, 2]].reshape(4, 1, 2, 2)
    assert accuracy(model, x, torch.tensor([0, 1, 2, 0]), batch_size=3) == 0.75


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train": TrainConfig(patch_size=5)}, "multiple of patch_size 5"),
        ({"seeds": ()}, "at least one seed"),
        ({"models": ("mixer", "convnext")}, "models must be among"),
        ({"data": DataConfig(train_size=0)}, "train_size must be positive"),
    ],
)
def test_bad_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        replace(SMALL, **overrides)


# ---------------------------------------------------------------------------- the command

ARGS = ["--seeds", "1", "--steps", "4", "--train-size", "128", "--test-size", "64", "--models", "mixer,resnet"]


def test_command_writes_table_plot_and_streamed_runs(tmp_path, capsys):
    out = tmp_path / "out"
    assert main_code(["shuffle", "--out", str(out), *ARGS]) == 0
    captured = capsys.readouterr()
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 3 + 5  # resnet: 3 conditions; mixer: 3 + the float64 pair
    assert {r["model"] for r in runs} == {"mixer", "resnet"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["claim"]["passed"] is True and summary["config"]["train"]["steps"] == 4
    assert (out / "shuffle.png").read_bytes()[:4] == b"\x89PNG"
    assert "| resnet |" in (out / "shuffle.md").read_text() and "| resnet |" in captured.out
    assert "[8/8] resnet pixel_shuffled seed 0" in captured.err
    assert not list(out.glob(".*.tmp"))
    # a second run does not silently replace the first one's results
    assert main_code(["shuffle", "--out", str(out), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "already holds results" in err and err.count("\n") == 1
    assert main_code(["shuffle", "--out", str(out), "--overwrite", *ARGS]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "mixer,convnext"], "subset of mixer,vit,resnet"),
        (["--steps", "0"], "positive integer"),
        (["--seeds", "two"], "positive integer"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main_code(["shuffle", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_unwritable_out_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for out in (blocker, blocker / "sub"):
        assert main_code(["shuffle", "--out", str(out), *ARGS]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mixerbench shuffle: error: ") and err.count("\n") == 1
    assert blocker.read_text() == "not a directory" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]
