"""Peak memory of ``contextseg predict`` on a large photo with a 150-class model.

A 3000 x 2000 photo and a 150-class FCN (ResNet-18-D, output stride 8, random weights, ADE20K's test
scale 2048 x 512 so the network runs at 768 x 512) saved as a saved-model folder. Two ways of turning
the network's logits into the label map, each in a fresh process, peak resident memory of the
whole process (``ru_maxrss``: Python, torch, the model, the photo and everything predict allocates):

- ``banded`` (what ``model.predict`` and ``contextseg predict`` do): resize, softmax and argmax in
  bands of output rows (``contextseg.models.inference.predict_labels``);
- ``full``: ``inference(...).argmax(1)``, the (1, 150, 2000, 3000) float probabilities at the
  photo's size (3.6 GB for one tensor), as predict did before.

    python benchmarks/predict_memory.py [--size 2000 3000] [--classes 150]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
import contextseg as cs
from contextseg.data.base import read_image
from contextseg.data.transforms import EvalTransform
from contextseg.models.inference import inference
folder, photo, way, out = sys.argv[1:5]
torch.set_num_threads(2)
model = cs.load(folder)
start = time.perf_counter()
rgb = read_image(photo)
if way == "banded":
    labels = model.predict(rgb)
else:
    transform = EvalTransform(base_size=model.meta["base_size"], mean=model.meta["mean"], std=model.meta["std"])
    batch = transform(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), torch.zeros(rgb.shape[:2], dtype=torch.int64))["image"][None]
    with torch.no_grad():
        labels = inference(model, batch, out_size=rgb.shape[:2], **model.default_inference()).argmax(1)[0]
seconds = time.perf_counter() - start
np.save(out, labels.numpy().astype(np.uint8))
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=(2000, 3000), metavar=("H", "W"))
    parser.add_argument("--classes", type=int, default=150)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    import contextseg as cs

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = cs.create_model("fcn", backbone="resnet18d", num_classes=args.classes, output_stride=8, pretrained_backbone=None)
        model.meta.update(classes=[f"class{k}" for k in range(args.classes)], palette=[], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                          base_size=[2048, 512], crop_size=[512, 512], inference={"mode": "whole", "crop_size": None, "stride": None, "scales": [1.0], "flip": False})
        cs.save_pretrained(model, Path(tmp) / "model")
        photo = Path(tmp) / "photo.jpg"
        yy, xx = np.mgrid[0 : args.size[0], 0 : args.size[1]]
        Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)).save(photo, quality=90)
        rows = {}
        for way in ("banded", "full"):
            proc = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / "model"), str(photo), way, str(Path(tmp) / f"{way}.npy")], capture_output=True, text=True)
            if proc.returncode != 0:
                rows[way] = {"error": (proc.stderr.strip().splitlines() or ["killed"])[-1]}
            else:
                rows[way] = json.loads(proc.stdout.strip().splitlines()[-1])
                rows[way]["labels"] = np.load(Path(tmp) / f"{way}.npy")
    print(f"predict, {args.size[0]}x{args.size[1]} photo, FCN R18-D OS 8, {args.classes} classes, network at 768x512, CPU, torch {torch.__version__}")
    print(f"{'way':<8} {'peak MiB':>9} {'seconds':>8}")
    for way, row in rows.items():
        print(f"{way:<8} " + (f"{row['peak_mib']:>9.0f} {row['seconds']:>8.1f}" if "error" not in row else row["error"]))
    if all("error" not in r for r in rows.values()):
        differ = float((rows["banded"]["labels"] != rows["full"]["labels"]).mean())
        print(f"pixels whose label differs: {100 * differ:.4f}% (float32 rounding where classes tie; random weights make near-ties common)")
        print(f"banded / full: peak memory {rows['banded']['peak_mib'] / rows['full']['peak_mib']:.2f}x, time {rows['banded']['seconds'] / rows['full']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
