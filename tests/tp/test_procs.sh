#!/bin/sh
# test_procs.sh: a world of processes, a rank each, on the CPU simulator (mlk-run, the llama-gqa7
# fixture of tests/hf at tp = 2):
#   - two processes launched with MLK_WORLD_SIZE/MLK_RANK/MLK_RENDEZVOUS give bitwise the ids and
#     logits of the same world in one process (both sum in rank order); rank 1 prints nothing;
#   - a rank that stops (a bad prompt) makes the other fail at its next collective with that
#     rank's message, at once, not at a deadline;
#   - a rank that never comes is named by rank 0's deadline (MLK_WORLD_TIMEOUT_MS);
#   - with mpirun (Open MPI) installed, `mpirun -n 2 mlk-run ...` gives the same ids again (the
#     rank, the size and the rendezvous come from mpirun's environment).
#
#   test_procs.sh MLK_RUN FIXTURE_DIR
set -u
run=$1 fx=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mlk_procs.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
export MLK_BACKEND=cpu
unset MLK_WORLD_SIZE MLK_RANK MLK_RENDEZVOUS OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_RANK
fail=0
bad() { echo "FAIL: $*"; fail=1; }
args="--model $fx --prompts $fx/prompts.txt --steps 5"

"$run" $args --tp 2 --logits-out "$tmp/one.f32" > "$tmp/one.ids" 2> "$tmp/one.err" ||
  { cat "$tmp/one.err"; bad "one process, --tp 2"; }

for r in 0 1; do
  MLK_WORLD_SIZE=2 MLK_RANK=$r MLK_RENDEZVOUS="$tmp/rdv" \
    "$run" $args --logits-out "$tmp/p$r.f32" > "$tmp/p$r.ids" 2> "$tmp/p$r.err" &
done
wait
grep "model:" "$tmp/p0.err"
grep -q "over 2 ranks, a process each (sums: host)" "$tmp/p0.err" || { cat "$tmp/p0.err" "$tmp/p1.err"; bad "two processes"; }
cmp -s "$tmp/one.ids" "$tmp/p0.ids" || bad "the ids of two processes differ from one process's"
cmp -s "$tmp/one.f32" "$tmp/p0.f32" || bad "the logits of two processes differ from one process's"
[ -s "$tmp/p1.ids" ] && bad "rank 1 printed ids"
[ -e "$tmp/p1.f32" ] && bad "rank 1 wrote logits"
[ -e "$tmp/rdv" ] && bad "the rendezvous file is left behind"
[ $fail -eq 0 ] && echo "two processes: the ids and logits of one process, bit for bit"

# rank 1 stops: rank 0 fails with its message
MLK_WORLD_SIZE=2 MLK_RANK=0 MLK_RENDEZVOUS="$tmp/rdv2" "$run" $args > /dev/null 2> "$tmp/s0.err" &
pid=$!
MLK_WORLD_SIZE=2 MLK_RANK=1 MLK_RENDEZVOUS="$tmp/rdv2" "$run" --model "$fx" --prompt-ids 1,99999 \
  --steps 5 > /dev/null 2> "$tmp/s1.err"
rc1=$?
wait $pid
rc0=$?
tail -n 1 "$tmp/s0.err"
[ $rc0 -ne 0 ] && [ $rc1 -ne 0 ] || bad "a stopping rank: exit statuses $rc0 and $rc1"
grep -q "rank 0 of 2 stopped at .*: rank 1 failed: prompt 0: token id 99999 is outside the vocabulary" "$tmp/s0.err" ||
  { cat "$tmp/s0.err"; bad "rank 0 does not name rank 1's failure"; }

# rank 1 never comes: rank 0's deadline names it
MLK_WORLD_TIMEOUT_MS=1000 MLK_WORLD_SIZE=2 MLK_RANK=0 MLK_RENDEZVOUS="$tmp/rdv3" "$run" $args \
  > /dev/null 2> "$tmp/t0.err" && bad "rank 0 alone succeeded"
tail -n 1 "$tmp/t0.err"
grep -q "rank 0 of 2 waited 1000 ms at joining the world for rank(s) 1, which did not arrive" "$tmp/t0.err" ||
  bad "rank 0 does not name the missing rank"

# mpirun, where Open MPI is installed
if command -v mpirun > /dev/null 2>&1; then
  root=
  [ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
  mpirun $root --oversubscribe -n 2 -x MLK_BACKEND "$run" $args > "$tmp/mpi.ids" 2> "$tmp/mpi.err" ||
    { cat "$tmp/mpi.err"; bad "mpirun -n 2"; }
  cmp -s "$tmp/one.ids" "$tmp/mpi.ids" && echo "mpirun -n 2: the ids of one process" ||
    bad "mpirun's ids differ from one process's"
else
  echo "mpirun not installed: its launch not tried"
fi
[ $fail -eq 0 ] && echo "test_procs: ok"
exit $fail
