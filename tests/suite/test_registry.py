import dataclasses

import pytest

from suite.errors import DuplicateIdError, UnknownIdError
from suite.registry import Registry, load_entry_point
from suite.tasks import DatasetSpec, References, TaskRegistry, TaskSpec, get_task, parse_id


def test_register_get_list_and_duplicates():
    r = Registry("thing")
    r.register("alpha", 1)
    r.register("beta", 2)
    assert r.get("alpha") == 1 and r.ids() == ["alpha", "beta"] and "beta" in r
    with pytest.raises(DuplicateIdError):
        r.register("alpha", 3)


def test_unknown_id_suggests_closest():
    r = Registry("method")
    for name in ["odice", "iql", "td3bc", "cql", "bc"]:
        r.register(name, name)
    with pytest.raises(UnknownIdError, match="did you mean 'odice'"):
        r.get("odcie")
    with pytest.raises(UnknownIdError, match="suite ls methods"):
        r.get("zzzzzzzz")


def test_lazy_entry_point():
    assert load_entry_point("json:dumps")([1]) == "[1]"
    assert load_entry_point("os.path:join")("a", "b") == "a/b"
    with pytest.raises(ValueError):
        load_entry_point("no_colon")


def test_task_ids_versions_resolve_to_newest():
    reg = TaskRegistry()
    for v in (0, 2, 1):
        reg.register_task(TaskSpec(id=f"ns/toy-task-v{v}", kind="offline-rl", description=f"v{v}"))
    assert reg.resolve("ns/toy-task") == "ns/toy-task-v2"
    assert reg.get("ns/toy-task-v1").description == "v1"
    with pytest.raises(UnknownIdError, match="ns/toy-task"):
        reg.get("ns/toy-tsak")
    with pytest.raises(UnknownIdError):
        reg.get("ns/toy-task-v7")
    with pytest.raises(ValueError):
        reg.register_task(TaskSpec(id="ns/no-version-v0", kind="bogus", description=""))


def test_parse_id():
    assert parse_id("hopper-medium-v0") == (None, "hopper-medium", 0)
    assert parse_id("minari/mujoco/hopper/medium-v0") == ("minari/mujoco/hopper", "medium", 0)
    assert parse_id("d4rl/hopper-medium-v2") == ("d4rl", "hopper-medium", 2)
    assert parse_id("hopper-random") == (None, "hopper-random", None)


def test_builtin_tasks_and_json_round_trip():
    spec = get_task("hopper-random-v0")
    assert spec.id == "hopper-random-v0" and spec.env_id == "Hopper-v5" and spec.kind == "offline-rl"
    assert spec.references is not None and spec.references.normalize(spec.references.max_return) == pytest.approx(100)
    from suite.tasks.mujoco import v1_envs

    for env in ("hopper", "halfcheetah", "walker2d"):
        for level in ("random", "medium", "medium-replay", "expert", "medium-expert"):
            assert get_task(f"{env}-{level}-v0").version == 0  # v0 stays registered
            # a version-less id is the newest: v1 where the D4RL-strength policies are shipped
            assert get_task(f"{env}-{level}").version == (1 if env in v1_envs() else 0)
    import json

    again = TaskSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec
    with pytest.raises(UnknownIdError, match="'hopper-random'"):
        get_task("hoper-random")


def test_frozen_spec():
    spec = TaskSpec(
        id="x-v0",
        kind="offline-rl",
        description="",
        dataset=DatasetSpec("a/b-v0", "Hopper-v5"),
        references=References(0, 1, "t"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.kind = "generation"  # type: ignore[misc]


def test_references_come_from_the_task_or_from_metadata_only_where_the_task_says_so():
    """`tasks.references.resolve_references`, the one place a run's normalisation references come from."""
    from suite.tasks.references import METADATA_REFERENCES, resolve_references

    meta = {"ref_min_score": -3.5, "ref_max_score": 1234.0}
    remote = get_task("minari/mujoco/hopper/medium-v0")
    assert remote.references is None
    got = resolve_references(remote, meta).references
    assert (got.min_return, got.max_return, got.source) == (-3.5, 1234.0, METADATA_REFERENCES)
    assert resolve_references(remote, {}).references is None  # no scores shipped: unnormalised, not invented
    own = get_task("hopper-medium-v0")
    assert resolve_references(own, meta) is own  # a task with its own references never takes the dataset's
    bare = dataclasses.replace(own, references=None)
    assert resolve_references(bare, meta).references is None  # nor does one that does not declare metadata
