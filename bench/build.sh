#!/usr/bin/env bash
# A 6-step Dockerfile on the Debian fixture: husk build vs rootless podman build, cold
# (no build cache: --no-cache) and warm (every step from the cache), alternating the
# tools (ABBA order) in one run.
#
#   sudo bench/build.sh [-n N] [--warmup W] [--tmpfs] [--check]
#
#   -n N        measured iterations per tool and case (default 5)
#   --warmup W  unmeasured iterations per tool first (default 1)
#   --tmpfs     put both stores on a fresh tmpfs (default: a temp dir under
#               ${BENCH_TMPDIR:-/var/tmp}, i.e. the disk)
#   --check     exit 3 when a goal is missed (warm <= 1/10 of podman's, cold <= 1/2)
#
# Each tool has one store for the whole run, with the base image pulled first (not
# timed). Both run RUN steps with --network none (the steps need no network; this
# leaves the network tools out of the figures). The context is a few hundred small
# files; the steps: FROM, ENV, COPY, RUN, RUN, CMD.
#
# Last lines, e.g.:
#   build cold [ext4, 5 runs]: husk 0.61 s, podman 3.10 s, ratio 0.20 (goal <= 0.5)
#   build warm [ext4, 5 runs]: husk 0.012 s, podman 0.52 s, ratio 0.02 (goal <= 0.1)
# Exit: 0 ok; 1 a tool failed; 2 setup error; 3 --check and a goal missed.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

COLD_GOAL=0.5
WARM_GOAL=0.1
bench_parse_opts "$@"
[ ${#BENCH_ARGS[@]} = 0 ] || { bench_usage >&2; exit 2; }
bench_setup_with_podman build debian debian:bookworm $TMPFS
IMAGE=$BENCH_REG/debian:bookworm
bench_load_warn

# The context: a small source tree and the Dockerfile.
CTX=$BENCH_TMP/context
mkdir -p "$CTX/src"
for d in $(seq 1 20); do
	mkdir -p "$CTX/src/mod$d"
	for f in $(seq 1 15); do
		printf 'module %s file %s\n%0200d\n' "$d" "$f" 0 >"$CTX/src/mod$d/f$f.txt"
	done
done
cat >"$CTX/Dockerfile" <<EOF
FROM $IMAGE
ENV APP=/opt/app LANG=C.UTF-8
COPY src/ /opt/app/src/
RUN cd /opt/app && find src -type f | sort > manifest.txt && sha256sum \$(cat manifest.txt) > sums.txt
RUN useradd --create-home --uid 1000 builder && chown -R builder /opt/app
CMD ["cat", "/opt/app/manifest.txt"]
EOF
chmod -R a+rX "$CTX"

HUSK_ROOT=$BENCH_STORES/husk
PODMAN_ROOT=$BENCH_STORES/podman
PODMAN_RUN=$BENCH_RUN/podman
LOGS=$BENCH_TMP/logs
mkdir -p "$LOGS"
chmod 0755 "$LOGS"
husk_cmd() { "$BENCH_HUSK" --root "$HUSK_ROOT" "$@"; }
podman_cmd() { podman --root "$PODMAN_ROOT" --runroot "$PODMAN_RUN" --storage-driver overlay "$@"; }
bench_log "pulling the base image into both stores (not timed)"
bench_as_user "$BENCH_HUSK" --root "$HUSK_ROOT" pull -q "$IMAGE" >/dev/null ||
	bench_die "husk pull failed"
bench_as_user podman --root "$PODMAN_ROOT" --runroot "$PODMAN_RUN" --storage-driver overlay \
	pull -q "$IMAGE" >/dev/null || bench_die "podman pull failed"
bench_log "context $(find "$CTX/src" -type f | wc -l) files, stores on $BENCH_FS, user $BENCH_USER, $WARMUP warm-up + $N runs each"

declare -A T
FAILED=
# run_one TOOL CASE ITER MEASURED
run_one() {
	local tool=$1 case=$2 i=$3 measured=$4 t rc=0 out=$LOGS/$1.$2.$3.out err=$LOGS/$1.$2.$3.err flags=()
	case " $FAILED " in *" $tool "*) return 0 ;; esac
	[ "$case" = cold ] && flags=(--no-cache)
	sync
	case $tool in
	husk) t=$(bench_time_as_user "$out" "$err" "$BENCH_HUSK" --root "$HUSK_ROOT" build -q \
		"${flags[@]}" --network none -t bench-build "$CTX") || rc=$? ;;
	podman) t=$(bench_time_as_user "$out" "$err" podman --root "$PODMAN_ROOT" --runroot "$PODMAN_RUN" \
		--storage-driver overlay build -q "${flags[@]}" --network none --pull=never -t bench-build "$CTX") || rc=$? ;;
	esac
	if [ "$rc" != 0 ]; then
		bench_log "$tool $case build FAILED (exit $rc) in iteration $i; its stderr:"
		sed 's/^/    /' "$err" >&2
		FAILED="$FAILED $tool"
		bench_log "carrying on without $tool"
		return 0
	fi
	[ "$measured" = 1 ] && T[$tool.$case]="${T[$tool.$case]:-} $t"
	bench_log "$(printf '%-6s %-4s %-7s %s s' "$tool" "$case" "$([ "$measured" = 1 ] && echo "run $i" || echo warm-up)" "$(bench_fmt_s "$t")")"
}

