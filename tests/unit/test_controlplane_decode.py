"""The test harness's API replies (tests/support/controlplane.py): a plain-text body stays text, also when it
parses as a JSON number (a pod's log of digits once failed a HIL test: its log came back as ``{'value': ...}``)."""

from __future__ import annotations

from tests.support.controlplane import _decode


def test_a_log_of_digits_keeps_its_text() -> None:
    reply = _decode(b"9679250172867429\n")
    assert reply["text"] == "9679250172867429\n" and reply["value"] == 9679250172867429


def test_objects_and_plain_text_decode_as_before() -> None:
    assert _decode(b'{"kind": "Pod"}') == {"kind": "Pod"}
    assert _decode(b"ok") == {"text": "ok"}
    assert _decode(b"") == {}
