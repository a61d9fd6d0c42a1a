"""Data-parallel training through torchrun on the CPU (gloo): two processes, one checkpoint."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from contextseg.engine.checkpoints.saved_model import load_checkpoint_model
from contextseg.engine.builders import build_eval_dataset
from contextseg.engine.evaluate import evaluate

CONFIG = {
    "model": {"name": "deeplabv3plus", "backbone": "resnet18d", "output_stride": 32, "channels": 32, "c1_channels": 16},
    "data": {"name": "synthetic", "kwargs": {"size": [32, 64], "length": 6}, "crop_size": [32, 64], "num_workers": 0},
    # fp32 NCHW: the metrics of two ranks and of one process are compared to 1e-9, which bf16
    # kernels run with another thread count need not meet (bf16 training: tests/models/test_precision.py)
    "train": {"max_iters": 4, "batch_size": 4, "lr": 0.02, "log_interval": 2, "eval_interval": 4, "precision": "fp32", "channels_last": False},
}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
def test_torchrun_two_processes_reduce_metrics_like_one(tmp_path):
    cfg = dict(CONFIG, train=dict(CONFIG["train"], work_dir=str(tmp_path / "run")))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "contextseg", "train", str(tmp_path / "tiny.yaml")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done in") == 1  # only rank 0 talks
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    val = [r for r in records if r["event"] == "val"]
    assert len(val) == 1 and val[0]["iter"] == 4  # one writer
    # the val split (6 images) was sharded 3 + 3 over the ranks and the confusion matrices summed:
    # one process evaluating all 6 images with the saved weights must find the same numbers
    model, loaded, _ = load_checkpoint_model(str(tmp_path / "run" / "last.pt"), torch.device("cpu"))
    results = evaluate(model, build_eval_dataset(loaded), loaded.evaluate, torch.device("cpu"), progress=False)
    assert results["mIoU"] == pytest.approx(val[0]["mIoU"], abs=1e-9)
    assert results["aAcc"] == pytest.approx(val[0]["aAcc"], abs=1e-9)
