"""Exceptions of ccmount: one base class, one subclass per kind of failure.

The native module raises these (python/src/errors.rs maps each Rust error to one). Every
exception carries ``path`` (the plaintext path concerned, or None) and ``block`` (the 0-based
4096-byte block that failed, for a tampered or corrupt block, else None). Messages never hold
a secret.
"""


class Error(Exception):
    """Base class of every ccmount error."""

    path = None
    block = None


class WrongKeyError(Error):
    """The password or master key does not open the tree (or the KBS resource is not a key)."""


class CorruptError(Error):
    """Tampering or corruption: a block that does not authenticate, a bad header, a bad name."""


class HeaderError(CorruptError, ValueError):
    """The file decrypted but is not a valid safetensors file (hostile or damaged header)."""


class BadCipherDirError(Error):
    """Not a usable gocryptfs tree: missing or refused gocryptfs.conf, unsupported format."""


class KbsError(Error):
    """The Key Broker Service could not be reached, refused attestation, or refused the key."""


class PinMismatchError(Error):
    """The tree (or a file of it) differs from the pinned manifest; ``differences`` lists how."""

    differences = ()


class UsageError(Error, ValueError):
    """A wrong argument: no key, two keys, an unreadable key file, a bad pin, a bad range."""


class NotFoundError(Error, FileNotFoundError):
    """No such path in the encrypted tree."""


class NotAFileError(Error, OSError):
    """The path is a directory, or a symlink leading outside the tree."""


class IoError(Error, OSError):
    """A local I/O error while reading the cipher files."""


class TensorNotFoundError(Error, KeyError):
    """No tensor of that name in the file."""

    def __str__(self):  # KeyError would quote the message
        return Exception.__str__(self)


class ClosedError(Error, ValueError):
    """The directory or file was closed."""


class DtypeError(Error, TypeError):
    """The tensor's dtype has no equivalent in the chosen framework (use ``get_raw``)."""


__all__ = [
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
