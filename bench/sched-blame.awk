# Who kept keygate's event loop and the mock waiting for the CPU: reads
# `perf sched timehist --state` output (one line per switch-out) of the
# arm's CPU and, for every switch-in of a loop thread or the mock that
# waited for the CPU longer than min_us (after a wakeup, or after it was
# preempted), blames the task that ran on that CPU just before. Used by
# bench/run's c=1 scheduling trace.
#
#   awk -v cpu=0 -v min_us=100 -v requests=N -v loop='^kg-loop' \
#       -f sched-blame.awk timehist.txt
#
# timehist columns: time, [cpu], task[tid/pid], wait, sch delay, run (ms),
# state at switch-out.

function task(s) { sub(/\[.*/, "", s); return s }

$2 == "[" sprintf("%04d", cpu) "]" {
  name = task($3)
  tid = $3
  if (name ~ loop || name == "nginx") {
    woken++
    # Waiting for the CPU: after a wakeup, the "sch delay"; after a
    # preemption (it left the CPU runnable, state R), all of "wait time".
    d = (last_state[tid] == "R" ? $4 : $5) * 1000
    if (last_state[tid] == "R") preempted++
    if (d > min_us) {
      delayed++
      by[prev]++
      if (d > 500) over500++
    }
  }
  last_state[tid] = $NF
  prev = name
}

END {
  printf "SCHED switch_ins=%d after_preemption=%d delayed_over_%dus=%d over_500us=%d", woken, preempted, min_us, delayed, over500
  if (requests > 0) printf " per_1000_requests=%.1f", 1000 * delayed / requests
  printf "\n"
  n = 0
  for (t in by) order[++n] = t
  for (i = 2; i <= n; i++) {
    t = order[i]
    for (j = i - 1; j >= 1 && by[order[j]] < by[t]; j--) order[j + 1] = order[j]
    order[j + 1] = t
  }
  for (i = 1; i <= n && i <= 8; i++)
    printf "  %-20s %6d  %s\n", order[i], by[order[i]], note(order[i])
}

function note(t) {
  if (t == "<idle>") return "the CPU was idle: wakeup latency of the machine (an idle vCPU)"
  if (t ~ /^kg-usage/) return "usage writer"
  if (t ~ /^kg-loop/ || t ~ /^keygate-floor/) return "the event loop (its own work)"
  if (t == "kg-keycache") return "key-cache refresh thread"
  if (t == "kg-maint") return "maintenance thread"
  if (t == "nginx") return "the mock provider"
  return ""
}
