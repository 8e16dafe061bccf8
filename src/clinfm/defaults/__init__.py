"""Packaged defaults (task definitions, model configs, policies, the change plan, the DDXPlus knowledge base)
and the one resolver that finds them: an explicit argument, then a ``CLINFM_*`` setting, then the packaged file.

Every file lives in this package (``clinfm/defaults/...``) and is read through :mod:`importlib.resources`, so a
wheel install, the Docker image and an editable checkout all find the same files. The table below is the one
place the settings are documented (README "Packaged defaults" repeats it):

========================  =============================  ==============================================
default                   setting                        packaged file
========================  =============================  ==============================================
``tasks``                 ``CLINFM_TASKS_DIR``           ``tasks/`` (one YAML per named task)
``model_config``          ``CLINFM_MODEL_CONFIG``        ``models/fm-small.yaml`` (also fm-tiny, fm-medium)
``lifecycle_policy``      ``CLINFM_LIFECYCLE_POLICY``    ``policies/lifecycle-policy.yaml``
``demo_lifecycle_policy`` (none: the demo only)          ``policies/demo-lifecycle-policy.yaml``
``monitoring_policy``     ``CLINFM_MONITORING_POLICY``   ``policies/monitoring-policy.yaml``
``change_plan``           ``CLINFM_CHANGE_PLAN``         ``policies/change-plan.yaml``
``ddxplus``               ``CLINFM_DDXPLUS_DIR``         ``ddxplus/`` (CC-BY 4.0 and MIT, see its NOTICE.md)
``ddx_answer_model``      ``CLINFM_DDX_ANSWER_MODEL``    ``ddx/answer-model.json`` (fitted by benchmarks/ddx.py)
``ddx_record_map``        ``CLINFM_DDX_RECORD_MAP``      ``ddx/record-evidence-map.csv`` (codes -> evidences)
``reference_ranges``      ``CLINFM_REFERENCE_RANGES``    ``assist/reference-ranges.csv`` (the assistant's lab flags)
========================  =============================  ==============================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path


@dataclass(frozen=True)
class Default:
    """One overridable default: the ``CLINFM_*`` setting that replaces it and its path inside this package."""

    setting: str | None
    packaged: str


DEFAULTS: dict[str, Default] = {
    "tasks": Default("CLINFM_TASKS_DIR", "tasks"),
    "model_config": Default("CLINFM_MODEL_CONFIG", "models/fm-small.yaml"),
    "lifecycle_policy": Default("CLINFM_LIFECYCLE_POLICY", "policies/lifecycle-policy.yaml"),
    "demo_lifecycle_policy": Default(None, "policies/demo-lifecycle-policy.yaml"),
    "monitoring_policy": Default("CLINFM_MONITORING_POLICY", "policies/monitoring-policy.yaml"),
    "change_plan": Default("CLINFM_CHANGE_PLAN", "policies/change-plan.yaml"),
    "ddxplus": Default("CLINFM_DDXPLUS_DIR", "ddxplus"),
    "ddx_answer_model": Default("CLINFM_DDX_ANSWER_MODEL", "ddx/answer-model.json"),
    "ddx_record_map": Default("CLINFM_DDX_RECORD_MAP", "ddx/record-evidence-map.csv"),
    "reference_ranges": Default("CLINFM_REFERENCE_RANGES", "assist/reference-ranges.csv"),
}


def packaged(relative: str) -> Path:
    """The path of a file or folder shipped in ``clinfm/defaults`` (setuptools installs packages unzipped)."""
    resource = files(__name__).joinpath(*relative.split("/"))
    path = Path(str(resource))
    if not path.exists():
        raise FileNotFoundError(f"packaged default {relative!r} is missing from {Path(str(files(__name__)))}; "
                                "the installation is incomplete")
    return path


def resolve(name: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where default ``name`` comes from: ``explicit`` if given, else its ``CLINFM_*`` setting, else the package."""
    try:
        default = DEFAULTS[name]
    except KeyError:
        raise KeyError(f"unknown default {name!r}; expected one of {sorted(DEFAULTS)}") from None
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    setting = os.environ.get(default.setting) if default.setting else None
    if setting:
        return Path(setting).expanduser()
    return packaged(default.packaged)


def model_config_path(name_or_path: str | os.PathLike[str] | None = None) -> Path:
    """A model config: a YAML path, a packaged size by name (``fm-tiny``, ``fm-small``, ``fm-medium``), or the
    default (``$CLINFM_MODEL_CONFIG``, else ``fm-small``)."""
    if name_or_path is not None:
        candidate = Path(name_or_path).expanduser()
        if not candidate.suffix and not candidate.exists():
            sizes = sorted(p.stem for p in packaged("models").glob("*.yaml"))
            if candidate.name not in sizes:
                raise FileNotFoundError(f"model config {str(name_or_path)!r} is neither a file nor one of {sizes}")
            return packaged(f"models/{candidate.name}.yaml")
        return candidate
    return resolve("model_config")


__all__ = ["DEFAULTS", "Default", "model_config_path", "packaged", "resolve"]
