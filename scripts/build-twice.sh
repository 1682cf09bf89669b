#!/usr/bin/env bash
# Build v1 datasets twice, into two separate Minari stores, and compare their checksums (issue 22: a build is
# deterministic). Usage: scripts/build-twice.sh ENV LEVEL...   e.g. scripts/build-twice.sh hopper medium expert
# Restartable: a finished (dataset, copy) is skipped (runs/databuild/<id>.<copy>.done); one line per dataset is
# appended to runs/databuild/checksums.txt ("same" or "DIFFERENT" and both checksums). One thread per build.
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
done
