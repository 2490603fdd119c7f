#!/usr/bin/env bash
# Run the asv suite once in quick mode against the installed minivec2vec (CI: keeps the
# benchmarks from rotting). Fails when any benchmark fails.
set -euo pipefail
cd "$(dirname "$0")"
asv machine --yes > /dev/null
log=$(mktemp)
asv run -E existing --quick --show-stderr 2>&1 | tee "$log"
if grep -qE "^\s*·.*failed|\bfailed\b" "$log"; then
    echo "asv: some benchmarks failed" >&2
    exit 1
fi
