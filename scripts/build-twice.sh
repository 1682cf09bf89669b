#!/usr/bin/env bash
# Build v1 datasets twice, into two separate Minari stores, and compare their checksums (issue 22: a build is
# deterministic). Usage: scripts/build-twice.sh ENV LEVEL...   e.g. scripts/build-twice.sh hopper medium expert
# Restartable: a finished (dataset, copy) is skipped (runs/databuild/<id>.<copy>.done); one line per dataset is
# appended to runs/databuild/checksums.txt ("same" or "DIFFERENT" and both checksums); a "same" checksum is recorded
# in suite/data/canonical.json (the build every x86-64 machine must give; commit it). One thread per build.
# medium-expert is read from the medium and expert datasets of the same store where they exist (suite/data/build.py
# `_reusable`, same arrays as a rollout), so list medium and expert before it.
set -u
cd "$(dirname "$0")/.."
env=$1; shift
out=runs/databuild
mkdir -p "$out"
export OMP_NUM_THREADS=1
for level in "$@"; do
  id="$env-$level-v1"
  for copy in a b; do
    [ -f "$out/$id.$copy.done" ] && continue
    MINARI_DATASETS_PATH="$PWD/$out/store-$copy" python -m suite data build "$id" --no-progress >> "$out/build.log" 2>&1 \
      && touch "$out/$id.$copy.done" || { echo "build of $id ($copy) failed: see $out/build.log"; exit 1; }
  done
  sums=()
  for copy in a b; do
    meta=$(find "$out/store-$copy" -path "*${env}/${level}-v1/data/metadata.json" | head -1)
    sums+=("$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['suite_checksum'])" "$meta")")
  done
  verdict=$([ "${sums[0]}" = "${sums[1]}" ] && echo same || echo DIFFERENT)
  echo "$id $verdict ${sums[0]} ${sums[1]}" | tee -a "$out/checksums.txt"
  if [ "$verdict" = same ]; then  # record it as the canonical build (suite/data/canonical.json; commit it)
    # under a lock: two of these scripts may run side by side (one environment each)
    flock "$out/canonical.lock" python - "suite/$env/$level-v1" "${sums[0]}" <<'PY'
import json, platform, sys
from importlib.metadata import version
path = "suite/data/canonical.json"
entries = json.load(open(path))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
old = entries.get(sys.argv[1], {}).get("checksum")
if old not in (None, sys.argv[2]):
    sys.exit(f"{sys.argv[1]}: built {sys.argv[2][:12]}..., canonical.json has {old[:12]}...: not overwritten")
entries[sys.argv[1]] = {"checksum": sys.argv[2], "confirmed": f"built twice into two stores, identical ({cpu}, "
                        f"mujoco {version('mujoco')}, torch {version('torch')})"}
open(path, "w").write(json.dumps(entries, indent=1) + "\n")
PY
  fi
done
