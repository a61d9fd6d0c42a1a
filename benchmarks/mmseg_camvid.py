"""The FCN CamVid recipe in mmsegmentation 1.2.2's own trainer, beside contextseg's, seed by seed.

``configs/fcn/fcn_r18_camvid.yaml`` expressed with mmsegmentation's components, as exactly as they
allow: ResNetV1d-18 from random init (``--check-backbone`` proves it is timm's ``resnet18d``: copied
weights give the same features), output stride 16 (layer4 dilation 2, contracted), FCNHead 512 -> 128
(two convs, concat input, dropout 0.1) and the auxiliary FCNHead on C4 256 -> 64 (weight 0.4),
RandomResize of base (240, 180) by U(0.75, 1.5) keeping the ratio, RandomCrop 176 x 240 with
cat_max_ratio 0.75, flip 0.5, no photometric distortion, ImageNet mean/std; AdamW (lr 0.002, betas
0.9/0.999, weight decay 0.01, none on norm layers and biases), linear warm-up from 0.1 over 30
iterations times poly 0.9 down to 1e-4 of the LR, batch 8, 640 iterations; the square-root
median-frequency class weights of the training masks (computed here from the PNGs, independently of
contextseg); evaluation of the whole frame resized to 240 x 180 with the logits resized back and the
metric at the labels' 480 x 360. CamVid's void (11) is mapped to 255 and ignored.

What cannot be made identical (docs/benchmarks.md, "Trainer vs mmsegmentation", lists the expected
effect of each): random streams (initial weights, sampling order, augmentations) differ per library,
so seeds pair up only by number; mmcv resizes with cv2 bilinear without antialiasing where
contextseg antialiases (train and test); mmseg's cross entropy divides the weighted sum by the number
weights are applied through a subclass of mmseg's cross entropy that divides by the sum of the valid
pixels' class weights, as mmseg means to and as PyTorch and contextseg do (1.2.2's own fails on the
first ignored pixel when class weights are set); mmseg decodes every PNG at every iteration, contextseg caches decoded frames (``data.cache``).

Each run is its own process in ``OUT/<library>/seed<S>/`` and writes ``result.json`` (val mIoU, mAcc,
aAcc, per-class IoU, median and mean seconds per iteration of the whole loop with data loading,
training seconds, peak resident memory of the process). A finished run is skipped::

    # in a venv with: pip install torch==2.14.1 torchvision==0.29.1 mmengine==0.10.7 mmcv-lite==2.1.0 \
    #     mmsegmentation==1.2.2 ftfy regex timm
    python benchmarks/mmseg_camvid.py --library mmseg --seeds 0 1 2
    python benchmarks/mmseg_camvid.py --check-backbone          # ResNetV1d-18 == timm resnet18d
    # in contextseg's venv:
    python benchmarks/mmseg_camvid.py --library contextseg --seeds 0 1 2
    python benchmarks/mmseg_camvid.py --table                   # either venv: the side-by-side table
    python benchmarks/mmseg_camvid.py --timing 40 --mmseg-python MMSEG_VENV/bin/python \\
        --contextseg-python .venv/bin/python                   # s/it: contextseg's default and fp32,
                                                               # mmseg's default and bf16 AMP, in turn

Never a dependency of the package or CI.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist")
PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
           [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
VOID = 11
RECIPE = REPO / "configs" / "fcn" / "fcn_r18_camvid.yaml"
# the recipe's numbers, restated here so the mmseg side needs no contextseg import; --table checks
# them against the YAML when contextseg is importable
BASE_SCALE = (240, 180)  # (long, short)
CROP = (176, 240)  # (h, w)
RATIO_RANGE = (0.75, 1.5)
MAX_ITERS, BATCH, LR, WEIGHT_DECAY, WARMUP, MIN_RATIO = 640, 8, 0.002, 0.01, 30, 1e-4


def sqrt_median_frequency_weights(root: Path) -> list[float]:
    """``w_c = sqrt(median_f / f_c)``, ``f_c`` = pixels of class c / pixels of the training frames in
    which c occurs (void excluded from the counts), rounded as contextseg rounds them (4 digits)."""
    from PIL import Image

    counts = np.zeros(len(CLASSES), np.float64)
    present = np.zeros(len(CLASSES), np.float64)
    for path in sorted((root / "trainannot").glob("*.png")):
        mask = np.asarray(Image.open(path))
        c = np.bincount(mask[mask < len(CLASSES)].ravel(), minlength=len(CLASSES))[: len(CLASSES)].astype(np.float64)
        counts += c
        present += (c > 0) * mask.size
    freq = counts / present
    return [round(float(w), 4) for w in np.sqrt(np.median(freq) / freq)]


# ---------------------------------------------------------------------------------------------
# mmsegmentation side (runs in the mmseg venv)


def mmseg_config(root: Path, work_dir: Path, seed: int, max_iters: int = MAX_ITERS, amp: str | None = None) -> dict:
    norm = dict(type="BN", requires_grad=True)
    weights = sqrt_median_frequency_weights(root)

    def loss(weight: float) -> dict:
        return dict(type="ClassWeightedCrossEntropyLoss", use_sigmoid=False, loss_weight=weight, class_weight=weights, avg_non_ignore=True)

    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", reduce_zero_label=False),
        dict(type="CamVidVoidToIgnore"),
        dict(type="RandomResize", scale=BASE_SCALE, ratio_range=RATIO_RANGE, keep_ratio=True),
        dict(type="RandomCrop", crop_size=CROP, cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackSegInputs"),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=BASE_SCALE, keep_ratio=True),
        dict(type="LoadAnnotations", reduce_zero_label=False),  # after Resize: labels stay 480 x 360
        dict(type="CamVidVoidToIgnore"),
        dict(type="PackSegInputs"),
    ]

    def dataset(split: str, pipeline: list) -> dict:
        return dict(type="BaseSegDataset", data_root=str(root), data_prefix=dict(img_path=split, seg_map_path=f"{split}annot"),
                    img_suffix=".png", seg_map_suffix=".png", metainfo=dict(classes=CLASSES, palette=PALETTE),
                    reduce_zero_label=False, pipeline=pipeline)

    return dict(
        default_scope="mmseg",
        work_dir=str(work_dir),
        randomness=dict(seed=seed, deterministic=False),
        model=dict(
            type="EncoderDecoder",
            data_preprocessor=dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                   bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=CROP),
            pretrained=None,
            backbone=dict(type="ResNetV1d", depth=18, num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 1, 2),
                          strides=(1, 2, 2, 1), norm_cfg=norm, norm_eval=False, style="pytorch", contract_dilation=True),
            decode_head=dict(type="FCNHead", in_channels=512, in_index=3, channels=128, num_convs=2, concat_input=True,
                             dropout_ratio=0.1, num_classes=len(CLASSES), norm_cfg=norm, align_corners=False, loss_decode=loss(1.0)),
            auxiliary_head=dict(type="FCNHead", in_channels=256, in_index=2, channels=64, num_convs=1, concat_input=False,
                                dropout_ratio=0.1, num_classes=len(CLASSES), norm_cfg=norm, align_corners=False, loss_decode=loss(0.4)),
            train_cfg=dict(),
            test_cfg=dict(mode="whole"),
        ),
        train_dataloader=dict(batch_size=BATCH, num_workers=0, persistent_workers=False,
                              sampler=dict(type="InfiniteSampler", shuffle=True), dataset=dataset("train", train_pipeline)),
        val_dataloader=dict(batch_size=1, num_workers=0, persistent_workers=False,
                            sampler=dict(type="DefaultSampler", shuffle=False), dataset=dataset("val", test_pipeline)),
        val_evaluator=dict(type="IoUMetricPerClass", iou_metrics=["mIoU"]),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters),
        val_cfg=dict(type="ValLoop"),
        optim_wrapper=dict(**(dict(type="AmpOptimWrapper", dtype=amp) if amp else dict(type="OptimWrapper")), optimizer=dict(type="AdamW", lr=LR, betas=(0.9, 0.999), weight_decay=WEIGHT_DECAY),
                           paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0)),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=WARMUP),
            dict(type="PolyLR", eta_min=LR * MIN_RATIO, power=0.9, begin=0, end=max_iters, by_epoch=False),
        ],
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=20, log_metric_by_epoch=False),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=max_iters),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=[dict(type="WholeLoopTimer")],
        env_cfg=dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0), dist_cfg=dict(backend="gloo")),
        log_processor=dict(by_epoch=False),
        log_level="INFO",
        load_from=None,
        resume=False,
    )


def register_mmseg_extras() -> dict:
    """The three small pieces the recipe needs that mmseg lacks: void -> 255, per-class IoU in the
    returned metrics, and a wall clock over the whole training loop (data loading included)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import mmcv_ops_standin  # noqa: F401  (before mmseg: mmcv-lite has no compiled ops)
    from mmcv.transforms import BaseTransform
    from mmengine.hooks import Hook
    from mmseg.evaluation import IoUMetric
    from mmseg.models.losses import CrossEntropyLoss
    from mmseg.registry import HOOKS, METRICS, MODELS, TRANSFORMS

    timing: dict = {"iter_seconds": [], "train_seconds": 0.0}

    @TRANSFORMS.register_module(force=True)
    class CamVidVoidToIgnore(BaseTransform):
        def transform(self, results: dict) -> dict:
            seg = results["gt_seg_map"]
            results["gt_seg_map"] = np.where(seg == VOID, 255, seg).astype(seg.dtype)
            return results

    @MODELS.register_module(force=True)
    class ClassWeightedCrossEntropyLoss(CrossEntropyLoss):
        """mmseg's CrossEntropyLoss with the average factor it means to use: with ``class_weight``,
        1.2.2 indexes the weights by whole label maps (``class_weight[cls] for cls in label``
        iterates over the batch) and fails on the first ignored pixel; the intended factor is the
        sum of the valid pixels' class weights (PyTorch's and contextseg's weighted mean)."""

        def forward(self, cls_score, label, weight=None, avg_factor=None, reduction_override=None, ignore_index=-100, **kwargs):
            if avg_factor is None and self.class_weight is not None:
                class_weight = cls_score.new_tensor(self.class_weight)
                valid = label != ignore_index
                avg_factor = class_weight[label[valid]].sum()
            return super().forward(cls_score, label, weight, avg_factor, reduction_override, ignore_index=ignore_index, **kwargs)

    @METRICS.register_module(force=True)
    class IoUMetricPerClass(IoUMetric):
        def compute_metrics(self, results: list) -> dict:
            columns = tuple(zip(*results))
            intersect, union = sum(columns[0]).double(), sum(columns[1]).double()
            metrics = super().compute_metrics(results)
            timing["per_class_iou"] = [float(v) for v in (intersect / union).tolist()]
            timing["val_metrics"] = {k: float(v) for k, v in metrics.items()}
            return metrics

    @HOOKS.register_module(force=True)
    class WholeLoopTimer(Hook):
        priority = "VERY_HIGH"

        def before_train(self, runner) -> None:
            self._last = time.perf_counter()
            self._start = self._last

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            now = time.perf_counter()
            timing["iter_seconds"].append(now - self._last)
            self._last = now

        def before_val(self, runner) -> None:
            timing["train_seconds"] = time.perf_counter() - self._start

        def after_val(self, runner) -> None:
            self._last = time.perf_counter()

    return timing


