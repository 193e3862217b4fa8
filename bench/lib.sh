# shellcheck shell=bash
# Shared setup for husk benchmark scripts (bench/*.sh). Source it; do not run it.
#
#   . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
#
# Everything a script starts or creates is registered for cleanup and undone by ONE
# EXIT/INT/TERM trap that this file installs (bench_init). Scripts add their own steps
# with bench_on_exit 'shell code'; steps run in reverse order.
#
# Functions (all prefixed bench_):
#   bench_init NAME             root check, temp dir $BENCH_TMP (0755), cleanup trap
#   bench_need "TOOL[=PKG]"...  fail naming the Debian package when a tool is missing
#   bench_on_exit CODE          register a cleanup step
#   bench_husk_bin              build (cargo build --release) and copy husk to $BENCH_TMP/bin
#   bench_fixtures              build/locate the fixture OCI layout -> $BENCH_LAYOUT
#   bench_registry_start [NAME] docker-registry on 127.0.0.1 -> $BENCH_REG ("127.0.0.1:PORT"),
#                               $BENCH_REG_PID; storage in $BENCH_TMP/NAME (default registry)
#   bench_registry_stop         stops the one started last
#   bench_push TAG REPO:TAG     skopeo copy oci:$BENCH_LAYOUT:TAG docker://$BENCH_REG/REPO:TAG
#   bench_layer_bytes TAG       sum of the compressed layer sizes of a layout tag
#   bench_user_setup            unprivileged user with subuids + private HOME (0700)
#   bench_podman_config         ~/.config/containers/* for rootless podman in that HOME
#   bench_podman_stop_pause     kill the rootless podman pause process of that HOME
#   bench_stores_setup [--tmpfs] dir for per-iteration stores -> $BENCH_STORES, $BENCH_FS
#   bench_runroot_setup         short tmpfs dir for podman --runroot dirs -> $BENCH_RUN
#   bench_setup_with_podman NAME LAYOUT_TAG REPO:TAG [--tmpfs]  all of the above, in order
#   bench_check_counts          $N >= 1 and $WARMUP >= 0, else exit 2
#   bench_rm DIR...             rm -rf as root (handles subuid-owned files)
#   bench_as_user CMD...        run CMD as the bench user in a clean environment
#   bench_time_as_user OUT ERR CMD...  run as the user, print the wall time in seconds
#                                (stdout/stderr of CMD go to files OUT/ERR; the
#                                runuser/env start-up is outside the timed region)
#   bench_median X...           median of numbers
#   bench_fmt_s X               seconds, 2 decimals (3 significant digits under 0.1 s)
#   bench_ratio A B             A/B, 2 decimals
#   bench_rotate W N TOOL...    run_one TOOL ITER MEASURED for W warm-up + N iterations, ABBA
#   bench_stats NAME X...       "  NAME median … s  min … s  max … s  (X …)", or NAME FAILED
#   bench_verdict WHAT GOAL     the last line (husk vs podman medians, ratio, goal) and exit
#   bench_load_warn             warn when the load average exceeds the CPU count
#   bench_mb BYTES              decimal megabytes, rounded
#
# Environment knobs (all optional):
#   BENCH_USER      unprivileged user to run the tools as (default husk-sub; created with
#                   a 65536-id range in /etc/subuid and /etc/subgid when missing)
#   BENCH_TMPDIR    where temp dirs go (default /var/tmp: disk-backed, like a real store)
#   HUSK_BIN        use this husk binary instead of building target/release/husk
#   BENCH_NO_BUILD  1 = do not run cargo build (use target/release/husk as is)

BENCH_DIR=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
BENCH_REPO=$(dirname "$BENCH_DIR")
BENCH_USER=${BENCH_USER:-husk-sub}
BENCH_PY=/usr/bin/python3
[ -x "$BENCH_PY" ] || BENCH_PY=python3
BENCH_CLEANUP=()

bench_log() { printf '[%s] %s\n' "${BENCH_NAME:-bench}" "$*" >&2; }
bench_die() {
	printf '[%s] ERROR: %s\n' "${BENCH_NAME:-bench}" "$*" >&2
	exit 2
}

