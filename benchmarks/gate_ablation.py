"""What a trained model's zero-initialised context gates add: the gate values, the size of each gated
term against the features it is added to, and the validation score with the gates as trained and
with every gate set to 0 (the model without its attention, everything else unchanged).

The gated modules are those that return ``x + gated context`` with a gate initialised at 0: a
one-element parameter ``gamma`` in ``gamma * context + x`` (CCNet's `CrissCrossAttention`; DANet's
`PositionAttention` and `ChannelAttention`, alpha and beta in the paper), or the batch norm after
W_z in Non-local's ``x + BN(W_z y)`` (`NonLocal2d`; its per-channel scale and shift start at 0 and
are both set to 0 for the ablation; the table gives the scale's mean |value|). For each one and each
validation image (at the checkpoint's test scale, one scale, no flip) the script records
``||out - x|| / ||x||``, the Frobenius norm of the gated term over that of the input it is added to,
and prints its mean over the images; a CCNet pass applied twice counts once per pass.

    python benchmarks/gate_ablation.py --checkpoint runs/study_2h/ccnet/seed0/last.pt data.root=data/camvid

The scores use the checkpoint's own evaluation (its ``evaluate`` section: mode, scales, flips)
unless ``--scales``/``--flip`` are given, and the precision ``auto`` picks on this machine.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

from contextseg.cli.main import _one_line
from contextseg.engine.builders import build_eval_dataset
from contextseg.engine.checkpoints.saved_model import load_checkpoint_model
from contextseg.engine.config import ConfigError
from contextseg.engine.evaluate import evaluate
from contextseg.engine.precision import inference_precision
from contextseg.modules.non_local import NonLocal2d


def gated_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """``{module name: module}`` for every module with its own one-element parameter ``gamma``,
    and every `NonLocal2d` (gated by the batch norm of its ``conv_out``)."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, NonLocal2d)
            or isinstance(getattr(module, "gamma", None), torch.nn.Parameter) and module.gamma.numel() == 1}


def gate_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters that set a gated module's term to 0 when they are 0."""
    if isinstance(module, NonLocal2d):
        norm = module.conv_out[1]
        return [norm.weight, norm.bias]
    return [module.gamma]


def gate_value(module: torch.nn.Module) -> tuple[str, float]:
    """A gated module's gate as the tables print it, ``(what, value)``: ``("gamma", value)``, or for
    Non-local ``("mean abs BN scale", mean |scale| of its batch norm)``."""
    if isinstance(module, NonLocal2d):
        return "mean abs BN scale", float(module.conv_out[1].weight.detach().abs().mean())
    return "gamma", float(module.gamma.detach())


def gate_values(model: torch.nn.Module) -> dict[str, float]:
    """``{"<module name> <what>": value}`` for every gated module of ``model`` (see `gate_value`),
    e.g. ``{"decode_head.cca gamma": -0.052}``; empty for a model without a gated context module."""
    values = {}
    for name, module in gated_modules(model).items():
        what, value = gate_value(module)
        values[f"{name} {what}"] = value
    return values


@torch.no_grad()
def relative_terms(model: torch.nn.Module, dataset, gated: dict[str, torch.nn.Module], autocast) -> dict[str, list[float]]:
    """``{module name: [||out - x|| / ||x|| for every image and pass]}`` at the dataset's test scale."""
    ratios: dict[str, list[float]] = defaultdict(list)

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].float()
            ratios[name].append(float((output.float() - x).norm() / x.norm().clamp_min(1e-12)))
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in gated.items()]
    try:
        for index in range(len(dataset)):
            image = dataset[index]["image"].unsqueeze(0)
            with autocast():
                model(image.to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by contextseg train, or its run folder")
    parser.add_argument("--scales", help="test-time scales for the scores, e.g. 1.0 (default: the checkpoint's)")
    parser.add_argument("--flip", choices=["true", "false"], help="flipped inputs for the scores (default: the checkpoint's)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. data.root=data/camvid")
    args = parser.parse_args()

    overrides = list(args.overrides)
    if args.scales:
        overrides.append(f"evaluate.scales=[{args.scales}]")
    if args.flip:
        overrides.append(f"evaluate.flip={args.flip}")
    try:
        model, cfg, _ = load_checkpoint_model(args.checkpoint, "cpu", None, overrides)
        gated = gated_modules(model)
        if not gated:
            raise ConfigError(f"{args.checkpoint!r}: the model has no gated context module (a one-element gamma or a NonLocal2d)")
        dataset = build_eval_dataset(cfg, None, with_positions=False)
    except (ConfigError, FileNotFoundError, ValueError, OSError) as exc:  # the checkpoint, an override or the data root
        print(f"gate_ablation: error: {_one_line(exc)}", file=sys.stderr)  # control characters of a file name escaped
        raise SystemExit(2) from None
    model.eval()
    _, autocast = inference_precision(model, "cpu", "auto")

    ratios = relative_terms(model, dataset, gated, autocast)
    print(f"{Path(args.checkpoint)}: {len(dataset)} {cfg.data.name} {cfg.data.val_split} images, one scale, no flip")
    print("| module | gate | mean ||gate * context|| / ||x|| | min | max |")
    print("| --- | --- | --- | --- | --- |")
    for name, module in gated.items():
        values = ratios[name]
        what, value = gate_value(module)
        print(f"| `{name}` | {what} {value:+.4f} | {sum(values) / len(values):.4f} | {min(values):.4f} | {max(values):.4f} |")

    ev = cfg.evaluate

    def score(label: str) -> float:
        results = evaluate(model, dataset, ev, "cpu", crop_size=cfg.data.crop_size, num_workers=min(cfg.data.num_workers, 2), autocast=autocast, progress=False)
        print(f"{label}: mIoU {100 * results['mIoU']:.2f}  mAcc {100 * results['mAcc']:.2f}  aAcc {100 * results['aAcc']:.2f}"
              f"  (mode {ev.mode}, scales {ev.scales}, flip {ev.flip})")
        return results["mIoU"]

    trained = score("as trained")
    for module in gated.values():
        for parameter in gate_parameters(module):
            parameter.data.zero_()
    print(f"the gated context adds {100 * (trained - score('every gate 0')):+.2f} mIoU")


if __name__ == "__main__":
    main()
