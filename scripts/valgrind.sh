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
# Left out: the three spawn tests of a job's provenance (a job handed over by another
# program, by a setuid copy, to a touched copy of this binary). Under valgrind every
# traced process's executable is valgrind's own tool, so the provenance check cannot
# tell the programs apart, and a setuid copy does not run at all ("Can't execute
# setuid/setgid/setcap executable"). They run in every `cargo test`.
"${VG[@]}" "$(bin process_spawn)" \
  --skip a_job_handed_over_by_another_program_never_runs::spawn \
  --skip a_setuid_program_ignores_spawn_jobs_and_refuses_to_spawn::spawn \
  --skip start_reports_a_child_that_refused_its_job_and_reaps_it::spawn
echo "== valgrind: all clean"
