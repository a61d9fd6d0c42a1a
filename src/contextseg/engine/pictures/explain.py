"""What each context module looks at, as arrays (`explain`) and as pictures (`render`).

Every model says what its context modules compute through one hook,
`Segmentor.context_maps`, as maps of four generic
kinds (`ContextMap`): a map over the image (``pixel_map``), a curve along
the image height (``row_curve``), one number per class (``class_bars``) and a relation between two
sets that are not places in the image (``matrix``), each either for the whole image or for one
query pixel. This module draws kinds, never model names: what a method shows is the docstring of its
head's ``context_maps`` (CPNet's prior row, OCRNet's object regions, HANet's height attention, ...).
The baselines have no context module, and say so.

The image is shown as the model sees it: resized to its test scale, and for a model tied to its
training crop (CPNet) to that crop. Pixels are ``(x, y)`` in the original image.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...data.base import as_rgb_array
from ...data.io import AUTHOR_MARK, atomic_write, check_output
from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform
from ...heads.base import ContextMap
from ...models import Segmentor
from .plots import pyplot

__all__ = ["Explanation", "explain", "render", "NothingToExplain"]


class NothingToExplain(ValueError):
    """The model has no context module (a baseline)."""


def model_name(model: Segmentor) -> str:
    return model.meta.get("model", {}).get("name") or type(model).__name__.lower()


@torch.no_grad()
def explain(model: Segmentor, image: Any, pixels: Sequence[tuple[int, int]] | None = None, max_pixels: int = 4, out_dir: str | Path | None = None, stem: str | None = None) -> dict[str, Any]:
    """What ``model``'s context modules compute on ``image`` (a path, PIL image or HxWx3 uint8 array);
    with ``out_dir`` also drawn there as PNGs (`render`, listed under ``"files"``), named
    ``<stem>_<group>.png`` as ``contextseg explain`` names them: ``stem`` is the image file's name
    without its suffix, or ``"explain"`` for an image given as pixels. ``pixels`` are ``(x, y)`` in
    the image, negative values counting from the right and bottom edges.

    Returns ``{"model", "image" (h, w, 3) uint8 as the model saw it, "labels" (h, w) its prediction,
    "pixels" [(x, y)] in that view, "classes", "maps" [ContextMap]}``; ``maps_by_group(e)`` groups
    the maps as they are drawn (``{"prior": [...], ...}``).
    """
    name = model_name(model)
    if not type(model).has_context_maps():
        raise NothingToExplain(f"{name} is a baseline: it has no context module to explain (explain works for models whose head or segmentor implements context_maps)")
    model.eval()
    rgb = as_rgb_array(image)
    mean, std = model.meta.get("mean", IMAGENET_MEAN), model.meta.get("std", IMAGENET_STD)
    transform = EvalTransform(base_size=model.meta.get("base_size"), mean=mean, std=std)
    view = transform(torch.from_numpy(rgb.transpose(2, 0, 1).copy()), torch.zeros(rgb.shape[:2], dtype=torch.int64))["image"][None]
    tied = model.tied_input_size()
    if tied is not None:  # a model tied to its training crop sees the image at that crop
        view = F.interpolate(view, size=list(tied), mode="bilinear", align_corners=False)
    view = view.to(next(model.parameters()).device)
    size = view.shape[-2:]
    sy, sx = size[0] / rgb.shape[0], size[1] / rgb.shape[1]
    labels = model(view).argmax(1)[0].cpu()
    if pixels:
        height, width = rgb.shape[:2]
        chosen = []
        for x, y in pixels:
            if not (-width <= x < width and -height <= y < height):
                raise ValueError(f"pixel ({x}, {y}) lies outside the {width}x{height} image: x in 0..{width - 1}, y in 0..{height - 1} "
                                 "(negative values count from the right and bottom edges, -1 is the last)")
            chosen.append((min(int((x % width) * sx), size[1] - 1), min(int((y % height) * sy), size[0] - 1)))
    else:
        chosen = _default_pixels(labels, max_pixels)
    maps = model.context_maps(view, chosen)
    if not maps:
        raise NothingToExplain(f"{name} computed no context maps on this image (e.g. SPNet without strip pooling)")
    out = Explanation({
        "model": name,
        "image": _denormalise(view[0], mean, std),
        "labels": labels.numpy(),
        "pixels": chosen,
        "classes": model.meta.get("classes") or [str(k) for k in range(model.num_classes)],
        "maps": maps,
    })
    if out_dir is not None:
        if stem is None:
            stem = Path(image).stem if isinstance(image, (str, os.PathLike)) else "explain"
        out["files"] = render(out, out_dir, stem)
    return out


class Explanation(dict):
    """What `explain` returns: a plain dict (``"model"``, ``"image"``, ``"labels"``,
    ``"pixels"``, ``"classes"``, ``"maps"``, and ``"files"`` when drawn) whose repr is one line
    (model, image size, query pixels, the groups of maps and the files), not pages of arrays."""

    def __repr__(self) -> str:
        groups = {g: len(m) for g, m in maps_by_group(self).items()}
        height, width = self["image"].shape[:2]
        files = [str(f) for f in self.get("files", [])]
        return (f"Explanation(model={self['model']!r}, image={width}x{height}, pixels={self['pixels']}, maps={groups}"
                + (f", files={files}" if files else "") + ")")

    __str__ = __repr__


def maps_by_group(explanation: dict[str, Any]) -> dict[str, list[ContextMap]]:
    """The explanation's maps by group, in the order the model gave them."""
    groups: dict[str, list[ContextMap]] = {}
    for m in explanation["maps"]:
        groups.setdefault(m.group, []).append(m)
    return groups


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
    """Draw ``explanation`` as PNGs in ``out_dir``, one ``<stem>_<group>.png`` per group of maps
    (needs matplotlib: ``pip install "contextseg[viz]"``); returns the files written.

    By kind: pixel maps are heat maps over the image (one row per query pixel, marked; maps tied
    to a class only for the predicted classes, at most 8); row curves are drawn beside the image,
    top to bottom (channel mean and its 10-90 % band); class bars show the 12 largest classes,
    beside the image (with the query pixel marked); matrices are heat maps beside the image, rows
    against columns, with a colour bar."""
    plt = pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    e = explanation
    written = []
    for group, maps in maps_by_group(e).items():
        kind = maps[0].kind
        if kind == "pixel_map":
            fig = _draw_pixel_maps(plt, e, maps)
        elif kind == "row_curve":
            fig = _draw_row_curves(plt, e, maps)
        elif kind == "matrix":
            fig = _draw_matrices(plt, e, maps)
        else:
            fig = _draw_class_bars(plt, e, maps)
        caption = next((m.caption for m in maps if m.caption), "")
        if caption:  # what the picture shows for this method, one line under it
            fig.text(0.5, 0.0, textwrap.fill(caption, 120), ha="center", va="top", fontsize=8)
        path = out_dir / f"{stem}_{group}.png"
        try:
            check_output(path, "the picture's path", overwrite=True)  # new, or contextseg's own: never a file of someone else
            with atomic_write(path) as tmp:  # whole or not at all, never through a link
                fig.savefig(tmp, dpi=80, bbox_inches="tight", format="png", metadata={AUTHOR_MARK: "a picture written by contextseg explain"})
        finally:
            plt.close(fig)
        written.append(path)
    return written


