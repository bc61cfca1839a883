"""storage.py: keys stay inside their store, on disk and in S3."""

import pytest

from sae_trainer.storage import check_key, open_store


def test_a_root_does_not_admit_a_sibling_that_shares_its_prefix(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store-x").mkdir()
    (tmp_path / "store-x" / "secret").write_text("x")
    store = open_store(f"file://{tmp_path / 'store'}")
    with pytest.raises(ValueError):
        store.get_bytes("../store-x/secret")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/..", "a\\\\b"])
def test_keys_that_are_not_plain_relative_keys_are_refused(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_plain_keys_and_prefixes_pass(tmp_path):
    assert check_key("a/b.json") == "a/b.json"
    assert check_key("models/") == "models/"
    store = open_store(f"file://{tmp_path}")
    store.put_bytes("a/b.json", b"{}")
    assert store.list("a/") == ["a/b.json"] and store.uri("a/b.json") == f"file://{tmp_path}/a/b.json"
