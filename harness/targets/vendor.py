"""Loading the vendor DeepSeek-OCR remote code from a local directory, offline, with consent.

Owns the loading rules: ``trust_remote_code=True`` required, nothing downloaded (a hub id is
refused), transformers 4.46.3, and inert stand-ins for ``torchvision``/``matplotlib`` when they are
missing. The rules and why: docs/targets.md.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from harness.inputs.targets import FACTS, MODEL_PATH_ENV
from harness.targets.base import TargetError

__all__ = [
    "VENDOR_ENV_VAR",
    "REQUIRED_TRANSFORMERS",
    "VENDOR_ENV_HINT",
    "VendorEnvironmentError",
    "find_model_dir",
    "check_transformers",
    "transformers_supported",
    "install_stubs",
    "load_vendor_config",
]

VENDOR_ENV_VAR = MODEL_PATH_ENV
REQUIRED_TRANSFORMERS = FACTS["dsocr"].transformers_pin
VENDOR_ENV_HINT = ("build the vendor environment with `make vendor-env`, then run with "
                   "`.venv-vendor/bin/python` (e.g. `.venv-vendor/bin/python -m pytest -m vendor "
                   "--model-path DIR --trust-remote-code`)")
#: Files the remote code needs besides config.json (auto_map modules and their relative imports).
REMOTE_CODE_FILES = ("modeling_deepseekocr.py", "modeling_deepseekv2.py", "deepencoder.py",
                     "configuration_deepseek_v2.py", "conversation.py")


class VendorEnvironmentError(TargetError):
    """The running Python cannot execute the vendor code (wrong transformers)."""


def find_model_dir(model_path: str | os.PathLike[str] | None) -> Path:
    """The local vendor directory from ``model_path`` or ``$DEEPSEEK_OCR_PATH``, checked."""
    value = model_path if model_path else os.environ.get(VENDOR_ENV_VAR)
    if not value:
        raise TargetError(
            "target 'dsocr' needs a local DeepSeek-OCR directory (config.json + the remote code "
            f"{', '.join(REMOTE_CODE_FILES)}; weights optional): pass model_path=DIR "
            f"(pytest: --model-path DIR) or set {VENDOR_ENV_VAR}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise TargetError(
            f"DeepSeek-OCR model path {str(value)!r} is not a local directory. The harness never "
            "downloads (a hub id such as 'deepseek-ai/DeepSeek-OCR' is refused): fetch the "
            "repository yourself and pass its directory")
    missing = [f for f in ("config.json", *REMOTE_CODE_FILES) if not (path / f).is_file()]
    if missing:
        raise TargetError(f"DeepSeek-OCR directory {str(path)!r} lacks {', '.join(missing)} "
                          "(the vendor remote code and config.json are required; weights are optional)")
    return path


def transformers_supported(version: str) -> bool:
    """Whether the vendor code can run on this transformers release (the dsocr facts'
    :meth:`~harness.inputs.targets.TargetFacts.runs_on_transformers`: 4.46 <= version < 5; the
    pinned one is :data:`REQUIRED_TRANSFORMERS`, another runs with a warning)."""
    return FACTS["dsocr"].runs_on_transformers(version)


def check_transformers() -> str:
    """The transformers version, if the vendor code can run on it; else a clear error."""
    import transformers

    version = transformers.__version__
    if not transformers_supported(version):
        raise VendorEnvironmentError(
            f"the vendor DeepSeek-OCR remote code needs transformers=={REQUIRED_TRANSFORMERS} (with "
            f"tokenizers==0.20.3); this Python ({sys.executable}) has transformers {version}, where "
            "its language model cannot run (removed cache and attention APIs). To get it: "
            f"{VENDOR_ENV_HINT}")
    if version != REQUIRED_TRANSFORMERS:
        warnings.warn(f"vendor DeepSeek-OCR is pinned to transformers=={REQUIRED_TRANSFORMERS}; running on "
                      f"{version} is untested", stacklevel=2)
    return version


def _force_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:  # already-imported hub constants read the environment once
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
    except Exception:  # pragma: no cover - hub layout differs between versions
        pass


_STUB_DIR: Path | None = None

_TORCHVISION_STUB = {
    "torchvision/__init__.py": '''"""harness stand-in for torchvision: the vendor imports it only for infer()'s transforms."""
