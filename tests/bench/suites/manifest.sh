# Manifest suite (issue 10): what pinning costs. On a model-like tree on tmpfs made by
# gocryptfs 2.3, times `ccmount manifest`, `ccmount verify --expect manifest.json` (the full
# check that `decrypt --expect` and `mount --expect` run first), plain `ccmount verify`, and
# `gocryptfs -fsck` (which checks blocks but pins nothing).
#
# Prints `metric=verify_expect_full ours=MB/s gocryptfs=MB/s` (vs -fsck), the same against
# plain verify (`verify=`), `# seconds per GiB` lines, and `metric=mount_expect_full_s`:
# the time from `ccmount mount --expect manifest.json` to a live mount (the full check runs
# first), beside the time a plain `gocryptfs -ro` mount takes to go live (it checks nothing).
#
# Environment: BENCH_DIR (default /dev/shm/ccmount-bench-manifest, must be tmpfs),
# SIZE_MIB (2048), RUNS (3), NO_BUILD=1 (use the target/release binaries as they are).

suite_main() {
  local dir=${BENCH_DIR:-/dev/shm/ccmount-bench-manifest} size=${SIZE_MIB:-2048} runs=${RUNS:-3}
  need_tools manifest gocryptfs fusermount3
  if [[ -z "${NO_BUILD:-}" ]]; then
    build_release
  fi
  local cc=$PWD/target/release/ccmount bench=$PWD/target/release/ccmount-bench
  new_gocryptfs_tree "$dir"
  echo "# $(nproc) CPUs, $(awk '{print $1}' /proc/loadavg) load; tree of ${size} MiB in $dir ($(stat -f -c %T "$dir"))" >&2
  local gen bytes
  gen=$("$bench" gen "$dir/mnt" "$size")
  unmount_quiet "$dir/mnt"
  bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$gen")
  echo "# $gen" >&2

  local -a man exp ver fsck mnt_exp mnt_go
  local i w c digest
  for ((i = 1; i <= runs; i++)); do
    echo "# run $i/$runs" >&2
    drop_caches
    read -r w c < <(time_cmd "$cc" manifest -q --passfile "$dir/pass" "$dir/cipher" --out "$dir/manifest.json")
    [[ -s "$dir/manifest.json" ]] || { echo "ccmount manifest failed" >&2; exit 1; }
    man+=("$w")
    drop_caches
    read -r w c < <(time_cmd "$cc" verify -q --passfile "$dir/pass" "$dir/cipher" --expect "$dir/manifest.json")
    exp+=("$w")
    drop_caches
    read -r w c < <(time_cmd "$cc" verify -q --passfile "$dir/pass" "$dir/cipher")
    ver+=("$w")
    drop_caches
    read -r w c < <(time_cmd gocryptfs -fsck -q -passfile "$dir/pass" "$dir/cipher")
    fsck+=("$w")
    drop_caches
    read -r w c < <(time_cmd "$cc" mount -q "$dir/cipher" "$dir/mnt" --passfile "$dir/pass" --expect "$dir/manifest.json")
    mountpoint -q "$dir/mnt" || { echo "ccmount mount --expect did not go live" >&2; exit 1; }
    mnt_exp+=("$w")
    "$cc" umount "$dir/mnt"
    drop_caches
    read -r w c < <(time_cmd gocryptfs -q -ro -passfile "$dir/pass" "$dir/cipher" "$dir/mnt")
    mnt_go+=("$w")
    unmount_quiet "$dir/mnt"
  done
  "$cc" verify -q --passfile "$dir/pass" "$dir/cipher" --expect "$dir/manifest.json" ||
    { echo "verify --expect refused the untouched tree" >&2; exit 1; }
  digest=$(sha256sum "$dir/manifest.json" | cut -d' ' -f1)
  echo "# manifest: $(wc -c <"$dir/manifest.json") bytes, sha256:$digest"
  local m e v f
  m=$(median "${man[@]}"); e=$(median "${exp[@]}"); v=$(median "${ver[@]}"); f=$(median "${fsck[@]}")
  print_metric verify_expect_full "$(mbps "$bytes" "$e")" "$(mbps "$bytes" "$f")"
  print_metric verify_expect_full "$(mbps "$bytes" "$e")" "$(mbps "$bytes" "$v")" verify
  print_metric manifest "$(mbps "$bytes" "$m")" "$(mbps "$bytes" "$f")"
  local me mg
  me=$(median "${mnt_exp[@]}"); mg=$(median "${mnt_go[@]}")
  awk -v b="$bytes" -v me="$me" -v mg="$mg" 'BEGIN {
    printf "metric=mount_expect_full_s ours=%.3f per_gib=%.3f target_per_gib=1.000 gocryptfs_plain_mount_s=%.3f\n", me, me / (b / 1073741824), mg
  }'
  awk -v b="$bytes" -v e="$e" -v m="$m" -v v="$v" -v f="$f" 'BEGIN {
    g = b / 1073741824
    printf "# seconds per GiB (median): verify --expect=%.3f manifest=%.3f verify=%.3f gocryptfs -fsck=%.3f\n", e / g, m / g, v / g, f / g
  }'
  echo "# load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
}