bench_on_err() { # RC WHERE COMMAND (the ERR trap; once, not again in each enclosing subshell)
	[ "$BASH_SUBSHELL" = 0 ] && bench_log "unexpected failure (exit $1) at $2: $3"
	return 0
}

bench_on_exit() { BENCH_CLEANUP+=("$1"); }

bench_cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#BENCH_CLEANUP[@]} - 1; i >= 0; i--)); do
		eval "${BENCH_CLEANUP[i]}" || true
	done
	BENCH_CLEANUP=()
	exit "$rc"
}

bench_init() {
	BENCH_NAME=$1
	[ "$(id -u)" = 0 ] || bench_die "run as root: the tools run as the unprivileged user $BENCH_USER (via runuser), stores with subuid-owned files are deleted as root (e.g. sudo $0)"
	bench_need runuser=util-linux useradd=passwd
	local base=${BENCH_TMPDIR:-/var/tmp}
	mkdir -p "$base"
	BENCH_TMP=$(mktemp -d "$base/husk-bench-$BENCH_NAME-XXXXXX")
	chmod 0755 "$BENCH_TMP"
	trap bench_cleanup EXIT
	# under set -e, say where an unexpected failure happened instead of exiting silently
	set -E
	trap 'bench_on_err $? "${BASH_SOURCE[0]##*/}:$LINENO" "$BASH_COMMAND"' ERR
	trap 'exit 130' INT
	trap 'exit 143' TERM
	bench_on_exit 'bench_rm "$BENCH_TMP"'
}

