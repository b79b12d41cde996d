"""ccmount: encrypted (gocryptfs) safetensors models straight into arrays and tensors.

No FUSE mount and no plaintext file: the tree is opened in this process with its key, each
tensor's byte range is decrypted (every 4 KiB block authenticated, in parallel, with the GIL
released) into a buffer the returned array owns. The API mirrors ``safetensors.safe_open``::

    import ccmount
    with ccmount.open_dir("model.enc", passfile="pw") as d:
        with d.safe_open("model.safetensors", framework="numpy") as f:
            w = f.get_tensor("w")

See docs/python.md. The native part is ``ccmount._native`` (python/src/, on the workspace's
gocryptfs-format, gpu-loader and attest crates).
"""

import json
import os

from . import _native
from .errors import (
    BadCipherDirError,
    ClosedError,
    CorruptError,
    DtypeError,
    Error,
    HeaderError,
    IoError,
    KbsError,
    NotAFileError,
    NotFoundError,
    PinMismatchError,
    TensorNotFoundError,
    UsageError,
    WrongKeyError,
)

__version__ = _native.__version__

# safetensors dtype -> numpy type string (little-endian, as the format stores it). Types
# numpy lacks (BF16, FP8, FP4, FP6) come from ml_dtypes when it is installed; else use
# get_raw().
_NUMPY = {
    "BOOL": "?",
    "U8": "u1",
    "I8": "i1",
    "I16": "<i2",
    "U16": "<u2",
    "F16": "<f2",
    "I32": "<i4",
    "U32": "<u4",
    "F32": "<f4",
    "F64": "<f8",
    "I64": "<i8",
    "U64": "<u8",
}
_ML_DTYPES = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}
# safetensors dtype -> torch attribute name (missing ones depend on the torch version).
_TORCH = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}
_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32,
    "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64,
}
_FRAMEWORKS = {"numpy": "numpy", "np": "numpy", "pt": "pt", "torch": "pt", "pytorch": "pt"}


def open_dir(
    path,
    *,
    passfile=None,
    masterkey_file=None,
    key=None,
    key_format="password",
    kbs_url=None,
    kbs_cert=None,
    tee="auto",
    kbs_timeout=30.0,
    insecure_http=False,
    expect=None,
    expect_mode="full",
    allow_holes=False,
):
    """Opens the gocryptfs tree at ``path``; use it as a context manager.

    Exactly one key: ``passfile`` (the password on the first line, as gocryptfs -passfile),
    ``masterkey_file`` (64 hex digits, as gocryptfs prints them) or ``key="kbs:///R/T/TAG"``
    fetched from the KBS at ``kbs_url`` after attesting as ``tee`` ("auto", "tdx", "snp";
    "sample" for test KBSes), trusting the CA in ``kbs_cert``. ``key_format`` says whether a
    KBS resource holds a "password" or a "masterkey".

    ``expect`` pins the tree before anything is read: a manifest file, ``"sha256:<digest>"``
    or ``"kbs:///…"`` (one attestation with the key). ``expect_mode="full"`` hashes every
    file at open; ``"structure"`` (manifest pins only) checks names, types, sizes and file
    IDs. Every file opened later is held to the pin (size, file ID; whole-file ``read`` also
    the SHA-256). A mismatch raises PinMismatchError.

    Raises WrongKeyError, BadCipherDirError, KbsError, PinMismatchError, UsageError, ...
    """
    native = _native.Dir(
        os.fspath(path),
        passfile=_opt_path(passfile),
        masterkey_file=_opt_path(masterkey_file),
        key=key,
        key_format=key_format,
        kbs_url=kbs_url,
        kbs_cert=_opt_path(kbs_cert),
        tee=tee,
        kbs_timeout=float(kbs_timeout),
        insecure_http=insecure_http,
        expect=None if expect is None else os.fspath(expect),
        expect_mode=expect_mode,
        allow_holes=allow_holes,
    )
    return Dir(native)


def _opt_path(p):
    return None if p is None else os.fspath(p)


