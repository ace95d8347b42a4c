#!/usr/bin/env bash
# DKV against real etcd, same load generator (dkv bench put|range|txn-put|watch|lease-keepalive|
# lease-grant|counter|lock), same machine, then put and range again with auth enabled on both; then
# what each idle 3-node cluster costs (CPU and RSS per member); then the footprint of one node of
# each (dkv bench footprint).
#
# Starts a 3-member etcd and a 3-node DKV (dkv dev) on loopback with temporary data directories,
# waits until both are healthy, runs each workload against etcd and then DKV, prints a table with
# the DKV/etcd ratio, and stops both clusters and removes the directories on exit (also on error
# or Ctrl-C). Never run in CI: the numbers depend on the machine.
#
# Usage: bench/compare-etcd.sh
# Environment:
#   COMPARE_SCALE=F     multiply every workload's --total (--put-total) by F (default 1; 0.2 for a quick look)
#   COMPARE_ONLY=RE     run only the workloads whose name matches the extended regex RE
#                       (e.g. COMPARE_ONLY='one key', COMPARE_ONLY='^put', COMPARE_ONLY='^lease';
#                       COMPARE_ONLY=idle for the idle cost alone; COMPARE_ONLY=disk for each
#                       member's mean log sync after the rows that ran; COMPARE_ONLY=auth for the rows
#                       run with auth enabled on both clusters, whose names end in ", auth": a
#                       regex such as '^put' picks them too, and turns auth on and off for them)
#   COMPARE_KEEP=1      keep the temporary directory (logs, raw results) instead of removing it
#   COMPARE_FOOTPRINT_KEYS="500000 2000000"
#                       the sizes of the footprint rows (dkv bench footprint: one node of each, memory
#                       per key, bulk load, restart, overwrites and deletes; COMPARE_ONLY=footprint for
#                       those rows alone)
#   ETCD=/path/etcd     the etcd binary (default: etcd on PATH; needs 3.4 or later)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
etcd_bin="${ETCD:-etcd}"
scale="${COMPARE_SCALE:-1}"
health_wait_s=30
stop_wait_s=10
idle_settle_s=15 # before sampling idle CPU: the settle after the workloads' writes runs first
idle_sample_s=20

fail() {
  echo "compare-etcd.sh: $*" >&2
  exit 1
}

command -v "$etcd_bin" >/dev/null 2>&1 \
  || fail "etcd not found (looked for \"$etcd_bin\"); install it (Debian: apt-get install etcd-server etcd-client) or set ETCD=/path/to/etcd"
command -v etcdctl >/dev/null 2>&1 || fail "etcdctl not found; install it (Debian: apt-get install etcd-client)"
command -v node >/dev/null 2>&1 || fail "node not found"
[[ -d "$repo/node_modules" ]] || fail "run npm install in $repo first"
[[ "$scale" =~ ^[0-9]*\.?[0-9]+$ ]] || fail "COMPARE_SCALE must be a positive number, got \"$scale\""
etcd_version="$("$etcd_bin" --version 2>/dev/null | head -n 1 || true)"
[[ "$etcd_version" == *"Version: 3."* ]] || fail "\"$etcd_bin --version\" does not report etcd 3.x: $etcd_version"
# The rows measure the compiled build. With DKV_FROM_SOURCE=1, no build, or a build older than
# the sources, bin/dkv.js runs the TypeScript through tsx (bin/load.js), whose loader and
# transpiler slow every DKV process and the load generator (bench/README.md).
[[ "${DKV_FROM_SOURCE:-}" != 1 ]] || fail "DKV_FROM_SOURCE=1 runs the sources through tsx; unset it: the rows measure the build"
build_state() {
  (cd "$repo" && node --input-type=module -e "const { buildUnusable } = await import('./bin/load.js'); process.stdout.write(buildUnusable() ?? 'usable')") \
    || fail "could not check the build in dist/ (bin/load.js)"
}
dkv_build="$(build_state)"
if [[ "$dkv_build" != usable ]]; then
  echo "compare-etcd.sh: the build in dist/ is $dkv_build; running npm run build" >&2
  (cd "$repo" && npm run --silent build) || fail "npm run build failed"
  dkv_build="$(build_state)"
  [[ "$dkv_build" == usable ]] || fail "the build in dist/ is still $dkv_build after npm run build (a source file dated in the future?)"
