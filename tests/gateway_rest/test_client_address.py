"""The edge's client address: socket peer, or the trusted proxies' X-Forwarded-For / Forwarded."""

from __future__ import annotations

import ipaddress

import pytest

from gateway_rest.client_address import MAX_HOPS, client_address, parse_address

LB = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def address(peer: str, xff: list[str] | None = None, forwarded: list[str] | None = None, trusted=LB) -> str:
    return client_address(peer, xff or [], forwarded or [], trusted)


def test_nobody_is_trusted_by_default():
    assert address("203.0.113.5", ["198.51.100.1"], trusted=[]) == "203.0.113.5"


def test_headers_from_an_untrusted_peer_are_ignored():
    assert address("203.0.113.5", ["198.51.100.1"], ['for="198.51.100.1"']) == "203.0.113.5"


def test_a_trusted_proxy_names_the_client():
    assert address("10.0.0.2", ["198.51.100.1"]) == "198.51.100.1"
    assert address("10.0.0.2", forwarded=["for=198.51.100.1;proto=https;by=10.0.0.2"]) == "198.51.100.1"


def test_the_walk_skips_trusted_hops_from_the_right_and_stops_at_the_first_untrusted():
    # The client claims 1.1.1.1; the real client is 198.51.100.1, seen by two trusted proxies.
    assert address("10.0.0.2", ["1.1.1.1, 198.51.100.1, 10.0.0.9"]) == "198.51.100.1"
    # several header lines are one list, in order
    assert address("10.0.0.2", ["1.1.1.1", "198.51.100.1", "10.0.0.9"]) == "198.51.100.1"


def test_a_chain_of_only_trusted_proxies_gives_the_farthest():
    assert address("10.0.0.2", ["10.0.0.7, 10.0.0.9"]) == "10.0.0.7"


def test_a_peer_without_headers_is_the_client():
    assert address("10.0.0.2") == "10.0.0.2"


@pytest.mark.parametrize(
    ("hop", "expected"),
    [
        ("198.51.100.1:4711", "198.51.100.1"),
        ("2001:db8::17", "2001:db8::17"),
        ("[2001:db8::17]:4711", "2001:db8::17"),
        ("[2001:db8::17]", "2001:db8::17"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
        ("2001:DB8:0:0::17", "2001:db8::17"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_forwarded_for_hops_with_ports_and_ipv6(hop, expected):
    assert address("10.0.0.2", [hop]) == expected


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ('For="198.51.100.1:80";proto=http', "198.51.100.1"),
        ("proto=https; for=198.51.100.1", "198.51.100.1"),
        ('for="198.51.100.1";by="[fd00::1]";host="a,b.example"', "198.51.100.1"),
        ('for="198\\.51.100.1"', "198.51.100.1"),  # quoted-pair
    ],
)
def test_rfc7239_forwarded_values(element, expected):
    assert address("10.0.0.2", forwarded=[element]) == expected


def test_rfc7239_walks_from_the_right_like_x_forwarded_for():
    header = 'for=1.1.1.1, for="198.51.100.1:99", for="[fd00::5]"'
    assert address("fd00::2", forwarded=[header]) == "198.51.100.1"


def test_an_ipv6_peer_is_matched_against_ipv6_networks():
    assert address("fd00::2", ["198.51.100.1"]) == "198.51.100.1"
    assert address("2001:db8::2", ["198.51.100.1"]) == "2001:db8::2"
    assert address("::ffff:10.0.0.2", ["198.51.100.1"]) == "198.51.100.1"  # IPv4-mapped peer


@pytest.mark.parametrize(
    ("xff", "forwarded"),
    [
        (["unknown"], None),
        (["198.51.100.1, garbage, 10.0.0.9"], None),  # the walk reaches garbage before an untrusted hop
        ([""], None),
        ([" , "], None),
        (["198.51.100.1:port"], None),
        (["[2001:db8::1"], None),
        (["[2001:db8::1]x"], None),
        (["a" * 100], None),
        (["1.1.1.1, " * 5000 + "198.51.100.1"], None),  # oversized header
        (None, ["for=unknown"]),
        (None, ["for=_hidden"]),
        (None, ['for="198.51.100.1']),  # unterminated quote
        (None, ["proto=https"]),  # no for=
        (None, ["for=198.51.100.1;for=1.1.1.1"]),  # two for= in one element
        (None, ["for=198.51.100.1;garbage"]),
        (None, ['for=19"8.51.100.1']),
        (["198.51.100.1"], ["for=198.51.100.2"]),  # the two headers disagree
        (["héllo"], None),
    ],
)
def test_garbage_falls_back_to_the_peer(xff, forwarded):
    assert address("10.0.0.2", xff, forwarded) == "10.0.0.2"


def test_both_headers_agreeing_are_believed():
    assert address("10.0.0.2", ["198.51.100.1"], ["for=198.51.100.1"]) == "198.51.100.1"


def test_a_very_long_chain_of_trusted_hops_is_walked_only_so_far():
    hops = ", ".join(["198.51.100.1"] + [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(MAX_HOPS + 5)])
    result = address("10.0.0.2", [hops])
    assert ipaddress.ip_address(result) in LB[0]  # never the untrusted one beyond the limit


def test_a_peer_that_is_no_address_is_returned_as_is():
    assert address("testclient", ["198.51.100.1"]) == "testclient"
    assert parse_address("testclient") is None


# --- through a real edge (uvicorn on port 0, the conformance upstream) ---------------


async def _metadata(edge, headers):
    response = await edge.get("/v1/headers", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json()["metadata"])


@pytest.mark.asyncio(loop_scope="module")
async def test_the_edge_forwards_the_address_its_trusted_proxy_names(make_edge):
    from gateway_rest.transcoder import EdgeOptions

    behind_lb = EdgeOptions(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    async with make_edge(options=behind_lb) as edge:
        assert (await _metadata(edge, {"X-Forwarded-For": "1.1.1.1, 198.51.100.1"}))[
            "x-forwarded-for"
        ] == "198.51.100.1"
        forwarded = await _metadata(edge, {"Forwarded": 'for="[2001:db8::5]:443"'})
        assert forwarded["x-forwarded-for"] == "2001:db8::5"
        assert (await _metadata(edge, {"X-Forwarded-For": "unknown"}))["x-forwarded-for"] == "127.0.0.1"
    async with make_edge() as untrusting:  # the default: nobody's headers count
        assert (await _metadata(untrusting, {"X-Forwarded-For": "198.51.100.1"}))["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.asyncio(loop_scope="module")
async def test_the_edge_vouches_with_its_own_token_and_a_client_cannot_smuggle_one(make_edge):
    from gateway_rest.transcoder import EdgeOptions

    async def edge_token() -> str:
        return "edge-token"

    async with make_edge(options=EdgeOptions(proxy_token=edge_token)) as edge:
        smuggled = {
            "Grpc-Metadata-X-Vocelio-Proxy-Authorization": "Bearer forged",
            "Grpc-Metadata-X-Forwarded-For": "1.1.1.1",
        }
        metadata = await _metadata(edge, smuggled)
        assert metadata["x-vocelio-proxy-authorization"] == "Bearer edge-token"
        assert metadata["x-forwarded-for"] == "127.0.0.1"
    async with make_edge() as plain:  # the generic edge has no token: it sends none, and passes none on
        assert "x-vocelio-proxy-authorization" not in await _metadata(plain, smuggled)
