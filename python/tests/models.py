"""Random safetensors models written with the reference `safetensors` package."""

import numpy as np
import safetensors
import safetensors.numpy
from safetensors import TensorSpec

# Every numpy dtype safetensors can hold.
NUMPY_DTYPES = [
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64",
]
# dtypes numpy lacks: (reference writer name, bytes per element or None for packed F4).
RAW_DTYPES = {
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "float8_e8m0fnu": 1,
}


def random_array(rng, dtype, shape):
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(size=shape).astype(dtype)


def numpy_model(rng, big_elems=0):
    """Tensors of every numpy dtype in several shapes (scalar, empty, small, 3-D), plus a
    `big` float32 tensor of `big_elems` elements."""
    out = {}
    for i, dt in enumerate(NUMPY_DTYPES):
        out[f"{dt}.scalar"] = random_array(rng, dt, ())
        out[f"{dt}.empty"] = random_array(rng, dt, (0, 3))
        out[f"{dt}.vec"] = random_array(rng, dt, (7 + i,))
        out[f"{dt}.cube"] = random_array(rng, dt, (3, 5, 11))
    if big_elems:
        out["big"] = random_array(rng, "float32", (big_elems // 1024, 1024))
    return out


def save_numpy(path, tensors, metadata=None):
    safetensors.numpy.save_file(tensors, str(path), metadata=metadata)


def save_raw(path, rng, metadata=None):
    """bf16 / fp8 / fp4 tensors of random bits via the reference writer's raw interface;
    returns {name: (dtype, shape, bytes)}."""
    keep, specs, want = [], {}, {}
    for name, width in RAW_DTYPES.items():
        for shape in [(5,), (4, 33), (2, 3, 4)]:
            n = int(np.prod(shape)) * width
            data = rng.integers(0, 256, size=n, dtype=np.uint8)
            keep.append(data)
            key = f"{name}.{'x'.join(map(str, shape))}"
            specs[key] = TensorSpec(dtype=name, shape=list(shape), data_ptr=data.ctypes.data, data_len=n)
            want[key] = data.tobytes()
    # F4 packs two elements per byte: 16 elements in 8 bytes.
    data = rng.integers(0, 256, size=8, dtype=np.uint8)
    keep.append(data)
    specs["f4"] = TensorSpec(dtype="float4_e2m1fn_x2", shape=[2, 4], data_ptr=data.ctypes.data, data_len=8)
    want["f4"] = data.tobytes()
    safetensors.serialize_file(specs, str(path), metadata=metadata)
    return want
