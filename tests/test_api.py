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


def _modules_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running ``code``."""
    import subprocess
    import sys

    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split("\n")[-2].split())


HEAVY = {"torch", "torchvision", "timm", "numpy", "PIL", "safetensors"}


def test_the_help_and_version_answer_without_loading_torch():
    """`contextseg --help`, a command's --help, --version and a usage error parse their arguments
    only: none of them imports torch (or numpy, PIL, timm), which take seconds to load."""
    for argv in (["--help"], ["train", "--help"], ["predict", "--help"], ["--version"], ["no-such-command"]):
        code = f"from contextseg.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
        assert not _modules_after(code) & HEAVY, argv


def test_import_contextseg_is_light_and_each_name_loads_on_first_use():
    assert not _modules_after("import contextseg") & HEAVY
    assert "torch" in _modules_after("import contextseg\ncontextseg.create_model")
    assert set(cs.__all__) <= set(dir(cs))
    assert cs.create_model is cs.models.create_model and cs.modules is __import__("contextseg.modules").modules
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        cs.no_such_name
    namespace: dict = {}
    exec("from contextseg import *", namespace)
    assert {n for n in cs.__all__} <= set(namespace)
