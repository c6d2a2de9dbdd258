"""The SSRF guard in `serve` as deployed: every spelling of an internal address is refused, and so is
a redirect to one. What each got goes to test-artifacts/reliability/security.json."""

import asyncio
import socket
import urllib.request

import pytest
from harness import PROJECT, record
from hostile import SECRET, assert_every_internal_address_refused, error_of
from support import Origin, Server, post_concurrently
from tornado.netutil import DefaultLoopResolver, OverrideResolver, Resolver

from ufop_sdk.app.settings import Settings
from ufop_sdk.errors import Forbidden
from ufop_sdk.sources.fetch import GuardedResolver, SourcePolicy
from ufop_sdk.sources.networks import DEFAULT_BLOCKED_NETWORKS

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def secret_origin():
    """What an attacker is after: an internal service on loopback."""
    with Origin() as origin:
        origin.serve("/secret", SECRET)
        yield origin


@pytest.fixture(scope="module")
def embedded():
    """serve as deployed: UFOP_BLOCKED_NETWORKS unset."""
    with Server(PROJECT, "--host", "127.0.0.1", env={"UFOP_FETCH_TIMEOUT": "3"}) as server:
        yield server


def test_every_form_of_an_internal_address_is_refused(embedded, secret_origin):
    assert_every_internal_address_refused(embedded, secret_origin, "ssrf_refused_in_serve")


@pytest.fixture(scope="module")
def internal_origin():
    """An internal service on 127.0.0.2, which the redirecting server below may not reach."""
    with Origin(host="127.0.0.2") as origin:
        origin.serve("/secret", SECRET)
        yield origin


@pytest.fixture(scope="module")
def redirecting():
    """A server that may fetch from 127.0.0.1 (the allowed origin) but not from 127.0.0.2."""
    with Server(PROJECT, "--host", "127.0.0.1", env={"UFOP_BLOCKED_NETWORKS": "127.0.0.2/32"}) as server:
        yield server


def test_a_redirect_to_an_internal_address_is_refused_in_every_form(redirecting, internal_origin):
    port = internal_origin.port
    with urllib.request.urlopen(internal_origin.url("/secret"), timeout=5) as reachable:
        assert reachable.read() == SECRET, "the internal origin must be reachable, or the test means nothing"
    targets = [f"http://127.0.0.2:{port}/secret", f"http://[::ffff:127.0.0.2]:{port}/secret",
               f"http://2130706434:{port}/secret", f"http://0x7f000002:{port}/secret",
               f"http://127.0.2:{port}/secret", f"//127.0.0.2:{port}/secret"]
    asked = len(internal_origin.requests)
    got = {}
    with Origin() as allowed:
        allowed.serve("/fine", b"fine")
        requests = [("t/echo", allowed.url("/fine"))]
        for number, target in enumerate(targets):
            for code in (301, 302, 303, 307, 308):
                allowed.redirect(f"/to/{number}/{code}", target, status=code)
                requests.append(("t/echo", allowed.url(f"/to/{number}/{code}")))
            allowed.redirect(f"/hop/{number}", f"/to/{number}/302")  # two hops: allowed, allowed, internal
            requests.append(("t/echo", allowed.url(f"/hop/{number}")))
        answers = post_concurrently(redirecting, requests, timeout=15, as_url=True)
    assert answers[0][::2] == (200, b"fine"), "fetching from the allowed origin works"
    for (_, url), (status, headers, body) in zip(requests[1:], answers[1:], strict=True):
        got[url.split("/", 3)[3]] = status
        assert SECRET not in body and status == 403, (url, status, body[:300])
        assert "127.0.0.2" in error_of(status, headers, body)
    assert len(internal_origin.requests) == asked, "the internal origin was reached"
    record("security", {"redirects_to_internal_refused": {"targets": targets, "answers": got}})


