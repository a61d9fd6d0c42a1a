"""Each CamVid recipe trains through the CLI on a tiny CamVid-layout fixture: the config
loads, the model builds at the recipe's crop, the loss falls, evaluation runs. (The real runs live
in benchmarks/camvid_study.py, not in CI.)"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import contextseg as cs

ROOT = Path(__file__).resolve().parents[1]
MODELS = cs.list_models()  # every registered model has a CamVid recipe (checked below)
LONGER = sorted(p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").glob("*/*_r18_camvid_2h.yaml"))


def test_every_registered_model_has_a_camvid_recipe():
    missing = [m for m in MODELS if not (ROOT / "configs" / m / f"{m}_r18_camvid.yaml").is_file()]
    assert not missing, f"no configs/<model>/<model>_r18_camvid.yaml for {missing}"


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    """SegNet's layout with 4 + 2 frames of 120x160: sky, building, road bands with class colours."""
    root = tmp_path_factory.mktemp("camvid")
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (12, 3))
    for split, n in (("train", 4), ("val", 2)):
        (root / split).mkdir()
        (root / f"{split}annot").mkdir()
        for k in range(n):
            labels = np.full((120, 160), 3, np.uint8)  # road
            top = 30 + 5 * k
            labels[:top] = 0  # sky
            labels[top : top + 40, : 80 + 10 * k] = 1  # building
            labels[70:90, 100:120] = 8  # car
            labels[:, 150:152] = 2  # a pole
            labels[0, :] = 11  # unlabelled -> ignore
            image = colours[labels] + rng.integers(-20, 20, (120, 160, 3))
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / split / f"f{k}.png")
            Image.fromarray(labels).save(root / f"{split}annot" / f"f{k}.png")
    return root


def test_the_two_hour_recipes_exist():
    assert {"hanet/hanet_r18_camvid_2h.yaml", "cpnet/cpnet_r18_camvid_2h.yaml"} <= set(LONGER), LONGER


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [f"{m}/{m}_r18_camvid.yaml" for m in MODELS] + LONGER)
def test_recipe_trains_on_a_camvid_fixture(recipe, camvid, tmp_path):
    """Eight iterations of each recipe (the two-hour ones with their multi-scale + flip evaluation)."""
    config = ROOT / "configs" / recipe
    work = tmp_path / "run"
    command = [sys.executable, "-m", "contextseg", "train", str(config), f"data.root={camvid}", f"train.work_dir={work}",
               "train.max_iters=8", "train.batch_size=2", "train.warmup_iters=0", "train.log_interval=1", "train.eval_interval=8", "train.checkpoint_interval=8"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["event"] == "train"]
    assert len(losses) == 8 and sum(losses[-3:]) < sum(losses[:3]), losses
    val = [r for r in records if r["event"] == "val"]
    assert len(val) == 1 and 0 <= val[0]["mIoU"] <= 1


