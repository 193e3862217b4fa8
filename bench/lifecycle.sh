#!/usr/bin/env bash
# Container lifecycle verbs: husk vs rootless podman, as the unprivileged bench user,
# alternating the tools in one run.
#
#   sudo bench/lifecycle.sh [-n ROUNDS] [-r RUNS] [--warmup W] [--containers K]
#                           [--tmpfs] [--husk-network MODE] [--init] [--check]
#
#   -n ROUNDS       rounds (default 5); each round runs every tool once as a block per
#                   measurement, in ABBA order (husk podman, then podman husk, ...)
#   -r RUNS         measured runs per tool per block (default 10)
#   --warmup W      unmeasured runs per tool before each block (default 2)
#   --containers K  running containers per tool while `ps` is timed (default 50)
#   --tmpfs         put the stores on a fresh tmpfs (default: a temp dir under
#                   ${BENCH_TMPDIR:-/var/tmp}, i.e. the disk)
#   --husk-network MODE  husk run's --network: none (default: the same as podman's
#                   --network none), host, pasta, slirp4netns, or default (no flag:
#                   husk's own default network)
#   --init          run the cycle's container with --init (both tools); default: the
#                   shell is the container's pid 1
#   --check         exit 3 when a goal is missed
#
# Measured, each as the bench user (stores: husk --root STORE/husk; podman --root
# STORE/podman --runroot RUN/p --storage-driver overlay, runc, --network none):
#   cycle  TOOL run -d -v READY:/r IMAGE sh -c 'trap "exit 0" TERM; : >/r/ready; sleep 1000 & wait'
#          then TOOL stop ID, then TOOL rm ID; timed per verb by a bash loop
#          ($EPOCHREALTIME); between run -d and stop the loop waits (untimed) for
#          /r/ready, i.e. for the trap to be set; between stop and rm it reads the exit
#          code (inspect, untimed): 0 = stopped by the trap, 137 = killed after the
#          10 s grace period
#   exec   hyperfine -N 'TOOL exec ID true'   (ID: a running `sleep 1000` container)
#   ps     hyperfine -N 'TOOL ps'             with K running `sleep 1000` containers
#
# Goals (issue 4): husk cycle <= 30 ms (median of run -d + stop + rm), husk exec <= 10 ms,
# husk ps with 50 containers <= 10 ms; every cycle stopped by the trap (exit code 0).
# Exit: 0 ok; 1 a tool failed (its stderr is printed, the other's figures still are);
#       2 setup error (missing tool / not root); 3 --check and a goal was missed.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

ROUNDS=5
RUNS=10
WARMUP=2
NCONT=50
TMPFS=
CHECK=0
HUSK_NET=none
INIT=
GOAL_CYCLE_MS=30
GOAL_EXEC_MS=10
GOAL_PS_MS=10
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	-n) ROUNDS=${2:?-n needs a number}; shift 2 ;;
	-n*) ROUNDS=${1#-n}; shift ;;
	-r) RUNS=${2:?-r needs a number}; shift 2 ;;
	-r*) RUNS=${1#-r}; shift ;;
	--warmup) WARMUP=${2:?--warmup needs a number}; shift 2 ;;
	--containers) NCONT=${2:?--containers needs a number}; shift 2 ;;
	--tmpfs) TMPFS=--tmpfs; shift ;;
	--husk-network) HUSK_NET=${2:?--husk-network needs a mode}; shift 2 ;;
	--init) INIT=--init; shift ;;
	--check) CHECK=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "-n wants a positive integer, got '$ROUNDS'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || bench_die "-r wants a positive integer, got '$RUNS'"
[[ $WARMUP =~ ^[0-9]+$ ]] || bench_die "--warmup wants a number, got '$WARMUP'"
[[ $NCONT =~ ^[1-9][0-9]*$ ]] || bench_die "--containers wants a positive integer, got '$NCONT'"
[[ $HUSK_NET =~ ^(none|host|pasta|slirp4netns|default)$ ]] ||
	bench_die "--husk-network wants none, host, pasta, slirp4netns or default"

