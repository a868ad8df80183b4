"""brokk.topic_name: the vectors of core/src/names.rs, checked in every language."""

import pytest

import brokk

VECTORS = [
    ("default", 255, "default"),
    ("orders.eu-west1", 255, "orders.eu-west1"),
    ("my app", 255, "my_20app"),
    ("billing(v2)", 255, "billing_28v2_29"),
    ("team/app", 255, "team_2fapp"),
    ("a_b", 255, "a_5fb"),
    ("\u00fc", 255, "_c3_bc"),
    ("", 255, ""),
    ("abcdefghijklmnopqrstuvwxyz", 20, "ab_x8450deb1cdc382a2"),
]


@pytest.mark.parametrize(("text", "max_len", "want"), VECTORS)
def test_vectors(text, max_len, want):
    assert brokk.topic_name(text, max_len) == want


def test_long_and_invalid():
    name = brokk.topic_name("x" * 300)
    assert len(name) == brokk.TOPIC_MAX_LEN and "_x" in name
    assert brokk.topic_name("x" * 300) != brokk.topic_name("x" * 301)
    with pytest.raises(brokk.InvalidUTF8Error):
        brokk.topic_name("\ud800")
    with pytest.raises(brokk.InvalidArgumentError):
        brokk.topic_name("x" * 300, 10)
    with pytest.raises(brokk.InvalidArgumentError):
        brokk.topic_name("x", -1)