class Dir:
    """An open encrypted tree (from :func:`open_dir`). Paths are relative to its root."""

    def __init__(self, native):
        self._native = native

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Drops the key (zeroized once no file opened from this tree is still open)."""
        self._native.close()

    @property
    def closed(self):
        return self._native.closed

    @property
    def pinned_digest(self):
        """The accepted model digest (``sha256:…``) when opened with ``expect``, else None."""
        return self._native.pinned_digest

    def listdir(self, path=""):
        """The names in a directory of the tree, sorted (like ``os.listdir``)."""
        return [name for name, _kind, _size in self._native.listdir(os.fspath(path))]

    def scandir(self, path=""):
        """``[(name, type, size)]``: type is "file", "dir", "symlink" or "other"."""
        return self._native.listdir(os.fspath(path))

    def read(self, path):
        """The whole plaintext of a file as ``bytes`` (e.g. ``config.json``)."""
        return self._native.read(os.fspath(path))

    def verify(self):
        """Authenticates every block, name and xattr; the report as a dict, the shape of
        ``ccmount verify --json`` (docs/schemas/verify-report.schema.json)."""
        return json.loads(self._native.verify())

    def open(self, path):
        """A :class:`File` for random reads (``read_at``)."""
        return File(self._native.open(os.fspath(path)))

    def safe_open(self, path, framework="numpy", device="cpu"):
        """Opens a safetensors file of the tree, as ``safetensors.safe_open``."""
        return SafeOpen(self._native.open(os.fspath(path)), framework, device)

    def load_file(self, path, framework="numpy", device="cpu"):
        """Every tensor of a safetensors file as a dict (as ``safetensors.*.load_file``)."""
        with self.safe_open(path, framework=framework, device=device) as f:
            return {k: f.get_tensor(k) for k in f.offset_keys()}


class File:
    """One plaintext file of the tree, read at any offset (authenticated, in parallel)."""

    def __init__(self, native):
        self._native = native

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._native = None

    @property
    def size(self):
        return self._f().size

    def read_at(self, offset, length):
        """Up to ``length`` bytes at ``offset`` as a ``bytearray`` (short only at the end)."""
        f = self._f()
        if offset < 0 or length < 0:
            raise UsageError("offset and length must be >= 0")
        end = min(f.size, offset + length)
        return f.read_range(min(offset, end), end)

    def _f(self):
        if self._native is None:
            raise ClosedError("the file is closed")
        return self._native


class _Info:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, tuple(shape), begin, end


class SafeOpen:
    """A safetensors file of an encrypted tree; the API of ``safetensors.safe_open``.

    Only the header is read at open; ``get_tensor`` decrypts exactly the cipher blocks under
    that tensor, ``get_slice(name)[a:b]`` only those under the selected rows.
    """

    def __init__(self, native, framework="numpy", device="cpu"):
        fw = _FRAMEWORKS.get(str(framework).lower())
        if fw is None:
            raise UsageError(f"framework={framework!r}: use \"numpy\" or \"pt\"")
        self._framework = fw
        self._device = _check_device(fw, device)
        self._native = native
        tensors, metadata = native.safetensors_header()
        self._order = [t[0] for t in tensors]
        self._info = {t[0]: _Info(*t) for t in tensors}
        self._metadata = None if metadata is None else dict(metadata)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._native = None

    def keys(self):
        """Tensor names, sorted (as the reference)."""
        return sorted(self._info)

    def offset_keys(self):
        """Tensor names in file order (the order that reads the file front to back)."""
        return list(self._order)

    def metadata(self):
        """The ``__metadata__`` dict of strings, or None."""
        return None if self._metadata is None else dict(self._metadata)

    def tensor_info(self, name):
        """``(dtype, shape, (begin, end))`` of a tensor; offsets in the file."""
        i = self._get_info(name)
        return i.dtype, i.shape, (i.begin, i.end)

    def get_raw(self, name):
        """The tensor's bytes as a ``bytearray`` (any dtype, e.g. BF16 or FP8 for numpy)."""
        i = self._get_info(name)
        return self._n().read_range(i.begin, i.end)

    def get_tensor(self, name):
        """The tensor as a numpy array or torch tensor that owns its memory."""
        i = self._get_info(name)
        buf = self._n().read_range(i.begin, i.end)
        return self._to_framework(buf, i.dtype, i.shape)

    def get_slice(self, name):
        """A lazy view: ``get_slice(name)[0:2]`` reads only the rows it selects."""
        return _Slice(self, self._get_info(name))

    def _n(self):
        if self._native is None:
            raise ClosedError("the safetensors file is closed")
        return self._native

    def _get_info(self, name):
        try:
            return self._info[name]
        except KeyError:
            raise TensorNotFoundError(
                f"{self._native.path if self._native else '?'}: no tensor named {name!r}"
            ) from None

    def _to_framework(self, buf, dtype, shape):
        if self._framework == "numpy":
            np_dtype = _numpy_dtype(dtype)
            import numpy as np

            return np.frombuffer(buf, dtype=np_dtype).reshape(shape)
        return _to_torch(buf, dtype, shape, self._device)


