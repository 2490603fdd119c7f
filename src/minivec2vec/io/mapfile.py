"""The map file: one zip archive holding ``meta.json`` and raw ``.npy`` arrays. Never pickle.

``meta.json`` carries the format name and version, the estimator's parameters and the SHA-256
of every array, so a truncated, corrupt or altered file is refused with a clear error. Writing
goes to a temporary file beside the target, renamed into place only when complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from ..exceptions import MapFileError, MapFileVersionError, PathNotFoundError
from .._runtime.validation import check_output_path

FORMAT_NAME = "minivec2vec-map"
FORMAT_VERSION = 1


def write_map(path, params: dict, arrays: dict, extra: dict) -> None:
    path = check_output_path(path, "map file")
    directory = os.path.dirname(os.path.abspath(path))
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "params": params, "extra": extra,
            "arrays": {}}
    payloads = {}
    for name, value in arrays.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
        payloads[name] = buf.getvalue()
        meta["arrays"][name] = hashlib.sha256(payloads[name]).hexdigest()
    fd, tmp = tempfile.mkstemp(prefix=".minivec2vec-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr("meta.json", json.dumps(meta, indent=1, sort_keys=True))
                for name, data in payloads.items():
                    zf.writestr(f"{name}.npy", data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_map(path):
    """Return (params, arrays, extra) from a map file, verifying format, version and checksums."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise PathNotFoundError(f"map file {path!r} does not exist")
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError) as exc:
        raise MapFileError(f"{path!r} is not a minivec2vec map file (not a valid archive: {exc})") from None
    with zf:
        try:
            meta = json.loads(zf.read("meta.json").decode("utf-8"))
        except KeyError:
            raise MapFileError(f"{path!r} is not a minivec2vec map file (no meta.json)") from None
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
            raise MapFileError(f"{path!r}: corrupt meta.json ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise MapFileError(f"{path!r} is not a minivec2vec map file")
        version = meta.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise MapFileError(f"{path!r}: missing or invalid format version {version!r}")
        if version > FORMAT_VERSION:
            raise MapFileVersionError(f"{path!r} was written by a newer minivec2vec (map format version "
                               f"{version}; this version reads up to {FORMAT_VERSION}): upgrade "
                               "minivec2vec to read it")
        for key in ("arrays", "params", "extra"):
            if not isinstance(meta.get(key, {}), dict):
                raise MapFileError(f"{path!r}: corrupt meta.json ({key!r} is not a mapping)")
        arrays = {}
        for name, digest in meta.get("arrays", {}).items():
            try:
                data = zf.read(f"{name}.npy")
            except (KeyError, zipfile.BadZipFile, OSError) as exc:
                raise MapFileError(f"{path!r}: array {name!r} is missing or unreadable ({exc})") from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise MapFileError(f"{path!r}: checksum mismatch for array {name!r} (file corrupt)")
            arrays[name] = _read_npy(data, path, name)
    return meta.get("params", {}), arrays, meta.get("extra", {})


def _read_npy(data: bytes, path, name):
    """One .npy member: the header is inspected first, so pickled (object) content is refused
    without ever being unpickled, and a malformed array gets its own message."""
    buf = io.BytesIO(data)
    try:
        major, minor = np.lib.format.read_magic(buf)
        if (major, minor) == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(buf)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(buf)
    except (ValueError, EOFError, OSError) as exc:
        raise MapFileError(f"{path!r}: array {name!r} is not a valid .npy array ({exc})") from None
    if dtype.hasobject:
        raise MapFileError(f"{path!r}: array {name!r} cannot be read without pickle (it holds "
                           "Python objects; refused)")
    try:
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise MapFileError(f"{path!r}: array {name!r} is not a valid .npy array ({exc})") from None