def test_the_study_runs_the_two_hour_set_and_writes_zoo_rows(tmp_path, monkeypatch):
    """`camvid_study.py --recipe 2h` picks every model with a two-hour recipe, and its zoo rows
    carry the mean over seeds, the machine, precision, date and command of the runs."""
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("camvid_study_under_test", ROOT / "benchmarks" / "camvid_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    assert {m for m in study.MODELS if study.recipe(m, "2h").is_file()} == {"hanet", "cpnet", "ccnet", "danet", "fcn"}
    runs = [dict(model="hanet", seed=s, mIoU=v, train_minutes=t, config="configs/hanet/hanet_r18_camvid_2h.yaml", machine="AMD EPYC, 2 cores",
                 precision="bf16", torch="2.14.1", date="2026-12-06", command=f"contextseg train configs/hanet/hanet_r18_camvid_2h.yaml data.root=d train.seed={s}")
            for s, v, t in ((0, 0.66, 120.0), (1, 0.68, 124.0))]
    assert study.precision_text({"precision": "bf16", "channels_last": True, "reason": "auto: ..."}) == "bf16 + NHWC"
    assert study.precision_text({"precision": "fp32", "channels_last": False}) == "fp32" and study.precision_text(None) == ""
    row = study.zoo_rows(runs).splitlines()[-1]
    assert study.command_text("hanet", "2h", "d", 1, ["train.max_iters=12000", "data.base_size=[480,360]"]) == (
        "contextseg train configs/hanet/hanet_r18_camvid_2h.yaml data.root=d train.seed=1 train.max_iters=12000 'data.base_size=[480,360]'")
    # the gates the two-hour set reports: DANet's alpha (position) and beta (channel), none for FCN
    danet = cs.create_model("danet", num_classes=3, backbone="resnet18d", pretrained_backbone=None, channels=16, pam_channels=4, aux_channels=8)
    with torch.no_grad():
        danet.decode_head.pam.gamma.fill_(0.25), danet.decode_head.cam.gamma.fill_(-0.5)
    assert study.gate_values(danet) == {"decode_head.pam gamma": 0.25, "decode_head.cam gamma": -0.5}
    fcn = cs.create_model("fcn", num_classes=3, backbone="resnet18d", pretrained_backbone=None, channels=16, aux_channels=8)
    assert study.gate_values(fcn) == {}
    gated = [dict(r, gates={"decode_head.cca.gamma": g}, model="ccnet", mAcc=0.7, aAcc=0.9, IoU=[0.5] * 11, params_M=1.0, gflops_360x480=2.0)
             for r, g in zip(runs, (0.31, -0.205))]
    assert study.table(gated).splitlines()[-1].endswith("| decode_head.cca.gamma +0.310; decode_head.cca.gamma -0.205 |")
    assert row == ("| `configs/hanet/hanet_r18_camvid_2h.yaml` | 67.0 ± 1.4 (seeds 0, 1: 66.00, 68.00) | not scored | 120-124 min | "
                   "AMD EPYC, 2 cores, bf16, torch 2.14.1 | 2026-12-06 | `contextseg train configs/hanet/hanet_r18_camvid_2h.yaml data.root=d train.seed=S` |")


def test_gate_ablation_measures_each_gated_term_against_its_input():
    """`benchmarks/gate_ablation.py` finds every gated module (CCNet's criss-cross attention,
    DANet's position and channel attention, Non-local's block, none in FCN) and reports ``||gamma * context|| / ||x||``
    per pass, here against the term computed by hand: the module run with gamma = 1 minus its input,
    times |gamma|. A gate at 0 adds nothing; Non-local's gate is the scale and shift of its batch norm."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gate_ablation_under_test", ROOT / "benchmarks" / "gate_ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    danet = cs.create_model("danet", num_classes=3, backbone="resnet18d", pretrained_backbone=None, channels=16, pam_channels=4, aux_channels=8)
    assert sorted(ablation.gated_modules(danet)) == ["decode_head.cam", "decode_head.pam"]
    fcn = cs.create_model("fcn", num_classes=3, backbone="resnet18d", pretrained_backbone=None, channels=16, aux_channels=8)
    assert ablation.gated_modules(fcn) == {}

    torch.manual_seed(0)
    ccnet = cs.create_model("ccnet", num_classes=3, backbone="resnet18d", pretrained_backbone=None, channels=16, aux_channels=8).eval()
    cca = ccnet.decode_head.cca
    with torch.no_grad():
        cca.gamma.fill_(-0.3)
    dataset = [{"image": torch.randn(3, 64, 96)} for _ in range(2)]
    from contextlib import nullcontext

    ratios = ablation.relative_terms(ccnet, dataset, ablation.gated_modules(ccnet), nullcontext)
    assert len(ratios["decode_head.cca"]) == 2 * ccnet.decode_head.recurrence  # each pass of each image

    expected = []
    with torch.no_grad():
        for sample in dataset:
            features = ccnet.backbone(sample["image"].unsqueeze(0))
            x = ccnet.decode_head.convs[0](features[ccnet.decode_head.in_index]).double()
            for _ in range(ccnet.decode_head.recurrence):
                cca.gamma.fill_(1.0)
                context = cca.double()(x) - x
                cca.gamma.fill_(-0.3)
                expected.append(float(0.3 * context.norm() / x.norm()))
                x = x + -0.3 * context
            cca.float()
    assert ratios["decode_head.cca"] == pytest.approx(expected, rel=1e-4)
    with torch.no_grad():
        cca.gamma.zero_()
    assert max(ablation.relative_terms(ccnet, dataset[:1], {"decode_head.cca": cca}, nullcontext)["decode_head.cca"]) == 0

    # Non-local's gate is the batch norm after W_z: its term is BN(W_z y), 0 when scale and shift are 0
    nonlocal_model = cs.create_model("nonlocalnet", num_classes=3, backbone="resnet18d", pretrained_backbone=None, channels=16, aux_channels=8).eval()
    gated = ablation.gated_modules(nonlocal_model)
    assert list(gated) == ["decode_head.nl_block"]
    block = gated["decode_head.nl_block"]
    with torch.no_grad():
        block.conv_out[1].weight.uniform_(-1.5, 1.5), block.conv_out[1].bias.uniform_(-0.5, 0.5)
    assert min(ablation.relative_terms(nonlocal_model, dataset[:1], gated, nullcontext)["decode_head.nl_block"]) > 0
    scale = float(block.conv_out[1].weight.abs().mean())
    assert ablation.gate_values(nonlocal_model) == {"decode_head.nl_block mean abs BN scale": pytest.approx(scale)}
    with torch.no_grad():
        for parameter in ablation.gate_parameters(block):
            parameter.zero_()
    assert max(ablation.relative_terms(nonlocal_model, dataset[:1], gated, nullcontext)["decode_head.nl_block"]) == 0


def test_gate_ablation_refuses_a_bad_checkpoint_in_one_line(tmp_path):
    """A missing or unreadable checkpoint, or one whose model has no gated module, is one line on
    stderr naming the file, exit code 2, no traceback."""
    not_torch = tmp_path / "notes.pt"
    not_torch.write_text("not a checkpoint")
    fcn = cs.create_model("fcn", num_classes=3, backbone="resnet18d", pretrained_backbone=None, channels=16, aux_channels=8)
    plain = tmp_path / "fcn.pt"
    torch.save({"model": fcn.state_dict(), "classes": ["a", "b", "c"],
                "config": {"model": {"name": "fcn", "backbone": "resnet18d", "pretrained_backbone": None, "channels": 16, "aux_channels": 8}}}, plain)
    escaped = tmp_path / "fcn\x1b[2J.pt"  # a terminal escape in the name is shown escaped, never sent raw
    escaped.write_bytes(plain.read_bytes())
    for path, reason in ((tmp_path / "missing.pt", "does not exist"), (not_torch, "not a PyTorch file"), (plain, "no gated context module"),
                         (escaped, "no gated context module")):
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gate_ablation.py"), "--checkpoint", str(path)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("gate_ablation: error: ") and proc.stderr.count("\n") == 1 and "\x1b" not in proc.stderr, proc.stderr
        assert reason in proc.stderr and (path == escaped or str(path) in proc.stderr), proc.stderr
