# Object-storage suite: a gocryptfs tree in an S3-compatible bucket, read three ways into
# tmpfs, side by side in one run:
#   limit      a plain parallel download of the ciphertext (boto3, 16 files at once, large
#              files in parallel ranged GETs; nothing decrypted): the server's ceiling
#   ours       ccmount decrypt s3://BUCKET/PREFIX OUT (ranged GETs in flight, decrypted as
#              they arrive)
#   s3fs       what users run today: s3fs (Debian) + gocryptfs on top + cp -a
# and the peak RSS of `ccmount decrypt` at the default concurrency; then a sequential read
# (`cat`) of one MOUNT_MIB file of another tree in the bucket through
#   ours       ccmount mount s3://BUCKET/PREFIX (the daemon's peak RSS measured too)
#   s3fs       s3fs + gocryptfs on top
# Both read the mount case in MOUNT_CHUNK_MIB (default 32) MiB ranges (`--s3-chunk-size`; s3fs
# `multipart_size`, 8 in parallel like ccmount's default concurrency): moto answers a ranged
# GET by reading the whole object, so on moto a range costs the object's size and 8 MiB
# ranges of a 500 MiB object measure moto, not the readers (docs/benchmarks.md).
#
# The server is moto's server mode (Python, one process; `scripts/setup.sh` installs it),
# started here on 127.0.0.1: it caps every reader, so `limit` is its ceiling, not S3's.
# S3_SERVER=s3s runs s3s-fs instead (Rust; `cargo install s3s-fs@0.14.1 --features binary`,
# binary on PATH or in S3S_FS); there the s3fs decrypt case is skipped (see docs/benchmarks.md).
# s3fs itself: `apt-get install s3fs`.
#
# Environment: BENCH_DIR (default /dev/shm/ccmount-bench-s3, tmpfs), SIZE_MIB (512), RUNS (3),
# BIN_DIR (use the binaries there instead of building release ones).

