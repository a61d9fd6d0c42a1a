"""A stand-in for the ``mmcv.ops`` symbols that mmcv-lite lacks (its compiled CUDA/C++ ops).

mmsegmentation 1.2.2 imports names from ``mmcv.ops`` at import time (point sampling, criss-cross
attention, deformable convs, ...) for models the side-by-side scripts never build. Importing this
module first registers an ``mmcv.ops`` whose every attribute is a placeholder that raises if it is
ever used, except the ops that mmcv implements in plain PyTorch (:data:`PURE_PYTORCH`, such as
criss-cross attention since mmcv 1.3.13): those are mmcv's own code, loaded from mmcv-lite's file. Benchmark/parity tooling only: never imported by the package or its tests.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PURE_PYTORCH = {"CrissCrossAttention": "cc_attention"}  # name -> mmcv/ops/<file>.py without compiled code


class _Missing:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"mmcv.ops.{self.name} is a stand-in: mmcv-lite has no compiled ops")

    def __mro_entries__(self, bases):  # used as a base class: give a class that raises when built
        name = self.name

        class Placeholder:
            def __init__(self, *args, **kwargs):
                raise RuntimeError(f"mmcv.ops.{name} is a stand-in: mmcv-lite has no compiled ops")

        return (Placeholder,)


def install() -> None:
    if "mmcv.ops" in sys.modules and not getattr(sys.modules["mmcv.ops"], "_standin", False):
        return
    ops = types.ModuleType("mmcv.ops")
    ops._standin = True
    ops.__getattr__ = lambda name: _Missing(name) if not name.startswith("__") else (_ for _ in ()).throw(AttributeError(name))
    ops.__path__ = []  # a package: "from mmcv.ops.x import y" finds sub-modules below
    sys.modules["mmcv.ops"] = ops

    class _Finder:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if fullname.startswith("mmcv.ops."):
                import importlib.machinery

                return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)
            return None

    class _Loader:
        @staticmethod
        def create_module(spec):
            module = types.ModuleType(spec.name)
            module.__getattr__ = ops.__getattr__
            module.__path__ = []
            return module

        @staticmethod
        def exec_module(module):
            pass

    sys.meta_path.insert(0, _Finder())
    import mmcv

    for name, file in PURE_PYTORCH.items():
        path = Path(mmcv.__file__).parent / "ops" / f"{file}.py"
        spec = importlib.util.spec_from_file_location(f"mmcv.ops.{file}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(ops, name, getattr(module, name))


install()
