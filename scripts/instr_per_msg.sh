#!/usr/bin/env bash
# Instructions per message (send + recv of the seed's Msg, one thread) under callgrind,
# built the way a user's crate builds shmproc: the default release profile, no LTO, 16
# codegen units (our [profile.release] does not reach a dependent crate).
# Two runs (N and 2N messages); the difference over N cancels start-up.
#   scripts/instr_per_msg.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/user-profile}
cargo build --release --example pipe_fastpath -q
bin=$CARGO_TARGET_DIR/release/examples/pipe_fastpath
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" 2>&1 \
    | awk '/Collected/ {print $4}'
}
a=$(count "$N"); b=$(count $((2 * N)))
echo "instructions per message (send + recv, default release profile): $(( (b - a) / N ))  [N=$N: $a, 2N: $b]"
