# Helpers for tests/bench/suites/*.sh (sourced by run.sh).

# Prints the median of its numeric arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# System-wide busy CPU time so far, in seconds (user+nice+system+irq+softirq, all CPUs).
cpu_seconds() { awk '/^cpu / {printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / 100}' /proc/stat; }

# Runs a command and prints "WALL CPU": wall seconds (bash 5 $EPOCHREALTIME) and the
# system-wide CPU seconds it used (includes daemons such as a gocryptfs mount; includes other
# load on the machine too, so read it on an otherwise idle machine).
time_cmd() {
  local t0 t1 c0 c1
  c0=$(cpu_seconds)
  t0=$EPOCHREALTIME
  "$@" >/dev/null 2>&1
  t1=$EPOCHREALTIME
  c1=$(cpu_seconds)
  awk -v a="$t0" -v b="$t1" -v c="$c0" -v d="$c1" 'BEGIN {printf "%.4f %.2f\n", b - a, d - c}'
}

# MB/s for BYTES in SECONDS.
mbps() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.0f\n", b / s / 1e6}'; }

# metric=NAME ours=A gocryptfs=B ratio=A/B   (extra key=value pairs may follow)
print_metric() {
  local name=$1 ours=$2 base=$3 key=${4:-gocryptfs}
  awk -v n="$name" -v o="$ours" -v g="$base" -v k="$key" \
    'BEGIN {printf "metric=%s ours=%.0f %s=%.0f ratio=%.2f\n", n, o, k, g, (g > 0 ? o / g : 0)}'
}

# Exits with a message naming SUITE unless every TOOL is on the PATH.
need_tools() {
  local suite=$1 t
  shift
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$suite bench: $t missing (scripts/setup.sh)" >&2; exit 1; }
  done
}

# Builds the release ccmount and ccmount-bench binaries the suites run.
build_release() {
  echo "# building release" >&2
  # ccmount as users install it (the production feature set, no `demo`).
  cargo build --release --locked -q -p ccmount -p e2e --bin ccmount --bin ccmount-bench \
    --no-default-features --features ccmount/production
}

# Makes DIR afresh: a gocryptfs 2.3 tree (default -init, password file DIR/pass) in
# DIR/cipher, mounted on DIR/mnt for the suite to fill. DIR goes on exit.
new_gocryptfs_tree() {
  local dir=$1
  rm -rf "$dir"
  mkdir -p "$dir"/{cipher,mnt}
  trap 'unmount_quiet "'"$dir"'/mnt"; rm -rf "'"$dir"'"' EXIT
  printf 'bench-password\n' >"$dir/pass"
  gocryptfs -init -q -passfile "$dir/pass" "$dir/cipher"
  gocryptfs -q -passfile "$dir/pass" "$dir/cipher" "$dir/mnt"
}

# Flushes dirty data and drops the page cache (needs root; a no-op otherwise).
drop_caches() {
  sync
  if [[ -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# Unmounts a FUSE mount if mounted (bounded retries).
unmount_quiet() {
  local m=$1 i
  for i in 1 2 3 4 5; do
    mountpoint -q "$m" || return 0
    fusermount3 -u "$m" 2>/dev/null || sleep 0.2
  done
  fusermount3 -uz "$m" 2>/dev/null || true
}
