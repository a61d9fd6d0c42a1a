"""The CamVid study: train any subset of the CamVid recipes (one per registered model) and tabulate them.

Each model trains from ``configs/<model>/<model>_r18_camvid.yaml`` in its own subprocess, in
``OUT/<model>/seed<S>``. A killed study continues where it stopped: a finished run (its
``result.json`` exists) is skipped, an unfinished one resumes from its ``last.pt``
(``train.resume: auto``). When every requested run has finished, the table is written to
``OUT/results.md`` and printed: CamVid val mIoU / mAcc / aAcc and per-class IoU of the final
weights, parameters, GFLOPs of one 360x480 frame, and training minutes (iterations and
evaluations, start-up excluded). Several seeds give the mean and the spread. "gates" lists each
run's zero-initialised context gates at the end, as `gate_ablation.py` defines them (CCNet's and
DANet's one-element ``gamma``, the mean absolute scale of Non-local's batch norm after W_z).

    python benchmarks/camvid_study.py --models fcn cpnet --seeds 0 --root data/camvid
    python benchmarks/camvid_study.py --table-only     # tabulate what has finished
    python benchmarks/camvid_study.py --recipe 2h --seeds 0 1 2 --root data/camvid   # the two-hour set

``--recipe 2h`` trains ``configs/<model>/<model>_r18_camvid_2h.yaml`` instead, for every model that
has one (unattended: a killed run resumes from its ``last.pt`` when the same command runs again).
Every finished run also records its machine (CPU model, cores, AVX-512 / AVX512-BF16 / AMX), the
precision it trained in, torch's version, the date and its command, and ``OUT/zoo_rows.md`` gets one
row per recipe in the model zoo's CamVid table format (config, val mIoU over the seeds, held-out
score, train time, machine and precision, date, command).

"train min" is the logged time of iterations and evaluations; "at median s/it" prices every
iteration at the run's median seconds per iteration, so a log interval slowed by other work on
the machine does not count (both are shown; the recipes' 20-minute budget is judged on the second
only where the first was disturbed, and the results say so).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextseg  # noqa: E402
from gate_ablation import gate_values  # noqa: E402  (one definition of a gated module for both scripts)
from contextseg.engine.checkpoints.saved_model import load_checkpoint_model  # noqa: E402

# every registered model that has a CamVid recipe: the baselines first, then the context methods
MODELS = sorted((n for n in contextseg.list_models() if (REPO / "configs" / n / f"{n}_r18_camvid.yaml").is_file()),
                key=lambda n: (contextseg.models.get_model_class(n).has_context_maps(), n))
CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"]
FRAME = (360, 480)


RECIPES = {"640": "{m}_r18_camvid.yaml", "2h": "{m}_r18_camvid_2h.yaml"}


def recipe(model: str, kind: str = "640") -> Path:
    return REPO / "configs" / model / RECIPES[kind].format(m=model)


def machine() -> str:
    """The CPU as the tables name it: model, cores this process may use, AVX-512 / AVX512-BF16 / AMX."""
    import os
    import platform

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine(), "x86_64"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    features = [label for flag, label in (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16")) if flag in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {cores} cores" + (f", {', '.join(features)}" if features else "")


def training_minutes(log_path: Path, clean: bool = False) -> float:
    """Seconds of training iterations plus evaluations in ``log.jsonl``, in minutes. Iterations
    logged twice (a run killed after a log line, resumed from an earlier checkpoint) count once.
    ``clean``: every iteration at the median logged seconds per iteration instead, which discounts
    log intervals slowed by other work on the machine (the table reports both)."""
    per_iter: dict[int, tuple[float, int]] = {}
    evals: dict[int, float] = {}
    last = 0
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "resume":
            last = record["iter"]
        elif record.get("event") == "train":
            per_iter[record["iter"]] = (record["sec_per_iter"], record["iter"] - last)
            last = record["iter"]
        elif record.get("event") == "val":
            evals[record["iter"]] = record.get("eval_seconds", 0.0)
    if clean and per_iter:
        median = statistics.median(sec for sec, _ in per_iter.values())
        return (median * sum(n for _, n in per_iter.values()) + sum(evals.values())) / 60
    return (sum(sec * n for sec, n in per_iter.values()) + sum(evals.values())) / 60


def model_cost(config: Path, root: str) -> tuple[float, float]:
    """(parameters in millions, GFLOPs of one 360x480 frame): whole-image for every model,
    sliding windows of the training crop for CPNet, whose prior is tied to the crop."""
    from contextseg.engine.builders import build_model
    from contextseg.engine.config import load_config
    from contextseg.models.inference import inference

    cfg = load_config(config, [f"data.root={root}"])
    model = build_model(cfg, len(CLASSES)).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    x = torch.zeros(1, 3, *FRAME)
    mode = "slide" if model.tied_input_size() is not None else "whole"
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        inference(model, x, mode=mode, crop_size=cfg.data.crop_size)
    return params, counter.get_total_flops() / 1e9


def precision_text(chosen) -> str:
    """What a checkpoint says it trained in: ``{"precision": "bf16", "channels_last": True, ...}`` -> "bf16 + NHWC"."""
    if isinstance(chosen, dict):
        return f"{chosen.get('precision', '?')}{' + NHWC' if chosen.get('channels_last') else ''}"
    return str(chosen or "")


def command_text(model: str, kind: str, root: str, seed: int, overrides: list[str]) -> str:
    """The training command of one run as a shell line that pastes into bash or zsh: an override
    such as ``data.base_size=[480,360]`` is quoted (zsh refuses an unmatched ``[...]`` glob)."""
    import shlex

    return shlex.join(["contextseg", "train", recipe(model, kind).relative_to(REPO).as_posix(), f"data.root={root}", f"train.seed={seed}", *overrides])


def run_one(model: str, seed: int, out: Path, root: str, overrides: list[str], kind: str = "640") -> dict:
    work = out / model / f"seed{seed}"
    result_path = work / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "contextseg", "train", str(recipe(model, kind)), f"train.work_dir={work}", f"train.seed={seed}", f"data.root={root}", *overrides]
    print(f"[{time.strftime('%H:%M:%S')}] {model} seed {seed}: {' '.join(command[2:])}", flush=True)
    with open(work / "train.log", "a") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if code != 0:
        raise SystemExit(f"{model} seed {seed} failed with exit code {code}; see {work / 'train.log'} (rerun the study to resume it)")
    trained, _, ckpt = load_checkpoint_model(work / "last.pt")  # the model for its gates, the checkpoint for its scores
    metrics = ckpt["metrics"]
    params, gflops = model_cost(recipe(model, kind), root)
    result = {
        "model": model,
        "seed": seed,
        "config": recipe(model, kind).relative_to(REPO).as_posix(),
        "machine": machine(),
        "precision": precision_text(ckpt.get("precision")),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "command": command_text(model, kind, root, seed, overrides),
        "mIoU": metrics["mIoU"],
        "mAcc": metrics["mAcc"],
        "aAcc": metrics["aAcc"],
        "IoU": metrics["IoU"],
        "params_M": params,
        "gflops_360x480": gflops,
        "train_minutes": training_minutes(work / "log.jsonl"),
        "train_minutes_median": training_minutes(work / "log.jsonl", clean=True),
        "iterations": ckpt["iteration"],
        "gates": gate_values(trained),
    }
    result_path.write_text(json.dumps(result, indent=1))
    print(f"[{time.strftime('%H:%M:%S')}] {model} seed {seed}: mIoU {100 * result['mIoU']:.2f} in {result['train_minutes']:.1f} min", flush=True)
    return result


def _pct(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "n/a"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def table(results: list[dict]) -> str:
    by_model: dict[str, list[dict]] = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)
    head = ["model", "seeds", "mIoU", "mAcc", "aAcc", *CLASSES, "params (M)", "GFLOPs 360x480", "train min", "at median s/it", "gates (per seed)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for model in [m for m in MODELS if m in by_model]:
        runs = by_model[model]
        row = [f"`{model}`", str(len(runs)), _pct([r["mIoU"] for r in runs]), _pct([r["mAcc"] for r in runs]), _pct([r["aAcc"] for r in runs])]
        row += [_pct([r["IoU"][c] for r in runs]) for c in range(len(CLASSES))]
        row += [f"{runs[0]['params_M']:.2f}", f"{runs[0]['gflops_360x480']:.1f}", f"{statistics.fmean(r['train_minutes'] for r in runs):.1f}"]
        row += [f"{statistics.fmean(r.get('train_minutes_median', r['train_minutes']) for r in runs):.1f}"]
        row += ["; ".join(", ".join(f"{name} {value:+.3f}" for name, value in r["gates"].items()) for r in runs if r.get("gates")) or "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def zoo_rows(results: list[dict]) -> str:
    """One row per recipe in the model zoo's CamVid table format (runs recorded before the machine
    columns existed show what they lack as "not recorded")."""
    by_config: dict[str, list[dict]] = {}
    for r in results:
        by_config.setdefault(r.get("config", f"configs/{r['model']}/{r['model']}_r18_camvid.yaml"), []).append(r)
    lines = ["| config | val mIoU | held out | train time | machine, precision | date | command |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for config, runs in by_config.items():
        seeds = ", ".join(str(r["seed"]) for r in runs)
        values = ", ".join(f"{100 * r['mIoU']:.2f}" for r in runs)
        miou = _pct([r["mIoU"] for r in runs]) + f" (seed{'s' if len(runs) > 1 else ''} {seeds}: {values})"
        minutes = [r["train_minutes"] for r in runs]
        time_text = f"{min(minutes):.0f}-{max(minutes):.0f} min" if len(runs) > 1 else f"{minutes[0]:.0f} min"
        machines = sorted({f"{r.get('machine', 'not recorded')}, {r.get('precision') or 'precision not recorded'}" for r in runs})
        dates = sorted({r.get("date", "not recorded") for r in runs})
        command = runs[0].get("command", f"contextseg train {config} data.root=...").replace(f"train.seed={runs[0]['seed']}", "train.seed=S")
        lines.append(f"| `{config}` | {miou} | not scored | {time_text} | {'; '.join(machines)}, torch {runs[0].get('torch', 'not recorded')} | {', '.join(dates)} | `{command}` |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, help="default: every model that has the recipe")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="640", help="640: <model>_r18_camvid.yaml (default); 2h: <model>_r18_camvid_2h.yaml")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--root", default="data/camvid", help="CamVid root (train/, val/, trainannot/, valannot/)")
    parser.add_argument("--out", help="study folder (one work dir per run; default: runs/camvid_study, runs/camvid_study_2h for --recipe 2h)")
    parser.add_argument("--table-only", action="store_true", help="only tabulate the runs that have finished")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to every recipe")
    args = parser.parse_args()
    out = Path(args.out or REPO / "runs" / ("camvid_study" if args.recipe == "640" else f"camvid_study_{args.recipe}"))
    models = args.models or [m for m in MODELS if recipe(m, args.recipe).is_file()]
    missing = [m for m in models if not recipe(m, args.recipe).is_file()]
    if missing:
        parser.error(f"no {args.recipe} recipe for {', '.join(missing)} (configs/<model>/{RECIPES[args.recipe].format(m='<model>')})")
    results = []
    for model in models:
        for seed in args.seeds:
            done = out / model / f"seed{seed}" / "result.json"
            if args.table_only:
                if done.is_file():
                    result = json.loads(done.read_text())
                    log = done.parent / "log.jsonl"
                    if log.is_file():  # the timing columns from the log, as this version computes them
                        result["train_minutes"] = training_minutes(log)
                        result["train_minutes_median"] = training_minutes(log, clean=True)
                    results.append(result)
            else:
                results.append(run_one(model, seed, out, args.root, args.overrides, args.recipe))
    text = table(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    (out / "zoo_rows.md").write_text(zoo_rows(results) + "\n")
    print(text)
    print(f"\nrows for the model zoo's CamVid table: {out / 'zoo_rows.md'}")


if __name__ == "__main__":
    main()