__version__ = "0.0.0+harness.stub"
from . import transforms  # noqa: F401
''',
    "torchvision/transforms/__init__.py": '''"""harness stand-in: constructing works, calling raises (pixels come from harness.targets.pixels)."""
from . import functional  # noqa: F401


class _Unavailable:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __call__(self, *args, **kwargs):
        raise RuntimeError("torchvision is a harness stand-in here: the vendor infer() transforms are "
                           "not available; harness.targets.pixels builds the same tensors")


class Compose(_Unavailable):
    pass


class ToTensor(_Unavailable):
    pass


class Normalize(_Unavailable):
    pass
''',
    "torchvision/transforms/functional.py": '''"""harness stand-in: only the names the vendor imports."""
import enum


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    LANCZOS = "lanczos"
''',
}

_MATPLOTLIB_STUB = {
    "matplotlib/__init__.py": '''"""harness stand-in for matplotlib (the vendor imports it only inside infer())."""
__version__ = "0.0.0+harness.stub"
''',
    "matplotlib/pyplot.py": '''"""harness stand-in: any attribute access raises."""


def __getattr__(name):
    raise RuntimeError("matplotlib is a harness stand-in here (vendor infer() plotting is unavailable)")
''',
}


def _importable(name: str) -> bool:
    if name in sys.modules:
        return True
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)
        return True
    except Exception:  # e.g. CUDA-linked torchvision next to a CPU torch
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        return False


def install_stubs() -> list[str]:
    """Write stand-ins for missing torchvision / matplotlib; return the names stubbed.

    Must run after ``import transformers`` (transformers decides at import time whether
    torchvision exists; a stand-in seen then would be treated as the real package).
    """
    global _STUB_DIR
    if "transformers" not in sys.modules:
        raise RuntimeError("install_stubs() must run after transformers is imported")
    wanted = {"torchvision": _TORCHVISION_STUB, "matplotlib": _MATPLOTLIB_STUB}
    stubbed = []
    for name, files in wanted.items():
        module = sys.modules.get(name)
        if module is not None and "harness.stub" in str(getattr(module, "__version__", "")):
            stubbed.append(name)
            continue
        if _importable(name):
            continue
        if _STUB_DIR is None:
            _STUB_DIR = Path(tempfile.mkdtemp(prefix="harness-vendor-stubs-"))
            atexit.register(shutil.rmtree, _STUB_DIR, True)
        for rel, text in files.items():
            target = _STUB_DIR / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        stubbed.append(name)
    if stubbed and _STUB_DIR is not None:
        # A broken real package sits earlier on sys.path: the stand-in must win.
        if str(_STUB_DIR) in sys.path:
            sys.path.remove(str(_STUB_DIR))
        sys.path.insert(0, str(_STUB_DIR))
        importlib.invalidate_caches()
    return stubbed


def load_vendor_config(model_dir: Path, *, trust_remote_code: bool, overrides: dict[str, Any] | None = None):
    """The vendor config (``DeepseekOCRConfig``) from ``model_dir``, offline, after the checks."""
    if not trust_remote_code:
        raise TargetError(
            f"target 'dsocr' executes the vendor's Python files in {str(model_dir)!r} "
            f"({', '.join(REMOTE_CODE_FILES)}). Allow it explicitly: get_target('dsocr', model_path, "
            "trust_remote_code=True) (pytest: --trust-remote-code)")
    _force_offline()
    import transformers  # noqa: F401  (before the stubs, see install_stubs)

    check_transformers()
    install_stubs()
    from transformers import AutoConfig

    json.loads((model_dir / "config.json").read_text())  # a clear JSON error before transformers'
    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=True, local_files_only=True)
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    return config