def run_mmseg(root: Path, work: Path, seed: int, max_iters: int, amp: str | None = None) -> dict:
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    torch.set_num_threads(max(1, torch.get_num_threads()))
    timing = register_mmseg_extras()
    cfg = Config(mmseg_config(root, work, seed, max_iters, amp))
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    total = time.perf_counter() - start
    metrics = timing["val_metrics"]
    seconds = timing["iter_seconds"]
    return {
        "library": "mmseg",
        "seed": seed,
        "iterations": len(seconds),
        "mIoU": metrics["mIoU"] / 100,
        "mAcc": metrics["mAcc"] / 100,
        "aAcc": metrics["aAcc"] / 100,
        "IoU": timing["per_class_iou"],
        "sec_per_iter_median": statistics.median(seconds),
        "sec_per_iter_mean": statistics.fmean(seconds),
        "iter_seconds": seconds,
        "train_seconds": timing["train_seconds"],
        "total_seconds": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "class_weight": sqrt_median_frequency_weights(root),
        "versions": {"torch": torch.__version__, "mmseg": __import__("mmseg").__version__, "mmengine": __import__("mmengine").__version__},
    }


def check_backbone() -> None:
    """mmseg ResNetV1d-18 (OS 16, contracted dilation) vs timm resnet18d (features_only, OS 16):
    copy timm's weights into mmseg's in order (names differ only in the stem), compare C2..C5."""
    register_mmseg_extras()
    import timm
    import torch
    from mmseg.models.backbones import ResNetV1d

    torch.manual_seed(0)
    ours = timm.create_model("resnet18d", features_only=True, out_indices=(-4, -3, -2, -1), output_stride=16).eval()
    theirs = ResNetV1d(depth=18, out_indices=(0, 1, 2, 3), dilations=(1, 1, 1, 2), strides=(1, 2, 2, 1), contract_dilation=True)
    theirs.eval()  # mmseg's ResNet.train() returns None: no chaining
    src = [(k, v) for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(src) == len(dst), (len(src), len(dst))
    mapped = {}
    for (ks, vs), (kd, vd) in zip(src, dst):
        assert vs.shape == vd.shape, (ks, kd, vs.shape, vd.shape)
        mapped[kd] = vs.clone()
    # random BN statistics so that every normalisation matters
    for k in mapped:
        if k.endswith("running_var"):
            mapped[k] = torch.rand_like(mapped[k]) + 0.5
        elif k.endswith("running_mean"):
            mapped[k] = torch.randn_like(mapped[k]) * 0.1
    theirs.load_state_dict(mapped, strict=False)
    ours.load_state_dict({ks: mapped[kd] for (ks, _), (kd, _) in zip(src, dst)}, strict=False)
    x = torch.randn(2, 3, 176, 240)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    errors = []
    for level, (fa, fb) in enumerate(zip(a, b), start=2):
        errors.append((fa - fb).abs().max().item() / fa.abs().max().item())
        print(f"C{level}: timm {tuple(fa.shape)} mmseg {tuple(fb.shape)} max relative difference {errors[-1]:.2e}")
    # the one difference (printed, not hidden): in a dilated stage timm's avg-down shortcut keeps a
    # 2x2 average pool of stride 1 ('same' padding), mmseg's pool is the identity (kernel = stride = 1)
    print(f"layer4 shortcut pool: timm {ours.layer4[0].downsample[0]}, mmseg {theirs.layer4[0].downsample[0]}")
    theirs.layer4[0].downsample[0] = ours.layer4[0].downsample[0]
    with torch.no_grad():
        b = theirs(x)
    err = (a[-1] - b[-1]).abs().max().item() / a[-1].abs().max().item()
    print(f"C5 with timm's shortcut pool in mmseg's network: max relative difference {err:.2e}")
    print(f"{len(src)} tensors copied in order; names that differ: "
          f"{sum(ks != kd for (ks, _), (kd, _) in zip(src, dst))} (the deep stem: timm conv1.*/bn1 = mmseg stem.*)")


# ---------------------------------------------------------------------------------------------
# contextseg side (runs in contextseg's venv)


def run_contextseg(root: Path, work: Path, seed: int, max_iters: int, python: str = sys.executable, log_interval: int | None = None,
                   overrides: tuple[str, ...] = ()) -> dict:
    """``contextseg train`` on the recipe in a child process; the whole-loop seconds per iteration
    come from its log (``sec_per_iter`` of each log interval covers data loading too)."""
    command = [python, "-m", "contextseg", "train", str(RECIPE), f"train.work_dir={work}", f"train.seed={seed}",
               f"data.root={root}", f"train.max_iters={max_iters}", f"train.eval_interval={max_iters}", *overrides]
    if log_interval is not None:
        command.append(f"train.log_interval={log_interval}")
    start = time.perf_counter()
    with open(work / "train.log", "a") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    total = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"contextseg seed {seed} failed with exit code {code}; see {work / 'train.log'}")
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    if python != sys.executable:  # timing only (another venv): the log has what is needed
        return {"iter_seconds": [r["sec_per_iter"] for r in records if r.get("event") == "train"]}
    import torch

    ckpt = torch.load(work / "last.pt", map_location="cpu", weights_only=True)
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    intervals = [r for r in records if r.get("event") == "train"]
    per_iter = [r["sec_per_iter"] for r in intervals]
    train_seconds = sum(r["sec_per_iter"] * (b["iter"] - a["iter"]) for a, b, r in zip([{"iter": 0}] + intervals, intervals, intervals))
    metrics = ckpt["metrics"]
    return {
        "library": "contextseg",
        "seed": seed,
        "iterations": ckpt["iteration"],
        "mIoU": metrics["mIoU"],
        "mAcc": metrics["mAcc"],
        "aAcc": metrics["aAcc"],
        "IoU": metrics["IoU"],
        "sec_per_iter_median": statistics.median(per_iter),
        "sec_per_iter_mean": train_seconds / ckpt["iteration"],
        "iter_seconds": per_iter,  # per log interval (per iteration with log_interval 1)
        "train_seconds": train_seconds,
        "total_seconds": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "versions": {"torch": torch.__version__, "contextseg": __import__("contextseg").__version__},
    }


