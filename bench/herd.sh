#!/usr/bin/env bash
# The cache's herd figure: 500 concurrent requests for one cold URL whose origin takes 200 ms.
# Runs the black-box herd test against the release binary and prints how long after the
# origin's answer the slowest of the 500 waiters had its own (the issue's target: 50 ms; its
# reference figures: nginx's cache lock about 600 ms, Varnish about 360 ms).
#
#   bench/herd.sh            # 5 runs, each figure and the median
#   HERD_RUNS=10 bench/herd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${HERD_RUNS:-5}
cargo build --release --bin palisade >&2
figures=()
for ((i = 1; i <= runs; i++)); do
    line=$(PALISADE_BIN="$PWD/target/release/palisade" cargo nextest run -p palisade-blackbox \
        --test cache_coalescing herd --no-capture 2>&1 | grep -m1 'slowest of' || true)
    [[ -n $line ]] || { echo "run $i: no figure (test failed?)" >&2; continue; }
    ms=$(sed -E 's/.*: ([0-9.]+)(ms|µs|s) after.*/\1 \2/' <<<"$line" |
        awk '{v = $1; if ($2 == "µs") v /= 1000; else if ($2 == "s") v *= 1000; printf "%.1f", v}')
    echo "run $i: slowest waiter answered $ms ms after the origin's answer"
    figures+=("$ms")
done
((${#figures[@]})) || exit 1
median=$(printf '%s\n' "${figures[@]}" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
echo "palisade: median $median ms over ${#figures[@]} runs (target 50 ms; issue's references: nginx ~600 ms, Varnish ~360 ms)"
