from __future__ import annotations

import pytest

from topolvm import errors
from topolvm.core import names


@pytest.mark.parametrize("name", ["pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "a", "A+b_c.d-e", "x" * 127])
def test_valid_lv_names(name: str) -> None:
    names.check_lv_name(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "-a", "a b", "a/b", "a;b", "x" * 128, "snapshot", "pvmove0", "v_tmeta", "é", "a\nb"]
)
def test_invalid_lv_names(name: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        names.check_lv_name(name)


@pytest.mark.parametrize("tag", ["topolvm.io/owner=abc", "a:b&c#d!e"])
def test_valid_tags(tag: str) -> None:
    names.check_tag(tag)


@pytest.mark.parametrize("tag", ["", "-x", "a b", "a,b", "x" * 1025, "a$b"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        names.check_tag(tag)


@pytest.mark.parametrize("name", ["ssd", "ssd-thin", "a.b_c", "0", "x" * 63])
def test_valid_device_class_names(name: str) -> None:
    names.check_device_class_name(name)


@pytest.mark.parametrize("name", ["", "-ssd", "ssd-", "a/b", "x" * 64, "a b"])
def test_invalid_device_class_names(name: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        names.check_device_class_name(name)


@pytest.mark.parametrize("value", ["64k", "4096", "1m", "128", "4M"])
def test_stripe_sizes(value: str) -> None:
    names.check_stripe_size(value)


@pytest.mark.parametrize("value", ["64q", "k64", "-1", "1.5k", "", "k", "0"])
def test_bad_stripe_sizes(value: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        names.check_stripe_size(value)