bench_init lifecycle
# Runs last (cleanup steps run in reverse order): after the containers were removed and
# podman's pause process was stopped, report any live process of the bench user
# (reported, not killed: the user may be shared with another bench run).
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
bench_need docker-registry skopeo podman runc hyperfine newuidmap=uidmap newgidmap=uidmap curl
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
HUSK_STORE=$BENCH_STORES/husk
PODMAN_STORE=$BENCH_STORES/podman
mkdir -p "$LOGS"
chown "$BENCH_UID:$BENCH_GID" "$LOGS"
bench_as_user mkdir "$HUSK_STORE" "$PODMAN_STORE" "$BENCH_STORES/ready-husk" "$BENCH_STORES/ready-podman"

TOOLS=(husk podman)
HUSK=("$BENCH_HUSK" --root "$HUSK_STORE")
PODMAN=(podman --root "$PODMAN_STORE" --runroot "$BENCH_RUN/p" --storage-driver overlay)
HUSK_RUN_OPTS=()
[ "$HUSK_NET" = default ] || HUSK_RUN_OPTS=(--network "$HUSK_NET")
PODMAN_RUN_OPTS=(--network none)
declare -A FAILED=([husk]=0 [podman]=0)

prefix_of() { # TOOL -> the tool's command and global options, one word a line
	case $1 in
	husk) printf '%s\n' "${HUSK[@]}" ;;
	podman) printf '%s\n' "${PODMAN[@]}" ;;
	esac
}
run_opts_of() { # TOOL -> options for `run -d`
	case $1 in
	husk) [ ${#HUSK_RUN_OPTS[@]} -eq 0 ] || printf '%s\n' "${HUSK_RUN_OPTS[@]}" ;;
	podman) printf '%s\n' "${PODMAN_RUN_OPTS[@]}" ;;
	esac
}

fail() { # TOOL WHAT ERRFILE
	bench_log "$1: $2 FAILED; its output:"
	sed 's/^/    /' "$3" >&2
	FAILED[$1]=1
	bench_log "carrying on without $1"
}

# Every container of both stores goes at exit, whatever happened (husk rm -f / podman
# rm -f -t 0, which kill and wait); registered after bench_user_setup and
# bench_runroot_setup, so it runs before podman's pause process is stopped and before
# the runroot is unmounted.
remove_all_containers() {
	local ids
	if [ -d "$HUSK_STORE/containers" ]; then
		ids=$(bench_as_user "${HUSK[@]}" ps -a -q --no-trunc 2>/dev/null || true)
		if [ -n "$ids" ]; then
			# shellcheck disable=SC2086
			bench_as_user "${HUSK[@]}" rm -f $ids >/dev/null 2>"$LOGS/husk.cleanup" ||
				bench_log "warning: husk rm -f failed: $(tr '\n' ' ' <"$LOGS/husk.cleanup")"
		fi
		ids=$(bench_as_user "${HUSK[@]}" ps -a -q --no-trunc 2>/dev/null || true)
		[ -z "$ids" ] || bench_log "warning: husk containers left after rm -f: $(echo "$ids" | tr '\n' ' ')"
	fi
	if [ -d "$PODMAN_STORE" ] && [ -n "$(ls -A "$PODMAN_STORE" 2>/dev/null)" ]; then
		bench_as_user "${PODMAN[@]}" rm -f -a -t 0 >/dev/null 2>"$LOGS/podman.cleanup" ||
			bench_log "warning: podman rm -f -a failed: $(tr '\n' ' ' <"$LOGS/podman.cleanup")"
	fi
	podman_procs_wait
}

# conmon starts `podman ... container cleanup` when a container ends, in the background:
# it can outlive `podman rm` and would re-create the runroot after it was removed. Wait
# for every process whose command line names this run's runroot (conmon, podman), then
# kill the ones still there, by pid.
podman_procs_wait() {
	local pids i
	[ -n "${BENCH_RUN:-}" ] || return 0
	for ((i = 0; i < 100; i++)); do
		pids=$(pgrep -u "$BENCH_UID" -f -- "$BENCH_RUN/p" || true)
		[ -n "$pids" ] || return 0
		sleep 0.1
	done
	bench_log "warning: podman processes of this run still there after 10 s, killing them: $(echo "$pids" | tr '\n' ' ')"
	# shellcheck disable=SC2086
	kill -9 $pids 2>/dev/null || true
}
bench_on_exit remove_all_containers

bench_log "pulling $IMAGE into the husk and podman stores (not timed)"
bench_as_user "${HUSK[@]}" pull -q "$IMAGE" >"$LOGS/husk.pull" 2>&1 || fail husk "pull" "$LOGS/husk.pull"
bench_as_user "${PODMAN[@]}" pull -q "$IMAGE" >"$LOGS/podman.pull" 2>&1 || fail podman "pull" "$LOGS/podman.pull"

