"""Exact resume through the CLI: a real process killed with SIGKILL (or stopped with SIGTERM)
mid-run and started again ends with the same weights, bit for bit, as a run never stopped, with
augmentation and dropout on."""

import copy
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

CONFIG = {
    "name": "resume",
    "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 32, "channels": 16, "aux_channels": 8, "dropout": 0.3},
    "data": {"name": "synthetic", "kwargs": {"size": [48, 64], "length": 12}, "val_split": "val", "crop_size": [32, 48],
             "ratio_range": [0.5, 2.0], "flip_prob": 0.5, "photometric": True, "num_workers": 0},
    "train": {"max_iters": 10, "batch_size": 4, "lr": 0.02, "optimizer": "adamw", "log_interval": 1, "eval_interval": 10,
              "checkpoint_interval": 2, "seed": 3},
}


def write_config(tmp_path, **data):
    cfg = copy.deepcopy(CONFIG)
    cfg["data"].update(data)
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def command(config, work):
    return [sys.executable, "-m", "contextseg", "train", str(config), f"train.work_dir={work}"]


def logged_iters(work):
    log = work / "log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line)["iter"] for line in log.read_text().splitlines() if json.loads(line)["event"] == "train"]


def run_until(config, work, iteration, sig):
    """Start a training process and send it ``sig`` once it has logged ``iteration``."""
    proc = subprocess.Popen(command(config, work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(i >= iteration for i in logged_iters(work)):
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def final_weights(work):
    return torch.load(work / "last.pt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_sigkill_mid_run_then_resume_gives_identical_weights(tmp_path, workers):
    config = write_config(tmp_path, num_workers=workers)
    straight = tmp_path / "straight"
    subprocess.run(command(config, straight), check=True, capture_output=True)
    reference = final_weights(straight)

    killed = tmp_path / "killed"
    code, _ = run_until(config, killed, 5, signal.SIGKILL)  # after the checkpoint at iteration 4
    assert code == -signal.SIGKILL
    assert torch.load(killed / "last.pt", weights_only=True)["iteration"] in (4, 6)
    subprocess.run(command(config, killed), check=True, capture_output=True)  # train.resume: auto
    resumed = final_weights(killed)
    assert resumed["iteration"] == reference["iteration"] == 10
    for key, value in reference["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    # the killed run's iterations past its checkpoint were dropped from the log: each once
    iters = logged_iters(killed)
    assert iters == sorted(set(iters)) == list(range(1, 11))
    assert not list(killed.glob(".*.tmp"))


@pytest.mark.slow
def test_sigterm_saves_the_current_iteration_and_says_so(tmp_path):
    config = write_config(tmp_path)
    work = tmp_path / "run"
    code, out = run_until(config, work, 3, signal.SIGTERM)
    assert code == 143  # 128 + SIGTERM, as POSIX shells report a process a TERM stopped (Ctrl-C: 130)
    saved = torch.load(work / "last.pt", weights_only=True)["iteration"]
    assert saved == max(logged_iters(work)) >= 3
    assert f"SIGTERM: stopped at iteration {saved}; saved" in out and "Traceback" not in out


def test_stale_temporaries_are_removed_and_a_fresh_run_does_not_overwrite(tmp_path):
    from contextseg.engine.config import Config, ConfigError
    from contextseg.engine.training.trainer import Trainer

    work = tmp_path / "run"
    work.mkdir()
    (work / ".last.pt.abc123.tmp").write_bytes(b"x" * 100)
    (work / "last.pt").write_bytes(b"another run")
    raw = {**CONFIG, "train": {**CONFIG["train"], "work_dir": str(work), "resume": False}}
    with pytest.raises(ConfigError, match="holds checkpoints of another run.*--overwrite"):
        Trainer(Config.from_dict(raw), progress=False)
    assert not (work / ".last.pt.abc123.tmp").exists() and (work / "last.pt").read_bytes() == b"another run"
    with pytest.raises(ValueError, match="last.pt exists and was not written by contextseg.*--overwrite included"):
        Trainer(Config.from_dict(raw), progress=False, overwrite=True)  # a file that is no checkpoint of contextseg: never replaced
    assert (work / "last.pt").read_bytes() == b"another run"
    torch.save({"model": {}, "iteration": 3}, work / "last.pt")  # a training checkpoint: replaced when asked for
    Trainer(Config.from_dict(raw), progress=False, overwrite=True)


def test_a_second_training_in_a_busy_work_dir_refuses_naming_the_first_and_a_killed_ones_lock_is_taken_over(tmp_path):
    """Two trainings on one work dir used to both "succeed" (weights of one, config of the other, an
    interleaved log). The first holds the lock; the second fails at once naming its pid and writes
    nothing; once the first is killed (SIGKILL: no cleanup, the .lock file stays), a new run starts."""
    import subprocess
    import sys
    import time

    from contextseg.engine.checkpoints.files import WorkDirBusy
    from contextseg.engine.config import Config
    from contextseg.engine.training.trainer import Trainer

    work = tmp_path / "run"
    work.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from contextseg.engine.checkpoints.files import WorkDirLock; "
        f"lock = WorkDirLock({str(work)!r}).acquire(); print('locked', flush=True); time.sleep(120)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = Config.from_dict({"model": {"name": "fcn", "backbone": "resnet18d", "channels": 8, "aux_head": False},
                                "data": {"name": "synthetic", "kwargs": {"size": [32, 32], "length": 2}, "crop_size": [32, 32], "num_workers": 0},
                                "train": {"max_iters": 1, "batch_size": 2, "work_dir": str(work)}})
        before = sorted(p.name for p in work.iterdir())
        with pytest.raises(WorkDirBusy, match=rf"in use by a training that is still running \(pid {holder.pid} on"):
            Trainer(cfg, progress=False)
        assert sorted(p.name for p in work.iterdir()) == before == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    assert (work / ".lock").exists()  # a killed process leaves its file, not its lock
    trainer = Trainer(cfg, progress=False)
    assert (work / ".lock").read_text().split()[0] == str(__import__("os").getpid())
    trainer.close()
    assert not (work / ".lock").exists()


@pytest.mark.slow  # three short trainings: the slow tier, beside the other resume runs
def test_a_failing_evaluation_never_loses_the_weights_and_the_resumed_run_is_exact(tmp_path, monkeypatch):
    """last.pt is written before each evaluation (marked as awaiting it): when the evaluation fails,
    the trained weights are on disk, and the resumed run evaluates first and ends bit for bit where
    a run that never failed ends (with dropout and augmentation on)."""
    from contextseg.engine.config import load_config
    from contextseg.engine.training import trainer as trainer_module

    config = write_config(tmp_path)
    overrides = ["train.max_iters=6", "train.eval_interval=3", "train.checkpoint_interval=6"]
    reference = trainer_module.Trainer(load_config(config, [*overrides, f"train.work_dir={tmp_path / 'ref'}"]), progress=False)
    reference.fit()
    reference.close()

    calls = {"n": 0}
    real = trainer_module.evaluate

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the mid-run evaluation, after iteration 3 of 6
            raise RuntimeError("evaluation failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", failing)
    cfg = load_config(config, [*overrides, f"train.work_dir={tmp_path / 'run'}"])
    first = trainer_module.Trainer(cfg, progress=False)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        first.fit()
    first.close()
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["iteration"] == 3 and saved["pending_eval"] and saved["metrics"] is None

    monkeypatch.setattr(trainer_module, "evaluate", real)
    resumed = trainer_module.Trainer(cfg, progress=False)
    results = resumed.fit()
    resumed.close()
    want = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    got = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert all(torch.equal(want["model"][k], got["model"][k]) for k in want["model"])
    assert results["mIoU"] == want["metrics"]["mIoU"] and "pending_eval" not in got


def test_a_model_tied_to_its_crop_that_cannot_be_evaluated_is_refused_before_training(tmp_path):
    """CPNet with a crop whose prior does not fit the validation images in whole mode used to train
    and then fail at the first evaluation, losing the run."""
    from contextseg.engine.config import ConfigError, Config
    from contextseg.engine.training.trainer import Trainer

    raw = {"model": {"name": "cpnet", "backbone": "resnet18d", "output_stride": 16, "channels": 8, "prior_channels": 8, "aux_head": False},
           "data": {"name": "synthetic", "kwargs": {"size": [96, 192], "length": 2}, "crop_size": [80, 160], "num_workers": 0},
           "train": {"max_iters": 2, "batch_size": 2, "work_dir": str(tmp_path / "run")}, "evaluate": {"mode": "whole"}}
    with pytest.raises(ConfigError, match=r"evaluate.mode=whole: CPNet is tied to its 80x160 training crop \(prior_size=\[5, 10\]\), but validation images are 96x192"):
        Trainer(Config.from_dict(raw), progress=False)
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "log.jsonl").exists()
    raw["evaluate"] = {"mode": "slide", "crop_size": [96, 96]}
    with pytest.raises(ConfigError, match=r"evaluate.crop_size=\[96, 96\]: CPNet is tied"):
        Trainer(Config.from_dict(raw), progress=False)
    raw["evaluate"] = {"mode": "slide"}
    Trainer(Config.from_dict(raw), progress=False).close()  # windows of the crop: fine
