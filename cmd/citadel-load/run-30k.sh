#!/usr/bin/env bash
# A 30,000-connection run on one machine (docs/benchmarks.md, "Memory per
# connection and a 30,000-connection run"):
#
#   process A: citadel all-in-one (login, gate-1, game-1, embedded NSQ, bbolt)
#   process B: citadel -role gate -id 2      process C: citadel -role gate -id 3
#   citadel-load: N idle authenticated connections, a third on each gate,
#                 over as many processes as the open-file limit needs
#   citadel-bot:  BOTS bots playing the sample game for PLAY seconds, each
#                 pausing up to twice THINK between actions
#
# It reads each process's Go heap and stacks (after forced collections)
# before and after the connections are up, then lets the bots play, and
# reports kicks by code (/metrics), membership events (logs) and the
# tools' summaries, and the CPU time each process used while the bots
# played. Every process it starts is stopped at the end.
#
# Usage: cmd/citadel-load/run-30k.sh [N [BOTS [PLAY [THINK]]]]   (from the repository root)
set -euo pipefail

N=${1:-30000}
BOTS=${2:-200}
PLAY=${3:-150}
THINK=${4:-500ms}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/citadel-30k.XXXXXX")
echo "run folder: $OUT"

go build -o "$OUT/bin/" ./cmd/citadel ./cmd/citadel-load ./cmd/citadel-bot
umask 077
# The ticket key every gate checks and citadel-load signs with, from the
# environment only (never an argument).
CITADEL_TICKET_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export CITADEL_TICKET_KEY

pids=()
declare -A pid admin gate token before after cpu0 cpu1
stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_all EXIT

# start NAME ARGS...: runs citadel with its output in $OUT/NAME.{out,log}
# and waits until it has printed its addresses.
start() {
	local name=$1
	shift
	"$OUT/bin/citadel" "$@" >"$OUT/$name.out" 2>"$OUT/$name.log" &
	pids+=($!)
	pid[$name]=$!
	for _ in $(seq 600); do
		grep -q '^  admin  ' "$OUT/$name.out" 2>/dev/null && return
		sleep 0.1
	done
	echo "$name did not start:" >&2
	cat "$OUT/$name.log" >&2
	exit 1
}
field() { sed -n "s/^  $2 \{2,\}\([^ ]*\).*/\1/p" "$OUT/$1.out" | head -1; }
ready() {
	for _ in $(seq 600); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ] && return
		sleep 0.1
	done
	echo "$1 not ready" >&2
	exit 1
}

common=(-plugins - -bcrypt-cost 4 -log-level info -max-conns $((N / 3 + BOTS + 1000)) -gate-ws "" -admin 127.0.0.1:0 -gate-tcp 127.0.0.1:0)
start a -data "$OUT/a" -id 1 "${common[@]}" -login 127.0.0.1:0 \
	-embedded-nsqd-tcp 127.0.0.1:0 -embedded-nsqd-http 127.0.0.1:0 -embedded-lookupd-tcp 127.0.0.1:0 -embedded-lookupd-http 127.0.0.1:0
nsqd=$(sed -n 's/.*embedded nsqd \([^ ]*\) (http \([^)]*\)).*/\1 \2/p' "$OUT/a.out")
for id in 2 3; do
	start "g$id" -role gate -id "$id" -data "$OUT/g$id" "${common[@]}" \
		-cluster-key-file "$OUT/a/cluster.key" -nsqd "${nsqd% *}" -nsqd-http "${nsqd#* }"
done
for p in a g2 g3; do
	admin[$p]=$(field "$p" admin)
	gate[$p]=$(field "$p" "gate TCP")
	token[$p]=$OUT/$p/admin.token
	ready "${admin[$p]}"
done
login=$(field a "login HTTP")

# mem P: "heap stack goroutines rss" of process P after forced collections
# (each halves at most the stacks of idle goroutines, so several).
# A process that has died reads as zeros.
mem() {
	for _ in 1 2 3 4 5 6; do
		curl -s -o /dev/null -H @<(printf 'Authorization: Bearer %s' "$(cat "${token[$1]}")") "${admin[$1]}/debug/pprof/heap?gc=1" || true
	done
	{ curl -s "${admin[$1]}/metrics" || true; } | awk '
		$1=="go_memstats_heap_inuse_bytes"{h=$2} $1=="go_memstats_stack_inuse_bytes"{s=$2}
		$1=="go_goroutines"{g=$2} $1=="process_resident_memory_bytes"{r=$2}
		END{printf "%.0f %.0f %.0f %.0f\n", h, s, g, r}'
}
for p in a g2 g3; do before[$p]=$(mem "$p"); done

