# FUSE suite: the same gocryptfs-made tree mounted read-only by ccmount and by gocryptfs 2.3
# (`-ro`), measured in the same run with caches dropped before every measurement:
#   seq_read     dd bs=1M of a large file (MB/s)
#   mmap_read    a shared mmap of the same file, one byte per page touched (MB/s)
#   rand_4k      random 4 KiB preads in the same file (ops/s)
#   walk         lstat walk of a tree of NFILES small files (entries/s)
#   small_read   the same walk reading every file (entries/s)
#   rss          the daemon's peak RSS while serving all of the above (MiB; lower is better,
#                so the ratio is gocryptfs/ours). The peak is reset once the mount is live
#                (`clear_refs` 5), so the key derivation before it (scrypt: 64 MiB at the
#                default N=2^16, in both daemons) does not count: the target is RSS while
#                streaming.
# One line per metric, median of RUNS runs: metric=<name> ours=<v> gocryptfs=<v> ratio=<x>.
#
# Environment: BENCH_DIR (default /dev/shm/ccmount-fuse-bench; tmpfs, so the backing store is
# not the bottleneck), SIZE_MIB (1024), NFILES (10000), RANDS (20000), RUNS (3),
# THREADS (ccmount --threads; default: number of CPUs), BIN_DIR (use the ccmount and
# ccmount-bench binaries there instead of building release ones; say so with the numbers).

suite_main() {
  local dir=${BENCH_DIR:-/dev/shm/ccmount-fuse-bench} size=${SIZE_MIB:-1024}
  local nfiles=${NFILES:-10000} rands=${RANDS:-20000} runs=${RUNS:-3}
  need_tools fuse gocryptfs fusermount3 dd mountpoint
  [[ $(id -u) == 0 ]] || { echo "fuse bench: needs root (mounts, drop_caches)" >&2; exit 1; }
  local bin_dir=${BIN_DIR:-}
  if [[ -z "$bin_dir" ]]; then
    build_release
    bin_dir=$PWD/target/release
  fi
  local cc=$bin_dir/ccmount bench=$bin_dir/ccmount-bench
  echo "# binaries from $bin_dir" >&2
  rm -rf "$dir"
  mkdir -p "$dir"/{cipher,go,ours}
  trap 'unmount_quiet "'"$dir"'/go"; unmount_quiet "'"$dir"'/ours"; rm -rf "'"$dir"'"' EXIT
  printf 'bench-password\n' >"$dir/pass"
  echo "# $(nproc) CPUs, $(awk '{print $1}' /proc/loadavg) load; ${size} MiB file + ${nfiles} small files in $dir ($(stat -f -c %T "$dir"))" >&2
  gocryptfs -init -q -passfile "$dir/pass" "$dir/cipher"
  gocryptfs -q -passfile "$dir/pass" "$dir/cipher" "$dir/go"
  echo "# $("$bench" fusetree "$dir/go" "$size" "$nfiles")" >&2
  unmount_quiet "$dir/go"
  local big_bytes
  big_bytes=$(( (size << 20) + 77 ))

  local -a seq_o seq_g mm_o mm_g rnd_o rnd_g walk_o walk_g small_o small_g rss_o rss_g
  local i which mnt pid w c
  for ((i = 1; i <= runs; i++)); do
    for which in ours go; do
      echo "# run $i/$runs: $which" >&2
      mnt=$dir/$which
      drop_caches
      if [[ $which == ours ]]; then
        "$cc" mount -q --passfile "$dir/pass" ${THREADS:+--threads "$THREADS"} \
          --ready-file "$dir/ready" "$dir/cipher" "$mnt"
        pid=$(sed -n 's/^pid=//p' "$dir/ready")
      else
        gocryptfs -q -fg -ro -passfile "$dir/pass" "$dir/cipher" "$mnt" &
        pid=$!
        for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
      fi
      mountpoint -q "$mnt" || { echo "fuse bench: $which did not mount" >&2; exit 1; }
      # Reset VmHWM: measure the peak while serving, not the KDF's before going live.
      echo 5 >"/proc/$pid/clear_refs" 2>/dev/null ||
        echo "# could not reset $which's peak RSS: rss includes the key derivation" >&2

      drop_caches
      read -r w c < <(time_cmd dd if="$mnt/big.bin" of=/dev/null bs=1M)
      local seq_v; seq_v=$(mbps "$big_bytes" "$w")
      drop_caches
      local mm_v; mm_v=$("$bench" mmapread "$mnt/big.bin" | sed -n 's/.*mbps=\([0-9]*\).*/\1/p')
      drop_caches
      local rnd_v; rnd_v=$("$bench" randread "$mnt/big.bin" "$rands" | sed -n 's/.*iops=\([0-9]*\).*/\1/p')
      drop_caches
      local walk_v; walk_v=$("$bench" walk "$mnt/small" | sed -n 's/.*per_sec=\([0-9]*\).*/\1/p')
      drop_caches
      local small_v; small_v=$("$bench" walk "$mnt/small" --read | sed -n 's/.*per_sec=\([0-9]*\).*/\1/p')
      local rss_v; rss_v=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
      echo "#   seq=${seq_v}MB/s mmap=${mm_v}MB/s rand4k=${rnd_v}/s walk=${walk_v}/s small_read=${small_v}/s rss=${rss_v}MiB" >&2

      if [[ $which == ours ]]; then
        seq_o+=("$seq_v"); mm_o+=("$mm_v"); rnd_o+=("$rnd_v"); walk_o+=("$walk_v"); small_o+=("$small_v"); rss_o+=("$rss_v")
        "$cc" umount -q "$mnt"
      else
        seq_g+=("$seq_v"); mm_g+=("$mm_v"); rnd_g+=("$rnd_v"); walk_g+=("$walk_v"); small_g+=("$small_v"); rss_g+=("$rss_v")
        fusermount3 -u "$mnt"
      fi
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      wait "$pid" 2>/dev/null || true
    done
  done
  print_metric seq_read "$(median "${seq_o[@]}")" "$(median "${seq_g[@]}")"
  print_metric mmap_read "$(median "${mm_o[@]}")" "$(median "${mm_g[@]}")"
  print_metric rand_4k "$(median "${rnd_o[@]}")" "$(median "${rnd_g[@]}")"
  print_metric walk "$(median "${walk_o[@]}")" "$(median "${walk_g[@]}")"
  print_metric small_read "$(median "${small_o[@]}")" "$(median "${small_g[@]}")"
  awk -v o="$(median "${rss_o[@]}")" -v g="$(median "${rss_g[@]}")" \
    'BEGIN {printf "metric=rss_mib ours=%.1f gocryptfs=%.1f ratio=%.2f (gocryptfs/ours)\n", o, g, (o > 0 ? g / o : 0)}'
  echo "# load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
}
