#!/usr/bin/env bash
# Push of a fresh 3-layer image (the Debian fixture plus two layers) to a local registry:
# husk vs rootless podman, alternating the tools (ABBA order) in one run.
#
#   sudo bench/push.sh [-n N] [--warmup W] [--tmpfs] [--check]
#
#   -n N        measured pushes per tool (default 5)
#   --warmup W  unmeasured pushes per tool first (default 1)
#   --tmpfs     put both stores on a fresh tmpfs (default: a temp dir under
#               ${BENCH_TMPDIR:-/var/tmp}, i.e. the disk)
#   --check     exit 3 when the ratio husk/podman is above the goal (0.5)
#
# The image is built with umoci from the fixture layout (debian + 8 MB of random bytes +
# a few small files), copied by skopeo to a source registry and pulled once (not timed)
# into a husk store and a podman store. Each push goes to a registry started empty for
# it (not timed), under a repository name of its own, so no blob is skipped or mounted:
#   husk   --root STORE/husk push -q SRC/bench:latest DEST/husk-I/app:1
#   podman --root STORE/podman --runroot RUN --storage-driver overlay \
#          push -q --tls-verify=false SRC/bench:latest docker://DEST/podman-I/app:1
# husk sends the stored (compressed) blobs as they are; podman keeps layers
# uncompressed and compresses them again on push. Each pushed image is read back with
# `skopeo inspect` (three layers; for husk, the digest it printed). For reference, not a
# goal: `skopeo copy --preserve-digests` of the same image from an OCI layout, in the
# same rotation (the registry's own pace for these bytes).
#
# Last line, e.g.: push debian+2 (60 MB gzip, 3 layers) to an empty registry [ext4, 5 runs]: husk 0.40 s, podman 3.10 s, ratio 0.13 (goal <= 0.5)
# Exit: 0 ok; 1 a tool failed (its stderr is printed, the other's figures still are);
#       2 setup error (missing tool / not root); 3 --check and goal missed.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

