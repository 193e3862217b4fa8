#!/usr/bin/env bash
# Warm start of a busybox container running `true`: husk vs rootless podman, crun and
# bwrap over the same busybox rootfs, all as the unprivileged bench user, alternating
# the tools in one run.
#
#   sudo bench/run.sh [-n ROUNDS] [-r RUNS] [--warmup W] [--rss-runs K] [--tmpfs]
#                     [--husk-network MODE] [--check]
#
#   -n ROUNDS       rounds (default 5); each round runs every tool once as a block, in
#                   ABBA order (husk podman crun bwrap, then bwrap crun podman husk, ...)
#   -r RUNS         measured runs per tool per block (default 10; hyperfine --runs)
#   --warmup W      unmeasured runs per tool before each block (default 3)
#   --rss-runs K    runs per tool under /usr/bin/time -f %M for the peak RSS (default 5)
#   --tmpfs         put the stores and the bundle on a fresh tmpfs (default: a temp dir
#                   under ${BENCH_TMPDIR:-/var/tmp}, i.e. the disk)
#   --husk-network MODE  husk run's --network: none (default: like the peers, which all
#                   create an empty network namespace), host, pasta, slirp4netns, or
#                   default (no --network: husk's own default)
#   --check         exit 3 when a goal is missed
#
# Commands timed (hyperfine -N, no shell), each as the bench user:
#   husk   --root STORE run --rm --network none REG/busybox:latest true (image pulled before)
#   podman --root STORE --runroot RUN --storage-driver overlay run --rm --network none REG/busybox:latest true
#   crun   run --bundle BUNDLE ID   (rootfs: umoci unpack --rootless of the same image,
#                                    config: crun spec --rootless, args ["true"]; run in a
#                                    private mount namespace where /sys/fs/cgroup/unified
#                                    is hidden behind a tmpfs: crun 1.8 refuses hybrid cgroups)
#   bwrap  --unshare-all --die-with-parent --bind ROOTFS / --proc /proc --dev /dev true
#
# Goals: husk <= 8 ms, husk/podman <= 1/15, husk/bwrap <= 2, husk peak RSS <= 10 MB.
# Exit: 0 ok; 1 a tool failed (its stderr is printed, the others' figures still are);
#       2 setup error (missing tool / not root); 3 --check and a goal was missed.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

ROUNDS=5
RUNS=10
WARMUP=3
RSS_RUNS=5
TMPFS=
CHECK=0
HUSK_NET=none
GOAL_MS=8
GOAL_PODMAN=0.0667 # 1/15
GOAL_BWRAP=2
GOAL_RSS_MB=10
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	-n) ROUNDS=${2:?-n needs a number}; shift 2 ;;
	-n*) ROUNDS=${1#-n}; shift ;;
	-r) RUNS=${2:?-r needs a number}; shift 2 ;;
	-r*) RUNS=${1#-r}; shift ;;
	--warmup) WARMUP=${2:?--warmup needs a number}; shift 2 ;;
	--rss-runs) RSS_RUNS=${2:?--rss-runs needs a number}; shift 2 ;;
	--tmpfs) TMPFS=--tmpfs; shift ;;
	--husk-network) HUSK_NET=${2:?--husk-network needs a mode}; shift 2 ;;
	--check) CHECK=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "-n wants a positive integer, got '$ROUNDS'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || bench_die "-r wants a positive integer, got '$RUNS'"
[[ $WARMUP =~ ^[0-9]+$ ]] || bench_die "--warmup wants a number, got '$WARMUP'"
[[ $RSS_RUNS =~ ^[0-9]+$ ]] || bench_die "--rss-runs wants a number, got '$RSS_RUNS'"
[[ $HUSK_NET =~ ^(none|host|pasta|slirp4netns|default)$ ]] ||
	bench_die "--husk-network wants none, host, pasta, slirp4netns or default"

bench_init run
# Runs last (cleanup steps run in reverse order): after podman's pause process was
# stopped, report any live process of the bench user (reported, not killed: the user may
# be shared with another bench run; zombies are not counted, init reaps them).
leftover_check() {
	local left i
	getent passwd "$BENCH_USER" >/dev/null || return 0
	for ((i = 0; i < 25; i++)); do
		left=$(ps -u "$BENCH_USER" -o pid=,stat=,args= 2>/dev/null | awk '$2 !~ /^Z/' || true)
		[ -n "$left" ] || return 0
		sleep 0.2
	done
	bench_log "warning: processes of $BENCH_USER still running: $(echo "$left" | tr '\n' ';')"
}
bench_on_exit leftover_check
bench_need docker-registry skopeo podman runc crun bwrap=bubblewrap umoci hyperfine \
	/usr/bin/time=time unshare=util-linux newuidmap=uidmap newgidmap=uidmap curl
