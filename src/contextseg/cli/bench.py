"""``contextseg bench``: parameters, FLOPs, latency and peak memory per model, one row each, under a
header that names the mode, device, batch, size and precision (the measuring is
`contextseg.engine.measure`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.io import check_output, write_atomic
from ..engine.measure import bench_in_subprocess, bench_one


def run_bench(args) -> int:
    from ..models import list_models

    names = list_models() if args.models == "all" else [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(list_models())}")
    if args.json_path:  # before the (long) measurements
        check_output(args.json_path, "--json", args.overwrite)
    use_cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    rows = []
    for name in names:
        kwargs = dict(name=name, backbone=args.backbone, num_classes=args.num_classes, size=tuple(args.size), batch=args.batch_size, repeats=args.repeats, device=args.device,
                      precision=args.precision, train=args.train, compile=args.compile, channels_last=args.channels_last)
        rows.append(bench_one(**kwargs) if use_cuda else bench_in_subprocess(kwargs))
        r = rows[-1]
        if len(rows) == 1:
            print(f"{'train' if args.train else 'inference'} on {r['device']}, batch {r['batch']}, "
                  f"{r['size'][0]}x{r['size'][1]}, {r['precision']}{', compiled' if r['compile'] else ''}{', channels_last' if r['channels_last'] else ''}; "
                  "peak memory beyond the weights and inputs", flush=True)
            print(f"{'model':<14} {'params':>9} {'GFLOPs':>16} {'latency':>12} {'peak memory':>13}", flush=True)
        print(f"{r['model']:<14} {r['params_M']:8.2f}M {r['GFLOPs']:9.1f} GFLOPs {r['latency_ms']:9.1f} ms {r['peak_mem_MiB']:9.0f} MiB", flush=True)
    if args.json_path:
        check_output(args.json_path, "--json", args.overwrite)
        write_atomic(Path(args.json_path), json.dumps({"written_by": "contextseg bench", "rows": rows}, indent=2))
    return 0
