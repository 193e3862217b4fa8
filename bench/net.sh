#!/usr/bin/env bash
# Rootless networking: what a published port carries, and what a network costs at start.
# husk vs rootless podman, both as the unprivileged bench user, in one run.
#
#   sudo bench/net.sh [-n ROUNDS] [--bytes N] [-r RUNS] [--modes "pasta slirp4netns"]
#
#   -n ROUNDS   transfers per tool and mode (default 3), tools alternating
#   --bytes N   bytes per transfer (default 1000000000: 1 GB)
#   -r RUNS     hyperfine runs per start-cost command (default 20, 3 warm-up)
#   --modes M   network modes to compare (default "pasta slirp4netns")
#
# Throughput: a container of the Debian fixture publishes port 5000 on 127.0.0.1:PORT
# (-p) and writes N zero bytes in 1 MiB writes to the first connection (a perl server:
# busybox nc tops out near 200 MB/s here, far below what the tools carry); a reader on
# the host connects to 127.0.0.1:PORT and times the N bytes from connect to the last
# byte. The server then waits for the reader to close (an exit right after the last
# write could end the tool with bytes still in flight). Same image, same command, same
# mode for both tools.
#   husk   --root STORE run -d --network MODE -p 127.0.0.1:PORT:5000 DEBIAN perl -e ...
#   podman --root STORE --runroot RUN run -d --network MODE -p 127.0.0.1:PORT:5000 DEBIAN perl -e ...
# (podman 4.3, Debian 12's, has no pasta mode: that row says n/a.)
#
# Start cost of the network: `run --rm IMAGE true` with the default network against
# `--network none`, per tool (hyperfine -N; husk's default is pasta, podman's is
# slirp4netns).
#
# /dev/net/tun is made mode 0666 for the run, as udev does on every distribution with
# it (this machine has no udev), and put back at the end.
# Exit: 0 ok; 1 a tool failed (its output is printed); 2 setup error.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

ROUNDS=3
BYTES=1000000000
RUNS=20
MODES="pasta slirp4netns"
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	-n) ROUNDS=${2:?-n needs a number}; shift 2 ;;
	--bytes) BYTES=${2:?--bytes needs a number}; shift 2 ;;
	-r) RUNS=${2:?-r needs a number}; shift 2 ;;
	--modes) MODES=${2:?--modes needs a list}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "-n wants a positive integer, got '$ROUNDS'"
[[ $BYTES =~ ^[1-9][0-9]*$ ]] || bench_die "--bytes wants a positive integer, got '$BYTES'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || bench_die "-r wants a positive integer, got '$RUNS'"

bench_init net
bench_need docker-registry skopeo podman runc hyperfine pasta=passt slirp4netns curl \
	newuidmap=uidmap newgidmap=uidmap
