"""Each training option does what it says: a test here fails if the option is ignored."""

import copy
import itertools
import math

import pytest
import torch

from contextseg.engine.training import trainer as trainer_module
from contextseg.engine.config import Config, ConfigError, TrainConfig
from contextseg.engine.training.optim import build_optimizer, build_scheduler
from contextseg.engine.training.trainer import Trainer


def tiny_config(tmp_path, **train):
    raw = {
        "name": "tiny",
        "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 32, "channels": 16, "aux_channels": 8},
        "data": {"name": "synthetic", "kwargs": {"size": [32, 64], "length": 8}, "val_split": "train", "crop_size": [32, 64],
                 "ratio_range": [1.0, 1.0], "flip_prob": 0.0, "photometric": False, "num_workers": 0},
        "train": {"max_iters": 2, "batch_size": 4, "lr": 0.01, "log_interval": 1, "eval_interval": 100, "work_dir": str(tmp_path / "run"), "seed": 0, **train},
    }
    return Config.from_dict(raw)


class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(3, 4)
        self.head = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.BatchNorm1d(2))


def test_adamw_with_paramwise_rules_and_head_multiplier():
    cfg = TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.05, head_lr_mult=10.0, betas=[0.8, 0.9], norm_weight_decay=0.0,
                      paramwise=[{"pattern": "backbone.bias", "lr_mult": 2.0}])
    model = TwoLayers()
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.9)
    groups = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert groups[id(model.backbone.weight)]["lr"] == pytest.approx(0.1) and groups[id(model.backbone.weight)]["weight_decay"] == 0.05
    assert groups[id(model.backbone.bias)]["lr"] == pytest.approx(0.2)  # the rule overrides
    assert groups[id(model.head[0].weight)]["lr"] == pytest.approx(1.0)  # head 10x
    assert groups[id(model.head[1].weight)]["weight_decay"] == 0.0  # norm weights: norm_weight_decay
    # the update is AdamW's, decoupled decay included: one step by hand for the backbone weight
    w0 = model.backbone.weight.detach().clone()
    model.backbone.weight.grad = torch.full_like(w0, 0.5)
    opt.step()
    expected = w0 * (1 - 0.1 * 0.05) - 0.1 * 0.5 / (0.5 + 1e-8)  # bias-corrected m/sqrt(v) = sign(g) at step 1
    assert torch.allclose(model.backbone.weight, expected, atol=1e-6)
    assert isinstance(build_optimizer(model, TrainConfig(optimizer="sgd")), torch.optim.SGD)


def test_cosine_schedule_with_warmup():
    cfg = TrainConfig(lr=1.0, max_iters=100, schedule="cosine", min_lr=0.01, warmup_iters=10, warmup_ratio=0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    for g in opt.param_groups:
        g["initial_lr"] = 1.0
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(101):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()

    def cosine(it):
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * it / 100))

    assert lrs[0] == pytest.approx(0.1 * cosine(0))  # warm-up starts at 0.1
    assert lrs[5] == pytest.approx((0.1 + 0.9 * 0.5) * cosine(5))
    assert lrs[50] == pytest.approx(cosine(50)) and lrs[50] == pytest.approx(0.505)
    assert lrs[100] == pytest.approx(0.01)
    poly = TrainConfig(lr=1.0, max_iters=100, schedule="poly", min_lr=0.01)
    assert build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), poly).lr_lambdas[0](50) != pytest.approx(0.505)


def test_bad_option_values_are_refused(tmp_path):
    for key, value in [("optimizer", "adam"), ("schedule", "step"), ("ema", 1.5), ("accumulate_steps", 0)]:
        with pytest.raises(ConfigError, match=f"train.{key}"):
            tiny_config(tmp_path, **{key: value})


def test_ema_weights_are_the_moving_average_and_are_what_is_evaluated(tmp_path, monkeypatch):
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(tmp_path, ema=0.9), progress=False)
    states = []
    step = trainer._step

    def recording_step(batches):
        out = step(batches)
        states.append(copy.deepcopy(trainer.model.state_dict()))
        return out

    trainer._step = recording_step
    evaluated = []
    monkeypatch.setattr(trainer_module, "evaluate", lambda model, *a, **k: evaluated.append(model) or {"mIoU": 0.5, "mAcc": 0.5, "aAcc": 0.5, "IoU": [], "Acc": []})
    trainer.fit()
    # timm's warm-up decay: step 1 copies the weights, step 2 averages with decay d2 < 0.9
    d2 = trainer.ema.get_decay(2)
    assert 0 < d2 < 0.9
    name = "decode_head.conv_seg.weight"
    expected = d2 * states[0][name] + (1 - d2) * states[1][name]
    assert torch.allclose(trainer.ema.module.state_dict()[name], expected, atol=1e-7)
    assert not torch.allclose(trainer.model.state_dict()[name], expected)
    assert evaluated == [trainer.ema.module]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert torch.equal(ckpt["ema"][name], trainer.ema.module.state_dict()[name])


