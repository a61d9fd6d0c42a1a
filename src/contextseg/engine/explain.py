"""What each context module looks at, as arrays (:func:`explain`) and as pictures (:func:`render`).

- **CPNet**: for chosen pixels, the row of the context prior map P (which pixels the network
  believes share the pixel's class; the intra-class context averages them) and 1 - P (the
  inter-class context), as heat maps over the image.
- **OCRNet**: each object region's spatial softmax (the weights that pool the region's
  representation) and, for chosen pixels, the pixel-region attention over the K regions.
- **HANet**: each block's attention along the image height (mean over channels, 10-90% band).
- **EncNet**: the class-presence probabilities the SE loss trains (sigmoid of the SE logits).
- **SPNet**: the strip pooling gates inside the backbone (mean over channels).
- The baselines have no context module, and say so.

The image is shown as the model sees it: resized to its test scale, and for CPNet to its training
crop (the prior map is tied to it). Pixels are ``(x, y)`` in the original image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.base import as_rgb_array
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform
from ..models import Segmentor
from ..modules import HeightAttention, ObjectContextBlock, SpatialGather, StripPooling

__all__ = ["explain", "render", "NothingToExplain", "EXPLAINED"]

EXPLAINED = {"cpnet", "ocrnet", "hanet", "encnet", "spnet"}


class NothingToExplain(ValueError):
    """The model has no context module (a baseline)."""


@torch.no_grad()
def explain(model: Segmentor, image: Any, pixels: Sequence[tuple[int, int]] | None = None, max_pixels: int = 4, out_dir: str | Path | None = None, stem: str = "explain") -> dict[str, Any]:
    """What ``model``'s context modules compute on ``image`` (a path, PIL image or HxWx3 uint8 array);
    with ``out_dir`` also drawn there as PNGs (:func:`render`, listed under ``"files"``).

    Returns ``{"model", "image" (h, w, 3) uint8 as the model saw it, "labels" (h, w) its prediction,
    "pixels" [(x, y)] in that view, "classes", plus the model's maps}``:
    ``prior`` (P, h, w) rows of P for CPNet; ``regions`` (K, h, w) and ``pixel_region_attention``
    (P, K) for OCRNet; ``height_attention`` list of (C_h, rows) per block for HANet;
    ``class_presence`` (K,) for EncNet; ``strip_gates`` {name: (h, w)} for SPNet.
    """
    name = model.meta.get("model", {}).get("name") or type(model).__name__.lower()
    if name not in EXPLAINED:
        raise NothingToExplain(f"{name} is a baseline: it has no context module to explain (explain works for {', '.join(sorted(EXPLAINED))})")
    model.eval()
    rgb = as_rgb_array(image)
    transform = EvalTransform(base_size=model.meta.get("base_size"), mean=model.meta.get("mean", IMAGENET_MEAN), std=model.meta.get("std", IMAGENET_STD))
    view = transform(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), torch.zeros(rgb.shape[:2], dtype=torch.int64))["image"][None]
    prior = getattr(model.decode_head, "prior_size", None)
    if prior is not None:  # CPNet sees its training crop
        view = F.interpolate(view, size=[p * model.backbone.output_stride for p in prior], mode="bilinear", align_corners=False)
    device = next(model.parameters()).device
    view = view.to(device)
    size = view.shape[-2:]
    sy, sx = size[0] / rgb.shape[0], size[1] / rgb.shape[1]

    captured: dict[str, Any] = {}
    hooks = [model.decode_head.register_forward_hook(lambda m, i, o: captured.__setitem__("head", o))]
    for module_name, module in model.named_modules():
        if isinstance(module, (SpatialGather, ObjectContextBlock, HeightAttention, StripPooling)):
            hooks.append(module.register_forward_hook(lambda m, i, o, n=module_name: captured.setdefault("inputs", {}).__setitem__(n, i)))
    try:
        logits = model(view)
    finally:
        for hook in hooks:
            hook.remove()
    labels = logits.argmax(1)[0].cpu()
    chosen = [(int(x * sx), int(y * sy)) for x, y in pixels] if pixels else _default_pixels(labels, max_pixels)
    for x, y in chosen:
        if not (0 <= x < size[1] and 0 <= y < size[0]):
            raise ValueError(f"pixel ({x}, {y}) lies outside the {size[1]}x{size[0]} view of the image")
    shown = _denormalise(view[0], model.meta.get("mean", IMAGENET_MEAN), model.meta.get("std", IMAGENET_STD))
    out: dict[str, Any] = {"model": name, "image": shown, "labels": labels.numpy(), "pixels": chosen, "classes": model.meta.get("classes") or [str(k) for k in range(model.num_classes)]}
    inputs = captured.get("inputs", {})
    if name == "cpnet":
        h, w = prior
        index = [(y * h // size[0]) * w + (x * w // size[1]) for x, y in chosen]
        head = captured["head"]
        logits = head["prior"].logits(index)[0] if "prior" in head else head["prior_logits"][0, index]  # row i = pixel i's prior
        out["prior"] = torch.sigmoid(logits.float()).view(len(index), h, w).cpu().numpy()
    elif name == "ocrnet":
        gather = next(v for k, v in inputs.items() if k.endswith("gather"))
        block = next(v for k, v in inputs.items() if k.endswith("object_context"))
        block_module = model.decode_head.object_context
        feats, region_logits = gather
        weights = model.decode_head.gather.weights(feats, region_logits)[0]  # (K, N)
        fh, fw = feats.shape[-2:]
        out["regions"] = weights.view(-1, fh, fw).float().cpu().numpy()
        attention = block_module.attention(*block)[0]  # (N, K)
        ah, aw = block_module.pool(block[0]).shape[-2:]
        index = [(y * ah // size[0]) * aw + (x * aw // size[1]) for x, y in chosen]
        out["pixel_region_attention"] = attention[index].float().cpu().numpy()
    elif name == "hanet":
        blocks = [m for m in model.decode_head.hanet]
        names = [k for k in inputs if ".hanet." in k]
        out["height_attention"] = [blocks[i](*inputs[k])[0, :, :, 0].float().cpu().numpy() for i, k in enumerate(names)]
    elif name == "encnet":
        out["class_presence"] = torch.sigmoid(captured["head"]["se_logits"][0].float()).cpu().numpy()
    elif name == "spnet":
        spms = dict(model.named_modules())
        out["strip_gates"] = {k.replace("backbone.body.", "").replace(".aa.1", ""): spms[k].gate(v[0])[0].mean(0).float().cpu().numpy() for k, v in inputs.items() if isinstance(spms[k], StripPooling)}
    if out_dir is not None:
        out["files"] = render(out, out_dir, stem)
    return out


def _default_pixels(labels: torch.Tensor, count: int) -> list[tuple[int, int]]:
    """One pixel on each of the ``count`` largest predicted classes: the class pixel nearest to the
    median of that class's pixels."""
    classes, areas = labels.unique(return_counts=True)
    chosen = []
    for k in classes[areas.argsort(descending=True)][:count].tolist():
        ys, xs = torch.nonzero(labels == k, as_tuple=True)
        my, mx = ys.float().median(), xs.float().median()
        best = ((ys - my) ** 2 + (xs - mx) ** 2).argmin()
        chosen.append((int(xs[best]), int(ys[best])))
    return chosen


def _denormalise(image: torch.Tensor, mean, std) -> np.ndarray:
    mean_t = torch.tensor(mean, device=image.device).view(3, 1, 1)
    std_t = torch.tensor(std, device=image.device).view(3, 1, 1)
    return (image * std_t + mean_t).mul(255).clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()


def render(explanation: dict[str, Any], out_dir: str | Path, stem: str) -> list[Path]:
    """Draw ``explanation`` as PNGs in ``out_dir`` (needs matplotlib: ``pip install "contextseg[viz]"``);
    returns the files written: ``<stem>_prior.png`` (CPNet), ``<stem>_regions.png`` and
    ``<stem>_pixel_region_attention.png`` (OCRNet), ``<stem>_height_attention.png`` (HANet),
    ``<stem>_class_presence.png`` (EncNet), ``<stem>_strip_gates.png`` (SPNet)."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    e = explanation
    image, classes = e["image"], e["classes"]
    h, w = image.shape[:2]
    written = []

    def save(fig, name):
        path = out_dir / f"{stem}_{name}.png"
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    def overlay(ax, heat, title, cmap="inferno", vmin=None, vmax=None):
        ax.imshow(image)
        ax.imshow(heat, cmap=cmap, alpha=0.6, extent=(0, w, h, 0), interpolation="bilinear", vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.axis("off")

    def mark(ax, x, y):
        ax.plot([x], [y], marker="o", markersize=7, markerfacecolor="cyan", markeredgecolor="black")

    if "prior" in e:
        fig, axes = plt.subplots(len(e["pixels"]), 2, figsize=(7, 2.6 * len(e["pixels"])), squeeze=False)
        for row, ((x, y), prior) in enumerate(zip(e["pixels"], e["prior"])):
            name = classes[int(e["labels"][y, x])]
            overlay(axes[row, 0], prior, f"intra-class prior P of ({x}, {y}), {name}", vmin=0, vmax=1)
            overlay(axes[row, 1], 1 - prior, "inter-class 1 - P", cmap="viridis", vmin=0, vmax=1)
            for ax in axes[row]:
                mark(ax, x, y)
        save(fig, "prior")
    if "regions" in e:
        present = [int(k) for k in np.unique(e["labels"])][:8]
        cols = min(4, len(present))
        fig, axes = plt.subplots(math.ceil(len(present) / cols), cols, figsize=(3.2 * cols, 2.6 * math.ceil(len(present) / cols)), squeeze=False)
        for ax in axes.flat[len(present):]:
            ax.axis("off")
        for ax, k in zip(axes.flat, present):
            overlay(ax, e["regions"][k], f"object region: {classes[k]}")
        save(fig, "regions")
        fig, axes = plt.subplots(len(e["pixels"]), 2, figsize=(9, 2.4 * len(e["pixels"])), squeeze=False, gridspec_kw={"width_ratios": [1, 1.6]})
        for row, ((x, y), att) in enumerate(zip(e["pixels"], e["pixel_region_attention"])):
            axes[row, 0].imshow(image)
            mark(axes[row, 0], x, y)
            axes[row, 0].axis("off")
            top = np.argsort(att)[::-1][:8]
            axes[row, 1].barh([classes[k] for k in top][::-1], att[top][::-1], color="tab:orange")
            axes[row, 1].set_xlim(0, 1)
            axes[row, 1].set_title(f"pixel-region attention of ({x}, {y})", fontsize=9)
        save(fig, "pixel_region_attention")
    if "height_attention" in e:
        blocks = e["height_attention"]
        fig, axes = plt.subplots(1, len(blocks) + 1, figsize=(3 + 2 * len(blocks), 3.2), gridspec_kw={"width_ratios": [2.2] + [1] * len(blocks)})
        axes[0].imshow(image)
        axes[0].axis("off")
        axes[0].set_title("image", fontsize=9)
        for i, (ax, att) in enumerate(zip(axes[1:], blocks)):
            rows = np.linspace(0, 1, att.shape[1])
            ax.fill_betweenx(rows, np.percentile(att, 10, axis=0), np.percentile(att, 90, axis=0), color="tab:blue", alpha=0.3)
            ax.plot(att.mean(0), rows, color="tab:blue")
            ax.set_ylim(1, 0)
            ax.set_xlim(0, 1)
            ax.set_title(f"HANet block {i}", fontsize=9)
            ax.set_xlabel("attention")
            ax.set_yticks([0, 0.5, 1])
            ax.set_yticklabels(["top", "middle", "bottom"] if i == 0 else [])
        save(fig, "height_attention")
    if "class_presence" in e:
        probs = e["class_presence"]
        order = np.argsort(probs)[::-1][:20]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1.4, 1]})
        axes[0].imshow(image)
        axes[0].axis("off")
        axes[1].barh([classes[k] for k in order][::-1], probs[order][::-1], color="tab:green")
        axes[1].set_xlim(0, 1)
        axes[1].set_title("class presence (SE branch)", fontsize=9)
        save(fig, "class_presence")
    if "strip_gates" in e:
        gates = e["strip_gates"]
        fig, axes = plt.subplots(1, len(gates) + 1, figsize=(3 * (len(gates) + 1), 2.6))
        axes[0].imshow(image)
        axes[0].axis("off")
        for ax, (name, gate) in zip(axes[1:], gates.items()):
            overlay(ax, gate, f"strip gate {name}", cmap="magma")
        save(fig, "strip_gates")
    return written


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("pictures need matplotlib: pip install 'contextseg[viz]'") from None
    return plt