bench_husk_bin
bench_fixtures
bench_user_setup
bench_registry_start
bench_push busybox busybox:latest
bench_podman_config
bench_stores_setup $TMPFS
bench_runroot_setup
IMAGE=$BENCH_REG/busybox:latest
LOGS=$BENCH_TMP/logs
mkdir -p "$LOGS"
chown "$BENCH_UID:$BENCH_GID" "$LOGS"

# crun 1.8 refuses the hybrid cgroup layout ("cgroups in hybrid mode not supported"):
# run it as the user inside a private mount namespace (made as root, so crun itself still
# starts unprivileged outside any user namespace) where /sys/fs/cgroup/unified is hidden
# behind an empty tmpfs. The namespace ends with its last process; nothing to unmount.
bench_as_user_no_cg2() {
	local env=()
	mapfile -t env < <(bench_user_env)
	unshare -m --propagation private -- /bin/sh -c '
		mount -t tmpfs -o size=4k,mode=0555 husk-bench-nocg2 /sys/fs/cgroup/unified || exit 125
		cd "$1" || exit 125
		shift
		exec runuser -u "$0" -- /usr/bin/env -i "$@"' "$BENCH_USER" "$BENCH_HOME" "${env[@]}" "$@"
}

# ---------------------------------------------------------------------------------------
# setup as the user: husk store + pull, podman store + pull, OCI bundle for crun/bwrap
# ---------------------------------------------------------------------------------------
HUSK_STORE=$BENCH_STORES/husk
PODMAN_STORE=$BENCH_STORES/podman
BUNDLE=$BENCH_STORES/bundle
ROOTFS=$BUNDLE/rootfs
CRUN_ID=husk-bench-$$
bench_as_user mkdir "$HUSK_STORE" "$PODMAN_STORE"

HUSK_NET_ARGS=()
[ "$HUSK_NET" = default ] || HUSK_NET_ARGS=(--network "$HUSK_NET")
HUSK_CMD=("$BENCH_HUSK" --root "$HUSK_STORE" run --rm "${HUSK_NET_ARGS[@]}" "$IMAGE" true)
PODMAN_CMD=(podman --root "$PODMAN_STORE" --runroot "$BENCH_RUN/p" --storage-driver overlay
	run --rm --network none "$IMAGE" true)
CRUN_CMD=(crun run --bundle "$BUNDLE" "$CRUN_ID")
BWRAP_CMD=(bwrap --unshare-all --die-with-parent --bind "$ROOTFS" / --proc /proc --dev /dev true)
TOOLS=(husk podman crun bwrap)
declare -A FAILED=([husk]=0 [podman]=0 [crun]=0 [bwrap]=0)
declare -A TIMES=([husk]="" [podman]="" [crun]="" [bwrap]="")
declare -A RSS=([husk]="" [podman]="" [crun]="" [bwrap]="")

fail() { # TOOL WHAT ERRFILE
	bench_log "$1: $2 FAILED; its output:"
	sed 's/^/    /' "$3" >&2
	FAILED[$1]=1
	bench_log "carrying on without $1"
}

# the user's command line for TOOL, as words (hyperfine -N splits it the same way; no
# path here contains blanks or quotes)
cmd_of() {
	case $1 in
	husk) printf '%s\n' "${HUSK_CMD[@]}" ;;
	podman) printf '%s\n' "${PODMAN_CMD[@]}" ;;
	crun) printf '%s\n' "${CRUN_CMD[@]}" ;;
	bwrap) printf '%s\n' "${BWRAP_CMD[@]}" ;;
	esac
}

# as_user_for TOOL CMD...: crun needs the namespace without cgroup2, the others not
as_user_for() {
	local tool=$1
	shift
	if [ "$tool" = crun ]; then bench_as_user_no_cg2 "$@"; else bench_as_user "$@"; fi
}

bench_log "pulling $IMAGE into the husk and podman stores (not timed)"
bench_as_user "$BENCH_HUSK" --root "$HUSK_STORE" pull -q "$IMAGE" >"$LOGS/husk.pull" 2>&1 ||
	fail husk "pull" "$LOGS/husk.pull"
bench_as_user podman --root "$PODMAN_STORE" --runroot "$BENCH_RUN/p" --storage-driver overlay \
	pull -q "$IMAGE" >"$LOGS/podman.pull" 2>&1 || fail podman "pull" "$LOGS/podman.pull"

