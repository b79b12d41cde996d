# Python suite (issue 20): load every tensor of a >= 512 MiB safetensors model into numpy
# arrays, three ways, on the same gocryptfs-made tree:
#   *_vs_fuse   ccmount.open_dir(...).safe_open(...) on the cipher tree, against the reference
#               safetensors.safe_open through a gocryptfs 2.3 FUSE mount of it (target >= 3x)
#   *_vs_plain  the same ccmount load, against the reference on the plaintext in tmpfs
#               (target >= 0.7x: decrypting costs at most 30% over reading plaintext)
# each in two shapes (tests/bench/python_load.py): keep_* keeps every array (a CPU state
# dict: every result page is freshly faulted in), stream_* drops each array after loading it
# (a loader that hands each tensor on to a device).
# Page caches are dropped before every measurement; the files live in tmpfs, so the cipher
# and plain bytes are in RAM and the numbers measure decryption and copying, not a disk. The
# time is safe_open + every get_tensor inside Python (tests/bench/python_load.py); the key
# derivation (open_dir, like the mount) is not counted and is printed apart.
# One line per metric, median of RUNS runs: metric=<name> ours=<MB/s> <base>=<MB/s> ratio=<x>.
#
# Environment: BENCH_DIR (default /dev/shm/ccmount-python-bench), SIZE_MIB (model size,
# default 640), RUNS (3). The package is installed into target/python-venv with
# `scripts/test-python.sh --install-only` (a release wheel).

suite_main() {
  local dir=${BENCH_DIR:-/dev/shm/ccmount-python-bench} size=${SIZE_MIB:-640} runs=${RUNS:-3}
  need_tools python gocryptfs fusermount3 mountpoint
  [[ $(id -u) == 0 ]] || { echo "python bench: needs root (mounts, drop_caches)" >&2; exit 1; }
  scripts/test-python.sh --install-only
  local py=$PWD/target/python-venv/bin/python load=$PWD/tests/bench/python_load.py
  new_gocryptfs_tree "$dir"
  mkdir -p "$dir/plain"
  echo "# $(nproc) CPUs, $(awk '{print $1}' /proc/loadavg) load; ${size} MiB model in $dir ($(stat -f -c %T "$dir")); $("$py" -c 'import ccmount, safetensors; print("ccmount", ccmount.__version__, ccmount._native.BACKEND, "/ safetensors", safetensors.__version__)')" >&2
  # A model shaped like a real one: many 16 MiB matrices of bf16-sized rows stored as F16,
  # plus small norms and biases; written by the reference writer.
  "$py" - "$dir/plain/model.safetensors" "$size" <<'PY'
import sys, numpy as np, safetensors.numpy
path, size = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
t, total, i = {}, 0, 0
while total < size << 20:
    t[f"layers.{i}.weight"] = rng.standard_normal((2048, 4096), dtype=np.float32).astype(np.float16)
    t[f"layers.{i}.norm"] = rng.standard_normal(4096, dtype=np.float32)
    total += 2048 * 4096 * 2 + 4096 * 4
    i += 1
safetensors.numpy.save_file(t, path)
PY
  cp "$dir/plain/model.safetensors" "$dir/mnt/"
  local bytes; bytes=$(stat -c %s "$dir/plain/model.safetensors")
  unmount_quiet "$dir/mnt"

  local how
  for how in keep stream; do
    local -a ours=() fuse=() plain=()
    local i out s o
    for ((i = 1; i <= runs; i++)); do
      drop_caches
      out=$("$py" "$load" "$how" ccmount "$dir/cipher" "$dir/pass" model.safetensors)
      s=$(sed -n 's/.*seconds=\([0-9.]*\) bytes.*/\1/p' <<<"$out")
      o=$(sed -n 's/.*open_seconds=\([0-9.]*\).*/\1/p' <<<"$out")
      ours+=("$(mbps "$bytes" "$s")")

      gocryptfs -q -ro -passfile "$dir/pass" "$dir/cipher" "$dir/mnt" 2>/dev/null
      drop_caches
      out=$("$py" "$load" "$how" reference "$dir/mnt/model.safetensors")
      s=$(sed -n 's/.*seconds=\([0-9.]*\) bytes.*/\1/p' <<<"$out")
      fuse+=("$(mbps "$bytes" "$s")")
      unmount_quiet "$dir/mnt"

      drop_caches
      out=$("$py" "$load" "$how" reference "$dir/plain/model.safetensors")
      s=$(sed -n 's/.*seconds=\([0-9.]*\) bytes.*/\1/p' <<<"$out")
      plain+=("$(mbps "$bytes" "$s")")
      echo "# $how run $i/$runs: ccmount=${ours[-1]}MB/s (open_dir ${o}s) reference_fuse=${fuse[-1]}MB/s reference_tmpfs=${plain[-1]}MB/s" >&2
    done
    print_metric "${how}_vs_fuse" "$(median "${ours[@]}")" "$(median "${fuse[@]}")" reference_fuse
    print_metric "${how}_vs_plain" "$(median "${ours[@]}")" "$(median "${plain[@]}")" reference_tmpfs
  done
}
