"""clvsmim.cache: atomic writes keep the previous file on failure; cached_json computes once."""
import json
import math
import os

import pytest

from clvsmim.cache import cached_json, json_safe, write_atomic, write_json_atomic


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json_atomic(path, {"a": 1})

    def broken(f):
        f.write("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_cached_json_computes_once_and_recomputes_a_corrupt_file(tmp_path):
    path = tmp_path / "cache.json"
    calls = []

    def compute():
        calls.append(1)
        return {"x": (1.5, math.inf), 3: "three"}

    first = cached_json(path, compute)
    assert first == {"x": [1.5, None], "3": "three"} and cached_json(path, compute) == first and len(calls) == 1
    path.write_text("{not json")
    assert cached_json(path, compute) == first and len(calls) == 2


def test_json_safe_is_the_identity_on_plain_json():
    plain = {"a": [1, 2.5, None, "s", {"b": True}]}
    assert json_safe(plain) == plain and json_safe(float("nan")) is None


def test_cache_root_at_moves_the_root_inside_the_block_and_restores_it(tmp_path, monkeypatch):
    from clvsmim.paths import cache_path, cache_root_at

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "outer"))
    with cache_root_at(tmp_path / "inner") as root:
        assert cache_path("zoo") == root / "zoo" == tmp_path / "inner" / "zoo"
    assert cache_path("zoo") == tmp_path / "outer" / "zoo"
    monkeypatch.delenv("CLVSMIM_CACHE")
    with pytest.raises(RuntimeError):
        with cache_root_at(tmp_path / "inner"):
            raise RuntimeError("fails inside")
    assert "CLVSMIM_CACHE" not in os.environ  # unset again, even after an error
