"""The identity token's codec, alone: what verifies, and that no tampering does."""

from __future__ import annotations

import time

import pytest
from django.core.signing import b62_encode
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from django_zrpc import identity
from django_zrpc.exceptions import InvalidIdentity

KEY = "k" * 50
NOW = 1_800_000_000.0

user_ids = st.one_of(
    st.integers(min_value=-(10**18), max_value=10**18),
    st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=40),
)
functions = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@given(user_ids, functions)
def test_a_token_verifies_for_its_user_and_function(user_id, function):
    token = identity.sign(user_id, function, KEY, 60, NOW)
    assert identity.read(token, function, [KEY], NOW + 59) == (user_id, float(int(NOW + 60)))


@settings(max_examples=300)
@given(user_ids, functions, st.data())
def test_any_tampering_is_refused(user_id, function, data):
    token = identity.sign(user_id, function, KEY, 60, NOW)
    at = data.draw(st.integers(0, len(token)), label="at")
    how = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate"]), label="how")
    char = data.draw(st.characters(min_codepoint=32, max_codepoint=126), label="char")
    if how == "replace" and at < len(token):
        tampered = token[:at] + char + token[at + 1 :]
    elif how == "insert":
        tampered = token[:at] + char + token[at:]
    elif how == "delete" and at < len(token):
        tampered = token[:at] + token[at + 1 :]
    else:
        tampered = token[:at]
    if tampered == token:
        return
    with pytest.raises(InvalidIdentity):
        identity.read(tampered, function, [KEY], NOW)


@given(user_ids, functions, functions)
def test_a_token_of_another_function_or_key_is_refused(user_id, function, other):
    token = identity.sign(user_id, function, KEY, 60, NOW)
    if other != function:
        with pytest.raises(InvalidIdentity, match="another key or for another function"):
            identity.read(token, other, [KEY], NOW)
    with pytest.raises(InvalidIdentity, match="another key"):
        identity.read(token, function, ["another" * 8], NOW)


@given(user_ids, st.floats(min_value=61, max_value=10**6))
def test_an_expired_token_is_refused(user_id, later):
    token = identity.sign(user_id, "f", KEY, 60, NOW)
    with pytest.raises(InvalidIdentity, match="has expired"):
        identity.read(token, "f", [KEY], NOW + later)


@given(st.one_of(st.none(), st.integers(), st.binary(), st.text(max_size=400), st.lists(st.text())))
def test_garbage_is_refused_without_error(garbage):
    with pytest.raises(InvalidIdentity):
        identity.read(garbage, "f", [KEY], NOW)


def test_a_trusted_key_is_read_without_its_mac_but_not_past_its_expiry():
    forged = f"7:{b62_encode(int(NOW) + 30)}:no-mac"
    assert identity.read(forged, "f", None, NOW) == (7, float(int(NOW) + 30))
    with pytest.raises(InvalidIdentity, match="has expired"):
        identity.read(forged, "f", None, NOW + 31)


def test_tokens_are_made_with_the_key_derived_from_secret_key_and_its_fallbacks_verify():
    with override_settings(SECRET_KEY="old" * 20):
        token = identity.token_for(42, "f")
    with override_settings(SECRET_KEY="new" * 20, SECRET_KEY_FALLBACKS=["old" * 20]):
        assert identity.verified(token, "f", None) == (42, None)
    with override_settings(SECRET_KEY="new" * 20):
        user_id, error = identity.verified(token, "f", None)
    assert user_id is None
    assert "does not verify" in error


def test_a_token_is_reused_while_young_and_made_again_when_the_clock_moves(monkeypatch):
    now = [time.time()]
    monkeypatch.setattr(identity, "clock", lambda: now[0])
    first = identity.token_for(5, "reuse")
    assert identity.token_for(5, "reuse") is first
    now[0] += 31  # past half its 60 s
    assert identity.token_for(5, "reuse") != first
    now[0] -= 3600  # the clock moved back: an old token is not reused
    older = identity.token_for(5, "reuse")
    monkeypatch.setattr(identity, "clock", time.time)
    assert identity.verified(older, "reuse", None)[1] == "The call's identity token has expired."
