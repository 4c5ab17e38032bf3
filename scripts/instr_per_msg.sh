#!/usr/bin/env bash
# Instructions per message (send + recv in one thread, examples/pipe_fastpath.rs) under
# callgrind, built the way a user's crate builds shmproc: the default release profile, no
# LTO, 16 codegen units (our [profile.release] does not reach a dependent crate).
# Two runs per mode (N and 2N messages); the difference over N cancels start-up.
#   scripts/instr_per_msg.sh [N] [MODE...]
# Modes (one output line each; default: all of MODES below):
#   msg   the seed's Msg through pipe::<Msg>()  (the line format predates the modes)
#   u64   u64 through pipe::<u64>()
#   send_slice  u64 slices: send_slice + recv_slice, per element
#   recv_slice  u64 sent one by one with send, read with recv_slice, per element
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
shift $(($# > 0 ? 1 : 0))
# The example sends whole batches of 4096 (its BATCH), so the difference is over exactly N
# messages only when N is a multiple of it: round up.
N=$(( (N + 4095) / 4096 * 4096 ))
# ---- the rows --------------------------------------------------------------------
# Each mode is an argument of examples/pipe_fastpath.rs; label() names its output line.
# The Pod batch rows (issue 16 item 3) are counted per element of the slice.
MODES=(msg u64 send_slice recv_slice)
label() {
  case $1 in
    msg) echo "send + recv" ;;
    u64) echo "send + recv of u64" ;;
    send_slice) echo "send_slice + recv_slice of u64, per element" ;;
    recv_slice) echo "send + recv_slice of u64, per element" ;;
    *) echo "$1" ;;
  esac
}
# ------------------------------------------------------------------------------------
[ $# -gt 0 ] && MODES=("$@")
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/user-profile}
cargo build --release --example pipe_fastpath -q
bin=$CARGO_TARGET_DIR/release/examples/pipe_fastpath
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
    | awk '/Collected/ {print $4}'
}
for mode in "${MODES[@]}"; do
  a=$(count "$N" "$mode"); b=$(count $((2 * N)) "$mode")
  # Two decimals: a truncated whole number would hide up to one instruction.
  per=$(awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / n }')
  echo "instructions per message ($(label "$mode"), default release profile): $per  [N=$N: $a, 2N: $b]"
done
