"""The map file: exact path, zip of meta.json + .npy without pickle, refusal of bad files."""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
from scipy.stats import ortho_group

from minivec2vec import (MapFileError, MapFileVersionError, MiniVec2Vec, MiniVec2VecError,
                         OutputPathError)

ARRAYS = ("W_", "mean_a_", "mean_b_", "anchors_a_", "anchors_b_", "anchor_scores_")


@pytest.fixture
def model():
    """A fitted-state model built by hand (the file format does not care how W was found)."""
    rng = np.random.default_rng(5)
    m = MiniVec2Vec(n_runs=2, n_clusters=3, random_state=5)
    m.W_ = ortho_group.rvs(6, random_state=5)
    m.mean_a_ = rng.standard_normal(6)
    m.mean_b_ = rng.standard_normal(6)
    m.anchors_a_ = rng.standard_normal((6, 6)).astype(np.float32)
    m.anchors_b_ = rng.standard_normal((6, 6)).astype(np.float32)
    m.anchor_scores_ = rng.random(2)
    m.scale_b_ = 1.75
    m.timings_ = {"total": 0.5}
    m.n_features_a_ = m.n_features_b_ = 6
    return m


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "model.map"
    model.save(path)
    return path


def read_members(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_members(path, members, fix_checksums=True):
    """Write a (possibly tampered) map archive; by default meta.json's checksums are updated
    so that only the tampering under test is wrong."""
    members = dict(members)
    if fix_checksums:
        meta = json.loads(members["meta.json"])
        for name in meta["arrays"]:
            if f"{name}.npy" in members:
                meta["arrays"][name] = hashlib.sha256(members[f"{name}.npy"]).hexdigest()
        members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


class _Tripwire:
    """Unpickling this object creates a file: proof that pickle code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# ------------------------------------------------------------------------------------ format
@pytest.mark.parametrize("name", ["model", "model.npz", "weird.name.bin", "no_ext."])
def test_save_writes_exactly_at_the_given_path(tmp_path, model, name):
    path = tmp_path / name
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == [name], "extra or renamed files were written"
    assert path.stat().st_size > 0


def test_save_accepts_str_and_overwrites(tmp_path, model):
    path = str(tmp_path / "m")
    model.save(path)
    model.W_ = model.W_[::-1].copy()
    model.save(path)
    assert os.listdir(tmp_path) == ["m"]
    np.testing.assert_array_equal(MiniVec2Vec.load(path).W_, model.W_)


def test_file_is_a_zip_of_meta_and_npy_without_pickle(saved, model):
    assert zipfile.is_zipfile(saved)
    members = read_members(saved)
    assert set(members) == {"meta.json"} | {f"{name}.npy" for name in ARRAYS}
    meta = json.loads(members["meta.json"].decode("utf-8"))
    assert meta["format"] == "minivec2vec-map" and meta["version"] == 1
    assert meta["params"] == model.get_params()
    assert meta["extra"]["scale_b_"] == 1.75
    for name in ARRAYS:
        data = members[f"{name}.npy"]
        assert meta["arrays"][name] == hashlib.sha256(data).hexdigest()
        array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        assert not array.dtype.hasobject
        np.testing.assert_array_equal(array, getattr(model, name))
        assert array.dtype == getattr(model, name).dtype


def test_round_trip(saved, model):
    loaded = MiniVec2Vec.load(saved)
    for name in ARRAYS:
        assert getattr(loaded, name).tobytes() == getattr(model, name).tobytes()
    assert loaded.scale_b_ == model.scale_b_
    assert loaded.timings_ == model.timings_
    assert loaded.get_params() == model.get_params()
    X = np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32)
    assert loaded.transform(X).tobytes() == model.transform(X).tobytes()


@pytest.mark.parametrize("params", [dict(random_state=np.int64(3)),
                                    dict(n_runs=np.int64(5), n_clusters=np.int32(4)),
                                    dict(random_state=np.random.default_rng(0))])
def test_save_with_numpy_typed_parameters(tmp_path, model, params):
    """fit accepts numpy integers and a numpy Generator as parameters, so save must too."""
    model.set_params(**params)
    path = tmp_path / "model.map"
    model.save(path)
    loaded = MiniVec2Vec.load(path)
    assert loaded.W_.tobytes() == model.W_.tobytes()
    for name, value in params.items():
        if isinstance(value, np.integer):
            assert getattr(loaded, name) == value


# ------------------------------------------------------------------------------------ refusal
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_file_raises(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(MapFileError, match="not a valid archive"):
        MiniVec2Vec.load(saved)


def test_flipped_byte_in_an_array_raises(saved, model):
    data = bytearray(saved.read_bytes())
    raw = model.W_.tobytes()
    at = bytes(data).find(raw)
    assert at > 0, "W_ is stored verbatim (ZIP_STORED)"
    data[at + len(raw) // 2] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(MapFileError, match="W_"):
        MiniVec2Vec.load(saved)


def test_altered_array_with_valid_zip_crc_fails_the_checksum(saved):
    members = read_members(saved)
    W = np.lib.format.read_array(io.BytesIO(members["W_.npy"]))
    W[0, 0] += 1e-12
    members["W_.npy"] = npy_bytes(W)
    write_members(saved, members, fix_checksums=False)
    with pytest.raises(MapFileError, match="checksum mismatch for array 'W_'"):
        MiniVec2Vec.load(saved)


def test_random_bytes_file_raises(tmp_path):
    path = tmp_path / "random.map"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(MapFileError, match="not a minivec2vec map file"):
        MiniVec2Vec.load(path)


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.map"
    path.write_bytes(b"")
    with pytest.raises(MapFileError):
        MiniVec2Vec.load(path)


def test_newer_version_raises(saved):
    members = read_members(saved)
    meta = json.loads(members["meta.json"])
    meta["version"] = 999
    members["meta.json"] = json.dumps(meta).encode()
    write_members(saved, members)
    with pytest.raises(MapFileVersionError, match=r"newer minivec2vec .*version 999"):
        MiniVec2Vec.load(saved)


def test_pickled_object_array_raises_without_unpickling(tmp_path, saved):
    tripwire = tmp_path / "pickle-code-ran"
    members = read_members(saved)
    evil = np.empty(6, dtype=object)
    evil[:] = [_Tripwire(str(tripwire))] * 6
    members["mean_a_.npy"] = npy_bytes(evil, allow_pickle=True)
    write_members(saved, members)              # checksums match: only pickle stands in the way
    with pytest.raises(MapFileError, match="'mean_a_' cannot be read without pickle"):
        MiniVec2Vec.load(saved)
    assert not tripwire.exists(), "the pickle was executed"


def test_zip_without_meta_raises(saved):
    members = read_members(saved)
    del members["meta.json"]
    write_members(saved, members, fix_checksums=False)
    with pytest.raises(MapFileError, match="no meta.json"):
        MiniVec2Vec.load(saved)


@pytest.mark.parametrize("meta,message", [
    (b"{not json", "corrupt meta.json"),
    (b"\xff\xfe{\x00", "corrupt meta.json"),          # not UTF-8
    (b"[1, 2, 3]", "not a minivec2vec map file"),      # JSON, but not an object
])
def test_unreadable_meta_json_raises(saved, meta, message):
    members = read_members(saved)
    members["meta.json"] = meta
    write_members(saved, members, fix_checksums=False)
    with pytest.raises(MapFileError, match=message):
        MiniVec2Vec.load(saved)


def test_other_format_raises(saved):
    members = read_members(saved)
    meta = json.loads(members["meta.json"])
    meta["format"] = "something-else"
    members["meta.json"] = json.dumps(meta).encode()
    write_members(saved, members)
    with pytest.raises(MapFileError, match="not a minivec2vec map file"):
        MiniVec2Vec.load(saved)


def test_missing_array_raises(saved):
    members = read_members(saved)
    del members["W_.npy"]
    write_members(saved, members)
    with pytest.raises(MapFileError, match="'W_' is missing"):
        MiniVec2Vec.load(saved)


def test_inconsistent_shapes_raise(saved):
    members = read_members(saved)
    members["mean_a_.npy"] = npy_bytes(np.zeros(5))
    write_members(saved, members)
    with pytest.raises(MapFileError, match="inconsistent array shapes"):
        MiniVec2Vec.load(saved)


# ------------------------------------------------------------------------------------ paths
def test_save_into_missing_directory_raises_and_leaves_nothing(tmp_path, model):
    target = tmp_path / "does" / "not" / "exist" / "model.map"
    with pytest.raises(OutputPathError, match="does not exist"):
        model.save(target)
    assert list(tmp_path.rglob("*")) == []


def test_failed_write_leaves_no_temp_file_and_keeps_old_file(tmp_path, model, monkeypatch):
    path = tmp_path / "model.map"
    model.save(path)
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    model.W_ = -model.W_
    with pytest.raises(OSError, match="simulated"):
        model.save(path)
    assert os.listdir(tmp_path) == ["model.map"], "a temporary file was left behind"
    assert path.read_bytes() == before


def test_load_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        MiniVec2Vec.load(tmp_path / "nothing.map")


def test_load_a_directory_raises(tmp_path):
    with pytest.raises((MapFileError, IsADirectoryError)):
        MiniVec2Vec.load(tmp_path)


# ------------------------------------------------------------------------------------ more refusal
def test_exception_hierarchy_keeps_builtin_bases():
    """Existing ``except ValueError`` / ``except OSError`` code keeps catching these."""
    assert issubclass(MapFileError, ValueError) and issubclass(MapFileError, MiniVec2VecError)
    assert issubclass(MapFileVersionError, MapFileError)
    assert issubclass(OutputPathError, OSError)


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0, None])
def test_invalid_version_raises(saved, version):
    members = read_members(saved)
    meta = json.loads(members["meta.json"])
    meta["version"] = version
    members["meta.json"] = json.dumps(meta).encode()
    write_members(saved, members)
    with pytest.raises(MapFileError, match="invalid format version") as info:
        MiniVec2Vec.load(saved)
    assert not isinstance(info.value, MapFileVersionError)


@pytest.mark.parametrize("key", ["arrays", "params", "extra"])
def test_meta_fields_of_the_wrong_type_raise(saved, key):
    members = read_members(saved)
    meta = json.loads(members["meta.json"])
    meta[key] = ["not", "a", "mapping"]
    members["meta.json"] = json.dumps(meta).encode()
    write_members(saved, members, fix_checksums=False)
    with pytest.raises(MapFileError, match=f"'{key}' is not a mapping"):
        MiniVec2Vec.load(saved)


@pytest.mark.parametrize("cut", [10, 60, -8])
def test_truncated_npy_member_with_matching_checksum_raises(saved, cut):
    """The checksum in meta.json is recomputed, so only the .npy parser can notice."""
    members = read_members(saved)
    members["W_.npy"] = members["W_.npy"][:cut]
    write_members(saved, members)
    with pytest.raises(MapFileError, match="'W_' is not a valid .npy array"):
        MiniVec2Vec.load(saved)


def test_npy_member_with_wrong_magic_raises(saved):
    members = read_members(saved)
    members["W_.npy"] = b"NOTNPY" + members["W_.npy"][6:]
    write_members(saved, members)
    with pytest.raises(MapFileError, match="'W_' is not a valid .npy array.*magic"):
        MiniVec2Vec.load(saved)


@pytest.mark.parametrize("bad", [
    lambda W: W.astype(np.int64),
    lambda W: W.astype(np.complex128),
    lambda W: np.where(np.eye(W.shape[0], dtype=bool), np.nan, W),
])
def test_arrays_must_be_finite_floats(saved, bad):
    members = read_members(saved)
    W = np.lib.format.read_array(io.BytesIO(members["W_.npy"]))
    members["W_.npy"] = npy_bytes(bad(W))
    write_members(saved, members)
    with pytest.raises(MapFileError, match="'W_' is not finite floating point"):
        MiniVec2Vec.load(saved)


@pytest.mark.parametrize("key,value,message", [
    ("scale_b_", "big", "scale_b_ is not a number"),
    ("confidence_", "high", "a score is not a number"),
    ("restart_agreement_", [0.5], "a score is not a number"),
    ("return_agreement_", "far", "a score is not a number"),
    ("restart_returns_", ["x"], "restart_returns_ is not a list of numbers"),
])
def test_non_numeric_extra_raises(saved, key, value, message):
    members = read_members(saved)
    meta = json.loads(members["meta.json"])
    meta["extra"][key] = value
    members["meta.json"] = json.dumps(meta).encode()
    write_members(saved, members)
    with pytest.raises(MapFileError, match=message):
        MiniVec2Vec.load(saved)


@pytest.mark.parametrize("name", ["restart_agreement_", "return_agreement_"])
@pytest.mark.parametrize("agreement", [0.625, float("nan")])
def test_restart_agreement_round_trips(tmp_path, model, agreement, name):
    """A single-restart fit has no restart agreement, a fit from known pairs no return
    agreement (NaN): stored as JSON null, read back as NaN."""
    setattr(model, name, agreement)
    model.save(tmp_path / "m.map")
    loaded = MiniVec2Vec.load(tmp_path / "m.map")
    assert (np.isnan(getattr(loaded, name)) if np.isnan(agreement)
            else getattr(loaded, name) == agreement)


def test_transposed_array_shapes_raise(saved):
    members = read_members(saved)
    W = np.lib.format.read_array(io.BytesIO(members["W_.npy"]))
    members["W_.npy"] = npy_bytes(np.zeros((W.shape[0], W.shape[1] + 1)))
    write_members(saved, members)
    with pytest.raises(MapFileError, match="inconsistent array shapes"):
        MiniVec2Vec.load(saved)


def test_file_never_contains_pickle_opcodes(saved):
    """Every .npy member has a plain numeric dtype, and the header says so."""
    for name, data in read_members(saved).items():
        if name.endswith(".npy"):
            buf = io.BytesIO(data)
            np.lib.format.read_magic(buf)
            _, _, dtype = np.lib.format.read_array_header_1_0(buf)
            assert not dtype.hasobject and dtype.kind == "f", name


# ------------------------------------------------------------------------------------ output paths
def test_save_onto_a_directory_raises(tmp_path, model):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputPathError, match="is a directory"):
        model.save(tmp_path / "taken")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_save_below_a_regular_file_raises(tmp_path, model):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="does not exist"):
        model.save(tmp_path / "file" / "model.map")


def test_save_into_unwritable_directory_raises(tmp_path, model, monkeypatch):
    """A directory that refuses new files. As root permissions do not apply, so the refusal
    (EACCES from creating the probe file) is simulated there."""
    target = tmp_path / "locked"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o500)
    else:
        import tempfile

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(OutputPathError, match="is not writable.*Permission denied"):
            model.save(target / "model.map")
    finally:
        target.chmod(0o700)
    assert list(target.iterdir()) == []