# ---------------------------------------------------------------------------------------
# 1. run -d + stop + rm: a loop run as the user times each verb
# ---------------------------------------------------------------------------------------
# cycle.sh OUT READYDIR RUNS WARMUP TOOL IMAGE NPREFIX PREFIX... RUNOPTS...
# writes one line per measured cycle: t_run_d t_stop t_rm exit_code (seconds)
cat >"$BENCH_TMP/cycle.sh" <<'EOF'
#!/bin/bash
set -u
out=$1 ready=$2 runs=$3 warm=$4 tool=$5 image=$6 np=$7
shift 7
pre=("${@:1:np}")
shift "$np"
opts=("$@")
script='trap "exit 0" TERM; : >/r/ready; sleep 1000 & wait'
err=$out.err id=
: >"$out"
die() {
	echo "cycle $i: $*" >>"$err"
	[ -z "$id" ] || "${pre[@]}" rm -f "$id" >/dev/null 2>&1 </dev/null
	exit 1
}
exit_code() {
	case $tool in
	husk) "${pre[@]}" inspect "$1" | grep -o '"ExitCode": *-\{0,1\}[0-9]*' | grep -o -- '-\{0,1\}[0-9]*$' ;;
	*) "${pre[@]}" inspect --format '{{.State.ExitCode}}' "$1" ;;
	esac
}
for ((i = 1; i <= warm + runs; i++)); do
	rm -f "$ready/ready"
	id=
	t0=$EPOCHREALTIME
	"${pre[@]}" run -d "${opts[@]}" -v "$ready:/r" "$image" sh -c "$script" >"$out.id" 2>"$err" </dev/null || die "run -d failed"
	t1=$EPOCHREALTIME
	read -r id <"$out.id" || die "run -d printed no id"
	# untimed: wait until the shell has set its trap (it writes /r/ready after that)
	for ((k = 0; k < 2000; k++)); do
		[ -e "$ready/ready" ] && break
		sleep 0.005
	done
	[ -e "$ready/ready" ] || die "container $id did not write /r/ready within 10 s"
	t2=$EPOCHREALTIME
	"${pre[@]}" stop "$id" >/dev/null 2>"$err" </dev/null || die "stop failed"
	t3=$EPOCHREALTIME
	code=$(exit_code "$id" 2>>"$err") || die "inspect failed"
	t4=$EPOCHREALTIME
	"${pre[@]}" rm "$id" >/dev/null 2>"$err" </dev/null || die "rm failed"
	t5=$EPOCHREALTIME
	if ((i > warm)); then
		awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v f="$t5" -v x="${code:-?}" \
			'BEGIN { printf "%.6f %.6f %.6f %s\n", b - a, d - c, f - e, x }' >>"$out"
	fi
done
rm -f "$ready/ready" "$out.id"
EOF
chmod 0755 "$BENCH_TMP/cycle.sh"

declare -A CYC_RUN=([husk]="" [podman]="") CYC_STOP=([husk]="" [podman]="") CYC_RM=([husk]="" [podman]="")
declare -A CYC_TOT=([husk]="" [podman]="") CYC_CODES=([husk]="" [podman]="")
ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x * 1000 }'; }

cycle_block() { # TOOL ROUND
	local tool=$1 r=$2 out=$LOGS/$1.cycle.$2 pre opts tot
	[ "${FAILED[$tool]}" = 0 ] || return 0
	mapfile -t pre < <(prefix_of "$tool")
	mapfile -t opts < <(run_opts_of "$tool")
	[ -z "$INIT" ] || opts+=("$INIT")
	: >"$out"
	: >"$out.err"
	chown "$BENCH_UID:$BENCH_GID" "$out" "$out.err"
	if ! bench_as_user "$BENCH_TMP/cycle.sh" "$out" "$BENCH_STORES/ready-$tool" "$RUNS" "$WARMUP" "$tool" \
		"$IMAGE" "${#pre[@]}" "${pre[@]}" ${opts[@]+"${opts[@]}"} </dev/null >>"$out.err" 2>&1; then
		fail "$tool" "run -d/stop/rm cycle, round $r" "$out.err"
		return 0
	fi
	CYC_RUN[$tool]+=" $(awk '{print $1}' "$out" | paste -sd ' ')"
	CYC_STOP[$tool]+=" $(awk '{print $2}' "$out" | paste -sd ' ')"
	CYC_RM[$tool]+=" $(awk '{print $3}' "$out" | paste -sd ' ')"
	tot=$(awk '{printf "%.6f ", $1 + $2 + $3}' "$out")
	CYC_TOT[$tool]+=" $tot"
	CYC_CODES[$tool]+=" $(awk '{print $4}' "$out" | paste -sd ' ')"
	# shellcheck disable=SC2086
	bench_log "$(printf 'cycle round %s %-6s median %7.2f ms' "$r" "$tool" "$(ms "$(bench_median $tot)")")"
}

