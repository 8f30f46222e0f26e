#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and black-box tests against the real
# binary. Installs what the tests need when it is missing (as root; otherwise it prints the
# command to run and stops). Used by `.ci/run`.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# The cluster tests start their own Redis servers (Debian's 7.0).
command -v redis-server >/dev/null || need_apt+=(redis-server)
if ((${#need_apt[@]})); then
    # Only what the tests run: recommended packages would pull in a desktop's worth (over a
    # hundred packages, upgrading systemd and perl, for chromium alone).
    install="apt-get install -y --no-install-recommends ${need_apt[*]}"
    if ((EUID != 0)); then
        echo "scripts/test.sh: the tests need ${need_apt[*]}, which are missing, and installing" >&2
        echo "them needs root. Run this, then run scripts/test.sh again:" >&2
        echo "" >&2
        echo "    sudo apt-get update && sudo $install" >&2
        exit 1
    fi
    echo "installing: ${need_apt[*]}"
    apt-get update -qq && $install -qq
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

# On a clean clone (CI) the debug build of every test binary with full debug info and
# incremental state takes over 20 GB; line tables (enough for a panic's backtrace) and no
# incremental state keep it to a fraction of that, and link faster.
if [[ ${CI:-} == true ]]; then
    export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The black-box tests run the real binary; build it first.
cargo build --bin palisade
cargo nextest run --workspace --no-fail-fast
# Again on the single-threaded runtime that `workers = 1` selects (black-box tests only).
PALISADE_TEST_WORKERS=1 cargo nextest run -p palisade-blackbox -E 'kind(test)' --no-fail-fast
cargo test --workspace --doc