def test_gradient_accumulation_sums_micro_batch_gradients(tmp_path):
    # accumulate_steps=2, batch 4: two forward/backward passes of 2 images, one optimizer step whose
    # gradient is the mean of the two micro-batch gradients
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(tmp_path, accumulate_steps=2, max_iters=1, precision="fp32"), progress=False)  # compared with an fp32 reference
    assert trainer.batch_per_rank == 2
    loader = torch.utils.data.DataLoader(trainer.train_set, batch_size=2)
    micro = list(itertools.islice(loader, 2))
    reference = copy.deepcopy(trainer.model)
    seen = []
    forward = trainer.model.forward
    trainer.ddp = lambda images, targets, **kw: seen.append(images.shape[0]) or forward(images, targets, **kw)
    grads = {}
    original_step = trainer.optimizer.step

    def capture(*args, **kwargs):
        grads.update({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
        return original_step(*args, **kwargs)

    trainer.optimizer.step = capture
    torch.manual_seed(1)
    trainer._step(iter(micro))
    assert seen == [2, 2]
    torch.manual_seed(1)  # the same dropout masks, drawn in the same order
    for batch in micro:
        (reference(batch["image"], batch["mask"])["loss"] / 2).backward()
    for name, param in reference.named_parameters():
        if param.grad is not None:
            assert torch.allclose(grads[name], param.grad, atol=1e-6, rtol=1e-5), name
    with pytest.raises(ConfigError, match="accumulate_steps"):
        Trainer(tiny_config(tmp_path, accumulate_steps=3), progress=False)


def test_cached_dataset_decodes_each_sample_once(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    cfg.data.cache = True
    trainer = Trainer(cfg, progress=False)
    calls = []
    load = trainer.train_set.load
    monkeypatch.setattr(trainer.train_set, "load", lambda i: calls.append(i) or load(i))
    first = trainer.train_set[3]
    second = trainer.train_set[3]
    assert calls == [3] and torch.equal(first["image"], second["image"]) and second["mask"].dtype == torch.int64


def test_class_balance_weights_reach_the_loss(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.data.class_balance = "sqrt_median_frequency"
    trainer = Trainer(cfg, progress=False)
    from contextseg.data.base import median_frequency_weights

    expected = median_frequency_weights(trainer.train_set, 0.5)
    assert trainer.model.criterion.class_weight is not None
    assert torch.allclose(torch.as_tensor(trainer.model.criterion.class_weight, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64))
    assert torch.allclose(torch.as_tensor(trainer.model.aux_criterion.class_weight, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64))


def test_compile_wraps_the_training_forward_and_nothing_else(tmp_path, monkeypatch):
    """train.compile: the training forward goes through torch.compile (spied: compiling for real
    takes a minute on a CPU); checkpoints and evaluation keep using the plain module."""
    compiled = []

    def spy(module, **kwargs):
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", spy)
    trainer = Trainer(tiny_config(tmp_path, compile=True))
    assert compiled == [trainer.model] and trainer.ddp is trainer.model
    compiled.clear()
    Trainer(tiny_config(tmp_path / "off"))
    assert compiled == []


def test_trainer_messages_go_through_logging_on_rank_zero_only(monkeypatch, capsys):
    """Messages are records of the ``contextseg`` logger: INFO to stdout, warnings to stderr with a
    prefix, and nothing from a rank other than 0 unless asked."""
    from contextseg.engine import log as log_module

    logger = log_module.setup_logging()
    child = log_module.get_logger("train")
    child.info("iter 1/2")
    child.warning("crops are mostly padding")
    out = capsys.readouterr()
    assert out.out == "iter 1/2\n" and out.err == "warning: crops are mostly padding\n"
    monkeypatch.setattr(log_module, "is_distributed", lambda: True)
    monkeypatch.setattr(log_module, "get_rank", lambda: 1)
    child.info("from rank 1")
    child.info("every rank", extra={"all_ranks": True})
    out = capsys.readouterr()
    assert out.out == "every rank\n"
    # outside a process group (a CLI line before or after a torchrun training) torchrun's RANK decides
    monkeypatch.setattr(log_module, "is_distributed", lambda: False)
    monkeypatch.setenv("RANK", "1")
    child.info("rank 1 before the group exists")
    monkeypatch.setenv("RANK", "0")
    child.info("rank 0 before the group exists")
    assert capsys.readouterr().out == "rank 0 before the group exists\n"
    assert log_module.setup_logging() is logger and len(logger.handlers) == 2  # idempotent
    assert all(any(isinstance(f, log_module.RankZeroFilter) for f in h.filters) for h in logger.handlers)


def test_no_bare_print_in_the_engine():
    import ast
    from pathlib import Path

    import contextseg

    engine = Path(contextseg.__file__).parent / "engine"
    calls = [f"{p.relative_to(engine)}:{n.lineno}" for p in engine.rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"]
    assert not calls, f"print() in engine/ (use contextseg.engine.log): {calls}"


def test_a_training_says_what_it_does_from_the_first_iteration(tmp_path, capsys):
    # without a terminal the progress bar is off and the first regular line comes at log_interval:
    # the data, the model and the first iteration are reported at once
    from contextseg.engine.config import load_config
    from contextseg.engine.log import setup_logging
    from contextseg.engine.training.trainer import train

    setup_logging()
    (tmp_path / "tiny.yaml").write_text(
        "model: {name: fcn, backbone: resnet18d, channels: 8, aux_head: false}\n"
        "data: {name: synthetic, kwargs: {size: [32, 64], length: 4}, crop_size: [32, 64], num_workers: 0}\n"
        f"train: {{max_iters: 2, batch_size: 2, log_interval: 10, eval_interval: 2, work_dir: {tmp_path / 'run'}}}\n")
    cfg = load_config(tmp_path / "tiny.yaml")
    train(cfg, progress=False)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("data: 4 training and") and "model fcn" in line for line in lines), out
    first = [line for line in lines if line.startswith("iter 1/2")]
    assert len(first) == 1 and "first iteration in" in first[0], out
    assert lines.index(first[0]) < next(i for i, line in enumerate(lines) if line.startswith("iter 2/2"))