for ((i = 1 - WARMUP; i <= N; i++)); do
	measured=$([ "$i" -ge 1 ] && echo 1 || echo 0)
	# cold fills the cache, warm then finds every step in it
	if (((i + WARMUP) % 2)); then
		run_one husk cold "$i" "$measured"; run_one husk warm "$i" "$measured"
		run_one podman cold "$i" "$measured"; run_one podman warm "$i" "$measured"
	else
		run_one podman cold "$i" "$measured"; run_one podman warm "$i" "$measured"
		run_one husk cold "$i" "$measured"; run_one husk warm "$i" "$measured"
	fi
done

# The image husk built runs and holds what the Dockerfile says.
if ! case " $FAILED " in *" husk "*) true ;; *) false ;; esac; then
	lines=$(bench_as_user "$BENCH_HUSK" --root "$HUSK_ROOT" run --rm --network none bench-build | wc -l)
	[ "$lines" = 300 ] || bench_log "warning: the built image lists $lines files, expected 300"
fi

echo "husk $("$BENCH_HUSK" --version 2>/dev/null | awk '{print $NF}'), $(podman --version), store on $BENCH_FS, $N runs each (+$WARMUP warm-up), ABBA order"
MISSED=0
for case in cold warm; do
	goal=$COLD_GOAL
	[ "$case" = warm ] && goal=$WARM_GOAL
	H=failed P=failed R=n/a HM= PM=
	# shellcheck disable=SC2086
	[ -n "${T[husk.$case]:-}" ] && { HM=$(bench_median ${T[husk.$case]}); H="$(bench_fmt_s "$HM") s"; }
	# shellcheck disable=SC2086
	[ -n "${T[podman.$case]:-}" ] && { PM=$(bench_median ${T[podman.$case]}); P="$(bench_fmt_s "$PM") s"; }
	if [ -n "$HM" ] && [ -n "$PM" ]; then
		R=$(bench_ratio "$HM" "$PM")
		awk -v r="$R" -v g="$goal" 'BEGIN { exit !(r > g) }' && MISSED=1
	fi
	echo "build $case [$BENCH_FS, $N runs]: husk $H, podman $P, ratio $R (goal <= $goal)"
done
bench_load_warn
[ -z "$FAILED" ] || exit 1
[ "$CHECK" = 1 ] && [ "$MISSED" = 1 ] && exit 3
exit 0