suite_main() {
  local dir=${BENCH_DIR:-/dev/shm/ccmount-bench-s3} size=${SIZE_MIB:-512} runs=${RUNS:-3}
  need_tools s3 gocryptfs fusermount3 s3fs moto_server python3
  local bin_dir=${BIN_DIR:-}
  if [[ -z "$bin_dir" ]]; then
    build_release
    bin_dir=$PWD/target/release
  fi
  local cc=$bin_dir/ccmount bench=$bin_dir/ccmount-bench admin=$PWD/tests/tools/s3_admin.py
  echo "# binaries from $bin_dir" >&2
  new_gocryptfs_tree "$dir"
  local port pid
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local server=${S3_SERVER:-moto} server_desc
  case $server in
    moto)
      moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
      server_desc="moto_server $(python3 -c 'import moto; print(moto.__version__)')" ;;
    s3s)
      local s3s_bin=${S3S_FS:-$(command -v s3s-fs || true)}
      [[ -x "$s3s_bin" ]] || { echo "S3_SERVER=s3s needs s3s-fs (cargo install s3s-fs@0.14.1 --features binary) on PATH or in S3S_FS" >&2; exit 2; }
      mkdir -p "$dir/s3s-root"
      "$s3s_bin" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench "$dir/s3s-root" >/dev/null 2>&1 &
      server_desc="s3s-fs $("$s3s_bin" --version | awk '{print $2}')" ;;
    *) echo "S3_SERVER must be moto or s3s" >&2; exit 2 ;;
  esac
  pid=$!
  # moto reads the whole object for each ranged GET, so its mount case wants few, large
  # ranges; s3s-fs serves ranges from the file, so the reader's default chunk (8 MiB) is used.
  local mchunk=${MOUNT_CHUNK_MIB:-$([[ $server == moto ]] && echo 32 || echo 8)}
  trap 'unmount_quiet "'"$dir"'/mnt"; unmount_quiet "'"$dir"'/s3mnt"; unmount_quiet "'"$dir"'/ccmnt"; unmount_quiet "'"$dir"'/onemnt"; kill '"$pid"' 2>/dev/null; rm -rf "'"$dir"'"' EXIT
  local ep=http://127.0.0.1:$port i
  for ((i = 0; i < 100; i++)); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
  done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
  echo "# $(nproc) CPUs, $(awk '{print $1}' /proc/loadavg) load; $server_desc on $ep" >&2
  local gen bytes
  gen=$("$bench" gen "$dir/mnt" "$size")
  unmount_quiet "$dir/mnt"
  bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$gen")
  echo "# $gen" >&2
  python3 "$admin" mb "$ep" bench
  echo "# uploaded $(python3 "$admin" upload "$ep" "$dir/cipher" bench model) objects" >&2
  printf 'bench:bench\n' >"$dir/s3pass"
  chmod 600 "$dir/s3pass"
  mkdir -p "$dir/s3mnt" "$dir/one" "$dir/onemnt" "$dir/ccmnt"
  # The mount case: one large file in a tree of its own.
  gocryptfs -init -q -passfile "$dir/pass" -scryptn 10 "$dir/one"
  gocryptfs -q -passfile "$dir/pass" "$dir/one" "$dir/onemnt"
  head -c $((${MOUNT_MIB:-500} << 20)) /dev/urandom >"$dir/onemnt/model.safetensors"
  unmount_quiet "$dir/onemnt"
  python3 "$admin" upload "$ep" "$dir/one" bench one >/dev/null
  local onebytes=$((${MOUNT_MIB:-500} << 20))

  local -a lim ours s3f rss
  local w c
  for ((i = 1; i <= runs; i++)); do
    echo "# run $i/$runs" >&2
    read -r w c < <(time_cmd python3 "$admin" download "$ep" bench model "$dir/dl")
    [[ -f "$dir/dl/gocryptfs.conf" ]] || { echo "download failed" >&2; exit 1; }
    lim+=("$(mbps "$bytes" "$w")"); rm -rf "$dir/dl"
    read -r w c < <(time_cmd "$cc" decrypt -q --passfile "$dir/pass" --s3-endpoint "$ep" --s3-allow-http s3://bench/model "$dir/out")
    [[ -f "$dir/out/config.json" ]] || { echo "ccmount decrypt failed" >&2; exit 1; }
    ours+=("$(mbps "$bytes" "$w")"); rm -rf "$dir/out"
    if [[ $server == s3s ]]; then
      # s3s-fs answers HEAD of a directory key ("dir/") with 500 where S3 answers 404, and
      # s3fs retries each with backoff: minutes for a small tree. That anchor would measure
      # the server's deviation, not s3fs, so it is measured on moto only.
      s3f+=(0)
    else
    read -r w c < <(time_cmd bash -c "s3fs bench:/model '$dir/s3mnt' -o url=$ep -o use_path_request_style -o passwd_file='$dir/s3pass' -o ro && gocryptfs -q -ro -passfile '$dir/pass' '$dir/s3mnt' '$dir/mnt' && cp -a '$dir/mnt/.' '$dir/out' && fusermount3 -u '$dir/mnt' && fusermount3 -u '$dir/s3mnt'")
    [[ -f "$dir/out/config.json" ]] || { echo "s3fs + gocryptfs + cp -a failed" >&2; exit 1; }
    s3f+=("$(mbps "$bytes" "$w")"); rm -rf "$dir/out"; unmount_quiet "$dir/mnt"; unmount_quiet "$dir/s3mnt"
    fi
    rss+=("$(/usr/bin/time -f %M "$cc" decrypt -q --passfile "$dir/pass" --s3-endpoint "$ep" --s3-allow-http s3://bench/model "$dir/out" 2>&1 >/dev/null | tail -1 | awk '{printf "%.0f", $1 / 1024}')")
    rm -rf "$dir/out"
  done
  local -a mo ms mrss
  local mpid
  for ((i = 1; i <= runs; i++)); do
    echo "# mount run $i/$runs" >&2
    rm -f "$dir/ready"
    "$cc" mount -f --ready-file "$dir/ready" --passfile "$dir/pass" --s3-endpoint "$ep" --s3-allow-http --s3-chunk-size "${mchunk}MiB" s3://bench/one "$dir/ccmnt" 2>/dev/null &
    mpid=$!
    for ((w = 0; w < 300; w++)); do [[ -f "$dir/ready" ]] && break; sleep 0.1; done
    [[ -f "$dir/ready" ]] || { echo "ccmount mount s3:// failed" >&2; exit 1; }
    read -r w c < <(time_cmd cat "$dir/ccmnt/model.safetensors")
    mo+=("$(mbps "$onebytes" "$w")")
    mrss+=("$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$mpid/status")")
    "$cc" umount "$dir/ccmnt"; wait "$mpid" || true
    s3fs bench:/one "$dir/s3mnt" -o url="$ep" -o use_path_request_style -o passwd_file="$dir/s3pass" -o ro \
      -o multipart_size="$mchunk" -o parallel_count=8
    gocryptfs -q -ro -passfile "$dir/pass" "$dir/s3mnt" "$dir/mnt"
    read -r w c < <(time_cmd cat "$dir/mnt/model.safetensors")
    ms+=("$(mbps "$onebytes" "$w")")
    unmount_quiet "$dir/mnt"; unmount_quiet "$dir/s3mnt"
  done
  print_metric decrypt_vs_plain_download "$(median "${ours[@]}")" "$(median "${lim[@]}")" download
  if [[ $server == s3s ]]; then
    echo "# decrypt_vs_s3fs_gocryptfs_cp: not measured on s3s-fs (HEAD of a directory key answers 500; s3fs stalls in retries)"
  else
    print_metric decrypt_vs_s3fs_gocryptfs_cp "$(median "${ours[@]}")" "$(median "${s3f[@]}")" s3fs_gocryptfs
  fi
  echo "metric=decrypt_peak_rss_mib ours=$(median "${rss[@]}") limit=256"
  print_metric mount_seq_read_vs_s3fs_gocryptfs "$(median "${mo[@]}")" "$(median "${ms[@]}")" s3fs_gocryptfs
  echo "metric=mount_peak_rss_mib ours=$(median "${mrss[@]}") limit=256"
  echo "# runs: ours=${ours[*]} download=${lim[*]} s3fs=${s3f[*]} MB/s; rss=${rss[*]} MiB"
  echo "# mount runs: ours=${mo[*]} s3fs+gocryptfs=${ms[*]} MB/s; daemon rss=${mrss[*]} MiB"
}