# ---------------------------------------------------------------------------------------------


# what --timing runs, in this order each round: (library, overrides or mmseg's AMP dtype)
TIMING_VARIANTS = {
    "contextseg default": ("contextseg", ()),  # train.precision / channels_last: auto
    "contextseg fp32": ("contextseg", ("train.precision=fp32", "train.channels_last=false")),  # the pre-0.2 default
    "mmseg default": ("mmseg", None),  # fp32, OptimWrapper
    "mmseg bf16 AMP": ("mmseg", "bfloat16"),  # mmengine's AmpOptimWrapper(dtype=bfloat16)
}


def timing(root: Path, iters: int, rounds: int, mmseg_python: str, contextseg_python: str, variants: list[str] | None = None) -> str:
    """Seconds per iteration of the whole training loop (data loading included), every variant of
    :data:`TIMING_VARIANTS` in turn each round (so that a noisy machine hurts all alike): each run is
    a fresh ``iters``-iteration run of the recipe; its first 5 iterations (warm-up) are dropped, then
    the median; the table gives each round, the median over rounds and the ratio to mmseg's
    default. A variant that cannot run (mmengine's AMP wrapper asserts a GPU) is reported with the
    line it failed with."""
    import tempfile

    variants = variants or list(TIMING_VARIANTS)
    rows, medians, failures = [], {v: [] for v in variants}, {}
    for round_ in range(rounds):
        for variant in variants:
            if variant in failures:
                continue
            library, option = TIMING_VARIANTS[variant]
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp)
                work = out / library / "seed0"
                work.mkdir(parents=True)
                if library == "mmseg":
                    command = [mmseg_python, __file__, "--worker", "0", "--root", str(root), "--out", str(out), "--max-iters", str(iters)]
                    command += ["--amp", option] if option else []
                    with open(work / "train.log", "a") as log:
                        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
                    if code != 0:
                        lines = [line for line in (work / "train.log").read_text().splitlines() if line.strip()]
                        failures[variant] = lines[-1] if lines else f"exit code {code}"
                        print(f"| {round_} | {variant} | failed: {failures[variant]} |", flush=True)
                        continue
                    seconds = json.loads((work / "result.json").read_text())["iter_seconds"]
                else:
                    seconds = run_contextseg(root, work, 0, iters, python=contextseg_python, log_interval=1, overrides=option)["iter_seconds"]
            median = statistics.median(seconds[5:])
            medians[variant].append(median)
            rows.append(f"| {round_} | {variant} | {median:.3f} |")
            print(rows[-1], flush=True)
    reference = statistics.median(medians["mmseg default"]) if medians.get("mmseg default") else None
    summary = []
    for variant in variants:
        if variant in failures:
            summary.append(f"| all | {variant} | does not run: {failures[variant]} |")
        elif medians[variant]:
            value = statistics.median(medians[variant])
            ratio = f", {value / reference:.3f}x mmseg's default" if reference else ""
            summary.append(f"| all | {variant} | {value:.3f}{ratio} |")
    return "\n".join(["| round | variant | s/it (median, whole loop) |", "| --- | --- | --- |", *rows, *summary])