def _class_name(e: dict[str, Any], pixel: tuple[int, int]) -> str:
    x, y = pixel
    return e["classes"][int(e["labels"][y, x])]


def _overlay(ax, e: dict[str, Any], m: ContextMap, title: str) -> None:
    image = e["image"]
    h, w = image.shape[:2]
    vmin, vmax = m.vrange if m.vrange is not None else (None, None)
    ax.imshow(image)
    shown = ax.imshow(m.values, cmap=m.cmap, alpha=0.6, extent=(0, w, h, 0), interpolation="bilinear", vmin=vmin, vmax=vmax)
    ax.figure.colorbar(shown, ax=ax, shrink=0.7, pad=0.02).ax.tick_params(labelsize=6)  # the scale of the weights
    ax.set_title(textwrap.fill(title, 40), fontsize=9)  # wrapped: three long titles side by side overlapped
    ax.axis("off")
    if m.pixel is not None:
        ax.plot([m.pixel[0]], [m.pixel[1]], marker="o", markersize=7, markerfacecolor="cyan", markeredgecolor="black")


def _rows_by_pixel(maps: list[ContextMap]) -> list[list[ContextMap]]:
    rows: dict[Any, list[ContextMap]] = {}
    for m in maps:
        rows.setdefault(m.pixel, []).append(m)
    return list(rows.values())


def _draw_pixel_maps(plt, e: dict[str, Any], maps: list[ContextMap]):
    if maps[0].pixel is not None:  # one row per query pixel: its maps side by side
        rows = _rows_by_pixel(maps)
        cols = max(len(r) for r in rows)
        fig, axes = plt.subplots(len(rows), cols, figsize=(3.5 * cols, 2.8 * len(rows)), squeeze=False, layout="constrained")
        for row, row_maps in zip(axes, rows):
            for i, (ax, m) in enumerate(zip(row, row_maps)):
                _overlay(ax, e, m, f"{m.title}, {_class_name(e, m.pixel)}" if i == 0 else m.title)
            for ax in row[len(row_maps):]:
                ax.axis("off")
        return fig
    present = {int(k) for k in np.unique(e["labels"])}
    shown = [m for m in maps if m.label is None or m.label in present][:8]
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for ax, m in zip(axes.flat, shown):
        _overlay(ax, e, m, f"{m.title}: {e['classes'][m.label]}" if m.label is not None else m.title)
    return fig


