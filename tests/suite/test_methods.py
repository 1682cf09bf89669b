"""Per-task config files: keyed by the full task id (namespace included, version left out), every file
belongs to a registered method and task, and the resolved configs of the O-DICE tasks are pinned."""

from __future__ import annotations

import re

import pytest

from suite import methods, tasks
from suite.methods import CONFIG_ROOT, get_method, resolve_config, task_config_file


def test_config_file_is_keyed_by_the_full_task_id():
    assert task_config_file("odice", "hopper-medium-v1") == CONFIG_ROOT / "odice" / "hopper-medium.json"
    assert task_config_file("odice", "d4rl/hopper-medium-v2") == CONFIG_ROOT / "odice" / "d4rl" / "hopper-medium.json"
    assert task_config_file("odice", "minari/mujoco/hopper/medium-v0") == (
        CONFIG_ROOT / "odice" / "minari" / "mujoco" / "hopper" / "medium.json")


def test_every_config_file_belongs_to_a_registered_method_and_task():
    ids = {re.sub(r"-v[0-9]+$", "", spec.id) for spec in tasks.list_tasks()}
    files = sorted(CONFIG_ROOT.rglob("*.json"))
    assert files
    for f in files:
        method, *rest = f.relative_to(CONFIG_ROOT).with_suffix("").parts
        assert method in methods.registry, f
        assert "/".join(rest) in ids, f"{f}: no such task"


@pytest.mark.parametrize("task", ["hopper-medium-v0", "hopper-medium-v1", "d4rl/hopper-medium-v2"])
def test_resolved_odice_configs_are_pinned(task):
    cfg, explicit = resolve_config(get_method("odice"), task)
    assert explicit == {"eta", "lam"} and (cfg.lam, cfg.eta) == (0.6, 1.0)


def test_a_task_without_a_file_gets_the_defaults():
    cfg, explicit = resolve_config(get_method("odice"), "minari/mujoco/hopper/medium-v0")
    assert explicit == set() and cfg == get_method("odice").config_class()()
