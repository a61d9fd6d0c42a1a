"""A tiny end-to-end training run: the loss falls and mIoU on the training images rises above chance."""

import json

import pytest
import torch

from contextseg.engine.config import Config
from contextseg.engine.training.trainer import Trainer


def tiny_config(tmp_path, **train):
    raw = {
        "name": "tiny",
        "model": {"name": "deeplabv3plus", "backbone": "resnet18d", "output_stride": 16, "channels": 64, "c1_channels": 16, "aux_head": False},
        "data": {
            "name": "synthetic",
            "kwargs": {"size": [64, 128], "length": 8},
            "val_split": "train",  # evaluate on the very images it trains on
            "crop_size": [64, 128],
            "ratio_range": [1.0, 1.0],
            "flip_prob": 0.0,
            "photometric": False,
            "num_workers": 0,
        },
        "train": {"max_iters": 80, "batch_size": 8, "lr": 0.05, "log_interval": 10, "eval_interval": 80, "work_dir": str(tmp_path / "run"), "seed": 0, **train},
    }
    return Config.from_dict(raw)


@pytest.mark.slow
def test_tiny_training_run_learns(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path)
    trainer = Trainer(cfg, progress=False)
    before = trainer.model
    from contextseg.engine.evaluate import evaluate

    start = evaluate(before, trainer.val_set, cfg.evaluate, trainer.device, progress=False)
    results = trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["event"] == "train"]
    assert losses[-1] < 0.6 * losses[0], losses
    chance = 1 / 9
    assert results["mIoU"] > max(2 * chance, start["mIoU"] + 0.15), (start["mIoU"], results["mIoU"])
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()


def small_deterministic(tmp_path, work):
    cfg = tiny_config(tmp_path, max_iters=4, eval_interval=2, log_interval=1, work_dir=str(tmp_path / work))
    cfg.model["dropout"] = 0.0  # no randomness in the step, so runs can be compared bit for bit
    cfg.data.kwargs.update(length=4, size=[32, 64])
    cfg.data.crop_size = [32, 64]
    return cfg


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    straight = Trainer(small_deterministic(tmp_path, "straight"), progress=False)
    straight.fit()
    reference = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    assert reference["iteration"] == 4 and reference["classes"][0] == "sky" and reference["config"]["name"] == "tiny"

    torch.manual_seed(0)
    crashing = Trainer(small_deterministic(tmp_path, "crash"), progress=False)
    real_step = Trainer._step
    calls = {"n": 0}

    def step_then_crash(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("power cut")
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "_step", step_then_crash)
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    monkeypatch.setattr(Trainer, "_step", real_step)
    assert torch.load(tmp_path / "crash" / "last.pt", weights_only=True)["iteration"] == 2

    resumed = Trainer(small_deterministic(tmp_path, "crash"), progress=False)  # resume: auto
    assert resumed.iteration == 2
    resumed.fit()
    final = torch.load(tmp_path / "crash" / "last.pt", weights_only=True)
    assert final["iteration"] == 4
    for key, value in reference["model"].items():
        assert torch.equal(value, final["model"][key]), key
    events = [json.loads(line)["event"] for line in (tmp_path / "crash" / "log.jsonl").read_text().splitlines()]
    assert "resume" in events
