"""Claims -> user name, email and policy groups; the server config's `oidc:` checks (no I/O)."""
from __future__ import annotations

from typing import Any

import pytest

from controlplane.errors import JitError
from controlplane.signin.config import OidcConfig, OidcConfigError
from controlplane.signin.service import identity_of

CFG = OidcConfig(issuer="https://login.example.com/", client_id="jitgate", group_map={"okta-sre": "sre"})


def test_name_email_and_mapped_groups() -> None:
    claims = {"preferred_username": "dana", "email": "d@example.com", "email_verified": True,
              "groups": ["okta-sre", "everyone"]}
    assert identity_of(CFG, claims) == ("dana", "d@example.com", ["sre"])
    kept = OidcConfig(issuer=CFG.issuer, client_id="jitgate", group_map={"okta-sre": "sre"}, keep_unmapped_groups=True)
    assert identity_of(kept, claims)[2] == ["sre", "everyone"]


def test_an_unverified_email_is_not_kept_and_cannot_name_the_user() -> None:
    claims: dict[str, Any] = {"preferred_username": "dana", "email": "d@example.com", "email_verified": False}
    assert identity_of(CFG, claims)[1] == ""
    by_email = OidcConfig(issuer=CFG.issuer, client_id="jitgate", username_claim="email")
    with pytest.raises(JitError) as e:
        identity_of(by_email, claims)
    assert e.value.code == "signin.email_unverified"
    assert identity_of(by_email, {**claims, "email_verified": True})[0] == "d@example.com"


@pytest.mark.parametrize(("claims", "text"), [
    ({}, "no `preferred_username` claim"),
    ({"preferred_username": "x" * 129}, "longer than 128"),
    ({"preferred_username": "eve\u202e"}, "refused"),
    ({"preferred_username": "dana", "groups": {"a": 1}}, "list of group names"),
    ({"preferred_username": "dana", "groups": ["g"] * 257}, "more than 256 groups"),
])
def test_bad_claims_are_refused(claims: dict[str, Any], text: str) -> None:
    with pytest.raises(JitError) as e:
        identity_of(CFG, claims)
    assert e.value.code == "signin.claims" and text in e.value.message


@pytest.mark.parametrize(("values", "text"), [
    ({"issuer": "http://login.example.com", "client_id": "j"}, "must use https"),
    ({"issuer": "https://login.example.com", "client_id": ""}, "`client_id` is required"),
    ({"issuer": "https://login.example.com", "client_id": "j", "scopes": ["email"]}, "must include `openid`"),
    ({"issuer": "https://login.example.com", "client_id": "j", "certificate_hours": 13}, "certificate_hours"),
    ({"issuer": "https://login.example.com", "client_id": "j", "isuer": "x"}, "unknown key `isuer`"),
    ({"issuer": "https://login.example.com", "client_id": "j", "console_client_id": "j"}, "must differ"),
])
def test_bad_config_fails_at_start(values: dict[str, Any], text: str) -> None:
    with pytest.raises(OidcConfigError) as e:
        OidcConfig.from_mapping(values)
    assert text in str(e.value)
    assert OidcConfig.from_mapping({"issuer": "http://127.0.0.1:5556", "client_id": "j"}).issuer.startswith("http:")


def test_the_consoles_client_is_a_second_audience_only_when_set() -> None:
    assert CFG.audiences == ("jitgate",)
    both = OidcConfig.from_mapping({"issuer": CFG.issuer, "client_id": "jitgate", "console_client_id": "jitgate-web"})
    assert both.audiences == ("jitgate", "jitgate-web")