fi

work="$(mktemp -d)"  # a fresh temporary directory for both clusters
etcd_pids=()
dkv_pid=""
bench_pid=""

stop_pid() { # pid signal: signal it, wait up to stop_wait_s, then SIGKILL
  local pid="$1" signal="$2"
  kill -"$signal" "$pid" 2>/dev/null || return 0
  for _ in $(seq $((stop_wait_s * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "compare-etcd.sh: pid $pid did not stop after SIG$signal; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

stop_clusters() { # both 3-node clusters, if running
  if [[ -n "$dkv_pid" ]]; then
    # dkv dev stops its dkv server processes on SIGTERM; remember them in case it cannot. (TERM,
    # not INT: a non-interactive shell starts background jobs with SIGINT ignored.)
    local servers
    servers="$(pgrep -P "$dkv_pid" || true)"
    stop_pid "$dkv_pid" TERM
    for pid in $servers; do stop_pid "$pid" TERM; done
    dkv_pid=""
  fi
  for pid in "${etcd_pids[@]}"; do stop_pid "$pid" TERM; done
  etcd_pids=()
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$bench_pid" ]]; then kill -TERM "$bench_pid" 2>/dev/null || true; fi
  stop_clusters
  if [[ "${COMPARE_KEEP:-0}" == 1 ]]; then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Ports: one free block of 3 DKV nodes (client, peer, metrics = P, P+1, P+2, step 10) and
# ---- 3 etcd members (client, peer = E, E+1, step 10) at E = P + 100. Below 32768, the start of
# ---- Linux's usual ephemeral range, so an outgoing connection cannot take a port meanwhile.
port_free() { ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
pick_base() {
  local base p ok
  for _ in $(seq 100); do
    base=$((20000 + 200 * (RANDOM % 60)))
    ok=1
    for p in $base $((base + 1)) $((base + 2)) $((base + 10)) $((base + 11)) $((base + 12)) \
      $((base + 20)) $((base + 21)) $((base + 22)) \
      $((base + 100)) $((base + 101)) $((base + 110)) $((base + 111)) $((base + 120)) $((base + 121)); do
      port_free "$p" || { ok=0; break; }
    done
    if [[ $ok == 1 ]]; then echo "$base"; return 0; fi
  done
  return 1
}
base="$(pick_base)" || fail "no free port block found in 20000-31999"
dkv_endpoints="127.0.0.1:$base,127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20))"
e=$((base + 100))
etcd_endpoints="127.0.0.1:$e,127.0.0.1:$((e + 10)),127.0.0.1:$((e + 20))"

# ---- Start etcd (3 members, no TLS, default snapshot count; --metrics extensive for its per-call
# ---- handling-time histogram, grpc_server_handling_seconds, which DKV always serves).
initial_cluster="e1=http://127.0.0.1:$((e + 1)),e2=http://127.0.0.1:$((e + 11)),e3=http://127.0.0.1:$((e + 21))"
for i in 1 2 3; do
  c=$((e + 10 * (i - 1)))
  # Unset ETCD_* so a caller's environment cannot change the members' configuration.
  env $(env | grep -o '^ETCD_[A-Z_]*' | sed 's/^/-u /') "$etcd_bin" \
    --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$((c + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((c + 1))" \
    --initial-cluster "$initial_cluster" --initial-cluster-state new --initial-cluster-token "dkv-compare-$$" \
    --metrics extensive >"$work/etcd$i.log" 2>&1 &
  etcd_pids+=($!)
done

# ---- Start DKV (dkv dev: 3 dkv server processes).
node "$repo/bin/dkv.js" dev --base-port "$base" --data-dir "$work/dkv" >"$work/dkv-dev.log" 2>&1 &
dkv_pid=$!

wait_healthy() { # name endpoints
  local name="$1" endpoints="$2"
  for _ in $(seq $((health_wait_s * 2))); do
    if ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --command-timeout=2s endpoint health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "compare-etcd.sh: $name is not healthy after ${health_wait_s} s; last log lines:" >&2
  tail -n 20 "$work"/"$name"*.log >&2 || true
  exit 1
}
wait_healthy etcd "$etcd_endpoints"
wait_healthy dkv "$dkv_endpoints"
# Each system's endpoints with its leader first (DKV: the default store's shard leader, which
# `endpoint status` reports): a row over one connection then talks to the leader on both, not to
# whichever member the election happened to pick, and the rows "..., to a follower" to a follower.
# A write sent to a follower costs one more round trip on both systems, so an endpoint picked at
# random made the single-client rows' ratio swing with the two elections.
leader_of() { # endpoints: the one whose member is the leader (etcdctl's field output, ids compared as text); nothing when unknown
  local status
  status="$(ETCDCTL_API=3 etcdctl --endpoints="$1" --command-timeout=5s endpoint status -w fields 2>/dev/null)" || return 0
  awk -F' : ' '$1 == "\"MemberID\"" { m = $2 "" } $1 == "\"Leader\"" { l = $2 "" }
    $1 == "\"Endpoint\"" { gsub(/"/, "", $2); if (m == l) print $2; m = ""; l = "" }' <<<"$status"
}
leader_first() { # endpoints
  local leader
  leader="$(leader_of "$1")"
  [[ $(wc -w <<<"$leader") == 1 ]] || fail "no single leader among $1"
  tr ',' '\n' <<<"$1" | awk -v l="$leader" '$0 == l { print; next } { rest = rest "," $0 } END { printf "%s", rest }' | tr -d '\n'
}
follower_first() { # leader-first endpoints: the second (a follower) first, then the leader, then the rest
  awk -F, '{ printf "%s,%s", $2, $1; for (i = 3; i <= NF; i++) printf ",%s", $i }' <<<"$1"
}
echo "etcd:  $etcd_version  at $etcd_endpoints"
echo "DKV:   dkv dev (3 nodes)  at $dkv_endpoints"
echo "host:  $(nproc) CPUs, $(uname -sr), data in $work"
echo

# ---- Workloads: name | bench target | flags (both targets get the same flags).
n() { awk -v t="$1" -v s="$scale" 'BEGIN { v = int(t * s); print (v < 1 ? 1 : v) }'; }
workloads=(
  "put 1 client|put|--conns 1 --clients 1 --total $(n 2000) --key-size 8 --val-size 256 --key-space-size 100000"
  "put 1 client, to a follower|put|--conns 1 --clients 1 --total $(n 2000) --key-size 8 --val-size 256 --key-space-size 100000"
  "put 100 clients, 10 conns|put|--conns 10 --clients 100 --total $(n 20000) --key-size 8 --val-size 256 --key-space-size 100000"
  "range l 1 client|range|--conns 1 --clients 1 --total $(n 2000) --consistency l"
  "range s 1 client|range|--conns 1 --clients 1 --total $(n 2000) --consistency s"
  "range l 100 clients, 10 conns|range|--conns 10 --clients 100 --total $(n 40000) --consistency l"
  "range s 100 clients, 10 conns|range|--conns 10 --clients 100 --total $(n 40000) --consistency s"
  "txn-put 100 clients, 10 conns|txn-put|--conns 10 --clients 100 --total $(n 20000) --key-size 8 --val-size 256 --key-space-size 100000"
  # Watch: 10 streams x 100 watchers over 10 conns, key space 100, so every put reaches 10 watchers.
  "watch 10x100, 500 puts/s|watch|--conns 10 --streams 10 --watch-per-stream 100 --key-space-size 100 --put-total $(n 2000) --put-rate 500 --val-size 256"
  "watch 10x100, puts unpaced|watch|--conns 10 --streams 10 --watch-per-stream 100 --key-space-size 100 --put-total $(n 4000) --put-rate 0 --val-size 256"
  "watch 10x100 prefix, unpaced|watch|--conns 10 --streams 10 --watch-per-stream 100 --key-space-size 100 --put-total $(n 4000) --put-rate 0 --val-size 256 --prefix"
  # Fan-out: one key, so every put reaches all 1,000 watchers.
  "watch 10x100 one key, unpaced|watch|--conns 10 --streams 10 --watch-per-stream 100 --key-space-size 1 --put-total $(n 300) --put-rate 0 --val-size 256"
  # Leases: renewals over one keep-alive stream per client (one lease each), and grant -> revoke cycles.
  "lease-keepalive 1 client|lease-keepalive|--conns 1 --clients 1 --total $(n 2000)"
  "lease-keepalive 100 clients, 10 conns|lease-keepalive|--conns 10 --clients 100 --total $(n 20000)"
  "lease-grant 1 client|lease-grant|--conns 1 --clients 1 --total $(n 1000)"
  "lease-grant 10 clients, 10 conns|lease-grant|--conns 10 --clients 10 --total $(n 5000)"
  # Counters: dkv.v1.Counter on DKV; on etcd a Range + Txn compare-and-swap loop (dkv bench counter
  # picks by what the endpoint serves). One key: every client contends on it.
  "counter 1 client|counter|--conns 1 --clients 1 --total $(n 2000)"
  "counter 10 clients, 10 conns|counter|--conns 10 --clients 10 --total $(n 1000)"
  "counter 100 clients, 10 conns|counter|--conns 10 --clients 100 --total $(n 1000)"
  "counter 100 clients, 100 keys|counter|--conns 10 --clients 100 --counters 100 --total $(n 10000)"
  # Locks: v3lockpb Lock -> Unlock cycles, one session lease per client, every client on one lock.
  "lock --clients 10|lock|--conns 10 --clients 10 --total $(n 2000)"
  "lock --clients 100|lock|--conns 10 --clients 100 --total $(n 3000)"
)
# The cost of auth: the same calls with auth enabled on both clusters, made as root (a simple token,
# checked on every call; DKV also checks every write again where it applies). They run last, once
# auth is enabled, and auth is disabled again after them.
auth_password="compare-$$"
auth_workloads=(
  "put 1 client, auth|put|--conns 1 --clients 1 --total $(n 2000) --key-size 8 --val-size 256 --key-space-size 100000 --user root:$auth_password"
  "put 100 clients, 10 conns, auth|put|--conns 10 --clients 100 --total $(n 20000) --key-size 8 --val-size 256 --key-space-size 100000 --user root:$auth_password"
  "range l 100 clients, 10 conns, auth|range|--conns 10 --clients 100 --total $(n 40000) --consistency l --user root:$auth_password"
)
selected() { # name: whether COMPARE_ONLY lets this workload run
  [[ -z "${COMPARE_ONLY:-}" || "$1" =~ $COMPARE_ONLY ]]
}

run_bench() { # target endpoints flags...: one JSON line into $work/bench.json; status in $?
  node "$repo/bin/dkv.js" bench "$1" --endpoints "$2" --json "${@:3}" >"$work/bench.json" 2>"$work/bench.err" &
  bench_pid=$!
  # wait (not a foreground child) so a signal to this script is handled at once.
  wait "$bench_pid"
}
bench() { # target endpoints flags...: as run_bench; a run with errors still counts (dkv bench exits 1)
  local status=0
  run_bench "$@" || status=$?
  if ((status >= 128)); then
    # Killed by a signal from outside (a shared machine); one more try before giving up.
    echo "compare-etcd.sh: dkv bench $1 was killed (status $status); running it again" >&2
    status=0
    run_bench "$@" || status=$?
  fi
  bench_pid=""
  if [[ $status != 0 && $status != 1 ]]; then
    echo "compare-etcd.sh: dkv bench $* exited with status $status:" >&2
    cat "$work/bench.err" >&2
    return 1
  fi
}

# Warm-up (not reported): fill etcd's and DKV's key 0 for range, then bring DKV's request path to
# its steady state. A fresh DKV node's first ~20,000-30,000 puts cost 20-40% more CPU than later
# ones (V8 optimizes its functions as they run; bench/README.md, "Warm-up"), so the rows measure
# each system after the warm-up's puts (35,000 at COMPARE_SCALE=1). Both get the same warm-up.
for endpoints in "$etcd_endpoints" "$dkv_endpoints"; do
  bench put "$endpoints" --conns 10 --clients 50 --total "$(n 5000)" --val-size 256 || fail "warm-up against $endpoints failed"
  bench put "$endpoints" --conns 10 --clients 100 --total "$(n 30000)" --val-size 256 --key-space-size 100000 || fail "warm-up against $endpoints failed"
  for prefix in "" --prefix; do
    # shellcheck disable=SC2086 # an empty $prefix is no argument
    bench watch "$endpoints" --conns 10 --streams 10 --watch-per-stream 100 --key-space-size 10 --put-total "$(n 2000)" --put-rate 0 --val-size 256 $prefix ||
      fail "watch warm-up against $endpoints failed"
  done
done
# The lease paths get a warm-up of their own, only when a lease workload runs.
lease_selected=0
for workload in "${workloads[@]}"; do
  IFS='|' read -r name target _ <<<"$workload"
  if [[ $target == lease-* ]] && selected "$name"; then lease_selected=1; fi
done
counter_selected=0
lock_selected=0
for workload in "${workloads[@]}"; do
  IFS='|' read -r name target _ <<<"$workload"
  if [[ $target == counter ]] && selected "$name"; then counter_selected=1; fi
  if [[ $target == lock ]] && selected "$name"; then lock_selected=1; fi
done
if [[ $counter_selected == 1 ]]; then
  for endpoints in "$etcd_endpoints" "$dkv_endpoints"; do
    bench counter "$endpoints" --conns 10 --clients 10 --counters 10 --total "$(n 2000)" || fail "counter warm-up against $endpoints failed"
  done
fi
if [[ $lock_selected == 1 ]]; then
  for endpoints in "$etcd_endpoints" "$dkv_endpoints"; do
    bench lock "$endpoints" --conns 10 --clients 10 --total "$(n 500)" || fail "lock warm-up against $endpoints failed"
  done
fi
if [[ $lease_selected == 1 ]]; then
  for endpoints in "$etcd_endpoints" "$dkv_endpoints"; do
    bench lease-keepalive "$endpoints" --conns 10 --clients 10 --total "$(n 2000)" || fail "lease-keepalive warm-up against $endpoints failed"
    bench lease-grant "$endpoints" --conns 10 --clients 10 --total "$(n 500)" || fail "lease-grant warm-up against $endpoints failed"
  done
fi

# The leaders, once the warm-ups are over (an election during them would move it).
etcd_endpoints="$(leader_first "$etcd_endpoints")"
dkv_endpoints="$(leader_first "$dkv_endpoints")"
echo "leaders first:  etcd $etcd_endpoints  DKV $dkv_endpoints"
echo
# One client's puts to the leader run paths the 100-client warm-up does not (a batch of one): a
# warm-up of their own (DKV's first ~2,000 were ~20% slower than the next).
for endpoints in "$etcd_endpoints" "$dkv_endpoints"; do
  bench put "$endpoints" --conns 1 --clients 1 --total "$(n 1000)" --val-size 256 --key-space-size 100000 || fail "warm-up against $endpoints failed"
done

results="$work/results.jsonl"
: >"$results"
handling="$work/handling.txt"
: >"$handling"
metrics_url_of() { # system endpoint: the member's /metrics (etcd: on its client port; DKV: its metrics port)
  if [[ $1 == etcd ]]; then echo "http://$2/metrics"; else echo "http://${2%:*}:$((${2##*:} + 2))/metrics"; fi
}
handling_sum_count() { # url method: "sum count" of grpc_server_handling_seconds of etcdserverpb.KV's unary method; nothing when unread
  { curl -fsS --max-time 5 "$1" 2>/dev/null || true; } | awk -v m="grpc_method=\"$2\"" '
    index($1, "grpc_server_handling_seconds_") == 1 && index($1, m) && index($1, "grpc_service=\"etcdserverpb.KV\"") && index($1, "grpc_type=\"unary\"") {
      if (index($1, "_sum{")) s += $2; else if (index($1, "_count{")) c += $2
    }
    END { if (c > 0) printf "%.9f %d", s, c }'
}
run_workload() { # "name|target|flags": runs it against etcd, then DKV; a line each, and into $results
  local name target flags system endpoints line
  IFS='|' read -r name target flags <<<"$1"
  for system in etcd dkv; do
    endpoints="$etcd_endpoints"
    [[ $system == dkv ]] && endpoints="$dkv_endpoints"
    [[ $name == *", to a follower" ]] && endpoints="$(follower_first "$endpoints")"
    # A single client's puts: the member it talks to also reports how long its handler took (the
    # rest of a put's latency is the client's, the network's and both gRPC stacks').
    local url="" before="" after="" s0 c0 s1 c1
    if [[ $target == put && $flags == *"--conns 1 --clients 1 "* ]]; then
      url="$(metrics_url_of "$system" "${endpoints%%,*}")"
      before="$(handling_sum_count "$url" Put)"
    fi
    # shellcheck disable=SC2086 # flags are words on purpose
    bench "$target" "$endpoints" $flags || fail "dkv bench $target against $system failed"
    if [[ -n $url ]]; then
      after="$(handling_sum_count "$url" Put)"
      if [[ -n $before && -n $after ]]; then
        read -r s0 c0 <<<"$before"
        read -r s1 c1 <<<"$after"
        awk -v n="$name" -v sys="$system" -v s0="$s0" -v s1="$s1" -v dc="$((c1 - c0))" \
          'BEGIN { if (dc > 0) printf "%s\t%s\t%.3f\t%d\n", n, sys, 1000 * (s1 - s0) / dc, dc }' >>"$handling"
      else
        echo "compare-etcd.sh: could not read grpc_server_handling_seconds at $url" >&2
      fi
      # The row was meant for the leader (or a follower): say so if an election moved it meanwhile.
      local leader_now
      leader_now="$(leader_of "$endpoints")"
      if [[ -z $leader_now ]]; then
        echo "compare-etcd.sh: could not ask $system for its leader after the row \"$name\"" >&2
      elif [[ ($name == *", to a follower" && $leader_now == "${endpoints%%,*}") || ($name != *", to a follower" && $leader_now != "${endpoints%%,*}") ]]; then
        echo "compare-etcd.sh: $system's leader is now $leader_now: the row \"$name\" did not run as named" >&2
      fi
    fi
    line="$(cat "$work/bench.json")"
    printf '{"name":"%s","system":"%s","result":%s}\n' "$name" "$system" "$line" >>"$results"
    node -e 'const [name, system, line] = process.argv.slice(1); const r = JSON.parse(line);
      const watch = r.workload === "watch";
      const grant = r.workload === "lease-grant";
      const counter = r.workload === "counter";
      const lock = r.workload === "lock";
      const rate = watch ? r.eventsPerSecond : grant || lock ? r.cyclesPerSecond : r.requestsPerSecond;
      const unit = watch ? "events/s" : grant || lock ? "cycles/s" : counter ? "incr/s" : "req/s";
      console.log(`${name.padEnd(37)} ${system.padEnd(5)} ${rate.toFixed(0).padStart(8)} ${unit}` +
        `  p50 ${r.latencyMs.p50.toFixed(2).padStart(7)} ms  p99 ${r.latencyMs.p99.toFixed(2).padStart(7)} ms  errors ${r.errors}` +
        (watch ? `  (puts ${r.putsPerSecond.toFixed(0)}/s, ${(r.events / Math.max(1, r.eventResponses)).toFixed(1)} events/response)` : "") +
        (grant ? `  (a cycle; grant p50 ${r.grantLatencyMs.p50.toFixed(2)} ms, revoke p50 ${r.revokeLatencyMs.p50.toFixed(2)} ms)` : "") +
        (counter ? `  (${r.method}, ${r.rpcsPerIncrement.toFixed(2)} RPCs/increment, check ${r.consistent ? "ok" : "MISMATCH"})` : "") +
        (lock ? `  (a cycle; acquire p50 ${r.acquireLatencyMs.p50.toFixed(2)} ms, release p50 ${r.releaseLatencyMs.p50.toFixed(2)} ms, ` +
          `${r.overlaps} overlaps, ${r.leftoverKeys} keys left)` : ""));' \
      "$name" "$system" "$line"
  done
}
for workload in "${workloads[@]}"; do
  IFS='|' read -r name _ <<<"$workload"
  selected "$name" && run_workload "$workload"
done
auth_selected=0
for workload in "${auth_workloads[@]}"; do
  IFS='|' read -r name _ <<<"$workload"
  if selected "$name"; then auth_selected=1; fi
done
if [[ $auth_selected == 1 ]]; then
  for endpoints in "$etcd_endpoints" "$dkv_endpoints"; do
    {
      ETCDCTL_API=3 etcdctl --endpoints="$endpoints" user add "root:$auth_password" &&
        ETCDCTL_API=3 etcdctl --endpoints="$endpoints" user grant-role root root &&
        ETCDCTL_API=3 etcdctl --endpoints="$endpoints" auth enable
    } >/dev/null || fail "enabling auth at $endpoints failed"
  done
  for workload in "${auth_workloads[@]}"; do
    IFS='|' read -r name _ <<<"$workload"
    selected "$name" && run_workload "$workload"
  done
  for endpoints in "$etcd_endpoints" "$dkv_endpoints"; do
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --user "root:$auth_password" auth disable >/dev/null ||
      fail "disabling auth at $endpoints failed"
  done
fi

echo
[[ -s "$results" ]] && node - "$results" <<'EOF'
const { readFileSync } = require('node:fs');
const rows = readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const get = (name, system) => rows.find((r) => r.name === name && r.system === system).result;
const f = (v, d = 0) => v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
// KV workloads: requests/s and request latency. Watch workloads: events delivered/s, put-to-event
// latency, and the puts/s the putter reached. Lease workloads: keep-alive requests/s or grant ->
// revoke cycles/s (one rate column, so the ratio reads the same), latency per request or per
// cycle, and for cycles the grant and revoke p50s. Counter workloads: increments/s, increment
// latency and the RPCs each increment took. Lock workloads: Lock -> Unlock cycles/s, the latency
// of acquires (the wait for the lock included) and of releases, and the run's own checks.
const kind = (r) => (['watch', 'counter', 'lock'].includes(r.workload) ? r.workload : r.workload.startsWith('lease-') ? 'lease' : 'kv');
const print = (which) => {
  const names = [...new Set(rows.filter((r) => kind(r.result) === which).map((r) => r.name))];
  if (names.length === 0) return;
  const watch = which === 'watch';
  const lease = which === 'lease';
  const counter = which === 'counter';
  const lock = which === 'lock';
  const unit = watch ? 'events/s' : lease ? 'req or cycles/s' : counter ? 'incr/s' : lock ? 'cycles/s' : 'req/s';
  const rate = (r) => (watch ? r.eventsPerSecond : r.workload === 'lease-grant' || lock ? r.cyclesPerSecond : r.requestsPerSecond);
  // A lock's latency columns are its acquires' (the wait included); its releases' p50/p99 follow.
  const latency = (r) => (lock ? r.acquireLatencyMs : r.latencyMs);
  const what = lock ? 'acquire ' : '';
  const header = ['workload', `etcd ${unit}`, `DKV ${unit}`, 'DKV/etcd', `etcd ${what}p50/p99 ms`, `DKV ${what}p50/p99 ms`];
  if (watch) header.push('puts/s e/d');
  if (lease) header.push('grant p50 e/d', 'revoke p50 e/d');
  if (counter) header.push('RPCs/incr e/d');
  if (lock) header.push('etcd release p50/p99 ms', 'DKV release p50/p99 ms', 'overlaps e/d', 'keys left e/d');
  header.push('errors e/d');
  const table = [header];
  for (const name of names) {
    const e = get(name, 'etcd');
    const d = get(name, 'dkv');
    const row = [
      name, f(rate(e)), f(rate(d)), `${(rate(d) / rate(e)).toFixed(2)}x`,
      `${f(latency(e).p50, 2)} / ${f(latency(e).p99, 2)}`, `${f(latency(d).p50, 2)} / ${f(latency(d).p99, 2)}`,
    ];
    if (watch) row.push(`${f(e.putsPerSecond)} / ${f(d.putsPerSecond)}`);
    if (lease) {
      const cycles = e.workload === 'lease-grant';
      row.push(cycles ? `${f(e.grantLatencyMs.p50, 2)} / ${f(d.grantLatencyMs.p50, 2)}` : '-');
      row.push(cycles ? `${f(e.revokeLatencyMs.p50, 2)} / ${f(d.revokeLatencyMs.p50, 2)}` : '-');
    }
    if (counter) row.push(`${f(e.rpcsPerIncrement, 2)} / ${f(d.rpcsPerIncrement, 2)}`);
    if (lock) {
      row.push(`${f(e.releaseLatencyMs.p50, 2)} / ${f(e.releaseLatencyMs.p99, 2)}`, `${f(d.releaseLatencyMs.p50, 2)} / ${f(d.releaseLatencyMs.p99, 2)}`);
      row.push(`${e.overlaps}/${d.overlaps}`, `${e.leftoverKeys}/${d.leftoverKeys}`);
    }
    row.push(`${e.errors}/${d.errors}`);
    table.push(row);
  }
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  const line = (row) => `| ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(table[0]), rule, ...table.slice(1).map(line)].join('\n');
};
console.log(['kv', 'watch', 'lease', 'counter', 'lock'].map(print).filter((t) => t !== undefined).join('\n\n'));
EOF
if [[ -s "$handling" ]]; then
  echo
  echo "single-client puts, the handler's time on the member the client talked to (grpc_server_handling_seconds, mean):"
  awk -F'\t' '{ printf "  %-30s %-5s %7.3f ms over %d puts\n", $1, $2, $3, $4 }' "$handling"
fi

# ---- Disk: each member's log sync latency over everything above, from its own /metrics. etcd:
# ---- etcd_disk_wal_fsync_duration_seconds (the fsync call). DKV: dkv_log_synced_write_duration_seconds
# ---- (a synced LevelDB batch: write, fsync and the thread-pool round trip) and
# ---- etcd_disk_wal_fsync_duration_seconds (from the save being handed to the log store).
metric_mean_ms() { # url name: the histogram's mean in ms over the member's life ("-" when absent)
  { curl -fsS --max-time 5 "$1" 2>/dev/null || true; } | awk -v n="$2" '
    $1 == n "_sum" { s = $2 } $1 == n "_count" { c = $2 }
    END { if (c > 0) printf "%.3f", 1000 * s / c; else printf "-" }'
}
if selected "disk"; then
  echo
  echo "log sync, mean ms per member over the run (counted from each member's start):"
  etcd_fsync="" dkv_write="" dkv_save=""
  for i in 0 1 2; do
    etcd_fsync+="$(metric_mean_ms "http://127.0.0.1:$((e + 10 * i))/metrics" etcd_disk_wal_fsync_duration_seconds) "
    dkv_write+="$(metric_mean_ms "http://127.0.0.1:$((base + 10 * i + 2))/metrics" dkv_log_synced_write_duration_seconds) "
    dkv_save+="$(metric_mean_ms "http://127.0.0.1:$((base + 10 * i + 2))/metrics" etcd_disk_wal_fsync_duration_seconds) "
  done
  echo "  etcd  wal fsync              $etcd_fsync"
  echo "  dkv   synced LevelDB batch   $dkv_write"
  echo "  dkv   save (queue included)  $dkv_save"
fi

# ---- Idle: what each 3-node cluster costs when nobody calls it (after the workloads above: their
# ---- keys and leases stay), CPU and resident memory per member, sampled over idle_sample_s.
cpu_ticks() { # pid: user + system clock ticks so far (fields 14 and 15 of /proc/PID/stat)
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
rss_mb() { # pid
  awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$1/status"
}
idle_row() { # name pids...: prints CPU % of one core and RSS MB per member
  local name="$1" pid before=() after=() i=0 cpu="" rss=""
  shift
  for pid in "$@"; do before+=("$(cpu_ticks "$pid")"); done
  sleep "$idle_sample_s"
  for pid in "$@"; do after+=("$(cpu_ticks "$pid")"); done
  for pid in "$@"; do
    cpu+="$(awk -v a="${after[$i]}" -v b="${before[$i]}" -v hz="$(getconf CLK_TCK)" -v s="$idle_sample_s" 'BEGIN { printf "%.1f%% ", 100 * (a - b) / hz / s }')"
    rss+="$(rss_mb "$pid") "
    i=$((i + 1))
  done
  printf '  %-5s CPU per member %-22s RSS MB per member %s\n' "$name" "$cpu" "$rss"
}
if selected "idle"; then
  echo
  echo "idle, 3 nodes (after a ${idle_settle_s} s pause, sampled over ${idle_sample_s} s):"
  sleep "$idle_settle_s"
  idle_row etcd "${etcd_pids[@]}"
  # shellcheck disable=SC2046 # one pid per word
  idle_row dkv $(pgrep -P "$dkv_pid")
fi

# ---- Footprint: one node of each on its own (dkv bench footprint: fresh data directories), at each
# ---- size in COMPARE_FOOTPRINT_KEYS. The 3-node clusters are stopped first: idle members would
# ---- take CPU from the single node being measured.
stop_clusters
if selected "footprint"; then
  echo
  for keys in ${COMPARE_FOOTPRINT_KEYS:-500000 2000000}; do
    echo "footprint, $(n "$keys") keys (one node each):"
    node "$repo/bin/dkv.js" bench footprint --keys "$(n "$keys")" --etcd "$etcd_bin" | sed 's/^/  /' ||
      fail "dkv bench footprint --keys $(n "$keys") failed"
  done
fi