def _mean_std(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def table(out: Path) -> str:
    rows = ["| library | seed | mIoU | mAcc | aAcc | pole | sign | pedestrian | bicyclist | s/it (median) | s/it (mean) | train min | peak RSS (MiB) |",
            "|" + " --- |" * 13]
    summary = []
    for library in ("contextseg", "mmseg"):
        results = [json.loads(p.read_text()) for p in sorted((out / library).glob("seed*/result.json"))]
        for r in results:
            rows.append(f"| {library} | {r['seed']} | {100 * r['mIoU']:.2f} | {100 * r['mAcc']:.2f} | {100 * r['aAcc']:.2f} | "
                        f"{100 * r['IoU'][2]:.1f} | {100 * r['IoU'][6]:.1f} | {100 * r['IoU'][9]:.1f} | {100 * r['IoU'][10]:.1f} | "
                        f"{r['sec_per_iter_median']:.3f} | {r['sec_per_iter_mean']:.3f} | {r['train_seconds'] / 60:.1f} | {r['peak_rss_mib']:.0f} |")
        if results:
            summary.append(f"| {library} | {len(results)} seeds | {_mean_std([r['mIoU'] for r in results])} | "
                           f"{_mean_std([r['mAcc'] for r in results])} | {_mean_std([r['aAcc'] for r in results])} | | | | | "
                           f"{statistics.median(r['sec_per_iter_median'] for r in results):.3f} | | | "
                           f"{max(r['peak_rss_mib'] for r in results):.0f} |")
    return "\n".join(rows + summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", choices=["mmseg", "contextseg"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "camvid"))
    parser.add_argument("--out", default=str(REPO / "runs" / "mmseg_camvid"))
    parser.add_argument("--max-iters", type=int, default=MAX_ITERS, help="shorter runs for a smoke test (default: the recipe's 640)")
    parser.add_argument("--check-backbone", action="store_true", help="ResNetV1d-18 vs timm resnet18d with copied weights")
    parser.add_argument("--table", action="store_true", help="print the side-by-side table of the finished runs")
    parser.add_argument("--timing", type=int, metavar="ITERS", help="time both libraries on ITERS-iteration runs, alternating (needs --mmseg-python and --contextseg-python)")
    parser.add_argument("--rounds", type=int, default=3, help="--timing rounds (default 3)")
    parser.add_argument("--mmseg-python", default=sys.executable, help="the mmseg venv's python (--timing)")
    parser.add_argument("--contextseg-python", default=sys.executable, help="contextseg's venv's python (--timing)")
    parser.add_argument("--variants", nargs="+", choices=list(TIMING_VARIANTS), help="--timing: which setups (default: all)")
    parser.add_argument("--amp", choices=["bfloat16", "float16"], help="mmseg: train with mmengine's AmpOptimWrapper in this dtype")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out, root = Path(args.out), Path(args.root)
    if args.check_backbone:
        check_backbone()
        return
    if args.table:
        print(table(out))
        return
    if args.timing:
        print(timing(root, args.timing, args.rounds, args.mmseg_python, args.contextseg_python, args.variants))
        return
    if args.library is None and args.worker is None:
        parser.error("give --library mmseg|contextseg, --check-backbone or --table")
    if not (root / "train").is_dir() or not (root / "trainannot").is_dir():
        parser.error(f"--root {root}: expected CamVid's train/ and trainannot/ folders there")
    if args.worker is not None:  # one mmseg training in this process
        work = out / "mmseg" / f"seed{args.worker}"
        result = run_mmseg(root, work, args.worker, args.max_iters, args.amp)
        (work / "result.json").write_text(json.dumps(result, indent=1))
        return
    for seed in args.seeds:
        work = out / args.library / f"seed{seed}"
        if (work / "result.json").is_file():
            print(f"{args.library} seed {seed}: done", flush=True)
            continue
        work.mkdir(parents=True, exist_ok=True)
        print(f"[{time.strftime('%H:%M:%S')}] {args.library} seed {seed} ...", flush=True)
        if args.library == "mmseg":
            command = [sys.executable, __file__, "--worker", str(seed), "--root", str(root), "--out", str(out), "--max-iters", str(args.max_iters)]
            with open(work / "train.log", "a") as log:
                code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            if code != 0:
                raise SystemExit(f"mmseg seed {seed} failed with exit code {code}; see {work / 'train.log'}")
            result = json.loads((work / "result.json").read_text())
        else:
            result = run_contextseg(root, work, seed, args.max_iters)
            (work / "result.json").write_text(json.dumps(result, indent=1))
        print(f"[{time.strftime('%H:%M:%S')}] {args.library} seed {seed}: mIoU {100 * result['mIoU']:.2f}, "
              f"{result['sec_per_iter_median']:.3f} s/it, peak {result['peak_rss_mib']:.0f} MiB", flush=True)
    print(table(out))


if __name__ == "__main__":
    main()
