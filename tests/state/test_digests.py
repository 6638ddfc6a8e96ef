"""deployer.state.digests: the key file, masked values and keyed digests."""

from __future__ import annotations

import stat

import pytest

from deployer.errors import UsageError
from deployer.state.digests import key_id, plain_value, read_or_create_key, variable_digests


def test_key_is_created_private_once_then_reused(tmp_path) -> None:
    path = tmp_path / "runs" / ".key"  # its directory does not exist yet
    key = read_or_create_key(path)
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_key(path) == key


def test_a_key_file_too_short_to_be_a_key_is_refused_with_the_fix(tmp_path) -> None:
    path = tmp_path / ".key"
    path.write_bytes(b"short")  # as if another deployer never finished writing it
    with pytest.raises(UsageError, match="is not a valid key file") as info:
        read_or_create_key(path)
    assert "remove it" in info.value.hint


def test_plain_value_masks_every_string_and_keeps_the_rest() -> None:
    value = {"a": ["s3cret", 1, 2.5, True, None], 3: ("x",), "o": object()}
    out = plain_value(value, lambda s: "***" if s == "s3cret" else s.upper())
    assert out["a"] == ["***", 1, 2.5, True, None]
    assert out["3"] == ["X"] and out["o"].startswith("<OBJECT OBJECT AT")


def test_digests_depend_on_key_name_and_value_only() -> None:
    one, two = b"k" * 32, b"j" * 32
    d = variable_digests({"release": "v1", "n": 3}, one)
    assert d == variable_digests({"n": 3, "release": "v1"}, one)
    assert d["release"] != variable_digests({"release": "v2"}, one)["release"]
    assert d["release"] != variable_digests({"release": "v1"}, two)["release"]
    assert d["release"] != variable_digests({"tag": "v1"}, one)["tag"]
    assert "v1" not in "".join(d.values()) and len(d["release"]) == 32
    assert key_id(one) != key_id(two) and len(key_id(one)) == 12