bench_log "unpacking the busybox fixture for crun and bwrap (umoci unpack --rootless)"
if ! bench_as_user umoci unpack --rootless --image "$BENCH_LAYOUT:busybox" "$BUNDLE" >"$LOGS/umoci" 2>&1 ||
	! bench_as_user /bin/sh -c 'mkdir "$1/spec" && cd "$1/spec" && crun spec --rootless' sh "$BENCH_STORES" \
		>>"$LOGS/umoci" 2>&1; then
	fail crun "bundle setup" "$LOGS/umoci"
	FAILED[bwrap]=1
else
	# crun's own rootless spec with the command `true`, no terminal; umoci's rootfs
	"$BENCH_PY" - "$BENCH_STORES/spec/config.json" "$BUNDLE/config.json" <<-'EOF'
		import json, sys
		c = json.load(open(sys.argv[1]))
		c["process"]["args"] = ["true"]
		c["process"]["terminal"] = False
		c["root"] = {"path": "rootfs", "readonly": True}
		json.dump(c, open(sys.argv[2], "w"), indent=1)
	EOF
	chown "$BENCH_UID:$BENCH_GID" "$BUNDLE/config.json"
	[ -L "$ROOTFS/bin/true" ] || [ -x "$ROOTFS/bin/true" ] || bench_log "warning: the fixture has no /bin/true"
fi

# one probe run each: a tool that cannot start `true` is reported and skipped
for tool in "${TOOLS[@]}"; do
	[ "${FAILED[$tool]}" = 0 ] || continue
	mapfile -t cmd < <(cmd_of "$tool")
	as_user_for "$tool" "${cmd[@]}" </dev/null >"$LOGS/$tool.probe" 2>&1 || fail "$tool" "probe run" "$LOGS/$tool.probe"
done

bench_load_warn
bench_log "image $IMAGE, stores on $BENCH_FS, user $BENCH_USER, $ROUNDS rounds x $RUNS runs (+$WARMUP warm-up) per tool, ABBA order"

# ---------------------------------------------------------------------------------------
# timing: one hyperfine block per tool per round, tools alternating
# ---------------------------------------------------------------------------------------
block() { # TOOL ROUND
	local tool=$1 r=$2 json=$LOGS/$1.$2.json log=$LOGS/$1.$2.log cmd line t
	[ "${FAILED[$tool]}" = 0 ] || return 0
	mapfile -t cmd < <(cmd_of "$tool")
	line="${cmd[*]}"
	if ! as_user_for "$tool" hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" \
		--export-json "$json" "$line" </dev/null >"$log" 2>&1; then
		fail "$tool" "round $r" "$log"
		return 0
	fi
	t=$("$BENCH_PY" -c 'import json,sys; print(" ".join("%.6f" % x for x in json.load(open(sys.argv[1]))["results"][0]["times"]))' "$json")
	TIMES[$tool]+=" $t"
	bench_log "$(printf 'round %d %-6s median %6.2f ms' "$r" "$tool" "$(awk -v x="$(bench_median $t)" 'BEGIN {print x * 1000}')")"
}

for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order=(husk podman crun bwrap); else order=(bwrap crun podman husk); fi
	for tool in "${order[@]}"; do block "$tool" "$r"; done
done

# peak RSS: /usr/bin/time -f %M (KiB, the largest ru_maxrss among the waited-for
# processes of the tree), max over RSS_RUNS runs, tools alternating
for ((k = 1; k <= RSS_RUNS; k++)); do
	for tool in "${TOOLS[@]}"; do
		[ "${FAILED[$tool]}" = 0 ] || continue
		mapfile -t cmd < <(cmd_of "$tool")
		f=$LOGS/$tool.rss.$k
		: >"$f"
		chown "$BENCH_UID:$BENCH_GID" "$f"
		if as_user_for "$tool" /usr/bin/time -f %M -o "$f" "${cmd[@]}" </dev/null >"$f.out" 2>&1; then
			RSS[$tool]+=" $(tail -n 1 "$f")"
		else
			bench_log "warning: $tool failed under /usr/bin/time (run $k): $(tail -n 3 "$f.out" | tr '\n' ' ')"
		fi
	done
done

# every `husk run --rm` should have removed its container
if [ -d "$HUSK_STORE/containers" ]; then
	n=$(find "$HUSK_STORE/containers" -mindepth 1 -maxdepth 1 ! -name '.spare-*' | wc -l)
	[ "$n" = 0 ] || bench_log "warning: $n container dir(s) left in $HUSK_STORE/containers after husk run --rm"
fi