TUN_MODE=$(stat -c %a /dev/net/tun) || bench_die "no /dev/net/tun"
chmod 0666 /dev/net/tun
bench_on_exit 'chmod "$TUN_MODE" /dev/net/tun'
bench_husk_bin
bench_fixtures
bench_user_setup
bench_registry_start
bench_push busybox busybox:latest
bench_push debian debian:bookworm
bench_podman_config
bench_stores_setup
bench_runroot_setup
IMAGE=$BENCH_REG/busybox:latest
DEBIAN=$BENCH_REG/debian:bookworm
# the container's server: listens on 5000, writes $BYTES zero bytes to the first client
SERVER='use IO::Socket::INET; my $l = IO::Socket::INET->new(Listen => 1, LocalPort => 5000, ReuseAddr => 1) or die "listen: $!";
my $c = $l->accept; my $buf = "\0" x (1 << 20); my $left = $ARGV[0];
while ($left > 0) { my $n = syswrite($c, $buf, $left < length($buf) ? $left : length($buf)); die "write: $!" unless defined $n; $left -= $n }
shutdown($c, 1); sysread($c, my $end, 1);'
LOGS=$BENCH_TMP/logs
mkdir -p "$LOGS"
chown "$BENCH_UID:$BENCH_GID" "$LOGS"
HUSK=("$BENCH_HUSK" --root "$BENCH_STORES/husk")
PODMAN=(podman --root "$BENCH_STORES/podman" --runroot "$BENCH_RUN/p" --storage-driver overlay)
bench_as_user mkdir "$BENCH_STORES/husk" "$BENCH_STORES/podman"
FAILED=0
fail() { # WHAT LOGFILE
	bench_log "$1 FAILED; its output:"
	sed 's/^/    /' "$2" >&2
	FAILED=1
}
tool_cmd() { # TOOL -> the tool's command words, one per line
	case $1 in
	husk) printf '%s\n' "${HUSK[@]}" ;;
	podman) printf '%s\n' "${PODMAN[@]}" ;;
	esac
}
# the containers still there at the end are removed (a failed round may leave one)
bench_on_exit 'for t in husk podman; do mapfile -t c < <(tool_cmd $t); bench_as_user "${c[@]}" rm -f $(bench_as_user "${c[@]}" ps -aq 2>/dev/null) >/dev/null 2>&1; done'

bench_log "pulling $IMAGE and $DEBIAN (not timed)"
for tool in husk podman; do
	mapfile -t cmd < <(tool_cmd $tool)
	for image in "$IMAGE" "$DEBIAN"; do
		bench_as_user "${cmd[@]}" pull -q "$image" >"$LOGS/$tool.pull" 2>&1 || fail "$tool pull" "$LOGS/$tool.pull"
	done
done

# read_published PORT BYTES -> "SECONDS BYTES_READ": connects (retrying while the
# container's server is not listening yet) and reads BYTES bytes, timing connect..last.
read_published() {
	"$BENCH_PY" - "$1" "$2" <<-'EOF'
		import socket, sys, time
		port, want = int(sys.argv[1]), int(sys.argv[2])
		deadline = time.monotonic() + 60
		buf = bytearray(1 << 20)
		while True:
		    got = 0
		    try:
		        s = socket.create_connection(("127.0.0.1", port), timeout=30)
		        start = time.monotonic()
		        while got < want:
		            n = s.recv_into(buf)
		            if n == 0:
		                break
		            got += n
		        end = time.monotonic()
		        s.close()
		    except OSError:
		        pass
		    # nothing at all: the server did not listen yet (the tool reset the connection)
		    if got > 0 or time.monotonic() > deadline:
		        break
		    time.sleep(0.05)
		print("%.6f %d" % ((end - start) if got else 0, got))
	EOF
}

declare -A RATES=()
transfer() { # TOOL MODE ROUND
	local tool=$1 mode=$2 r=$3 port name=tp-$1-$2-$3 log=$LOGS/$1.$2.$3 res secs got
	port=$(bench_free_port)
	mapfile -t cmd < <(tool_cmd "$tool")
	if ! bench_as_user "${cmd[@]}" run -d --name "$name" --network "$mode" -p "127.0.0.1:$port:5000" "$DEBIAN" \
		perl -e "$SERVER" "$BYTES" >"$log" 2>&1; then
		bench_log "$tool --network $mode: cannot start ($(tail -n 1 "$log"))"
		RATES[$tool.$mode]=n/a
		return 0
	fi
	res=$(read_published "$port" "$BYTES")
	bench_as_user "${cmd[@]}" rm -f "$name" >>"$log" 2>&1 || true
	read -r secs got <<<"$res"
	if [ "$got" != "$BYTES" ]; then
		echo "read $got of $BYTES bytes" >>"$log"
		fail "$tool --network $mode transfer $r" "$log"
		return 0
	fi
	RATES[$tool.$mode]+=" $(awk -v b="$BYTES" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }')"
	bench_log "$(printf 'round %d %-6s %-12s %6.2f s' "$r" "$tool" "$mode" "$secs")"
}

