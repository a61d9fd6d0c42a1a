"""The public API, as the README and the package docstrings name it, is reachable after a bare
``import contextseg`` (no submodule import needed)."""

import contextseg as cs


def test_documented_names_are_reachable_after_import_contextseg():
    names = [
        "create_model", "list_models", "register_model", "load", "save_pretrained", "from_pretrained", "explain",
        "engine.convert.from_mmseg", "engine.convert.from_hanet", "engine.convert.from_encoding_resnet", "engine.convert.MMSEG_MODELS",
        "engine.checkpoints.load_checkpoint", "engine.checkpoints.save_checkpoint", "engine.checkpoints.read_torch_file",
        "engine.pictures.explain", "engine.pictures.render", "engine.pictures.plot_class_iou",
        "engine.training.Trainer", "engine.training.build_optimizer", "engine.Trainer", "engine.train", "engine.evaluate",
        "engine.inference", "engine.load_config", "engine.Config",
        "heads.ContextMap", "heads.DecodeHead", "models.Segmentor", "modules.ContextPriorLayer", "losses.AffinityLoss",
    ]
    missing = []
    for name in names:
        obj = cs
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            missing.append(name)
    assert not missing, f"not reachable from `import contextseg`: {missing}"
    assert cs.explain is cs.engine.pictures.explain and cs.load is cs.engine.checkpoints.load