def _draw_row_curves(plt, e: dict[str, Any], maps: list[ContextMap]):
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3 + 2 * len(maps), 3.2), gridspec_kw={"width_ratios": [2.2] + [1] * len(maps)},
                             layout="constrained")  # the first panel's row labels clear of the image
    axes[0].imshow(e["image"])
    axes[0].axis("off")
    axes[0].set_title("image", fontsize=9)
    height, width = e["image"].shape[:2]
    # the query pixels' rows: the attention each block gives the row a pixel lies in
    marks = [(x, y, y / max(height - 1, 1)) for x, y in e.get("pixels") or []]
    for x, y, _ in marks:
        axes[0].plot([0, width - 1], [y, y], color="cyan", linewidth=1)
        axes[0].plot([x], [y], marker="o", markersize=6, markerfacecolor="cyan", markeredgecolor="black")
    for i, (ax, m) in enumerate(zip(axes[1:], maps)):
        curves = m.values
        rows = np.linspace(0, 1, curves.shape[1])
        ax.fill_betweenx(rows, np.percentile(curves, 10, axis=0), np.percentile(curves, 90, axis=0), color="tab:blue", alpha=0.3)
        ax.plot(curves.mean(0), rows, color="tab:blue")
        for _, y, fraction in marks:
            row = min(int(round(fraction * (curves.shape[1] - 1))), curves.shape[1] - 1)
            ax.axhline(fraction, color="cyan", linewidth=1)
            ax.plot([curves.mean(0)[row]], [rows[row]], marker="o", markersize=5, markerfacecolor="cyan", markeredgecolor="black")
        ax.set_ylim(1, 0)
        if m.vrange is not None:
            ax.set_xlim(*m.vrange)
        ax.set_title(m.title, fontsize=9)
        ax.set_xlabel("attention")
        ax.set_yticks([0, 0.5, 1])
        ax.set_yticklabels(["top", "middle", "bottom"] if i == 0 else [])
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    legend = [Line2D([], [], color="tab:blue", label="mean over channels"), Patch(color="tab:blue", alpha=0.3, label="10-90 % of channels")]
    if marks:
        legend.append(Line2D([], [], color="cyan", marker="o", markeredgecolor="black", label="query pixel's row"))
    fig.legend(handles=legend, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(legend), fontsize=8, frameon=False)
    return fig


def _draw_class_bars(plt, e: dict[str, Any], maps: list[ContextMap]):
    classes = e["classes"]
    # constrained layout keeps each bar chart's title clear of the tick labels of the chart above
    fig, axes = plt.subplots(len(maps), 2, figsize=(9, 2.6 * len(maps) + 0.8), squeeze=False, gridspec_kw={"width_ratios": [1.4, 1]}, layout="constrained")
    for (ax_image, ax_bars), m in zip(axes, maps):
        ax_image.imshow(e["image"])
        ax_image.axis("off")
        if m.pixel is not None:
            ax_image.plot([m.pixel[0]], [m.pixel[1]], marker="o", markersize=7, markerfacecolor="cyan", markeredgecolor="black")
        top = np.argsort(m.values)[::-1][:12]
        ax_bars.barh([classes[k] for k in top][::-1], m.values[top][::-1], color="tab:orange" if m.pixel is not None else "tab:green")
        if m.vrange is not None:
            ax_bars.set_xlim(*m.vrange)
        ax_bars.set_title(m.title, fontsize=9)
    return fig


def _draw_matrices(plt, e: dict[str, Any], maps: list[ContextMap]):
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3.2 + 3.4 * len(maps), 3.2), layout="constrained")
    axes[0].imshow(e["image"])
    axes[0].axis("off")
    axes[0].set_title("image", fontsize=9)
    for ax, m in zip(axes[1:], maps):
        vmin, vmax = m.vrange if m.vrange is not None else (None, None)
        shown = ax.imshow(m.values, cmap=m.cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(m.title, fontsize=9)
        ax.set_xlabel(f"{m.values.shape[1]} columns")
        ax.set_ylabel(f"{m.values.shape[0]} rows")
        fig.colorbar(shown, ax=ax, shrink=0.8)
    return fig
