"""``precision: auto`` and ``channels_last: auto``: the rule per device, the fallback on CPUs without
native bf16, and the resolved choice visible in the header, the log, the checkpoint and --print-config."""

import json

import pytest
import torch

from contextseg.cli.main import main
from contextseg.engine import precision as prec
from contextseg.engine.config import Config, ConfigError, load_config
from contextseg.engine.precision import autocast_context, inference_precision, resolve_precision
from contextseg.engine.training.trainer import Trainer


def cpu_with(monkeypatch, **flags):
    """Pretend this CPU reports exactly ``flags`` (torch.cpu.get_capabilities' keys)."""
    monkeypatch.setattr(prec, "_cpu_capabilities", lambda: dict(flags))


@pytest.mark.parametrize("flags, expected", [
    ({"avx512_bf16": True, "amx_bf16": True}, "bf16"),  # Sapphire Rapids and newer
    ({"avx512_bf16": True}, "bf16"),  # Cooper Lake, Zen 4
    ({"bf16": True}, "bf16"),  # AArch64 with FEAT_BF16
    ({"avx512_f": True, "avx2": True, "avx512_bf16": False}, "fp32"),  # AVX-512 without BF16: emulated, slower
    ({}, "fp32"),  # a torch that reports nothing
])
def test_auto_precision_on_the_cpu_follows_native_bf16(monkeypatch, flags, expected):
    cpu_with(monkeypatch, **flags)
    chosen = resolve_precision("auto", "auto", "cpu")
    assert chosen.precision == expected
    assert chosen.channels_last  # oneDNN runs NHWC natively, in fp32 and bf16
    assert chosen.reason.startswith("auto: ") and ("natively" in chosen.reason if expected == "bf16" else "no native bf16" in chosen.reason)


def test_explicit_values_are_kept_whatever_the_hardware(monkeypatch):
    cpu_with(monkeypatch)  # no bf16
    assert resolve_precision("bf16", False, "cpu") == prec.Precision("bf16", False, "set explicitly")
    cpu_with(monkeypatch, avx512_bf16=True)
    assert resolve_precision("fp32", True, "cpu").precision == "fp32"
    assert resolve_precision("fp16", "auto", "cpu").channels_last


@pytest.mark.parametrize("capability, expected, channels_last", [((9, 0), "bf16", True), ((8, 0), "bf16", True), ((7, 5), "fp16", True), ((6, 1), "fp32", False)])
def test_auto_precision_on_cuda_follows_the_compute_capability(monkeypatch, capability, expected, channels_last):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    chosen = resolve_precision("auto", "auto", torch.device("cuda", 0))
    assert (chosen.precision, chosen.channels_last) == (expected, channels_last)


def test_other_devices_stay_in_fp32():
    chosen = resolve_precision("auto", "auto", "meta")
    assert (chosen.precision, chosen.channels_last) == ("fp32", False)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", "auto", "cpu")
    with pytest.raises(ValueError, match="channels_last must be true, false or auto"):
        resolve_precision("auto", "yes", "cpu")
    with pytest.raises(ValueError, match="resolved precision"):
        autocast_context(torch.device("cpu"), "auto")
    raw = {"name": "x", "model": {"name": "fcn"}}
    for key, value, match in [("precision", "fp8", "auto, fp32, bf16 or fp16"), ("channels_last", "yes", "true, false or auto"), ("channels_last", 1, "channels_last")]:
        with pytest.raises(ConfigError, match=match):
            Config.from_dict({**raw, "train": {key: value}})


def test_defaults_are_auto():
    cfg = load_config(None, ["train.max_iters=1"])
    assert Config.from_dict({"name": "x", "model": {"name": "fcn"}}).train.precision == "auto"
    assert Config.from_dict({"name": "x", "model": {"name": "fcn"}}).train.channels_last == "auto"
    assert cfg.train.precision in ("auto", "fp32", "bf16", "fp16")


def test_autocast_context_gives_the_dtype():
    with autocast_context(torch.device("cpu"), "bf16")():
        assert torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3)).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), "fp32")():
        assert torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3)).dtype == torch.float32


