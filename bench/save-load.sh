#!/usr/bin/env bash
# save and load of the Debian fixture image: husk vs rootless podman, same archives,
# same file system, alternating the tools (ABBA order) in one run.
#
#   sudo bench/save-load.sh [-n N] [--tmpfs]
#
#   -n N     measured iterations per tool and operation (default 3, after 1 warm-up)
#   --tmpfs  put stores and archives on a fresh tmpfs (default: the disk, under
#            ${BENCH_TMPDIR:-/var/tmp})
#
# Operations, each tool as the unprivileged bench user:
#   save docker-archive / save oci-archive   from a store that holds the image
#   load docker-archive / load oci-archive   into an empty store (cold), from archives
#                                            made by skopeo from the fixture layout
# podman: --root DIR --runroot DIR2, overlay driver, as configured by lib.sh.
#
# Last lines, e.g.: save docker-archive: husk 0.62 s, podman 1.90 s, ratio 0.33
# Exit: 0 ok; 1 a tool failed; 2 setup error.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

N=3
TMPFS=
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=${2:?-n needs a number}; shift 2 ;;
	--tmpfs) TMPFS=--tmpfs; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $N =~ ^[1-9][0-9]*$ ]] || bench_die "-n wants a positive integer, got '$N'"

bench_init save-load
bench_need skopeo podman runc newuidmap=uidmap newgidmap=uidmap
bench_husk_bin
bench_fixtures
bench_user_setup
BENCH_REG=127.0.0.1:1 # no registry: podman reads archives only
bench_podman_config
bench_stores_setup $TMPFS
bench_runroot_setup
IMAGE=example.com/bench/debian:bookworm
A=$BENCH_STORES/archives
bench_as_user mkdir "$A"
for f in docker oci; do
	skopeo --insecure-policy copy -q "oci:$BENCH_LAYOUT:debian" "$f-archive:$A/in-$f.tar:$IMAGE"
done
chown "$BENCH_UID:$BENCH_GID" "$A"/in-*.tar
PODMAN=(podman --runroot "$BENCH_RUN/p" --storage-driver overlay)
# the stores that save reads from
bench_as_user "$BENCH_HUSK" --root "$BENCH_STORES/husk" load -q -i "$A/in-docker.tar" >/dev/null
bench_as_user "${PODMAN[@]}" --root "$BENCH_STORES/podman" load -q -i "$A/in-docker.tar" >/dev/null
bench_load_warn
bench_log "image $IMAGE ($(stat -c %s "$A/in-docker.tar") bytes as docker-archive), on $BENCH_FS, 1 warm-up + $N runs each"

OPS=("save docker-archive" "save oci-archive" "load docker-archive" "load oci-archive")
declare -A TIMES=()
FAILED=0
LOGS=$BENCH_TMP/logs
mkdir -p "$LOGS"

# run_one TOOL OP ITER MEASURED
run_one() {
	local tool=$1 op=$2 i=$3 measured=$4 verb=${2% *} format=${2#* } t rc=0 dir cmd=()
	local out=$LOGS/$tool.$i.out err=$LOGS/$tool.$i.err
	dir=$BENCH_STORES/$tool.$i
	bench_rm "$dir" "$A/out.tar" "$BENCH_RUN/p$i"
	case $tool in
	husk) cmd=("$BENCH_HUSK" --root) ;;
	podman) cmd=(podman --runroot "$BENCH_RUN/p$i" --storage-driver overlay --root) ;;
	esac
	if [ "$verb" = save ]; then
		[ "$tool" = husk ] || cmd=("${PODMAN[@]}" --root)
		cmd+=("$BENCH_STORES/$tool" save --format "$format" -o "$A/out.tar" "$IMAGE")
	else
		cmd+=("$dir" load -q -i "$A/in-${format%-archive}.tar")
	fi
	sync
	t=$(bench_time_as_user "$out" "$err" "${cmd[@]}") || rc=$?
	if [ "$rc" != 0 ]; then
		bench_log "$tool $op FAILED (exit $rc):"
		sed 's/^/    /' "$err" >&2
		FAILED=1
	elif [ "$measured" = 1 ]; then
		TIMES[$tool/$op]+="$t "
	fi
	bench_log "$(printf '%-6s %-20s %-7s %s s' "$tool" "$op" "$([ "$measured" = 1 ] && echo "run $i" || echo warm-up)" "$(bench_fmt_s "$t")")"
	bench_rm "$dir" "$BENCH_RUN/p$i"
}

for op in "${OPS[@]}"; do
	for ((i = 0; i <= N; i++)); do
		measured=$([ "$i" -ge 1 ] && echo 1 || echo 0)
		if ((i % 2)); then
			run_one husk "$op" "$i" "$measured"
			run_one podman "$op" "$i" "$measured"
		else
			run_one podman "$op" "$i" "$measured"
			run_one husk "$op" "$i" "$measured"
		fi
	done
done

bench_load_warn
echo "husk $("$BENCH_HUSK" --version 2>/dev/null | awk '{print $NF}'), $(podman --version), on $BENCH_FS, median of $N runs, ABBA order"
for op in "${OPS[@]}"; do
	H=failed P=failed R=n/a HM= PM=
	# shellcheck disable=SC2086 # the lists are space-separated numbers
	[ -n "${TIMES[husk/$op]:-}" ] && { HM=$(bench_median ${TIMES[husk/$op]}); H="$(bench_fmt_s "$HM") s"; }
	# shellcheck disable=SC2086
	[ -n "${TIMES[podman/$op]:-}" ] && { PM=$(bench_median ${TIMES[podman/$op]}); P="$(bench_fmt_s "$PM") s"; }
	[ -n "$HM" ] && [ -n "$PM" ] && R=$(bench_ratio "$HM" "$PM")
	echo "$op: husk $H, podman $P, ratio $R"
done
exit "$FAILED"