class _Slice:
    """What ``get_slice`` returns: shape and dtype without reading, rows on indexing."""

    def __init__(self, f, info):
        self._f, self._i = f, info

    def get_shape(self):
        return list(self._i.shape)

    def get_dtype(self):
        return self._i.dtype

    def __getitem__(self, key):
        i = self._i
        if not isinstance(key, tuple):
            key = (key,)
        first = key[0] if key else slice(None)
        bits = _BITS[i.dtype]
        row_elems = 1
        for d in i.shape[1:]:
            row_elems *= d
        if not i.shape or (row_elems * bits) % 8 or first is Ellipsis:
            return self._f._to_framework(
                self._f._n().read_range(i.begin, i.end), i.dtype, i.shape
            )[key]
        row = row_elems * bits // 8
        dim0 = i.shape[0]
        if isinstance(first, slice):
            rows = range(*first.indices(dim0))
        else:
            try:
                k = int(first.__index__())
            except AttributeError:
                raise UsageError(f"unsupported index {first!r}") from None
            if not -dim0 <= k < dim0:
                raise IndexError(f"index {k} is out of bounds for dimension 0 of size {dim0}")
            k %= dim0
            rows = range(k, k + 1)
        lo, hi = (min(rows[0], rows[-1]), max(rows[0], rows[-1]) + 1) if len(rows) else (0, 0)
        buf = self._f._n().read_range(i.begin + lo * row, i.begin + hi * row)
        part = self._f._to_framework(buf, i.dtype, (hi - lo,) + i.shape[1:])
        rest = tuple(key[1:])
        if not isinstance(first, slice):
            return part[(0,) + rest]
        if rows.step != 1 and len(rows):
            # Stepped or reversed rows: pick them out of the rows read (a copy).
            part = part[[r - lo for r in rows]]
        return part[(slice(None),) + rest]


def _numpy_dtype(dtype):
    if dtype in _NUMPY:
        return _NUMPY[dtype]
    name = _ML_DTYPES.get(dtype)
    if name is not None:
        try:
            import ml_dtypes

            return getattr(ml_dtypes, name)
        except (ImportError, AttributeError):
            pass
    raise DtypeError(
        f"dtype {dtype} has no numpy equivalent (install ml_dtypes for BF16/FP8); "
        "use get_raw(name) for the bytes"
    )


def _check_device(framework, device):
    device = "cpu" if device is None else str(device)
    if framework == "numpy":
        if device != "cpu":
            raise UsageError(f"device={device!r}: numpy arrays live on the CPU; use framework=\"pt\"")
        return device
    try:
        import torch
    except ImportError:
        raise UsageError("framework=\"pt\" needs torch, which is not installed") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={device!r}: torch sees no CUDA device")
    return device


def _to_torch(buf, dtype, shape, device):
    import torch

    t_dtype = getattr(torch, _TORCH.get(dtype, ""), None) if dtype in _TORCH else None
    if t_dtype is None:
        raise DtypeError(f"dtype {dtype} has no equivalent in this torch; use get_raw(name)")
    if len(buf) == 0:
        t = torch.empty(shape, dtype=t_dtype)
    else:
        # Shares the bytearray's memory (kept alive by the tensor): no copy.
        t = torch.frombuffer(buf, dtype=t_dtype).reshape(shape)
    if device != "cpu":
        t = t.to(device)
    return t


__all__ = [
    "open_dir",
    "Dir",
    "File",
    "SafeOpen",
    "Error",
    "WrongKeyError",
    "CorruptError",
    "HeaderError",
    "BadCipherDirError",
    "KbsError",
    "PinMismatchError",
    "UsageError",
    "NotFoundError",
    "NotAFileError",
    "IoError",
    "TensorNotFoundError",
    "ClosedError",
    "DtypeError",
]