# one probe cycle each (no warm-up): a tool that cannot do it is reported and skipped
for tool in "${TOOLS[@]}"; do
	[ "${FAILED[$tool]}" = 0 ] || continue
	RUNS_SAVED=$RUNS WARMUP_SAVED=$WARMUP
	RUNS=1 WARMUP=0
	cycle_block "$tool" probe
	RUNS=$RUNS_SAVED WARMUP=$WARMUP_SAVED
	CYC_RUN[$tool]="" CYC_STOP[$tool]="" CYC_RM[$tool]="" CYC_TOT[$tool]="" CYC_CODES[$tool]=""
done

bench_load_warn
bench_log "image $IMAGE, stores on $BENCH_FS, user $BENCH_USER, $ROUNDS rounds x $RUNS runs (+$WARMUP warm-up) per tool, ABBA order"
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order=(husk podman); else order=(podman husk); fi
	for tool in "${order[@]}"; do cycle_block "$tool" "$r"; done
done

# ---------------------------------------------------------------------------------------
# hyperfine blocks (exec, ps)
# ---------------------------------------------------------------------------------------
declare -A EXEC_T=([husk]="" [podman]="") PS_T=([husk]="" [podman]="")
declare -A EXEC_CMD=() PS_CMD=()

hf_block() { # KIND TOOL ROUND COMMAND-LINE  (appends the times to KIND_T[TOOL])
	local kind=$1 tool=$2 r=$3 line=$4 json=$LOGS/$2.$1.$3.json log=$LOGS/$2.$1.$3.log t
	[ "${FAILED[$tool]}" = 0 ] || return 0
	if ! bench_as_user hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" \
		--export-json "$json" "$line" </dev/null >"$log" 2>&1; then
		fail "$tool" "$kind round $r" "$log"
		return 0
	fi
	t=$("$BENCH_PY" -c 'import json,sys; print(" ".join("%.6f" % x for x in json.load(open(sys.argv[1]))["results"][0]["times"]))' "$json")
	case $kind in
	exec) EXEC_T[$tool]+=" $t" ;;
	ps) PS_T[$tool]+=" $t" ;;
	esac
	# shellcheck disable=SC2086
	bench_log "$(printf '%-5s round %s %-6s median %7.2f ms' "$kind" "$r" "$tool" "$(ms "$(bench_median $t)")")"
}

# start_sleepers TOOL COUNT OUTFILE: COUNT detached `sleep 1000` containers, ids in OUTFILE
start_sleepers() {
	local tool=$1 n=$2 out=$3 pre opts
	mapfile -t pre < <(prefix_of "$tool")
	mapfile -t opts < <(run_opts_of "$tool")
	: >"$out"
	chown "$BENCH_UID:$BENCH_GID" "$out"
	bench_as_user /bin/bash -c '
		out=$1 n=$2 image=$3 np=$4
		shift 4
		pre=("${@:1:np}")
		shift "$np"
		for ((i = 0; i < n; i++)); do
			"${pre[@]}" run -d "$@" "$image" sleep 1000 </dev/null >>"$out" || exit 1
		done' start-sleepers "$out" "$n" "$IMAGE" "${#pre[@]}" "${pre[@]}" ${opts[@]+"${opts[@]}"}
}

# ---------------------------------------------------------------------------------------
# 2. exec ID true, into one running container per tool
# ---------------------------------------------------------------------------------------
for tool in "${TOOLS[@]}"; do
	[ "${FAILED[$tool]}" = 0 ] || continue
	if ! start_sleepers "$tool" 1 "$LOGS/$tool.exec.id" 2>"$LOGS/$tool.exec.start"; then
		fail "$tool" "run -d (for exec)" "$LOGS/$tool.exec.start"
		continue
	fi
	mapfile -t pre < <(prefix_of "$tool")
	EXEC_CMD[$tool]="${pre[*]} exec $(head -n 1 "$LOGS/$tool.exec.id") true"
	# shellcheck disable=SC2086
	bench_as_user ${EXEC_CMD[$tool]} </dev/null >"$LOGS/$tool.exec.probe" 2>&1 ||
		fail "$tool" "probe exec" "$LOGS/$tool.exec.probe"
