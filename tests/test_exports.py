"""The one export rule (``contextseg.exports``): a method's own files register and export it."""

import contextlib
import importlib
import sys
import textwrap

import pytest

import contextseg as cs
from contextseg.exports import export_modules


def test_each_method_package_exports_the_union_of_its_modules_all():
    for package in (cs.modules, cs.losses, cs.heads, cs.models):
        expected = []
        for name in sorted(n for n in dir(package) if not n.startswith("_")):
            module = getattr(package, name)
            if getattr(module, "__name__", "").startswith(package.__name__ + ".") and hasattr(module, "__all__") and type(module).__name__ == "module":
                expected += module.__all__
        assert sorted(package.__all__) == sorted(expected)
        assert all(getattr(package, name) is not None for name in package.__all__)


def test_every_model_file_registers_itself():
    # each registered class lives in a module of contextseg.models, found without a central list
    for name in cs.list_models():
        cls = cs.models.get_model_class(name)
        assert cls.__module__.startswith("contextseg.models."), (name, cls.__module__)
        assert getattr(cs.models, cls.__name__) is cls


@contextlib.contextmanager
def _package(tmp_path, name, files):
    """A package ``name`` on disk whose ``__init__`` applies the export rule, importable inside the
    block; every trace of it (path entry, modules, registered models) removed after."""
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("from contextseg.exports import export_modules\n__all__ = export_modules(__name__, __path__, globals())\n")
    for file, text in files.items():
        (root / file).write_text(textwrap.dedent(text))
    sys.path.insert(0, str(tmp_path))
    registered = set(cs.models.MODELS)
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        for model in set(cs.models.MODELS) - registered:
            cs.models.MODELS.pop(model)
        for module in [m for m in sys.modules if m.startswith(name)]:
            del sys.modules[module]


def test_a_new_file_is_registered_and_exported_with_no_other_edit(tmp_path):
    files = {
        "mynet.py": """
            from contextseg.models import register_model
            from contextseg.models.baselines import FCN
            __all__ = ["MyNet"]

            @register_model("pluginmynet")
            class MyNet(FCN):
                pass
            """,
        "_private.py": "raise RuntimeError('a module starting with _ is not imported')\n",
    }
    with _package(tmp_path, "plugin_pkg", files) as name:
        package = importlib.import_module(name)
        assert package.__all__ == ["MyNet"]
        assert cs.models.get_model_class("pluginmynet") is package.MyNet
    assert "pluginmynet" not in cs.list_models()


@pytest.mark.parametrize("files, match", [
    ({"a.py": "__all__ = ['X']\nX = 1\n", "b.py": "__all__ = ['X']\nX = 2\n"}, r"'X' is exported by both pkg_\w+\.a and pkg_\w+\.b"),
    ({"a.py": "__all__ = ['b']\nb = 1\n", "b.py": ""}, r"pkg_\w+\.a exports 'b', the name of the module pkg_\w+\.b"),
], ids=["two-modules-one-name", "name-hides-a-module"])
def test_a_clash_is_an_error_naming_both(tmp_path, files, match):
    with _package(tmp_path, f"pkg_{len(files['b.py'])}", files) as name:
        with pytest.raises(ImportError, match=match):
            importlib.import_module(name)


def test_export_modules_binds_names_in_the_namespace(tmp_path):
    with _package(tmp_path, "bind_pkg", {"one.py": "__all__ = ['f']\ndef f():\n    return 1\n", "two.py": "g = 2\n"}) as name:
        namespace = {}
        exported = export_modules(name, [str(tmp_path / name)], namespace)
        assert exported == ["f"] and namespace["f"]() == 1 and "g" not in namespace


def test_a_model_name_is_a_folder_a_recipe_prefix_and_a_module_name():
    """The registry refuses names that cannot be all three: an underscore (the recipes' file names
    split their fields at '_'), a Python keyword (its module could not be imported), capitals, a
    leading digit, path characters; registered names all pass."""
    from contextseg.models import register_model

    for bad in ("non_local", "nonlocal", "class", "NonLocal", "2net", "a/b", "", "net-x", None):
        with pytest.raises(ValueError, match="a model name is lowercase letters and digits"):
            register_model(bad)
    assert all(callable(register_model(name)) for name in cs.list_models())  # every shipped name passes (the decorator is never applied)
