"""The redactor masks secrets, their URL-encoded forms and lines of multi-line ones."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

from deployer.redact import MASK, Redactor


def test_masks_plain_and_quoted_forms():
    secret = "p@ss w0rd/'\"x"
    r = Redactor([secret])
    text = (f"psql -c \"ALTER ROLE app PASSWORD '{secret}'\" "
            f"postgresql://app:{quote(secret, safe='')}@db/app "
            f"form={quote_plus(secret)} path={quote(secret)}")
    masked = r.mask(text)
    assert secret not in masked
    assert quote(secret, safe="") not in masked
    assert quote_plus(secret) not in masked
    assert masked.count(MASK) == 4


def test_longest_first_so_containing_secret_is_masked_whole():
    r = Redactor(["abcd", "abcdefgh"])
    assert r.mask("x abcdefgh y abcd") == "x *** y ***"


def test_short_and_empty_values_are_ignored():
    r = Redactor(["", None, "ab", "on"])
    assert r.mask("turn it on, ab") == "turn it on, ab"
    assert r.too_short == ["ab", "on"]
    assert not r


def test_regex_characters_are_literal():
    r = Redactor(["a.b*c+(d)"])
    assert r.mask("a.b*c+(d) axbbbc") == "*** axbbbc"


def test_multiline_secret_lines_masked_individually():
    key = "-----BEGIN KEY-----\nAAAAsecretline1\nBBBBsecretline2\n-----END KEY-----\n"
    r = Redactor([key])
    assert r.mask("out: BBBBsecretline2") == "out: ***"
    assert "secretline1" not in r.mask(key)


def test_mask_obj_recurses():
    r = Redactor(["hunter22"])
    data = {"a": ["x hunter22", ("hunter22",)], "hunter22": 3, "n": 5, "b": b"hunter22"}
    masked = r.mask_obj(data)
    assert masked == {"a": ["x ***", ("***",)], "***": 3, "n": 5, "b": b"***"}
