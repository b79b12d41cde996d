# GPU suite: `ccmount load-gpu` of one encrypted safetensors file of SIZE_MIB MiB.
#
# On a host with a CUDA driver and device (metric of issue 8, target >= 0.8x on an H100):
#   metric=gpu_load ours=<GB/s> plain_h2d=<GB/s> ratio=<x>
#     ours: `load-gpu --no-verify` pipeline throughput (decrypt + host-to-device, overlapped);
#     plain_h2d: `ccmount bench-h2d`, a plain pinned host-to-device copy of as many bytes,
#     same chunk size and ring depth, no decryption.
#   metric=gpu_load_verified ...   the same with the device-copy check (hash + read-back).
# Elsewhere it says why GPU numbers are not available, then always measures the CPU target
# (the same pipeline into host memory) against what a loader does with gocryptfs today:
#   metric=load_cpu_target ours=<MB/s> gocryptfs=<MB/s> ratio=<x>
#     ours: `ccmount load-gpu --target cpu --no-verify` (whole command, scrypt included);
#     gocryptfs: `gocryptfs -ro` mount + read the file into one heap buffer + unmount.
#   metric=load_cpu_target_verified ...   ours with the device-copy check.
#   metric=cpu_target_pipeline ours=<MB/s> plain_copy=<MB/s>   pipeline only (no scrypt) vs
#     `bench-h2d --target cpu` (plain chunked memcpy through the same target).
#
# Environment: BENCH_DIR (default /dev/shm/ccmount-bench-gpu, tmpfs), SIZE_MIB (4096),
# RUNS (3), CHUNK_MIB (32), DEPTH (3), DEVICE (0), NO_BUILD (set: use the release binaries
# already in target/release).

# "GB/s" from the summary line of `load-gpu` (human output).
load_gbps() { sed -n 's/.* \([0-9.]*\) GB\/s into .*/\1/p' | tail -1; }

suite_main() {
  local dir=${BENCH_DIR:-/dev/shm/ccmount-bench-gpu} size=${SIZE_MIB:-4096} runs=${RUNS:-3}
  local chunk=${CHUNK_MIB:-32} depth=${DEPTH:-3} device=${DEVICE:-0}
  need_tools gpu gocryptfs fusermount3
  if [[ -z ${NO_BUILD:-} ]]; then
    build_release
  fi
  local cc=$PWD/target/release/ccmount bench=$PWD/target/release/ccmount-bench
  new_gocryptfs_tree "$dir"
  echo "# $(nproc) CPUs, $(awk '{print $1}' /proc/loadavg) load; one safetensors file of ${size} MiB in $dir ($(stat -f -c %T "$dir"))" >&2
  local gen bytes
  gen=$("$bench" safetensors "$dir/mnt/model.safetensors" "$size")
  unmount_quiet "$dir/mnt"
  bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$gen")
  echo "# $gen (written through a gocryptfs 2.3 mount, default -init)" >&2
  local -a tune=(--chunk-mib "$chunk" --depth "$depth")

  # --- GPU: needs a CUDA driver and device ---------------------------------------------
  local probe i line
  if probe=$("$cc" bench-h2d --mib 64 --device "$device" "${tune[@]}" 2>&1); then
    echo "# GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i "$device" 2>/dev/null || echo "device $device")" >&2
    local -a ours ourv h2d
    for ((i = 1; i <= runs; i++)); do
      echo "# gpu run $i/$runs" >&2
      line=$("$cc" load-gpu -q "$dir/cipher" --passfile "$dir/pass" --device "$device" "${tune[@]}" --no-verify)
      ours+=("$(load_gbps <<<"$line")")
      line=$("$cc" load-gpu -q "$dir/cipher" --passfile "$dir/pass" --device "$device" "${tune[@]}")
      ourv+=("$(load_gbps <<<"$line")")
      line=$("$cc" bench-h2d --mib $(((bytes + 1048575) / 1048576)) --device "$device" "${tune[@]}")
      h2d+=("$(sed -n 's/.*plain_h2d_gbps=\([0-9.]*\).*/\1/p' <<<"$line")")
      echo "# $line" >&2
    done
    local o v h
    o=$(median "${ours[@]}") v=$(median "${ourv[@]}") h=$(median "${h2d[@]}")
    awk -v o="$o" -v h="$h" 'BEGIN {printf "metric=gpu_load ours=%.2f plain_h2d=%.2f ratio=%.2f\n", o, h, (h > 0 ? o / h : 0)}'
    awk -v o="$v" -v h="$h" 'BEGIN {printf "metric=gpu_load_verified ours=%.2f plain_h2d=%.2f ratio=%.2f\n", o, h, (h > 0 ? o / h : 0)}'
  else
    echo "# GPU numbers not available on this machine: $(head -1 <<<"$probe")"
  fi

  # --- CPU target vs a gocryptfs mount --------------------------------------------------
  local -a our_l our_v go_l pipe plain
  local w c
  for ((i = 1; i <= runs; i++)); do
    echo "# cpu-target run $i/$runs" >&2
    drop_caches
    read -r w c < <(time_cmd "$cc" load-gpu -q "$dir/cipher" --passfile "$dir/pass" --target cpu "${tune[@]}" --no-verify)
    our_l+=("$(mbps "$bytes" "$w")")
    drop_caches
    read -r w c < <(time_cmd "$cc" load-gpu -q "$dir/cipher" --passfile "$dir/pass" --target cpu "${tune[@]}")
    our_v+=("$(mbps "$bytes" "$w")")
    drop_caches
    read -r w c < <(time_cmd bash -c "gocryptfs -ro -q -passfile '$dir/pass' '$dir/cipher' '$dir/mnt' && '$bench' slurp '$dir/mnt/model.safetensors' && fusermount3 -u '$dir/mnt'")
    mountpoint -q "$dir/mnt" && { echo "gocryptfs mount + read failed" >&2; exit 1; }
    go_l+=("$(mbps "$bytes" "$w")")
    line=$("$cc" load-gpu -q "$dir/cipher" --passfile "$dir/pass" --target cpu "${tune[@]}" --no-verify)
    pipe+=("$(awk -v g="$(load_gbps <<<"$line")" 'BEGIN {printf "%.0f\n", g * 1000}')")
    line=$("$cc" bench-h2d --mib $(((bytes + 1048575) / 1048576)) --target cpu "${tune[@]}")
    plain+=("$(awk -v g="$(sed -n 's/.*plain_h2d_gbps=\([0-9.]*\).*/\1/p' <<<"$line")" 'BEGIN {printf "%.0f\n", g * 1000}')")
  done
  # A run that failed would leave an empty value: check the loads once more, verified.
  "$cc" load-gpu -q "$dir/cipher" --passfile "$dir/pass" --target cpu "${tune[@]}" >/dev/null || { echo "load-gpu --target cpu failed" >&2; exit 1; }
  print_metric load_cpu_target "$(median "${our_l[@]}")" "$(median "${go_l[@]}")"
  print_metric load_cpu_target_verified "$(median "${our_v[@]}")" "$(median "${go_l[@]}")"
  print_metric cpu_target_pipeline "$(median "${pipe[@]}")" "$(median "${plain[@]}")" plain_copy
  echo "# load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
}
