#!/usr/bin/env bash
# Runs the cross-process tests under valgrind (memcheck), forked children included.
#   scripts/valgrind.sh                 # the default selection below
#   scripts/valgrind.sh pipe duplex     # test binary `pipe`, tests matching "duplex"
# Exit status is non-zero if valgrind reports an error in any process.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --no-run --tests 2>/dev/null
bin() { ls -t target/debug/deps/"$1"-* | grep -v '\.d$' | head -1; }
VG=(valgrind -q --error-exitcode=99 --trace-children=yes --child-silent-after-fork=no
    --leak-check=no --track-origins=no)
run() {
  local name=$1; shift
  echo "== valgrind: $name $*"
  "${VG[@]}" "$(bin "$name")" --test-threads=1 "$@"
}
if [ $# -gt 0 ]; then run "$@"; exit; fi
run pipe sizes_from_zero duplex_ping_pong reader_sees_disconnected sigkill_of_the_writer two_writer try_send
run hostile
run proptests a_valid any_flipped
run sync
run queue
run pool
for b in sync_spawn queue_spawn pool_spawn; do
  echo "== valgrind: $b (fork and spawn)"
  "${VG[@]}" "$(bin $b)"
done
echo "== valgrind: process_spawn (fork and spawn)"
"${VG[@]}" "$(bin process_spawn)"
echo "== valgrind: all clean"
