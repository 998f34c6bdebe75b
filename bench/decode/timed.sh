# timed.sh: one stage of a GPU-machine script under a time limit, sourced by run.sh and call.sh.
#   timed LIMIT LOG CMD...   runs CMD with its output in LOG, stopped (then killed 10 s later) after
#                            LIMIT seconds; sets timed_status (CMD's exit status; 124 or 137 when
#                            the limit stopped it), timed_secs (its wall seconds) and timed_how
#                            ("exit S", or "time limit (LIMIT s)"); returns timed_status.
timed() {
  timed_limit=$1 timed_log=$2
  shift 2
  timed_t0=$(date +%s)
  timeout -k 10 "$timed_limit" "$@" > "$timed_log" 2>&1
  timed_status=$?
  timed_secs=$(($(date +%s) - timed_t0))
  timed_how="exit $timed_status"
  if [ "$timed_status" -eq 124 ] || [ "$timed_status" -eq 137 ]; then
    timed_how="time limit ($timed_limit s)"
  fi
  return "$timed_status"
}