# bench_need "tool=debian-package" ...  (tool alone when package name == tool name)
bench_need() {
	local spec tool pkg missing=() pkgs=()
	for spec in "$@"; do
		tool=${spec%%=*}
		pkg=${spec#*=}
		if ! command -v "$tool" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$tool" ] && ! [ -x "/sbin/$tool" ]; then
			missing+=("$tool")
			pkgs+=("$pkg")
		fi
	done
	if [ ${#missing[@]} -gt 0 ]; then
		bench_die "missing tool(s): ${missing[*]} -- install the Debian package(s): apt-get install -y $(printf "%s\n" "${pkgs[@]}" | sort -u | paste -sd " ")"
	fi
}

# rm -rf as root, not crossing into mounts; unmounts anything mounted below first.
bench_rm() {
	local d m
	for d in "$@"; do
		[ -n "$d" ] && [ -e "$d" ] || continue
		awk -v p="$d" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/self/mounts | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
		rm -rf --one-file-system -- "$d" 2>/dev/null ||
			{ chmod -R u+rwX -- "$d" 2>/dev/null; rm -rf --one-file-system -- "$d"; } ||
			bench_log "warning: could not remove $d"
	done
}

# --------------------------------------------------------------------------
# husk binary and fixtures
# --------------------------------------------------------------------------

bench_husk_bin() {
	local src=${HUSK_BIN:-}
	if [ -z "$src" ]; then
		if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
			bench_need cargo=cargo
			bench_log "cargo build --release"
			(cd "$BENCH_REPO" && cargo build --release --quiet) >&2 || bench_die "cargo build --release failed"
		fi
		# .cargo/config.toml names the target, so the binary is under target/<triple>/
		# (ls fails when one of them is missing; pipefail must not end the script there)
		src=$({ ls -t "$BENCH_REPO"/target/*/release/husk "$BENCH_REPO"/target/release/husk 2>/dev/null || true; } | head -n 1)
	fi
	[ -x "$src" ] || bench_die "no husk binary at $src (build it: cargo build --release)"
	mkdir -p "$BENCH_TMP/bin"
	chmod 0755 "$BENCH_TMP/bin"
	install -m 0755 "$src" "$BENCH_TMP/bin/husk"
	BENCH_HUSK=$BENCH_TMP/bin/husk
}

bench_fixtures() {
	bench_need skopeo umoci debootstrap busybox=busybox-static
	local out
	out=$(bash "$BENCH_REPO/tests/fixtures/build-fixtures.sh" </dev/null) ||
		bench_die "tests/fixtures/build-fixtures.sh failed (a cold cache needs root and network for debootstrap)"
	BENCH_LAYOUT=$(printf '%s\n' "$out" | tail -n 1)
	[ -f "$BENCH_LAYOUT/index.json" ] || bench_die "build-fixtures.sh printed '$BENCH_LAYOUT', which has no index.json"
}

# bench_layer_bytes TAG -> total compressed size of the layers of TAG in $BENCH_LAYOUT
bench_layer_bytes() {
	skopeo inspect --raw "oci:$BENCH_LAYOUT:$1" |
		"$BENCH_PY" -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))'
}

# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------

bench_free_port() {
	"$BENCH_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

bench_registry_start() {
	bench_need docker-registry=docker-registry curl=curl
	local dir=$BENCH_TMP/${1:-registry} attempt port marker i
	mkdir -p "$dir"
	for attempt in 1 2 3 4 5; do
		port=$(bench_free_port)
		marker="husk-bench-$$-$port-$RANDOM"
		cat >"$dir/config.yml" <<-EOF
			version: 0.1
			log:
			  level: warn
			  accesslog:
			    disabled: true
			storage:
			  filesystem:
			    rootdirectory: $dir/data
			  maintenance:
			    uploadpurging:
			      enabled: false
			http:
			  addr: 127.0.0.1:$port
			  secret: husk-bench-secret
			  headers:
			    X-Husk-Bench: ["$marker"]
		EOF
		docker-registry serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1 &
		BENCH_REG_PID=$!
		for ((i = 0; i < 400; i++)); do
			if ! kill -0 "$BENCH_REG_PID" 2>/dev/null; then
				wait "$BENCH_REG_PID" 2>/dev/null
				BENCH_REG_PID=
				break
			fi
			# the marker header proves we talk to OUR registry (the port may have been taken)
			if curl -fsS -D - -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null | grep -q "$marker"; then
				BENCH_REG="127.0.0.1:$port"
				bench_on_exit 'bench_registry_stop'
				return 0
			fi
			sleep 0.05
		done
		bench_registry_stop
	done
	cat "$dir/registry.log" >&2
	bench_die "cannot start docker-registry (log above)"
}

bench_registry_stop() {
	if [ -n "${BENCH_REG_PID:-}" ]; then
		# (wait returns the registry's 143: not a failure of the caller)
		kill "$BENCH_REG_PID" 2>/dev/null || true
		wait "$BENCH_REG_PID" 2>/dev/null || true
		BENCH_REG_PID=
	fi
}

# bench_push LAYOUT_TAG REPO:TAG
bench_push() {
	skopeo --insecure-policy copy --quiet --all --preserve-digests --dest-tls-verify=false \
		"oci:$BENCH_LAYOUT:$1" "docker://$BENCH_REG/$2" >&2 ||
		bench_die "skopeo copy of $1 to $BENCH_REG/$2 failed"
}

# --------------------------------------------------------------------------
# the unprivileged bench user
# --------------------------------------------------------------------------

bench_user_setup() {
	bench_need newuidmap=uidmap newgidmap=uidmap
	if ! getent passwd "$BENCH_USER" >/dev/null; then
		bench_log "creating system user $BENCH_USER"
		if getent group "$BENCH_USER" >/dev/null; then
			useradd --system --shell /bin/sh --home-dir /nonexistent --no-create-home --gid "$BENCH_USER" "$BENCH_USER"
		else
			useradd --system --shell /bin/sh --home-dir /nonexistent --no-create-home --user-group "$BENCH_USER"
		fi || bench_die "useradd $BENCH_USER failed"
	fi
	BENCH_UID=$(id -u "$BENCH_USER")
	BENCH_GID=$(id -g "$BENCH_USER")
	local f base
	for f in /etc/subuid /etc/subgid; do
		grep -qE "^($BENCH_USER|$BENCH_UID):" "$f" 2>/dev/null && continue
		# first 65536-aligned range >= 200000 overlapping nothing in the file (as the tests do)
		base=$(awk -F: 'NF >= 3 {print $2, $3}' "$f" 2>/dev/null | "$BENCH_PY" -c '
import sys
r = [tuple(map(int, l.split())) for l in sys.stdin if l.strip()]
b = 200000
while any(b < s + c and s < b + 65536 for s, c in r):
    b += 65536
print(b)')
		printf '%s:%s:65536\n' "$BENCH_USER" "$base" >>"$f"
		bench_log "added $BENCH_USER:$base:65536 to $f"
	done
	BENCH_HOME=$BENCH_TMP/home
	mkdir -p "$BENCH_HOME/run"
	chown -R "$BENCH_UID:$BENCH_GID" "$BENCH_HOME"
	chmod 0700 "$BENCH_HOME" "$BENCH_HOME/run"
	# Only the processes of this HOME's rootless podman; they are ours.
	bench_on_exit 'bench_podman_stop_pause'
}

# Clean environment: HOME, PATH, USER, LOGNAME, XDG_RUNTIME_DIR (no systemd here).
bench_user_env() {
	printf '%s\n' "HOME=$BENCH_HOME" "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
		"USER=$BENCH_USER" "LOGNAME=$BENCH_USER" "XDG_RUNTIME_DIR=$BENCH_HOME/run" "LANG=C.UTF-8"
}

bench_as_user() {
	local env=()
	mapfile -t env < <(bench_user_env)
	(cd "$BENCH_HOME" && runuser -u "$BENCH_USER" -- /usr/bin/env -i "${env[@]}" "$@")
}

# bench_time_as_user OUTFILE ERRFILE CMD... ; prints seconds (e.g. 0.734512) on stdout;
# returns CMD's exit status.
bench_time_as_user() {
	local out=$1 err=$2 t rc
	shift 2
	: >"$out"
	: >"$err"
	chown "$BENCH_UID:$BENCH_GID" "$out" "$err"
	t=$(bench_as_user /bin/bash -c '
		out=$1 err=$2; shift 2
		s=$EPOCHREALTIME
		"$@" >"$out" 2>"$err" </dev/null
		rc=$?
		e=$EPOCHREALTIME
		printf "%s %s\n" "$(awk -v a="$s" -v b="$e" "BEGIN {printf \"%.6f\", b - a}")" "$rc"
	' bench-timer "$out" "$err" "$@")
	rc=${t#* }
	printf '%s\n' "${t% *}"
	return "${rc:-1}"
}

# --------------------------------------------------------------------------
# rootless podman
# --------------------------------------------------------------------------

# Writes storage.conf (overlay), containers.conf (runc, cgroupfs, file events) and
# registries.conf ($BENCH_REG insecure) into $BENCH_HOME/.config/containers.
bench_podman_config() {
	bench_need podman=podman runc=runc
	local c=$BENCH_HOME/.config/containers
	mkdir -p "$c"
	cat >"$c/storage.conf" <<-EOF
		[storage]
		driver = "overlay"
	EOF
	cat >"$c/containers.conf" <<-EOF
		[engine]
		runtime = "runc"
		cgroup_manager = "cgroupfs"
		events_logger = "file"
	EOF
	cat >"$c/registries.conf" <<-EOF
		unqualified-search-registries = []

		[[registry]]
		location = "$BENCH_REG"
		insecure = true
	EOF
	if [ ! -f /etc/containers/policy.json ]; then
		printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$c/policy.json"
	fi
	chown -R "$BENCH_UID:$BENCH_GID" "$BENCH_HOME/.config"
}

# Rootless podman keeps a "pause" process holding its user namespace; its pid is in
# $XDG_RUNTIME_DIR/libpod/tmp/pause.pid. Kill exactly that process (and wait for it).
bench_podman_stop_pause() {
	local f=$BENCH_HOME/run/libpod/tmp/pause.pid pid i
	[ -f "$f" ] || return 0
	pid=$(cat "$f" 2>/dev/null)
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	# only if it is still a process of the bench user (pids get reused)
	[ "$(stat -c %u "/proc/$pid" 2>/dev/null)" = "$BENCH_UID" ] || return 0
	kill "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	kill -9 "$pid" 2>/dev/null
	rm -f "$f"
}

# --------------------------------------------------------------------------
# stores
# --------------------------------------------------------------------------

# bench_stores_setup [--tmpfs]: $BENCH_STORES, owned by the bench user, where the
# per-iteration stores go; with --tmpfs it is a fresh tmpfs (unmounted at exit).
# Sets BENCH_FS to the file system type (ext4, tmpfs, ...).
bench_stores_setup() {
	BENCH_STORES=$BENCH_TMP/stores
	mkdir -p "$BENCH_STORES"
	if [ "${1:-}" = --tmpfs ]; then
		mount -t tmpfs -o mode=0755,size=${BENCH_TMPFS_SIZE:-4g} husk-bench "$BENCH_STORES" ||
			bench_die "cannot mount a tmpfs on $BENCH_STORES"
		bench_on_exit 'umount -l "$BENCH_STORES" 2>/dev/null'
	fi
	chown "$BENCH_UID:$BENCH_GID" "$BENCH_STORES"
	BENCH_FS=$(stat -f -c %T "$BENCH_STORES")
	if [ "$BENCH_FS" = ext2/ext3 ]; then BENCH_FS=ext4; fi # stat's name for the ext family
}

# bench_runroot_setup: podman refuses a --runroot longer than 50 characters, and a real
# rootless runroot (/run/user/UID/containers) is on tmpfs: mount a small tmpfs on a
# short path under /tmp, owned by the bench user. Unmounted and removed at exit.
bench_runroot_setup() {
	BENCH_RUN=$(mktemp -d /tmp/hb-XXXXXX)
	bench_on_exit 'bench_rm "$BENCH_RUN"'
	mount -t tmpfs -o mode=0700,size=256m husk-bench-run "$BENCH_RUN" ||
		bench_die "cannot mount a tmpfs on $BENCH_RUN"
	chown "$BENCH_UID:$BENCH_GID" "$BENCH_RUN"
}

# bench_setup_with_podman NAME LAYOUT_TAG REPO:TAG [--tmpfs]: the set-up of a husk vs
# rootless podman script: bench_init NAME, tools, husk binary, fixtures, bench user,
# registry holding LAYOUT_TAG as REPO:TAG, podman's config, stores and runroot.
bench_setup_with_podman() {
	bench_init "$1"
	bench_need docker-registry skopeo podman runc newuidmap=uidmap newgidmap=uidmap curl
	bench_husk_bin
	bench_fixtures
	bench_user_setup
	bench_registry_start
	bench_push "$2" "$3"
	bench_podman_config
	bench_stores_setup ${4:-}
	bench_runroot_setup
}

# bench_usage: the script's header comment (its help)
bench_usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

# bench_parse_opts "$@": the options every husk-vs-podman script takes: -n N (measured
# runs, default $N or 5), --warmup W (default $WARMUP or 1), --tmpfs, --check, -h. Sets
# N WARMUP TMPFS CHECK; the other arguments are left in BENCH_ARGS, in order.
bench_parse_opts() {
	N=${N:-5}
	WARMUP=${WARMUP:-1}
	TMPFS=
	CHECK=0
	BENCH_ARGS=()
	while [ $# -gt 0 ]; do
		case $1 in
		-n) N=${2:?-n needs a number}; shift 2 ;;
		-n*) N=${1#-n}; shift ;;
		--warmup) WARMUP=${2:?--warmup needs a number}; shift 2 ;;
		--tmpfs) TMPFS=--tmpfs; shift ;;
		--check) CHECK=1; shift ;;
		-h | --help) bench_usage; exit 0 ;;
		*) BENCH_ARGS+=("$1"); shift ;;
		esac
	done
	bench_check_counts
}

# bench_check_counts: $N (measured runs, >= 1) and $WARMUP (>= 0) as the scripts take them
bench_check_counts() {
	[[ $N =~ ^[1-9][0-9]*$ ]] || bench_die "-n wants a positive integer, got '$N'"
	[[ $WARMUP =~ ^[0-9]+$ ]] || bench_die "--warmup wants a number, got '$WARMUP'"
}

# --------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------

bench_median() {
	printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {
		if (NR == 0) exit 1
		if (NR % 2) printf "%.6f\n", a[(NR + 1) / 2]
		else printf "%.6f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

bench_min() { printf '%s\n' "$@" | sort -g | head -n 1; }
bench_max() { printf '%s\n' "$@" | sort -g | tail -n 1; }

bench_fmt_s() { awk -v x="$1" 'BEGIN { if (x < 0.1) printf "%.3f", x; else printf "%.2f", x }'; }

# bench_rotate WARMUP N TOOL...: WARMUP unmeasured then N measured iterations; in each,
# the calling script's `run_one TOOL ITER MEASURED` for every tool, in ABBA order (the
# order reversed every other iteration), so that drift and order effects hit all alike.
bench_rotate() {
	local warmup=$1 n=$2 i j measured
	shift 2
	local tools=("$@")
	for ((i = 1 - warmup; i <= n; i++)); do
		measured=$([ "$i" -ge 1 ] && echo 1 || echo 0)
		if (((i + warmup) % 2)); then
			for ((j = 0; j < ${#tools[@]}; j++)); do run_one "${tools[j]}" "$i" "$measured"; done
		else
			for ((j = ${#tools[@]} - 1; j >= 0; j--)); do run_one "${tools[j]}" "$i" "$measured"; done
		fi
	done
}

bench_stats() { # NAME TIMES...: one summary line of times in seconds
	local name=$1
	shift
	if [ $# -eq 0 ]; then
		printf '  %-8s FAILED\n' "$name"
		return
	fi
	printf '  %-8s median %s s  min %s s  max %s s  (%s)\n' "$name" \
		"$(bench_fmt_s "$(bench_median "$@")")" "$(bench_fmt_s "$(bench_min "$@")")" \
		"$(bench_fmt_s "$(bench_max "$@")")" "$(for x in "$@"; do bench_fmt_s "$x"; printf ' '; done | sed 's/ $//')"
}

# bench_verdict WHAT GOAL: from the arrays HUSK_T and PODMAN_T (seconds) and the flags
# HUSK_FAILED, PODMAN_FAILED and CHECK of the calling script, prints the line to quote,
# "WHAT: husk X s, podman Y s, ratio R (goal <= GOAL)", and exits: 0, 1 when a tool
# failed, 3 when CHECK=1 and husk/podman is above GOAL.
bench_verdict() {
	local what=$1 goal=$2 h=failed p=failed r=n/a hm= pm=
	if [ ${#HUSK_T[@]} -gt 0 ]; then hm=$(bench_median "${HUSK_T[@]}"); h="$(bench_fmt_s "$hm") s"; fi
	if [ ${#PODMAN_T[@]} -gt 0 ]; then pm=$(bench_median "${PODMAN_T[@]}"); p="$(bench_fmt_s "$pm") s"; fi
	if [ -n "$hm" ] && [ -n "$pm" ]; then r=$(bench_ratio "$hm" "$pm"); fi
	bench_load_warn
	echo "$what: husk $h, podman $p, ratio $r (goal <= $goal)"
	[ "$HUSK_FAILED" = 0 ] && [ "$PODMAN_FAILED" = 0 ] || exit 1
	if [ "${CHECK:-0}" = 1 ] && ! awk -v h="$hm" -v p="$pm" -v g="$goal" 'BEGIN {exit !(h <= g * p)}'; then
		bench_log "goal missed: ratio $r > $goal"
		exit 3
	fi
	exit 0
}

bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

# bench_load_warn: warn when the 1-minute load average exceeds the CPU count
# (other work on the machine skews every figure; ratios of alternated runs less so).
bench_load_warn() {
	local load ncpu
	read -r load _ </proc/loadavg
	ncpu=$(nproc)
	if awk -v l="$load" -v n="$ncpu" 'BEGIN {exit !(l > n)}'; then
		bench_log "warning: load average $load on $ncpu CPUs: other work is running, figures are noisy"
	fi
}

bench_mb() { awk -v x="$1" 'BEGIN { printf "%.0f", x / 1e6 }'; }
