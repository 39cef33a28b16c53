import dataclasses
import json

import numpy as np
import pytest

from ulmfit.config import config_from_dict, load_config, save_config
from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_path, load_npy, read_json, save_npy, staging_dir, write_json


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_npy_round_trip_without_pickle(tmp_path):
    arr = np.arange(10, dtype=np.int32)
    save_npy(tmp_path / "a.npy", arr)
    back = load_npy(tmp_path / "a.npy", mmap=True)
    assert back.dtype == np.int32 and np.array_equal(back, arr)
    with pytest.raises(TypeError):
        save_npy(tmp_path / "b.npy", np.array([{"x": 1}], dtype=object))


def test_missing_and_bad_json_name_the_file(tmp_path):
    with pytest.raises(UlmfitError, match="nope.json: file not found"):
        read_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UlmfitError, match="bad.json: not valid JSON"):
        read_json(bad)


def test_staging_dir_replaces_whole_folder_only_on_success(tmp_path):
    out = tmp_path / "run"
    with staging_dir(out) as d:
        (d / "first.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with staging_dir(out) as d:
            (d / "second.txt").write_text("2")
            raise RuntimeError("stage failed")
    assert sorted(p.name for p in out.iterdir()) == ["first.txt"]
    with staging_dir(out) as d:
        (d / "third.txt").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["third.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@dataclasses.dataclass
class _Cfg:
    lr: float = 1e-3
    name: str = "x"


def test_config_round_trip_and_unknown_keys(tmp_path):
    save_config(_Cfg(lr=0.5), tmp_path / "c.json")
    assert load_config(_Cfg, tmp_path / "c.json") == _Cfg(lr=0.5)
    with pytest.raises(UlmfitError, match="unknown _Cfg fields \\['typo'\\]"):
        config_from_dict(_Cfg, {"typo": 1})


def test_outputs_get_normal_permissions(tmp_path):
    write_json(tmp_path / "a.json", {})
    with staging_dir(tmp_path / "run") as d:
        (d / "x").write_text("1")
    assert (tmp_path / "a.json").stat().st_mode & 0o044 == 0o044  # group/other readable (umask 022)
    assert (tmp_path / "run").stat().st_mode & 0o055 == 0o055