def test_inference_keeps_a_cast_model_in_its_own_dtype(monkeypatch):
    cpu_with(monkeypatch, avx512_bf16=True)
    model = torch.nn.Conv2d(3, 4, 1)
    chosen, _ = inference_precision(model, "cpu", "auto")
    assert chosen.precision == "bf16" and model.weight.is_contiguous(memory_format=torch.channels_last)
    chosen, ctx = inference_precision(model.double(), "cpu", "auto")
    assert chosen.precision == "fp32"
    with ctx():
        assert model(torch.randn(1, 3, 5, 5, dtype=torch.float64)).dtype == torch.float64


def tiny(tmp_path, work="run", **train):
    raw = {
        "name": "tiny",
        "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 16, "channels": 16, "aux_head": False},
        "data": {"name": "synthetic", "kwargs": {"size": [32, 64], "length": 4}, "val_split": "train", "crop_size": [32, 64],
                 "ratio_range": [1.0, 1.0], "flip_prob": 0.0, "photometric": False, "num_workers": 0},
        "train": {"max_iters": 2, "batch_size": 2, "log_interval": 1, "eval_interval": 2, "work_dir": str(tmp_path / work), **train},
    }
    return Config.from_dict(raw)


def test_the_trainer_uses_logs_and_checkpoints_the_resolved_choice(tmp_path, monkeypatch):
    cpu_with(monkeypatch, avx512_bf16=True)
    trainer = Trainer(tiny(tmp_path), progress=False)
    assert trainer.precision.precision == "bf16" and trainer.memory_format == torch.channels_last
    assert next(trainer.model.parameters()).dtype == torch.float32  # autocast: the weights stay fp32
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    original = trainer.ddp.forward
    monkeypatch.setattr(trainer.ddp, "forward", lambda *a, **k: seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None) or original(*a, **k))
    trainer.fit()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen[:2])  # the training forwards ran under bf16 autocast
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["precision"]["precision"] == "bf16" and ckpt["precision"]["channels_last"] is True
    assert ckpt["config"]["train"]["precision"] == "auto"  # the config as given; the resolution beside it
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "precision" and records[0]["precision"] == "bf16"


def test_the_fallback_trains_in_fp32_without_autocast(tmp_path, monkeypatch):
    cpu_with(monkeypatch, avx512_f=True)  # AVX-512 but no BF16
    trainer = Trainer(tiny(tmp_path), progress=False)
    assert trainer.precision.precision == "fp32"
    seen = []
    original = trainer.ddp.forward
    monkeypatch.setattr(trainer.ddp, "forward", lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or original(*a, **k))
    trainer.fit()
    assert seen and not any(seen)


def test_a_resumed_auto_run_keeps_the_precision_it_started_with(tmp_path, monkeypatch):
    cpu_with(monkeypatch)  # started on a machine without bf16: fp32
    Trainer(tiny(tmp_path), progress=False).fit()
    cpu_with(monkeypatch, amx_bf16=True)  # resumed where auto would choose bf16
    resumed = Trainer(tiny(tmp_path, max_iters=3, eval_interval=3), progress=False)
    assert resumed.precision.precision == "fp32" and "kept from last.pt" in resumed.precision.reason
    resumed.fit()
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["precision"]["precision"] == "fp32"
    explicit = Trainer(tiny(tmp_path, max_iters=4, eval_interval=4, precision="bf16"), progress=False)
    assert explicit.precision.precision == "bf16"  # an explicit value is what the user asked for
    explicit.close()


def test_print_config_and_the_header_show_the_resolved_choice(tmp_path, monkeypatch, capsys):
    cpu_with(monkeypatch, avx512_bf16=True)
    assert main(["train", "train.max_iters=1", "train.precision=auto", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "# on this machine (cpu): precision bf16" in out
    cpu_with(monkeypatch)
    assert main(["train", "train.max_iters=1", "train.precision=auto", "train.channels_last=false", "--print-config"]) == 0
    assert "precision fp32, contiguous (NCHW)" in capsys.readouterr().out
