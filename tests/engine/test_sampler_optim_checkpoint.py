import itertools
import random

import numpy as np
import pytest
import torch
from torch import nn

from contextseg.engine.checkpoints.checkpoint import find_resume, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from contextseg.engine.config import TrainConfig
from contextseg.engine.training.optim import PolyLR, build_optimizer, build_scheduler
from contextseg.engine.training.sampler import InfiniteSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_sampler_epochs_are_permutations_and_resume_continues_exactly():
    s = InfiniteSampler(10, seed=3)
    first = take(s, 25)
    assert sorted(first[:10]) == list(range(10)) and sorted(first[10:20]) == list(range(10))
    assert first[:10] != first[10:20]
    assert take(InfiniteSampler(10, seed=3, start=13), 12) == first[13:25]


def test_sampler_shards_ranks_disjointly():
    shards = [take(InfiniteSampler(10, seed=1, rank=r, world_size=3), 4) for r in range(3)]
    epoch = sorted(i for shard in shards for i in shard)
    assert set(epoch) == set(range(10)) and len(epoch) == 12  # 10 padded to 12 by wrap-around


def test_poly_schedule_values_and_floor():
    poly = PolyLR(max_iters=100, power=0.9, min_ratio=1e-4)
    assert poly(0) == 1.0
    assert poly(50) == pytest.approx(0.5 ** 0.9)
    assert poly(100) == 1e-4
    warm = PolyLR(max_iters=100, warmup_iters=10, warmup_ratio=0.1)
    assert warm(0) == pytest.approx(0.1) and warm(5) == pytest.approx(0.55 * (0.95 ** 0.9))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.decode_head = nn.Linear(2, 2)
        self.aux_head = nn.Linear(2, 2)


def test_param_groups_lr_mult_and_weight_decay_rules():
    cfg = TrainConfig(lr=0.01, weight_decay=5e-4, head_lr_mult=10, paramwise=[{"pattern": "aux_head.*", "lr_mult": 2, "weight_decay": 1e-4}], max_iters=10)
    model = Net()
    opt = build_optimizer(model, cfg)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_param[id(model.backbone.weight)]["lr"] == pytest.approx(0.01)
    assert by_param[id(model.decode_head.bias)]["lr"] == pytest.approx(0.1)
    assert by_param[id(model.aux_head.weight)]["lr"] == pytest.approx(0.02)
    assert by_param[id(model.aux_head.weight)]["weight_decay"] == 1e-4
    assert by_param[id(model.decode_head.weight)]["weight_decay"] == 5e-4
    sched = build_scheduler(opt, cfg)
    for _ in range(5):
        opt.step()
        sched.step()
    assert by_param[id(model.decode_head.bias)]["lr"] == pytest.approx(0.1 * 0.5 ** 0.9)


def test_checkpoint_is_atomic_and_loads_weights_only(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "iteration": 3, "config": {"a": [1, 2]}, "rng": rng_state()}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    ck = load_checkpoint(path)
    assert ck["iteration"] == 3 and torch.equal(ck["model"]["w"], torch.ones(2))

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(OSError, match="last.pt: disk full; nothing partial was left"):  # one line naming the file
        save_checkpoint({"bad": Boom()}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))  # the old file survived
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_rng_state_roundtrip_through_a_checkpoint(tmp_path):
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint({"rng": state}, tmp_path / "r.pt")
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_untrusted_or_missing_checkpoints_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    assert find_resume(tmp_path, "auto") is None
    assert find_resume(tmp_path, False) is None
    with pytest.raises(FileNotFoundError):
        find_resume(tmp_path, str(tmp_path / "missing.pt"))