done
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order=(husk podman); else order=(podman husk); fi
	for tool in "${order[@]}"; do hf_block exec "$tool" "$r" "${EXEC_CMD[$tool]:-}"; done
done
for tool in "${TOOLS[@]}"; do
	[ -s "$LOGS/$tool.exec.id" ] || continue
	mapfile -t pre < <(prefix_of "$tool")
	bench_as_user "${pre[@]}" rm -f "$(head -n 1 "$LOGS/$tool.exec.id")" >/dev/null 2>&1 ||
		bench_log "warning: $tool rm -f of the exec container failed"
done

# ---------------------------------------------------------------------------------------
# 3. ps with NCONT running containers per tool
# ---------------------------------------------------------------------------------------
declare -A START_S=()
for tool in "${TOOLS[@]}"; do
	[ "${FAILED[$tool]}" = 0 ] || continue
	bench_log "starting $NCONT detached sleep containers with $tool (not timed by hyperfine)"
	s=$EPOCHREALTIME
	if ! start_sleepers "$tool" "$NCONT" "$LOGS/$tool.ps.ids" 2>"$LOGS/$tool.ps.start"; then
		fail "$tool" "run -d (for ps)" "$LOGS/$tool.ps.start"
		continue
	fi
	START_S[$tool]=$(awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f", b - a }')
	mapfile -t pre < <(prefix_of "$tool")
	PS_CMD[$tool]="${pre[*]} ps"
	# shellcheck disable=SC2086
	if ! bench_as_user ${PS_CMD[$tool]} </dev/null >"$LOGS/$tool.ps.probe" 2>&1; then
		fail "$tool" "probe ps" "$LOGS/$tool.ps.probe"
		continue
	fi
	n=$(($(wc -l <"$LOGS/$tool.ps.probe") - 1))
	[ "$n" = "$NCONT" ] || bench_log "warning: $tool ps listed $n containers, expected $NCONT: $(tail -n 3 "$LOGS/$tool.ps.probe" | tr '\n' ';')"
done
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order=(husk podman); else order=(podman husk); fi
	for tool in "${order[@]}"; do hf_block ps "$tool" "$r" "${PS_CMD[$tool]:-}"; done
done
bench_log "removing all containers"
remove_all_containers

# ---------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------
declare -A MED_CYC=() MED_EXEC=() MED_PS=()
stats_line() { # LABEL TIMES... -> "median X ms  min  max  (n runs)"; sets REPLY to the median
	local label=$1
	shift
	REPLY=$(bench_median "$@")
	printf '  %-7s median %7s ms  min %7s ms  max %7s ms  (%d runs)' "$label" "$(ms "$REPLY")" \
		"$(ms "$(bench_min "$@")")" "$(ms "$(bench_max "$@")")" "$#"
}
TRAP_OK=1
echo "husk $("$BENCH_HUSK" --version 2>/dev/null | awk '{print $NF}'), $(podman --version) (runc); stores on $BENCH_FS"
echo "$ROUNDS rounds x $RUNS runs per tool per measurement (+$WARMUP warm-up per block), tools alternating:"
echo "run -d + stop + rm of busybox \`sh\` trapping TERM${INIT:+ (with --init)}:"
for tool in "${TOOLS[@]}"; do
	read -r -a ts <<<"${CYC_TOT[$tool]}"
	if [ ${#ts[@]} -eq 0 ]; then
		printf '  %-7s FAILED\n' "$tool"
		TRAP_OK=0
		continue
	fi
	stats_line "$tool" "${ts[@]}"
	MED_CYC[$tool]=$REPLY
	# shellcheck disable=SC2086
	printf '\n          run -d %s + stop %s + rm %s ms (medians of each verb)\n' "$(ms "$(bench_median ${CYC_RUN[$tool]})")" \
		"$(ms "$(bench_median ${CYC_STOP[$tool]})")" "$(ms "$(bench_median ${CYC_RM[$tool]})")"
	read -r -a codes <<<"${CYC_CODES[$tool]}"
	bad=$(printf '%s\n' "${codes[@]}" | awk '$1 != "0"' | sort | uniq -c | awk '{printf " %d x exit %s", $1, $2}')
	# shellcheck disable=SC2086
	slow=$(printf '%s\n' ${CYC_STOP[$tool]} | awk '$1 >= 5' | wc -l)
	if [ -n "$bad" ] || [ "$slow" != 0 ]; then
		TRAP_OK=0
		printf '          NOT all stopped by the trap:%s; %d stop(s) took >= 5 s\n' "$bad" "$slow"
	else
		printf '          all %d containers exited 0 (the trap), no stop reached the grace period\n' "${#codes[@]}"
	fi
done
echo "exec ID true into a running container:"
for tool in "${TOOLS[@]}"; do
	read -r -a ts <<<"${EXEC_T[$tool]}"
	if [ ${#ts[@]} -eq 0 ]; then printf '  %-7s FAILED\n' "$tool"; continue; fi
	stats_line "$tool" "${ts[@]}"
	MED_EXEC[$tool]=$REPLY
	echo
done
echo "ps with $NCONT running containers:"
for tool in "${TOOLS[@]}"; do
	read -r -a ts <<<"${PS_T[$tool]}"
	if [ ${#ts[@]} -eq 0 ]; then printf '  %-7s FAILED\n' "$tool"; continue; fi
	stats_line "$tool" "${ts[@]}"
	MED_PS[$tool]=$REPLY
	printf '  (starting the %d: %s s)\n' "$NCONT" "$(bench_fmt_s "${START_S[$tool]}")"
done
echo "  (husk run with --network $HUSK_NET; podman with --network none)"

MISSED=0
goal() { # LABEL VALUE LIMIT
	local ok
	if [ "$2" = n/a ]; then
		printf '  %-24s %8s   goal <= %s   n/a\n' "$1" "$2" "$3"
		MISSED=1
		return
	fi
	ok=$(awk -v v="$2" -v l="$3" 'BEGIN { print (v <= l) ? "ok" : "MISSED" }')
	[ "$ok" = ok ] || MISSED=1
	printf '  %-24s %8s   goal <= %s   %s\n' "$1" "$2" "$3" "$ok"
}
med_ms() { # ARRAY-NAME TOOL
	local -n m=$1
	if [ -n "${m[$2]:-}" ]; then ms "${m[$2]}"; else echo n/a; fi
}
ratio() { # ARRAY-NAME
	local -n m=$1
	if [ -n "${m[husk]:-}" ] && [ -n "${m[podman]:-}" ]; then
		awk -v a="${m[husk]}" -v b="${m[podman]}" 'BEGIN { printf "%.3f", a / b }'
	else echo n/a; fi
}
echo "goals:"
goal "husk cycle (ms)" "$(med_ms MED_CYC husk)" "$GOAL_CYCLE_MS"
goal "husk exec (ms)" "$(med_ms MED_EXEC husk)" "$GOAL_EXEC_MS"
goal "husk ps, $NCONT running (ms)" "$(med_ms MED_PS husk)" "$GOAL_PS_MS"
if [ "$TRAP_OK" = 1 ]; then ok=ok; else ok=MISSED; MISSED=1; fi
printf '  %-24s %8s   goal all     %s\n' "stopped by the trap" "$([ "$TRAP_OK" = 1 ] && echo all || echo not-all)" "$ok"
printf '  %-24s cycle %s, exec %s, ps %s   (no goal)\n' "husk/podman" "$(ratio MED_CYC)" "$(ratio MED_EXEC)" "$(ratio MED_PS)"
bench_load_warn
echo "lifecycle [$BENCH_FS, $((ROUNDS * RUNS)) runs]: run -d+stop+rm husk $(med_ms MED_CYC husk) ms, podman $(med_ms MED_CYC podman) ms ($(ratio MED_CYC)); exec husk $(med_ms MED_EXEC husk) ms, podman $(med_ms MED_EXEC podman) ms ($(ratio MED_EXEC)); ps/$NCONT husk $(med_ms MED_PS husk) ms, podman $(med_ms MED_PS podman) ms ($(ratio MED_PS))"

for tool in "${TOOLS[@]}"; do [ "${FAILED[$tool]}" = 0 ] || exit 1; done
if [ "$CHECK" = 1 ] && [ "$MISSED" = 1 ]; then
	bench_log "goal missed"
	exit 3
fi
exit 0
