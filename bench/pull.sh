#!/usr/bin/env bash
# Cold pull of the Debian fixture image: husk vs rootless podman, same local registry,
# same file system, alternating the tools (ABBA order) in one run.
#
#   sudo bench/pull.sh [-n N] [--warmup W] [--tmpfs] [--check] [--no-floor]
#
#   -n N        measured iterations per tool (default 5)
#   --warmup W  unmeasured iterations per tool first (default 1)
#   --tmpfs     put both stores on a fresh tmpfs (default: a temp dir under
#               ${BENCH_TMPDIR:-/var/tmp}, i.e. the disk)
#   --check     exit 3 when the ratio husk/podman is above the goal (0.25)
#   --no-floor  skip the reference `tar -xzf` of the same layer into the same file
#               system (shows how much of both times the file system itself costs)
#
# Cold = empty store every iteration: a fresh `husk --root DIR` and a fresh
# `podman --root DIR --runroot DIR2` (overlay driver; DIR2 on a small tmpfs like
# /run/user/UID), deleted as root (not timed) after each pull. Podman's rootless
# pause process is kept between iterations (its steady state for a user; this
# favours podman slightly).
#
# Last line, e.g.: pull debian (51 MB gzip) cold [ext4, 5 runs]: husk 0.71 s, podman 3.40 s, ratio 0.21 (goal <= 0.25)
# Exit: 0 ok; 1 a tool failed (its stderr is printed, the other's figures still are);
#       2 setup error (missing tool / not root); 3 --check and goal missed.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

FLOOR=1
GOAL=0.25
bench_parse_opts "$@"
for a in "${BENCH_ARGS[@]}"; do
	case $a in
	--no-floor) FLOOR=0 ;;
	*) bench_usage >&2; exit 2 ;;
	esac
done
bench_setup_with_podman pull debian debian:bookworm $TMPFS
IMAGE=$BENCH_REG/debian:bookworm
MB=$(bench_mb "$(bench_layer_bytes debian)")
WANT_ID=$(skopeo inspect --raw "oci:$BENCH_LAYOUT:debian" |
	"$BENCH_PY" -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"].split(":")[1])')
bench_load_warn
bench_log "image $IMAGE (${MB} MB gzip), stores on $BENCH_FS ($BENCH_STORES), user $BENCH_USER, $WARMUP warm-up + $N runs each"

LAYER_BLOB=$BENCH_LAYOUT/blobs/$(skopeo inspect --raw "oci:$BENCH_LAYOUT:debian" |
	"$BENCH_PY" -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"].replace(":", "/"))')
HUSK_T=()
PODMAN_T=()
TAR_T=()
HUSK_FAILED=0
PODMAN_FAILED=0
TAR_FAILED=$((1 - FLOOR))
LOGS=$BENCH_TMP/logs
mkdir -p "$LOGS"
chmod 0755 "$LOGS"

# run_one TOOL ITER MEASURED
run_one() {
	local tool=$1 i=$2 measured=$3 t rc=0 id dir run out=$LOGS/$1.$2.out err=$LOGS/$1.$2.err
	if [ "$tool" = husk ] && [ "$HUSK_FAILED" = 1 ]; then return 0; fi
	if [ "$tool" = podman ] && [ "$PODMAN_FAILED" = 1 ]; then return 0; fi
	if [ "$tool" = tar ] && [ "$TAR_FAILED" = 1 ]; then return 0; fi
	dir=$BENCH_STORES/$tool.$i
	run=$BENCH_RUN/$i
	bench_rm "$dir" "$run"
	sync
	case $tool in
	husk) t=$(bench_time_as_user "$out" "$err" "$BENCH_HUSK" --root "$dir" pull -q "$IMAGE") || rc=$? ;;
	podman) t=$(bench_time_as_user "$out" "$err" podman --root "$dir" --runroot "$run" \
		--storage-driver overlay pull -q "$IMAGE") || rc=$? ;;
	tar)
		bench_as_user mkdir "$dir"
		t=$(bench_time_as_user "$out" "$err" tar -xzf "$LAYER_BLOB" -C "$dir") || rc=$?
		echo "$WANT_ID" >"$out" ;;
	esac
	id=$(tail -n 1 "$out" | tr -d '[:space:]')
	id=${id#sha256:}
	if [ "$rc" != 0 ] || [ -z "$id" ]; then
		bench_log "$tool pull FAILED (exit $rc) in iteration $i; its stderr:"
		sed 's/^/    /' "$err" >&2
		case $tool in husk) HUSK_FAILED=1 ;; podman) PODMAN_FAILED=1 ;; tar) TAR_FAILED=1 ;; esac
		bench_log "carrying on without $tool"
	else
		[ "$id" = "$WANT_ID" ] || bench_log "warning: $tool printed image id $id, expected $WANT_ID"
		if [ "$measured" = 1 ]; then
			case $tool in husk) HUSK_T+=("$t") ;; podman) PODMAN_T+=("$t") ;; tar) TAR_T+=("$t") ;; esac
		fi
		bench_log "$(printf '%-6s %-7s %s s' "$tool" "$([ "$measured" = 1 ] && echo "run $i" || echo warm-up)" "$(bench_fmt_s "$t")")"
	fi
	bench_rm "$dir" "$run"
}

bench_rotate "$WARMUP" "$N" husk podman tar

echo "husk $("$BENCH_HUSK" --version 2>/dev/null | awk '{print $NF}'), $(podman --version), store on $BENCH_FS, $N runs each (+$WARMUP warm-up), ABBA order"
bench_stats husk "${HUSK_T[@]}"
bench_stats podman "${PODMAN_T[@]}"
[ "$FLOOR" = 0 ] || bench_stats "tar -xzf" "${TAR_T[@]}"
[ "$FLOOR" = 0 ] || echo "  (tar -xzf: the same layer blob into an empty dir on the same file system; a reference, not a goal)"

bench_verdict "pull debian ($MB MB gzip) cold [$BENCH_FS, $N runs]" "$GOAL"