bench_load_warn
bench_log "throughput: $BYTES bytes through -p on 127.0.0.1, $ROUNDS rounds, modes: $MODES"
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order=(husk podman); else order=(podman husk); fi
	for mode in $MODES; do
		for tool in "${order[@]}"; do
			[ "${RATES[$tool.$mode]:-}" = n/a ] || transfer "$tool" "$mode" "$r"
		done
	done
done

# start cost: default network vs none, per tool; the four blocks alternate twice
declare -A STARTS=()
start_block() { # TOOL LABEL NETWORK-ARGS...
	local tool=$1 label=$2 json line
	shift 2
	json=$LOGS/start.$tool.$label.$RANDOM.json
	mapfile -t cmd < <(tool_cmd "$tool")
	line="${cmd[*]} run --rm $* $IMAGE true"
	if ! bench_as_user hyperfine -N --style basic --warmup 3 --runs "$RUNS" --export-json "$json" "$line" \
		</dev/null >"$json.log" 2>&1; then
		fail "$tool start ($label)" "$json.log"
		return 0
	fi
	STARTS[$tool.$label]+=" $("$BENCH_PY" -c 'import json,sys; print(" ".join("%.6f" % x for x in json.load(open(sys.argv[1]))["results"][0]["times"]))' "$json")"
}
bench_log "start cost: run --rm IMAGE true, default network vs --network none, $RUNS runs x 2 per case"
for pass in 1 2; do
	start_block husk default
	start_block husk none --network none
	start_block podman default
	start_block podman none --network none
done

# ---------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------
echo "husk $("$BENCH_HUSK" --version | awk '{print $NF}'), $(podman --version), $(pasta --version 2>&1 | head -n 1 | sed 's/ *$//'), $(slirp4netns --version | head -n 1)"
echo "throughput of $(bench_mb "$BYTES") MB from a container to the host through -p 127.0.0.1:PORT:5000 (MB/s, median of $ROUNDS):"
summary=()
for mode in $MODES; do
	declare -A M=()
	for tool in husk podman; do
		rates=${RATES[$tool.$mode]:-}
		if [ -z "$rates" ] || [ "$rates" = n/a ]; then M[$tool]=n/a; else
			# shellcheck disable=SC2086
			M[$tool]=$(bench_median $rates | awk '{ printf "%.0f", $1 }')
		fi
	done
	ratio=n/a
	[ "${M[husk]}" = n/a ] || [ "${M[podman]}" = n/a ] || ratio=$(bench_ratio "${M[husk]}" "${M[podman]}")
	printf '  %-12s husk %6s MB/s   podman %6s MB/s   husk/podman %s\n' "$mode" "${M[husk]}" "${M[podman]}" "$ratio"
	summary+=("$mode husk ${M[husk]} podman ${M[podman]} MB/s")
	unset M
done
ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x * 1000 }'; }
echo "start of run --rm busybox true (median ms of $((2 * RUNS)) runs):"
for tool in husk podman; do
	d=${STARTS[$tool.default]:-}
	n=${STARTS[$tool.none]:-}
	if [ -z "$d" ] || [ -z "$n" ]; then
		printf '  %-7s n/a\n' "$tool"
		continue
	fi
	# shellcheck disable=SC2086
	dm=$(bench_median $d)
	# shellcheck disable=SC2086
	nm=$(bench_median $n)
	printf '  %-7s default network %7s ms   --network none %7s ms   the network adds %s ms\n' "$tool" \
		"$(ms "$dm")" "$(ms "$nm")" "$(awk -v a="$dm" -v b="$nm" 'BEGIN { printf "%.2f", (a - b) * 1000 }')"
	summary+=("$tool start default $(ms "$dm") ms none $(ms "$nm") ms")
done
bench_load_warn
(
	IFS=';'
	echo "net: ${summary[*]}"
)
exit "$FAILED"
