"""The software a bundle was built with, compared with the running one.

A different MAJOR version of numpy, scikit-learn, pyradiomics, LightGBM, XGBoost or SimpleITK only
gives a warning (:attr:`..manifest.VerifiedBundle.warnings`): fitted steps travel as plain JSON and
.npz arrays of numeric dtypes (readable alike by numpy 1.x, e.g. in Slicer 5.4-5.8, and 2.x), never
as pickled objects, but results may drift slightly. The torch and torchvision versions are recorded
as provenance only: a prediction applies the network's safetensors weights in numpy
(``resnet_numpy``) and needs no torch at all.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from importlib import metadata

# Packages whose major-version change warns: their fitted steps travel as arrays/JSON. torch and
# torchvision are not among them: applying a bundle does not use them.
_WARN_MAJOR = ("numpy", "scikit-learn", "pyradiomics", "SimpleITK", "lightgbm", "xgboost")

# Distribution names to try for each recorded package (forks ship under other names).
_DISTRIBUTIONS = {
    "numpy": ("numpy",),
    "scikit-learn": ("scikit-learn",),
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "pyradiomics": ("pyradiomics", "pyradiomics-bhklab"),
    "SimpleITK": ("SimpleITK", "simpleitk"),
    "lightgbm": ("lightgbm",),
    "xgboost": ("xgboost", "xgboost-cpu"),
}
_MODULES = {
    "numpy": "numpy",
    "scikit-learn": "sklearn",
    "torch": "torch",
    "torchvision": "torchvision",
    "pyradiomics": "radiomics",
    "SimpleITK": "SimpleITK",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
}


def software_versions() -> dict[str, str | None]:
    """Versions of the running environment, in the manifest's ``software`` form.

    Package metadata is read without importing the packages (torch costs seconds to import);
    a module without metadata is imported only if it is present. Absent packages are None.

    Returns:
        {"python", "numpy", "scikit-learn", "torch", "torchvision", "pyradiomics", "SimpleITK",
        "lightgbm", "xgboost", "dlrpredictor"} -> version string or None.
    """
    from ..base.version import __version__

    out: dict[str, str | None] = {"python": ".".join(str(p) for p in sys.version_info[:3])}
    for key, dists in _DISTRIBUTIONS.items():
        out[key] = _installed_version(dists, _MODULES[key])
    out["dlrpredictor"] = __version__
    return out


def check_software(recorded: Mapping[str, str | None]) -> list[str]:
    """Compare the bundle's build versions with the running ones (rule in the module notes).

    Args:
        recorded: the manifest's ``software`` object.

    Returns:
        Warnings for the differences (none is fatal).
    """
    running = software_versions()
    warnings: list[str] = []
    for key in _WARN_MAJOR:
        built, now = recorded.get(key), running.get(key)
        if not built:
            continue
        if not now:
            warnings.append(f"the bundle was built with {key} {built}, which is not installed here")
            continue
        if _major(built) == _major(now) or _major(built) is None or _major(now) is None:
            continue
        warnings.append(
            f"the bundle was built with {key} {built} and {key} {now} is installed; results may "
            f"differ slightly from the bundle's reported metrics"
        )
    return warnings


def _major(version: str) -> int | None:
    m = re.match(r"\s*(\d+)", str(version))
    return int(m.group(1)) if m else None


def _installed_version(dists: tuple[str, ...], module: str) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    # No metadata (e.g. a package copied into Slicer's site-packages): ask the module itself.
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return None
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    version = getattr(mod, "__version__", None)
    return str(version) if version else None
