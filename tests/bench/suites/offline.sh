# Offline suite: decrypt and verify of a model-like tree on tmpfs, ccmount vs gocryptfs 2.3,
# plus single-core block decryption of each AES-GCM backend vs bare aws-lc EVP calls.
#
# Environment: BENCH_DIR (default /dev/shm/ccmount-bench, must be tmpfs), SIZE_MIB (2048),
# RUNS (3), BIN_DIR (use the ccmount and ccmount-bench binaries there instead of building
# release ones, e.g. an older build for an A/B comparison; say so with the numbers).

suite_main() {
  local dir=${BENCH_DIR:-/dev/shm/ccmount-bench} size=${SIZE_MIB:-2048} runs=${RUNS:-3}
  need_tools offline gocryptfs fusermount3
  local bin_dir=${BIN_DIR:-}
  if [[ -z "$bin_dir" ]]; then
    build_release
    bin_dir=$PWD/target/release
  fi
  local cc=$bin_dir/ccmount bench=$bin_dir/ccmount-bench
  echo "# binaries from $bin_dir" >&2
  new_gocryptfs_tree "$dir"
  echo "# $(nproc) CPUs, $(awk '{print $1}' /proc/loadavg) load; tree of ${size} MiB in $dir ($(stat -f -c %T "$dir"))" >&2
  echo "# encrypting with gocryptfs 2.3 (default -init, scrypt N=2^16)" >&2
  local gen bytes
  gen=$("$bench" gen "$dir/mnt" "$size")
  unmount_quiet "$dir/mnt"
  bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$gen")
  echo "# $gen" >&2

  local -a our_dec go_dec our_ver go_ver our_man cpu_od cpu_gd cpu_ov cpu_gv
  local i t w c
  for ((i = 1; i <= runs; i++)); do
    echo "# run $i/$runs" >&2
    drop_caches
    read -r w c < <(time_cmd "$cc" decrypt -q --passfile "$dir/pass" "$dir/cipher" "$dir/out")
    [[ -f "$dir/out/config.json" ]] || { echo "ccmount decrypt failed" >&2; exit 1; }
    our_dec+=("$(mbps "$bytes" "$w")"); cpu_od+=("$c"); rm -rf "$dir/out"
    drop_caches
    read -r w c < <(time_cmd bash -c "gocryptfs -q -passfile '$dir/pass' '$dir/cipher' '$dir/mnt' && cp -a '$dir/mnt/.' '$dir/out' && fusermount3 -u '$dir/mnt'")
    [[ -f "$dir/out/config.json" ]] || { echo "gocryptfs mount + cp -a failed" >&2; exit 1; }
    go_dec+=("$(mbps "$bytes" "$w")"); cpu_gd+=("$c"); rm -rf "$dir/out"; unmount_quiet "$dir/mnt"
    drop_caches
    read -r w c < <(time_cmd "$cc" verify -q --passfile "$dir/pass" "$dir/cipher")
    our_ver+=("$(mbps "$bytes" "$w")"); cpu_ov+=("$c")
    drop_caches
    read -r w c < <(time_cmd gocryptfs -fsck -q -passfile "$dir/pass" "$dir/cipher")
    go_ver+=("$(mbps "$bytes" "$w")"); cpu_gv+=("$c")
    drop_caches
    read -r w c < <(time_cmd "$cc" verify -q --passfile "$dir/pass" "$dir/cipher" --manifest "$dir/manifest.json")
    our_man+=("$(mbps "$bytes" "$w")")
  done
  "$cc" verify -q --passfile "$dir/pass" "$dir/cipher" || { echo "verify found problems" >&2; exit 1; }
  print_metric decrypt "$(median "${our_dec[@]}")" "$(median "${go_dec[@]}")"
  print_metric verify "$(median "${our_ver[@]}")" "$(median "${go_ver[@]}")"
  print_metric verify_with_sha256_manifest "$(median "${our_man[@]}")" "$(median "${go_ver[@]}")"
  echo "# cpu seconds (system-wide, median): decrypt ours=$(median "${cpu_od[@]}") gocryptfs=$(median "${cpu_gd[@]}"); verify ours=$(median "${cpu_ov[@]}") gocryptfs=$(median "${cpu_gv[@]}")"
  echo "# load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

  local -a aws rc evp
  local line
  for ((i = 1; i <= runs; i++)); do
    line=$("$bench" blocks 64)
    aws+=("$(sed -n 's/.*aws_lc=\([0-9.]*\).*/\1/p' <<<"$line")")
    rc+=("$(sed -n 's/.*rustcrypto=\([0-9.]*\).*/\1/p' <<<"$line")")
    evp+=("$(sed -n 's/.*evp=\([0-9.]*\).*/\1/p' <<<"$line")")
  done
  print_metric block_decrypt_aws_lc "$(median "${aws[@]}")" "$(median "${evp[@]}")" evp
  print_metric block_decrypt_rustcrypto "$(median "${rc[@]}")" "$(median "${evp[@]}")" evp
}
