"""deepgrade course datasets: a hash-checked registry, loaders and public/hidden splits.

Typical use::

    from datasets import load, public_path
    df = load("keras-intro/orbit")                   # full data (grading side)
    path = public_path("keras-intro/orbit")          # what a student notebook reads

Importing this package pulls in no pandas, numpy, pooch or tensorflow; they load on first use.
"""

from .registry import (
    DatasetError,
    DatasetUnavailable,
    Entry,
    HashMismatch,
    Registry,
    RegistryError,
    Split,
    UnknownDataset,
    VerifyResult,
    cache_dir,
    fetch,
    get_registry,
    load,
    mirror_dir,
    sha256_file,
    verify,
)
from .split_secret import SecretUnavailable, ensure_secret, group_key, secret_path
from .splits import (
    hidden_mask,
    hidden_split,
    materialize,
    public_path,
    public_root,
    public_split,
)

__all__ = [
    "DatasetError",
    "DatasetUnavailable",
    "Entry",
    "HashMismatch",
    "Registry",
    "RegistryError",
    "SecretUnavailable",
    "Split",
    "UnknownDataset",
    "VerifyResult",
    "cache_dir",
    "ensure_secret",
    "fetch",
    "get_registry",
    "group_key",
    "hidden_mask",
    "hidden_split",
    "load",
    "materialize",
    "mirror_dir",
    "public_path",
    "public_root",
    "public_split",
    "secret_path",
    "sha256_file",
    "verify",
]