# ---------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------
ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x * 1000 }'; }
declare -A MED=()
echo "husk $("$BENCH_HUSK" --version 2>/dev/null | awk '{print $NF}'), $(podman --version), $(crun --version | head -n 1), $(bwrap --version); stores on $BENCH_FS"
echo "warm start of busybox \`true\`, $ROUNDS rounds x $RUNS runs per tool (+$WARMUP warm-up per block), tools alternating:"
for tool in "${TOOLS[@]}"; do
	read -r -a ts <<<"${TIMES[$tool]}"
	if [ ${#ts[@]} -eq 0 ]; then
		printf '  %-7s FAILED\n' "$tool"
		continue
	fi
	MED[$tool]=$(bench_median "${ts[@]}")
	rss=
	if [ -n "${RSS[$tool]}" ]; then
		# shellcheck disable=SC2086
		rss=$(awk -v k="$(bench_max ${RSS[$tool]})" 'BEGIN { printf "peak RSS %.1f MB", k * 1024 / 1e6 }')
	fi
	printf '  %-7s median %7s ms  min %7s ms  max %7s ms  (%d runs)  %s\n' "$tool" "$(ms "${MED[$tool]}")" \
		"$(ms "$(bench_min "${ts[@]}")")" "$(ms "$(bench_max "${ts[@]}")")" "${#ts[@]}" "$rss"
done
echo "  (peak RSS: max of /usr/bin/time -f %M over $RSS_RUNS runs; MB = 10^6 bytes)"
echo "  (husk run with --network $HUSK_NET)"

MISSED=0
goal() { # LABEL VALUE OP LIMIT SHOWN_LIMIT
	local ok
	if [ "$2" = n/a ]; then
		printf '  %-22s %8s   goal %s %s   n/a\n' "$1" "$2" "$3" "$5"
		MISSED=1
		return
	fi
	ok=$(awk -v v="$2" -v l="$4" 'BEGIN { print (v <= l) ? "ok" : "MISSED" }')
	[ "$ok" = ok ] || MISSED=1
	printf '  %-22s %8s   goal %s %s   %s\n' "$1" "$2" "$3" "$5" "$ok"
}
ratio_of() { if [ -n "${MED[$1]:-}" ] && [ -n "${MED[$2]:-}" ]; then bench_ratio "${MED[$1]}" "${MED[$2]}"; else echo n/a; fi; }
# awk, not bench_ratio, for husk/podman: 2 decimals would hide the difference from 1/15
R_PODMAN=n/a
if [ -n "${MED[husk]:-}" ] && [ -n "${MED[podman]:-}" ]; then
	R_PODMAN=$(awk -v a="${MED[husk]}" -v b="${MED[podman]}" 'BEGIN { printf "%.3f", a / b }')
fi
H_MS=n/a
[ -z "${MED[husk]:-}" ] || H_MS=$(ms "${MED[husk]}")
H_RSS=n/a
# shellcheck disable=SC2086
[ -z "${RSS[husk]}" ] || H_RSS=$(awk -v k="$(bench_max ${RSS[husk]})" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')
P_RSS=n/a
# shellcheck disable=SC2086
[ -z "${RSS[podman]}" ] || P_RSS=$(awk -v k="$(bench_max ${RSS[podman]})" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')
echo "goals:"
goal "husk median (ms)" "$H_MS" "<=" "$GOAL_MS" "$GOAL_MS"
goal "husk/podman" "$R_PODMAN" "<=" "$GOAL_PODMAN" "1/15 (0.067)"
goal "husk/bwrap" "$(ratio_of husk bwrap)" "<=" "$GOAL_BWRAP" "$GOAL_BWRAP"
printf '  %-22s %8s   (no goal)\n' "husk/crun" "$(ratio_of husk crun)"
goal "husk peak RSS (MB)" "$H_RSS" "<=" "$GOAL_RSS_MB" "$GOAL_RSS_MB"
printf '  %-22s %8s   (husk/podman %s)\n' "podman peak RSS (MB)" "$P_RSS" \
	"$([ "$H_RSS" != n/a ] && [ "$P_RSS" != n/a ] && bench_ratio "$H_RSS" "$P_RSS" || echo n/a)"
bench_load_warn
echo "run busybox true warm [$BENCH_FS, $((ROUNDS * RUNS)) runs]: husk $H_MS ms, podman $([ -n "${MED[podman]:-}" ] && ms "${MED[podman]}" || echo n/a) ms, crun $([ -n "${MED[crun]:-}" ] && ms "${MED[crun]}" || echo n/a) ms, bwrap $([ -n "${MED[bwrap]:-}" ] && ms "${MED[bwrap]}" || echo n/a) ms; husk/podman $R_PODMAN, husk/bwrap $(ratio_of husk bwrap), husk/crun $(ratio_of husk crun); RSS husk $H_RSS MB, podman $P_RSS MB"

for tool in "${TOOLS[@]}"; do [ "${FAILED[$tool]}" = 0 ] || exit 1; done
if [ "$CHECK" = 1 ] && [ "$MISSED" = 1 ]; then
	bench_log "goal missed"
	exit 3
fi
exit 0