GOAL=0.5
bench_parse_opts "$@"
[ ${#BENCH_ARGS[@]} = 0 ] || { bench_usage >&2; exit 2; }

bench_init push
bench_need docker-registry skopeo umoci podman runc newuidmap=uidmap newgidmap=uidmap curl
bench_husk_bin
bench_fixtures
bench_user_setup

# the image: debian + 8 MB that does not compress + a few small files
IMG=$BENCH_TMP/image
mkdir -p "$BENCH_TMP/l2/opt/bench" "$BENCH_TMP/l3/etc/bench"
head -c 8M /dev/urandom >"$BENCH_TMP/l2/opt/bench/random.bin"
for f in a b c d; do echo "bench file $f" >"$BENCH_TMP/l3/etc/bench/$f.conf"; done
tar -C "$BENCH_TMP/l2" -cf "$BENCH_TMP/l2.tar" opt
tar -C "$BENCH_TMP/l3" -cf "$BENCH_TMP/l3.tar" etc
skopeo --insecure-policy copy --quiet "oci:$BENCH_LAYOUT:debian" "oci:$IMG:bench" >&2
umoci raw add-layer --image "$IMG:bench" --history.created_by="8 MB random" "$BENCH_TMP/l2.tar"
umoci raw add-layer --image "$IMG:bench" --history.created_by="small files" "$BENCH_TMP/l3.tar"
chmod -R a+rX "$IMG" # skopeo reads it as the bench user
LAYERS=$(skopeo inspect --raw "oci:$IMG:bench" | "$BENCH_PY" -c 'import json,sys; print(len(json.load(sys.stdin)["layers"]))')
[ "$LAYERS" = 3 ] || bench_die "the bench image has $LAYERS layers, not 3"
MB=$(bench_mb "$(skopeo inspect --raw "oci:$IMG:bench" |
	"$BENCH_PY" -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')")

# the source registry, for the (untimed) pulls; the destinations come and go per push
bench_registry_start source
SRC=$BENCH_REG
SRC_PID=$BENCH_REG_PID
BENCH_REG_PID=
bench_on_exit 'kill "$SRC_PID" 2>/dev/null; wait "$SRC_PID" 2>/dev/null || true'
skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
	"oci:$IMG:bench" "docker://$SRC/bench:latest" >&2 || bench_die "skopeo copy to $SRC failed"
BENCH_REG=$SRC
bench_podman_config
bench_stores_setup $TMPFS
bench_runroot_setup
IMAGE=$SRC/bench:latest
HUSK_STORE=$BENCH_STORES/husk
PODMAN=(podman --root "$BENCH_STORES/podman" --runroot "$BENCH_RUN/p" --storage-driver overlay)
bench_as_user "$BENCH_HUSK" --root "$HUSK_STORE" pull -q "$IMAGE" >/dev/null || bench_die "husk pull $IMAGE failed"
bench_as_user "${PODMAN[@]}" pull -q "$IMAGE" >/dev/null || bench_die "podman pull $IMAGE failed"
bench_load_warn
bench_log "image $IMAGE (3 layers, ${MB} MB gzip), stores on $BENCH_FS ($BENCH_STORES), user $BENCH_USER, $WARMUP warm-up + $N runs each"

HUSK_T=()
PODMAN_T=()
SKOPEO_T=()
HUSK_FAILED=0
PODMAN_FAILED=0
SKOPEO_FAILED=0
LOGS=$BENCH_TMP/logs
mkdir -p "$LOGS"
chmod 0755 "$LOGS"

# run_one TOOL ITER MEASURED
run_one() {
	local tool=$1 i=$2 measured=$3 t rc=0 dest out=$LOGS/$1.$2.out err=$LOGS/$1.$2.err printed got n
	if [ "$tool" = husk ] && [ "$HUSK_FAILED" = 1 ]; then return 0; fi
	if [ "$tool" = podman ] && [ "$PODMAN_FAILED" = 1 ]; then return 0; fi
	if [ "$tool" = skopeo ] && [ "$SKOPEO_FAILED" = 1 ]; then return 0; fi
	bench_registry_start "dest-$tool-$i"
	dest=$BENCH_REG/$tool-$i/app:1
	: >"$LOGS/$tool.$i.digest"
	chown "$BENCH_UID:$BENCH_GID" "$LOGS/$tool.$i.digest"
	sync
	case $tool in
	husk) t=$(bench_time_as_user "$out" "$err" "$BENCH_HUSK" --root "$HUSK_STORE" push \
		--digestfile "$LOGS/$tool.$i.digest" "$IMAGE" "$dest") || rc=$? ;;
	podman) t=$(bench_time_as_user "$out" "$err" "${PODMAN[@]}" push -q --tls-verify=false \
		--digestfile "$LOGS/$tool.$i.digest" "$IMAGE" "docker://$dest") || rc=$? ;;
	skopeo) t=$(bench_time_as_user "$out" "$err" skopeo --insecure-policy copy --quiet --preserve-digests \
		--dest-tls-verify=false --digestfile "$LOGS/$tool.$i.digest" "oci:$IMG:bench" "docker://$dest") || rc=$? ;;
	esac
	got=$(skopeo inspect --tls-verify=false "docker://$dest" 2>/dev/null |
		"$BENCH_PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["Digest"], len(d["Layers"]))') || got=
	printed=$(cat "$LOGS/$tool.$i.digest" 2>/dev/null || true)
	n=${got#* }
	if [ "$rc" != 0 ] || [ -z "$got" ] || [ "$n" != 3 ] || [ "${got%% *}" != "$printed" ]; then
		bench_log "$tool push FAILED (exit $rc, registry has '$got', tool says '$printed') in iteration $i; its stderr:"
		sed 's/^/    /' "$err" >&2
		case $tool in husk) HUSK_FAILED=1 ;; podman) PODMAN_FAILED=1 ;; skopeo) SKOPEO_FAILED=1 ;; esac
		bench_log "carrying on without $tool"
	else
		if [ "$measured" = 1 ]; then
			case $tool in husk) HUSK_T+=("$t") ;; podman) PODMAN_T+=("$t") ;; skopeo) SKOPEO_T+=("$t") ;; esac
		fi
		bench_log "$(printf '%-6s %-7s %s s' "$tool" "$([ "$measured" = 1 ] && echo "run $i" || echo warm-up)" "$(bench_fmt_s "$t")")"
	fi
	bench_registry_stop
	bench_rm "$BENCH_TMP/dest-$tool-$i"
}

bench_rotate "$WARMUP" "$N" husk podman skopeo

echo "husk $("$BENCH_HUSK" --version 2>/dev/null | awk '{print $NF}'), $(podman --version), store on $BENCH_FS, $N runs each (+$WARMUP warm-up), ABBA order"
bench_stats husk "${HUSK_T[@]}"
bench_stats podman "${PODMAN_T[@]}"
bench_stats skopeo "${SKOPEO_T[@]}"
echo "  (skopeo: copy of the same image from an OCI layout, digests kept; a reference, not a goal)"

bench_verdict "push debian+2 ($MB MB gzip, 3 layers) to an empty registry [$BENCH_FS, $N runs]" "$GOAL"
