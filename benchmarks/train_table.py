"""Train configs over several seeds, one run at a time, and tabulate mIoU (mean +- std), the classes
asked for, and the wall time: the source of the README's synthetic numbers and of the default's.

Each run is ``contextseg train CONFIG train.seed=S train.work_dir=OUT/<name>/seed<S> [OVERRIDES]`` in
its own process (``default`` is the embedded default, ``contextseg train`` without CONFIG). A killed
table continues where it stopped: finished runs (a ``result.json``) are skipped, unfinished ones
resume from ``last.pt``. The final results are the checkpoint's last evaluation (its ``metrics``);
"wall s" is the run's own wall clock, start-up and evaluation included.

    python benchmarks/train_table.py --configs default --seeds 0 1 2 --out runs/table_default --classes pole sign person
    python benchmarks/train_table.py --configs configs/*/*_r18_synthetic.yaml --seeds 0 1 --out runs/table_synthetic
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def run_one(config: str, seed: int, out: Path, overrides: list[str]) -> dict:
    result = out / "result.json"
    if result.is_file():
        return json.loads(result.read_text())
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "contextseg", "train", *([] if config == "default" else [config]),
               f"train.seed={seed}", f"train.work_dir={out}", "train.resume=auto", *overrides]
    start = time.time()
    with open(out / "train.log", "a") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}; see {out / 'train.log'}")
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    metrics = ckpt["metrics"]
    row = {"config": config, "seed": seed, "mIoU": 100 * metrics["mIoU"], "wall_s": time.time() - start,
           "class_iou": {c: 100 * v for c, v in zip(ckpt["classes"], metrics["IoU"])}, "command": " ".join(command[1:])}
    result.write_text(json.dumps(row, indent=1))
    return row


def name_of(config: str) -> str:
    return "default" if config == "default" else Path(config).stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", required=True, help="YAML configs, or 'default'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", nargs="*", default=[], help="class IoUs to show beside mIoU")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()

    print(f"| config | mIoU (mean +- std over seeds {', '.join(map(str, args.seeds))}) | per seed |"
          + "".join(f" {c} |" for c in args.classes) + " wall s (mean) |")
    print("| --- | --- | --- |" + " --- |" * len(args.classes) + " --- |")
    for config in args.configs:
        rows = [run_one(config, seed, Path(args.out) / name_of(config) / f"seed{seed}", args.overrides) for seed in args.seeds]
        mious = [r["mIoU"] for r in rows]
        spread = f" +- {statistics.stdev(mious):.1f}" if len(mious) > 1 else ""
        classes = "".join(f" {statistics.mean(r['class_iou'][c] for r in rows):.1f} |" for c in args.classes)
        print(f"| {name_of(config)} | {statistics.mean(mious):.1f}{spread} | {', '.join(f'{m:.2f}' for m in mious)} |{classes}"
              f" {statistics.mean(r['wall_s'] for r in rows):.0f} |", flush=True)


if __name__ == "__main__":
    main()
