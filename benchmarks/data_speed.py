"""Render time of the synthetic street scenes and cost of the joint training transform.

    python benchmarks/data_speed.py [--camvid data/camvid]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from contextseg.data import build_dataset
from contextseg.data.transforms import TrainTransform


def per_item_ms(fn, count: int) -> float:
    fn(0)  # warm-up
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return 1000 * (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--camvid", default="data/camvid", help="CamVid root; the CamVid line is skipped when it is missing")
    args = parser.parse_args()
    for size in [(128, 256), (96, 192), (512, 1024)]:
        ds = build_dataset("synthetic", None, "train", size=size)
        print(f"synthetic {size[0]}x{size[1]} render: {per_item_ms(lambda i: ds[i], args.count):6.2f} ms/image")
    ds = build_dataset("synthetic", None, "train", size=(128, 256))
    ds.transforms = TrainTransform((128, 256), base_size=(256, 128))
    print(f"synthetic 128x256 render + train transform: {per_item_ms(lambda i: ds[i], args.count):6.2f} ms/image")
    if Path(args.camvid).is_dir():
        cam = build_dataset("camvid", args.camvid, "train")
        print(f"camvid load (PNG decode): {per_item_ms(lambda i: cam[i], 50):6.2f} ms/image")
        cam.transforms = TrainTransform((360, 480), base_size=(480, 360))
        print(f"camvid load + train transform (crop 360x480): {per_item_ms(lambda i: cam[i], 50):6.2f} ms/image")


if __name__ == "__main__":
    main()
