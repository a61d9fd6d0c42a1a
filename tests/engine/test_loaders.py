"""Data loaders within the machine's bounds: worker counts capped by the CPUs, and the failures of
worker processes (no /dev/shm, too small an open-file limit) one line saying what to change."""

import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from contextseg.cli.main import main, raised_by_contextseg
from contextseg.engine import loaders
from contextseg.engine.config import Config
from contextseg.engine.loaders import LoaderError, cap_workers, guarded, loader_failure, make_loader
from contextseg.engine.training.trainer import Trainer

TINY = {
    "name": "tiny",
    "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 32, "channels": 8, "aux_channels": 8},
    "data": {"name": "synthetic", "kwargs": {"size": [32, 48], "length": 2}, "val_split": "val", "crop_size": [32, 48], "num_workers": 0},
    "train": {"max_iters": 1, "batch_size": 2, "lr": 0.01, "eval_interval": 1, "log_interval": 1, "seed": 0, "precision": "fp32"},
}


@pytest.fixture(autouse=True)
def fresh_notices(monkeypatch):
    monkeypatch.setattr(loaders, "_said", set())  # each test sees the cap's one line


def test_workers_beyond_the_cpus_are_capped_with_one_line(monkeypatch, caplog):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with caplog.at_level(logging.INFO, logger="contextseg"):
        assert cap_workers(500) == 2
        assert cap_workers(500) == 2  # said once, not at every evaluation's loader
        assert cap_workers(2) == 2 and cap_workers(0) == 0
    assert [r.getMessage() for r in caplog.records] == ["data.num_workers=500 is more than this machine's 2 CPUs: using 2"]
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows: the CPU count
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert cap_workers(8) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert cap_workers(8) == 1


class Stop(Exception):
    pass


def test_training_and_evaluation_loaders_run_with_the_capped_count(tmp_path, monkeypatch, caplog):
    from contextseg.engine.evaluate import evaluate
    from contextseg.engine.training import trainer as trainer_module

    built = []

    class Spy(torch.utils.data.DataLoader):
        def __init__(self, dataset, num_workers=0, **kwargs):
            built.append(num_workers)
            super().__init__(dataset, num_workers=0, **kwargs)  # the count it was given, recorded; run in this process (fast)

    monkeypatch.setattr(loaders, "DataLoader", Spy)
    monkeypatch.setattr(loaders, "available_cpus", lambda: 1)
    raw = {**TINY, "data": {**TINY["data"], "num_workers": 6}, "train": {**TINY["train"], "work_dir": str(tmp_path / "run")}}
    trainer = Trainer(Config.from_dict(raw), progress=False)
    monkeypatch.setattr(trainer, "_step", lambda batches: (next(batches), (_ for _ in ()).throw(Stop()))[1])  # one batch drawn, then stop
    with caplog.at_level(logging.INFO, logger="contextseg"):
        with pytest.raises(Stop):
            trainer.fit()
    assert built == [1]  # the training loader
    assert [r.getMessage() for r in caplog.records if "more than this machine" in r.getMessage()] == ["data.num_workers=6 is more than this machine's 1 CPU: using 1"]
    asked = []
    monkeypatch.setattr(trainer_module, "evaluate", lambda *args, num_workers, **kwargs: asked.append(num_workers) or {"mIoU": 0.5, "mAcc": 0.5, "aAcc": 0.5})
    monkeypatch.setattr(trainer, "_save", lambda **kwargs: None)
    trainer._evaluate_and_save()
    assert asked == [1]  # the periodic evaluation: min(capped, 2)
    model = torch.nn.Conv2d(3, 9, 1)
    evaluate(model, trainer.val_set, trainer.cfg.evaluate, torch.device("cpu"), num_workers=4, progress=False)
    assert built == [1, 1]  # evaluate() caps what it is given too
    monkeypatch.setattr(loaders, "DataLoader", lambda dataset, **kwargs: FailingLoader(RuntimeError("received 0 items of ancdata")))
    with pytest.raises(LoaderError, match="too many open files"):  # and its worker failures are one line
        evaluate(model, trainer.val_set, trainer.cfg.evaluate, torch.device("cpu"), num_workers=1, progress=False)


class FailingLoader:
    """A loader whose iterator raises ``error`` as torch's does when a worker process fails."""

    def __init__(self, error, at_iter=False):
        self.error, self.at_iter = error, at_iter

    def __len__(self):
        return 3

    def __iter__(self):
        if self.at_iter:
            raise self.error
        return self

    def __next__(self):
        raise self.error


