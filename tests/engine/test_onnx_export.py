"""The exported ONNX file as a user runs it: the documentation's onnxruntime example (docs/export.md), executed as written."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import contextseg as cs

README = Path(__file__).resolve().parents[2] / "docs" / "export.md"  # the documented example


def readme_block(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, f"README has no python block after <!-- {marker} -->"
    return match.group(1)


@pytest.mark.slow  # two ONNX exports: the slow tier, beside the export of every model
@pytest.mark.parametrize("name", ["deeplabv3plus", "hanet"])  # hanet: the embedded default's model
def test_the_readme_onnxruntime_example_gives_predicts_labels(name, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from contextseg.engine.onnx_export import export_onnx

    torch.manual_seed(0)
    model = cs.create_model(name, num_classes=5, backbone="resnet18d", output_stride=16, channels=16, c1_channels=8, pretrained_backbone=None).eval()
    for m in model.modules():  # BN statistics away from the defaults: the file must carry them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
    model.meta.update(classes=["sky", "road", "car", "tree", "sign"], palette=[[k * 40, 0, 0] for k in range(5)],
                      mean=[0.4, 0.45, 0.5], std=[0.25, 0.2, 0.3], base_size=[96, 64], crop_size=[64, 96])
    export_onnx(model, tmp_path / "model.onnx", (64, 96))
    photo = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)  # at the test scale
    Image.fromarray(photo).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(readme_block("test:onnx-example"), scope)
    assert np.array_equal(scope["labels"], model.predict(photo).numpy())
    assert set(scope["shares"]) <= set(model.meta["classes"]) and abs(sum(scope["shares"].values()) - 1) < 1e-6
    assert scope["meta"]["input"]["height"] is None  # both export with free height and width