"$OUT/bin/citadel-load" -n "$N" -every 10s \
	-gate "gate-1=${gate[a]},gate-2=${gate[g2]},gate-3=${gate[g3]}" >"$OUT/load.out" 2>&1 &
loadpid=$!
pids+=("$loadpid")
for _ in $(seq 3000); do
	grep -q "connections up after" "$OUT/load.out" && break
	kill -0 "$loadpid" 2>/dev/null || break
	sleep 0.2
done
grep "connections up after" "$OUT/load.out" || true
sleep 5 # let load reports and pushes settle
for p in a g2 g3; do after[$p]=$(mem "$p"); done

# cpu PID...: CPU seconds the processes have used so far.
hz=$(getconf CLK_TCK)
cpu() {
	{ for p in "$@"; do cat "/proc/$p/stat"; done 2>/dev/null || true; } |
		sed 's/^.*) //' | awk -v hz="$hz" '{t += $12 + $13} END{printf "%.1f", t/hz}'
}
pid[load]=$(pgrep -d ' ' -P "$loadpid" || true) # the citadel-load copies holding the connections
for p in a g2 g3 load; do cpu0[$p]=$(cpu ${pid[$p]}); done
play0=$(date +%s)
"$OUT/bin/citadel-bot" -login "$login" -n "$BOTS" -d "${PLAY}s" -think "$THINK" >"$OUT/bots.out" 2>&1 || true
play1=$(date +%s)
for p in a g2 g3 load; do cpu1[$p]=$(cpu ${pid[$p]}); done
tail -n 12 "$OUT/bots.out"
kill -TERM "$loadpid" 2>/dev/null || true
wait "$loadpid" || true
tail -n 8 "$OUT/load.out"

echo
echo "memory (Go heap + stacks after GC; growth from before the connections to after):"
conns=$((N / 3))
{
	for p in a g2 g3; do echo "$p ${before[$p]} ${after[$p]}"; done
} | awk -v c="$conns" -v n="$N" '
	{ p=$1; dh[p]=$6-$2; ds[p]=$7-$3; dg[p]=$8-$4; dr[p]=$9-$5
	  printf "  %-3s heap +%.1f MiB, stacks +%.1f MiB, goroutines +%d, RSS +%.1f MiB; per connection on its gate (%d): %.1f KiB (heap %.1f, stacks %.1f)\n",
		p, dh[p]/1048576, ds[p]/1048576, dg[p], dr[p]/1048576, c, (dh[p]+ds[p])/c/1024, dh[p]/c/1024, ds[p]/c/1024 }
	END {
		gate = (dh["g2"]+ds["g2"]+dh["g3"]+ds["g3"])/2/c     # a gate-only process, per connection
		actor = (dh["a"]+ds["a"] - c*gate)/n                  # the game node in a, per player actor
		printf "  gate-only: %.1f KiB per connection; player actor (a minus its gate share): %.1f KiB; all-in-one, a connection with its player actor: %.1f KiB\n",
			gate/1024, actor/1024, (gate+actor)/1024 }'

echo
echo "kicks by code (citadel_gate_kicks_total), after the run:"
for p in a g2 g3; do
	if m=$(curl -sf "${admin[$p]}/metrics"); then
		echo "  $p: $(awk '/^citadel_gate_kicks_total/{printf "%s ", $0; k=1} END{if(!k) printf "none"}' <<<"$m")"
	else
		echo "  $p: the process is gone (see $OUT/$p.log)"
	fi
done
echo
echo "CPU while the bots played ($((play1 - play0)) s wall, 2 cores = $((2 * (play1 - play0))) CPU s available):"
for p in a g2 g3 load; do
	awk -v p="$p" -v a="${cpu0[$p]}" -v b="${cpu1[$p]}" -v w=$((play1 - play0)) 'BEGIN{printf "  %-4s %.1f CPU s (%.0f%% of one core)\n", p, b-a, 100*(b-a)/w}'
done
echo
echo "membership events in the logs (suspect: missed heartbeats; left: a node counted gone):"
for p in a g2 g3; do
	printf '  %-3s suspect=%s left=%s\n' "$p" "$(grep -c 'member suspect' "$OUT/$p.log" || true)" \
		"$(grep 'membership changed' "$OUT/$p.log" | grep -c 'event=left' || true)"
done
