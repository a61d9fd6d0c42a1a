"""Pictures: what the context modules look at (`explain`, drawn by kind), per-class IoU and
confusion plots, and the class legend of prediction overlays."""

from .explain import NothingToExplain, explain, maps_by_group, render
from .plots import add_legend, plot_class_iou, plot_confusion

__all__ = ["explain", "render", "maps_by_group", "NothingToExplain", "plot_class_iou", "plot_confusion", "add_legend"]