# The default list, address by address. A source's host is a name, so each address is what a name
# resolves to: the resolver serve fetches through is given a mapping and must refuse the address.
# Only resolved, never connected to: nothing here may send traffic beyond loopback.
BLOCKED_BY_DEFAULT = {
    "ipv4 this-network 0.0.0.1": "0.0.0.1",
    "ipv4 loopback 127.0.0.1": "127.0.0.1",
    "ipv4 loopback 127.255.255.254": "127.255.255.254",
    "ipv4 link-local aws-metadata 169.254.169.254": "169.254.169.254",
    "ipv4 cgnat alibaba-metadata 100.100.100.200": "100.100.100.200",
    "ipv4 cgnat first 100.64.0.1": "100.64.0.1",
    "ipv4 cgnat last 100.127.255.254": "100.127.255.254",
    "ipv4 ietf-protocol 192.0.0.170": "192.0.0.170",
    "ipv4 multicast 224.0.0.1": "224.0.0.1",
    "ipv4 multicast 239.255.255.250": "239.255.255.250",
    "ipv4 reserved 240.0.0.1": "240.0.0.1",
    "ipv4 broadcast 255.255.255.255": "255.255.255.255",
    "ipv6 unspecified ::": "::",
    "ipv6 loopback ::1": "::1",
    "ipv6 link-local fe80::1": "fe80::1",
    "ipv6 site-local fec0::1": "fec0::1",
    "ipv6 ula aws-metadata fd00:ec2::254": "fd00:ec2::254",
    "ipv6 ula fc00::1": "fc00::1",
    "ipv6 multicast ff02::1": "ff02::1",
    "ipv4-mapped loopback ::ffff:127.0.0.1": "::ffff:127.0.0.1",
    "ipv4-mapped cgnat ::ffff:100.100.100.200": "::ffff:100.100.100.200",
    "nat64 loopback 64:ff9b::127.0.0.1": "64:ff9b::7f00:1",
    "nat64 link-local 64:ff9b::169.254.169.254": "64:ff9b::a9fe:a9fe",
    "nat64 cgnat alibaba-metadata 64:ff9b::100.100.100.200": "64:ff9b::6464:64c8",
    "6to4 loopback 2002:7f00:1::1": "2002:7f00:1::1",
    "6to4 link-local 2002:a9fe:a9fe::1": "2002:a9fe:a9fe::1",
    "teredo client loopback 2001:0:4136:e378:8000:63bf:80ff:fffe": "2001:0:4136:e378:8000:63bf:80ff:fffe",
}
ALLOWED_BY_DEFAULT = {
    "rfc1918 10.0.0.1": "10.0.0.1",
    "rfc1918 172.16.0.1": "172.16.0.1",
    "rfc1918 192.168.1.1": "192.168.1.1",
    "public ipv4 93.184.215.14": "93.184.215.14",
    "public ipv6 2606:2800:21f:cb07:6820:80da:af6b:8b2c": "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    "nat64 public 64:ff9b::93.184.215.14": "64:ff9b::5db8:d70e",
    "ipv4-mapped rfc1918 ::ffff:10.0.0.1": "::ffff:10.0.0.1",
    "nat64 rfc1918 64:ff9b::10.0.0.1": "64:ff9b::a00:1",
    "edge cgnat 100.63.255.255": "100.63.255.255",
    "edge cgnat 100.128.0.0": "100.128.0.0",
}
RFC1918 = {name: address for name, address in ALLOWED_BY_DEFAULT.items() if "rfc1918" in name}


def policy_for(tmp_path, value=None):
    """The SourcePolicy `serve` builds with UFOP_BLOCKED_NETWORKS `value` (None: unset)."""
    settings = Settings.load(tmp_path, environ={} if value is None else {"UFOP_BLOCKED_NETWORKS": value})
    return SourcePolicy.from_settings(settings, DEFAULT_BLOCKED_NETWORKS)


def resolve_as(policy, address):
    """What serve's resolver makes of a name that resolves to `address`: its addresses, or the Forbidden."""
    resolver = GuardedResolver(policy=policy, resolver=OverrideResolver(
        resolver=DefaultLoopResolver(), mapping={"source.example": address}))
    try:
        return [entry[1][0] for entry in asyncio.run(resolver.resolve("source.example", 80))]
    except Forbidden as exc:
        return exc


@pytest.mark.parametrize("address", BLOCKED_BY_DEFAULT.values(), ids=BLOCKED_BY_DEFAULT.keys())
def test_serve_refuses_by_default_a_name_resolving_to(tmp_path, address):
    refused = resolve_as(policy_for(tmp_path), address)
    assert isinstance(refused, Forbidden), refused
    assert "source.example" in refused.message and "blocked address" in refused.message


@pytest.mark.parametrize("address", ALLOWED_BY_DEFAULT.values(), ids=ALLOWED_BY_DEFAULT.keys())
def test_serve_allows_by_default_a_name_resolving_to(tmp_path, address):
    assert resolve_as(policy_for(tmp_path), address) == [address]


@pytest.mark.parametrize("address", BLOCKED_BY_DEFAULT.values(), ids=BLOCKED_BY_DEFAULT.keys())
def test_blocked_networks_none_allows_a_name_resolving_to(tmp_path, address):
    assert resolve_as(policy_for(tmp_path, "none"), address) == [address]


@pytest.mark.parametrize("address", [*BLOCKED_BY_DEFAULT.values(), *RFC1918.values()],
                         ids=[*BLOCKED_BY_DEFAULT.keys(), *RFC1918.keys()])
def test_blocked_networks_default_plus_rfc1918_refuses_a_name_resolving_to(tmp_path, address):
    refused = resolve_as(policy_for(tmp_path, "default, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16"), address)
    assert isinstance(refused, Forbidden), refused


def test_a_name_resolving_to_blocked_and_allowed_addresses_keeps_only_the_allowed(tmp_path):
    resolver = GuardedResolver(policy=policy_for(tmp_path), resolver=_TwoAddresses())
    assert [entry[1][0] for entry in asyncio.run(resolver.resolve("source.example", 80))] == ["10.0.0.1"]


class _TwoAddresses(Resolver):
    """A name with a metadata address and a private one, as a DNS answer could give."""

    async def resolve(self, host, port, family=0):
        return [(socket.AF_INET, ("100.100.100.200", port)), (socket.AF_INET, ("10.0.0.1", port))]
