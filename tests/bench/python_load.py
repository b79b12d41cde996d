"""One measurement of tests/bench/suites/python.sh: load every tensor of one safetensors file
and print `seconds=S bytes=B open_seconds=O` (S: safe_open + every get_tensor; O: the key
derivation of open_dir, reported apart, as a mount's is not timed either).

  python_load.py keep|stream ccmount CIPHERDIR PASSFILE NAME
  python_load.py keep|stream reference FILE

keep: every array is kept in a state dict (a CPU model load: every page of the result is
fresh memory). stream: each array is dropped after it is loaded (a loader that moves each
tensor on to a device; the allocator reuses the memory).
"""

import sys
import time


def load_all(f, keys, keep):
    state, total = {}, 0
    for k in keys:
        a = f.get_tensor(k)
        total += a.nbytes
        if keep:
            state[k] = a
    return total


def main():
    keep, mode = sys.argv[1] == "keep", sys.argv[2]
    if mode == "ccmount":
        import ccmount

        cipher, passfile, name = sys.argv[3:6]
        t0 = time.perf_counter()
        d = ccmount.open_dir(cipher, passfile=passfile)
        t1 = time.perf_counter()
        with d.safe_open(name, framework="numpy") as f:
            total = load_all(f, f.offset_keys(), keep)
        t2 = time.perf_counter()
        d.close()
    else:
        from safetensors import safe_open

        t0 = t1 = time.perf_counter()
        with safe_open(sys.argv[3], framework="numpy") as f:
            total = load_all(f, f.keys(), keep)
        t2 = time.perf_counter()
    print(f"seconds={t2 - t1:.4f} bytes={total} open_seconds={t1 - t0:.4f}")


if __name__ == "__main__":
    main()
