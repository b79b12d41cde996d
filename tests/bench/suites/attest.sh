# Suite `attest`: auth+attest+resource against the local test KBS over HTTPS (sample
# evidence, EC key), then requests per further resource with a cached token.
# Prints metric=attest_fetch_p50_ms and metric=cached_fetch_requests.
suite_main() {
  cargo run --release --locked -q -p e2e --bin attest-bench -- "$@"
}
