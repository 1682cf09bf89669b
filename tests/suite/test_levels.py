"""The levels table of the shipped behaviour policies (`suite behaviour levels`) and D4RL's bands."""

import json

import pytest

from suite.behaviour import levels as L
from suite.tasks.references import d4rl_normalized_score


@pytest.mark.parametrize("level,score,ok", [
    ("random", 9.9, True), ("random", 10.0, False),
    ("medium", 29.9, False), ("medium", 30.0, True), ("medium", 70.0, True), ("medium", 70.1, False),
    ("expert", 89.9, False), ("expert", 90.0, True),
])
def test_fixed_bands(level, score, ok):
    assert L.band(level, score)[0] is ok


def test_relative_bands():
    assert L.band("medium-replay", 20.0, medium=33.0)[0]
    assert not L.band("medium-replay", 40.0, medium=33.0)[0]
    assert L.band("medium-expert", 60.0, medium=33.0, expert=95.0)[0]
    assert not L.band("medium-expert", 96.0, medium=33.0, expert=95.0)[0]
    assert not L.band("medium-expert", 30.0, medium=33.0, expert=95.0)[0]
    with pytest.raises(Exception, match="unknown level 'mediocre'"):
        L.band("mediocre", 1.0)


def test_level_scores_come_from_the_manifests():
    root = L.POLICY_ROOT / "Hopper-v5" / "v1"
    man = {k: json.loads((root / f"{k}.json").read_text()) for k in ("medium", "expert")}
    ref = json.loads((root / "reference.json").read_text())
    replay = json.loads((root / "replay" / "index.json").read_text())["files"]
    rep = [json.loads((root / "replay" / f.replace(".safetensors", ".json")).read_text()) for f in replay]
    s = L.level_scores("Hopper-v5")
    med, exp = (man[k]["evaluation"]["d4rl_normalized_score"] for k in ("medium", "expert"))
    assert s["medium"] == med and s["expert"] == exp
    assert s["medium-expert"] == pytest.approx((med + exp) / 2)
    assert s["medium-replay"] == pytest.approx(sum(r["evaluation"]["d4rl_normalized_score"] for r in rep) / len(rep))
    assert s["random"] == pytest.approx(d4rl_normalized_score("Hopper-v5", ref["random_return"]))
    assert s["random"] < s["medium-replay"] < s["medium"] < s["medium-expert"] < s["expert"]


def test_table_marks_each_level_by_its_band():
    table = L.markdown("v1")
    for env in L.shipped_envs("v1"):
        (row,) = [line for line in table.splitlines() if line.startswith(f"| {env} |")]
        s = L.level_scores(env)
        for level in L.LEVEL_ORDER:
            v = f"{s[level]:.1f}".replace("-0.0", "0.0")
            ok = L.band(level, s[level], s["medium"], s["expert"])[0]
            assert (f"**{v}**" if ok else f"*{v}* ") in row + " "


def test_readme_block_is_replaced_in_place(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# policies\n\nbefore\n")
    L.write_readme(readme)
    once = readme.read_text()
    assert once.startswith("# policies\n\nbefore\n\n" + L.README_BEGIN) and once.count(L.README_BEGIN) == 1
    readme.write_text(once.replace("| Hopper-v5 |", "| edited |") + "after\n")
    L.write_readme(readme)
    assert readme.read_text() == once + "after\n"
