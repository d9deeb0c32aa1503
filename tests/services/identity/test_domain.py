"""Identity's rules without network or database: accounts, lockout, refresh families, grants, limits, list filters."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest

from mesh.errors import InvalidArgument
from mesh.kit.filtering import compile_filter
from mesh.kit.idempotency import request_id_problem
from services.identity import domain, oauth
from services.identity.accounts import USER_FILTERS
from services.identity.domain import (
    Lockout,
    Membership,
    RefreshFacts,
    RefreshVerdict,
    UserState,
    derived_request_id,
    principal_kind,
)
from services.identity.ratelimit import RateLimiter
from services.identity.security import AUDIT_FILTERS

NOW = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)


# --- e-mail and passwords -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("  Ada@Example.COM ", "ada@example.com"), ("a.b+c@sub.example.org", "a.b+c@sub.example.org")]
)
def test_emails_are_trimmed_and_lower_cased(raw, expected):
    assert domain.normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "no-at-sign", "a@b", "a b@example.com", "a@@example.com", "x" * 250 + "@e.com"]
)
def test_malformed_emails_are_refused_with_the_field_named(raw):
    with pytest.raises(InvalidArgument) as caught:
        domain.normalise_email(raw)
    assert "email" in caught.value.field_violations


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short-pass", "at least 12"),
        ("x" * 129, "at most 128"),
        ("ada@example.com", "e-mail"),
        ("ADA@EXAMPLE.COM", "e-mail"),
        ("ada", "at least 12"),
        ("aaaaaaaaaaaaaaaa", "repeat"),
        ("password1234", "common"),
        ("Password1234", "common"),
    ],
)
def test_the_password_policy_says_what_is_wrong(password, problem):
    with pytest.raises(InvalidArgument) as caught:
        domain.check_password_policy(password, "ada@example.com")
    assert problem in caught.value.message
    assert "password" in caught.value.field_violations
    assert password not in caught.value.message


def test_the_local_part_of_the_email_is_refused_too():
    with pytest.raises(InvalidArgument):
        domain.check_password_policy("adalovelace1815", "adalovelace1815@example.com")


@pytest.mark.parametrize("password", ["correct horse battery", "Tr0ub4dor&3-long", "xy" * 64, "ünïcödé-passwörd"])
def test_good_passwords_pass(password):
    domain.check_password_policy(password, "ada@example.com")


def test_passwords_are_compared_in_nfkc_form():
    # U+FB01 (the "fi" ligature) and "fi" are the same password after NFKC.
    assert domain.normalise_password("\ufb01nest-password") == "finest-password"


def test_display_names_are_trimmed_and_bounded():
    assert domain.check_display_name("  Ada  ") == "Ada"
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(InvalidArgument):
            domain.check_display_name(bad)


# --- lockout ---------------------------------------------------------------------------------------------------------


def test_failures_are_counted_but_never_lock():
    state = Lockout(UserState.ACTIVE)
    for expected in range(1, 12):
        state = state.after_failure(NOW)
        assert (state.state, state.failed_count, state.locked_until) == (UserState.ACTIVE, expected, None)


def test_a_lock_stored_before_delays_lifts_by_itself_with_a_clean_count():
    state = Lockout(UserState.LOCKED, 5, 1, NOW + dt.timedelta(minutes=10))
    assert state.is_locked(NOW)
    lifted = state.effective(NOW + dt.timedelta(minutes=10))
    assert lifted.state is UserState.ACTIVE and lifted.failed_count == 0 and lifted.lock_count == 1


def test_success_resets_every_counter():
    state = Lockout(UserState.LOCKED, failed_count=3, lock_count=2, locked_until=NOW)
    assert state.after_success() == Lockout(UserState.ACTIVE)


def test_unlock_clears_the_count_and_keeps_a_disabled_user_disabled():
    assert Lockout(UserState.LOCKED, 5, 1, NOW).unlocked() == Lockout(UserState.ACTIVE, lock_count=1)
    assert Lockout(UserState.DISABLED, 3).unlocked() == Lockout(UserState.DISABLED)


def test_a_disabled_account_stays_disabled():
    disabled = Lockout(UserState.DISABLED)
    assert disabled.after_failure(NOW) == disabled
    assert disabled.after_success().state is UserState.DISABLED


def test_rfc3339_times_are_whole_seconds_in_utc():
    moment = dt.datetime(2026, 12, 1, 13, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert domain.rfc3339(moment) == "2026-12-01T12:00:00Z"


# --- refresh-token families ------------------------------------------------------------------------------------------


def _facts(**changes):
    base = {
        "used": False,
        "token_expires": NOW + dt.timedelta(days=1),
        "session_revoked": False,
        "session_expires": NOW + dt.timedelta(days=1),
    }
    return RefreshFacts(**{**base, **changes})


@pytest.mark.parametrize(
    ("facts", "verdict"),
    [
        (None, RefreshVerdict.UNKNOWN),
        (_facts(), RefreshVerdict.VALID),
        (_facts(used=True), RefreshVerdict.REUSED),
        (_facts(token_expires=NOW), RefreshVerdict.EXPIRED),
        (_facts(session_expires=NOW - dt.timedelta(seconds=1)), RefreshVerdict.EXPIRED),
        (_facts(session_revoked=True), RefreshVerdict.SESSION_ENDED),
        # A spent token of an ended session has nothing left to revoke.
        (_facts(used=True, session_revoked=True), RefreshVerdict.SESSION_ENDED),
        # Reuse is detected even after the family expired.
        (_facts(used=True, token_expires=NOW), RefreshVerdict.REUSED),
    ],
)
def test_refresh_tokens_are_judged(facts, verdict):
    assert domain.judge_refresh(facts, NOW) is verdict


def test_the_organisation_of_a_token_is_requested_then_home_then_oldest():
    memberships = [Membership("org_a", "AGENT"), Membership("org_b", "ADMIN")]
    assert domain.choose_membership(memberships, "org_b", "org_a").organization_id == "org_b"
    assert domain.choose_membership(memberships, "", "org_b").organization_id == "org_b"
    assert domain.choose_membership(memberships, "", "org_gone").organization_id == "org_a"
    with pytest.raises(domain.NoMembership, match="org_c"):
        domain.choose_membership(memberships, "org_c", "org_a")
    with pytest.raises(domain.NoMembership, match="any organisation"):
        domain.choose_membership([], "", "")


def test_principal_cutoffs_round_up_and_later_tokens_are_stamped_after_them():
    moment = NOW.replace(microsecond=400_000)
    cutoff = domain.principal_cutoff(moment)
    assert cutoff == NOW + dt.timedelta(seconds=1)
    # Even at a whole second: a token stamped in that very second is before the cut-off.
    assert domain.principal_cutoff(NOW) == NOW + dt.timedelta(seconds=1)
    # A token issued later in the same second must not be caught by `iat < cutoff`.
    iat = domain.issue_instant(moment.replace(microsecond=900_000), cutoff)
    assert iat >= int(cutoff.timestamp())
    assert domain.issue_instant(moment, None) == int(NOW.timestamp())


def test_secret_looking_audit_details_are_redacted():
    cleaned = domain.redact_details({"password": "hunter2", "client_secret": "x", "failure": "bad_password"})
    assert cleaned == {"password": domain.REDACTED, "client_secret": domain.REDACTED, "failure": "bad_password"}


# --- grants: errors, scopes, claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grant_type", "reason", "code"),
    [
        ("", oauth.INVALID_REQUEST, grpc.StatusCode.INVALID_ARGUMENT),
        ("implicit", oauth.UNSUPPORTED_GRANT_TYPE, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_grant_types_are_checked_with_rfc_codes(grant_type, reason, code):
    with pytest.raises(oauth.OAuthError) as caught:
        oauth.check_grant_type(grant_type)
    assert caught.value.reason == reason
    assert caught.value.code == code


def test_credential_failures_are_unauthenticated_and_request_failures_invalid_argument():
    assert oauth.OAuthError(oauth.INVALID_GRANT, "x").code == grpc.StatusCode.UNAUTHENTICATED
    assert oauth.OAuthError(oauth.INVALID_CLIENT, "x").code == grpc.StatusCode.UNAUTHENTICATED
    assert oauth.OAuthError(oauth.ACCOUNT_LOCKED, "x").code == grpc.StatusCode.UNAUTHENTICATED
    assert oauth.OAuthError(oauth.INVALID_SCOPE, "x").code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_locked_account_error_names_the_unlock_time():
    error = oauth.account_locked(NOW + dt.timedelta(minutes=15, microseconds=5))
    assert error.message == "account locked until 2026-12-01T12:15:00Z"
    assert error.metadata == {"locked_until": "2026-12-01T12:15:00Z"}
    assert error.reason == "account_locked"


def test_scopes_can_only_narrow():
    known = {"calls.get", "calls.create", "agents.get"}
    assert oauth.narrow_scopes("calls.get calls.get", {"calls.get", "calls.create"}, known) == ("calls.get",)
    assert oauth.narrow_scopes("", {"calls.get"}, known) == ()
    assert oauth.narrow_scopes("agents.get", {"*"}, known) == ("agents.get",)
    with pytest.raises(oauth.OAuthError) as caught:
        oauth.narrow_scopes("calls.get agents.get", {"calls.get"}, known)
    assert caught.value.reason == oauth.INVALID_SCOPE
    with pytest.raises(oauth.OAuthError):
        oauth.narrow_scopes("made.up", {"*"}, known)


def test_user_token_claims_follow_rfc_9068():
    who = oauth.TokenSubject("users/u_1", "org_a", "ADMIN", session_id="sessions/s_1")
    claims = oauth.access_claims(who, issuer="https://id", audience="vocelio", issued_at=1000, lifetime=900)
    assert claims["iss"] == "https://id" and claims["aud"] == "vocelio"
    assert claims["sub"] == "users/u_1" and claims["org"] == "org_a" and claims["role"] == "ADMIN"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1000, 1000, 1900)
    assert claims["sid"] == "sessions/s_1"
    assert len(claims["jti"]) >= 16
    assert "scope" not in claims and "client_id" not in claims


def test_api_key_tokens_carry_scopes_and_never_outlive_the_key():
    who = oauth.TokenSubject(
        "organizations/org_a/api_keys/k_1", "org_a", "", ("calls.get",), client_id="organizations/org_a/api_keys/k_1"
    )
    expiry = dt.datetime.fromtimestamp(1300, dt.UTC)
    claims = oauth.access_claims(
        who, issuer="i", audience="a", issued_at=1000, lifetime=900, not_after=expiry, token_id="j1"
    )
    assert claims["exp"] == 1300
    assert (
        claims["scope"] == "calls.get"
        and claims["client_id"] == "organizations/org_a/api_keys/k_1"
        and claims["role"] == ""
    )
    assert claims["jti"] == "j1"
    assert "sid" not in claims


# --- rate limits -----------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait():
    clock = Clock()
    limiter = RateLimiter(10, 60.0, clock=clock)
    assert [limiter.take("ada@example.com") for _ in range(10)] == [0.0] * 10
    wait = limiter.take("ada@example.com")
    assert wait == pytest.approx(6.0)
    assert limiter.take("bob@example.com") == 0.0  # per key
    clock.now += 6.0
    assert limiter.take("ada@example.com") == 0.0
    assert limiter.wait_time("ada@example.com") == pytest.approx(6.0)


def test_buckets_are_bounded():
    limiter = RateLimiter(1, 60.0, max_keys=3, clock=Clock())
    for key in "abcde":
        limiter.take(key)
    assert len(limiter) == 3


# --- the lists' filter schemas (the parser itself is the kit's) ------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        (USER_FILTERS, 'state = LOCKED AND email : "@example.com"'),
        (USER_FILTERS, "email_verified = true OR state = USER_STATE_DISABLED"),
        (AUDIT_FILTERS, 'action = SIGN_IN_FAILED AND event_time >= "2026-11-01T00:00:00Z"'),
        (AUDIT_FILTERS, 'actor.principal = "users/u_1" AND outcome != AUDIT_OUTCOME_SUCCESS'),
        (AUDIT_FILTERS, 'organization_id = "" AND source_service = "identity"'),
    ],
)
def test_the_documented_filters_compile(schema, text: str):
    assert compile_filter(text, schema) is not None


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        (USER_FILTERS, 'email = "\\x"'),  # an escape JSON does not know
        (USER_FILTERS, 'email = "\\ud800"'),  # a lone surrogate
        (USER_FILTERS, 'email = "a\\u0000b"'),  # NUL, which PostgreSQL refuses
        (USER_FILTERS, 'email = "' + "a" * 2001 + '"'),
        (USER_FILTERS, "state = FROZEN"),
        (USER_FILTERS, "state > ACTIVE"),
        (USER_FILTERS, "email_verified = maybe"),
        (USER_FILTERS, "password = x"),
        (USER_FILTERS, "(email = x"),
        (USER_FILTERS, "email"),
        (USER_FILTERS, "= x"),
        (AUDIT_FILTERS, 'event_time >= "9999-12-31T23:59:59-23:59"'),  # overflows when moved to UTC
        (AUDIT_FILTERS, 'event_time >= "2026-12-01T00:00:00"'),  # no zone
        (AUDIT_FILTERS, "event_time >= yesterday"),
        (AUDIT_FILTERS, "action = NO_SUCH_ACTION"),
        (AUDIT_FILTERS, "actor.kind = USER"),
    ],
)
def test_malformed_filters_are_invalid_arguments_naming_the_filter(schema, text: str):
    with pytest.raises(InvalidArgument) as caught:
        compile_filter(text, schema)
    assert set(caught.value.field_violations) == {"filter"}


def test_principal_names_and_request_ids():
    assert principal_kind("users/u_1") == "USER"
    assert principal_kind("organizations/acme/api_keys/k_1") == "API_KEY"
    assert principal_kind("services/team_hub") == "SERVICE"
    for other in ("api_keys/k_1", "users/", "users/a/b", "organizations/acme", "members/m_1", ""):
        assert principal_kind(other) == "ANONYMOUS"
    fixed = derived_request_id("sign_up", "u_1")
    assert fixed == derived_request_id("sign_up", "u_1") != derived_request_id("sign_up", "u_2")
    assert uuid.UUID(fixed).version == 4 and request_id_problem(fixed) is None