SHM = "shared memory (/dev/shm) is unavailable or full"
FILES = "raise the open-file limit (ulimit -n) or set data.num_workers=0"
FAILURES = {  # torch's own words: the advice they must become
    "shm_full": (RuntimeError("unable to open shared memory object </torch_4711_2875921553_0> in read-write mode: No space left on device (28)"), [SHM, "set data.num_workers=0", "enlarge /dev/shm"]),
    "shm_missing": (RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n  File \"/x/torch/multiprocessing/reductions.py\", line 618, in reduce_storage\n"
                                 "RuntimeError: unable to open shared memory object </torch_1_2_0> in read-write mode: No such file or directory (2)"), [SHM]),
    "shm_allocate": (RuntimeError("unable to allocate shared memory(shm) for file </torch_22_33_1>: Resource temporarily unavailable (11)"), [SHM]),
    "bus_error": (RuntimeError("DataLoader worker (pid 1234) is killed by signal: Bus error. It is possible that dataloader's workers are out of shared memory. "
                               "Please try to raise your shared memory limit."), [SHM]),
    "too_many_files": (RuntimeError("Too many open files. Communication with the workers is no longer possible. Please increase the limit using `ulimit -n` in the shell "
                                    "or change the sharing strategy by calling `torch.multiprocessing.set_sharing_strategy('file_system')` at the beginning of your code"), [FILES]),
    "ancdata": (RuntimeError("received 0 items of ancdata"), [FILES]),
    "emfile_at_start": (OSError(24, "Too many open files"), [FILES]),
    "shm_but_emfile": (RuntimeError("unable to open shared memory object </torch_1_2_0> in read-write mode: Too many open files (24)"), [FILES]),
    "oom_killed": (RuntimeError("DataLoader worker (pid 99) is killed by signal: Killed. "), ["(pid 99) was killed", "out-of-memory", "lower data.num_workers"]),
    "exited": (RuntimeError("DataLoader worker (pid(s) 12, 13) exited unexpectedly"), ["(pid(s) 12, 13) exited unexpectedly", "set data.num_workers=0"]),
}


@pytest.mark.parametrize("at_iter", [False, True], ids=["next", "iter"])
@pytest.mark.parametrize("case", sorted(FAILURES))
def test_worker_failures_are_one_line_saying_what_to_change(case, at_iter):
    error, words = FAILURES[case]
    with pytest.raises(LoaderError) as err:
        next(guarded(FailingLoader(error, at_iter)))
    text = str(err.value)
    assert "\n" not in text and text.startswith("data loading worker")
    for word in words:
        assert word in text, (word, text)
    assert raised_by_contextseg(err.value)  # the CLI: exit 2, no traceback


@pytest.mark.parametrize("error", [RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
                                   RuntimeError("DataLoader worker (pid 7) is killed by signal: Segmentation fault. "),
                                   ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                                              '  File "/site-packages/numpy/core/x.py", line 3, in f\nValueError: bad shape')])
def test_other_errors_pass_unchanged(error):
    """A bug (in contextseg or a library, in a worker or not) keeps its type, message and traceback."""
    with pytest.raises(type(error)) as err:
        next(guarded(FailingLoader(error)))
    assert err.value is error and loader_failure(error) is None


class Raising(torch.utils.data.Dataset):
    def __init__(self, make_error):
        self.make_error = make_error

    def __len__(self):
        return 4

    def __getitem__(self, index):
        raise self.make_error()


def _shm_error():
    return RuntimeError("unable to open shared memory object </torch_4711_2875921553_0> in read-write mode: No space left on device (28)")


def test_a_real_worker_failing_on_shared_memory_is_one_line():
    loader = make_loader(Raising(_shm_error), 1, batch_size=2)  # in a worker process: torch re-raises it with the worker's traceback
    with pytest.raises(LoaderError, match=r"^data loading worker failed: shared memory \(/dev/shm\) is unavailable or full .*set data.num_workers=0"):
        next(guarded(loader))


def test_contextseg_errors_raised_in_a_worker_stay_one_line(tmp_path):
    """A corrupt image read by a worker: the same one-line error as without workers (not a traceback
    from torch's re-raise, which the CLI would call a bug)."""
    from contextseg.data.base import read_image

    (tmp_path / "broken.png").write_bytes(b"not a png")
    loader = make_loader(Raising(lambda: read_image(tmp_path / "broken.png")), 1, batch_size=2)
    with pytest.raises(ValueError) as err:
        next(guarded(loader))
    with pytest.raises(ValueError) as direct:
        read_image(tmp_path / "broken.png")
    assert type(err.value) is type(direct.value) and str(err.value) == str(direct.value) and "broken.png" in str(err.value)
    assert raised_by_contextseg(err.value)


def test_the_cli_ends_a_worker_failure_with_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loaders, "DataLoader", lambda dataset, **kwargs: FailingLoader(_shm_error()))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(config), f"train.work_dir={tmp_path / 'run'}", "data.num_workers=1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bug" not in err
    assert f"{SHM} (unable to open shared memory object" in err and "set data.num_workers=0 (no worker processes) or enlarge /dev/shm" in err


@pytest.mark.slow  # a fresh interpreter imports torch and contextseg (~8 s on 2 busy cores)
def test_a_small_open_file_limit_is_one_line(tmp_path):
    """A real ``ulimit -n`` too small for the tensors a worker passes (one file descriptor each)."""
    pytest.importorskip("resource")
    script = textwrap.dedent("""
        import resource, torch
        from contextseg.engine.loaders import LoaderError, guarded, make_loader

        class Many(torch.utils.data.Dataset):
            def __len__(self):
                return 64
            def __getitem__(self, index):
                return [torch.zeros(4) for _ in range(64)]

        batches = guarded(make_loader(Many(), 1, batch_size=None, timeout=60))  # the worker starts with the usual limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))  # this process receives the tensors
        try:
            for batch in batches:
                pass
        except LoaderError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "data loading worker failed: too many open files" in out.stdout and FILES in out.stdout, out.stdout + out.stderr
