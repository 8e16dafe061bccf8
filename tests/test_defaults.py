"""The packaged defaults: one resolver (argument, then CLINFM_* setting, then the packaged file), every default
shipped inside the package with nothing read from the checkout or ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

import clinfm
from clinfm.defaults import DEFAULTS, model_config_path, packaged, resolve
from clinfm.reasoning.knowledge import load_knowledge_base
from clinfm.tasks.config import available_tasks

PACKAGE = Path(clinfm.__file__).resolve().parent


def test_every_default_is_inside_the_package():
    for name, default in DEFAULTS.items():
        path = resolve(name)
        assert path.exists(), name
        assert PACKAGE in path.resolve().parents, f"{name} resolved to {path}, outside {PACKAGE}"
        assert path == packaged(default.packaged)


def test_argument_beats_setting_beats_package(tmp_path, monkeypatch):
    mine, theirs = tmp_path / "mine.yaml", tmp_path / "theirs.yaml"
    monkeypatch.setenv("CLINFM_CHANGE_PLAN", str(theirs))
    assert resolve("change_plan", mine) == mine
    assert resolve("change_plan") == theirs
    monkeypatch.delenv("CLINFM_CHANGE_PLAN")
    assert resolve("change_plan") == packaged("policies/change-plan.yaml")


def test_unknown_default_and_missing_packaged_file_are_named():
    with pytest.raises(KeyError, match="unknown default 'nope'"):
        resolve("nope")
    with pytest.raises(FileNotFoundError, match="'models/fm-huge.yaml' is missing"):
        packaged("models/fm-huge.yaml")


def test_model_config_by_size_name_or_path(tmp_path, monkeypatch):
    assert model_config_path("fm-tiny") == packaged("models/fm-tiny.yaml")
    assert model_config_path(None) == packaged("models/fm-small.yaml")
    monkeypatch.setenv("CLINFM_MODEL_CONFIG", str(tmp_path / "x.yaml"))
    assert model_config_path(None) == tmp_path / "x.yaml"
    with pytest.raises(FileNotFoundError, match=r"'fm-huge' is neither a file nor one of \['fm-medium'"):
        model_config_path("fm-huge")


def test_tasks_folder_setting_replaces_the_packaged_tasks(tmp_path, monkeypatch):
    (tmp_path / "my_task.yaml").write_text(packaged("tasks/new_stroke.yaml").read_text())
    monkeypatch.setenv("CLINFM_TASKS_DIR", str(tmp_path))
    assert available_tasks() == ["my_task"]


def test_ddxplus_ships_with_its_licence_and_attribution():
    folder = packaged("ddxplus")
    notice = (folder / "NOTICE.md").read_text()
    assert "CC-BY 4.0" in notice and "Fansi Tchango" in notice and "MIT" in notice
    assert "Permission is hereby granted" in (folder / "LICENSE-MIT.txt").read_text()
    kb = load_knowledge_base()
    assert (len(kb.pathologies), len(kb.evidences)) == (49, 223)
    assert Path(kb.source) == folder.resolve()
