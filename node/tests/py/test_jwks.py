"""JWKS (`HERALD_TOKEN_JWKS_URL`): a test-owned aiohttp server publishes RSA and EC public
keys made here with `cryptography`; tokens signed with the private halves (PyJWT, `kid`
in the header) connect and subscribe through the official centrifuge-python SDK.

Each node also keeps its HMAC secret: HS256 tokens and JWKS tokens work side by side,
each picked by its `alg`. Bad input gets Centrifugo's answers (connect: close 3500
"invalid token"; subscribe: error 103), and the node stays up whatever the endpoint does
(down, HTTP 500, garbage).
"""

from __future__ import annotations

import asyncio
import secrets
import time

import jwt
import pytest
from centrifuge import ClientState

from harness import NodeStartError, T, EventLog, http
from jwksutil import EC384_KEY, EC_KEY, RSA_KEY, RSA_KEY_2, JwksServer, jwk, standard_keys, make_tls, token
from sdkutil import ClientEvents, SubEvents


@pytest.fixture
async def jwks():
    server = JwksServer()
    server.keys = standard_keys()
    await server.start()
    yield server
    await server.stop()


def jwks_node(node_factory, server, **env):
    # A short refetch interval so the tests' rotations are quick; the default is 10 s.
    env.setdefault("HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL", "1")
    return node_factory(HERALD_TOKEN_JWKS_URL=server.url, **env)


async def sdk_connect(sdk, node, tok: str):
    log = EventLog()
    client = sdk(node, token=tok, events=ClientEvents(log))
    await client.connect()
    return client, log


async def connected(sdk, node, tok: str):
    client, log = await sdk_connect(sdk, node, tok)
    await client.ready(T)
    return client, log


async def refused_3500(sdk, node, tok: str):
    client, log = await sdk_connect(sdk, node, tok)
    await log.wait(lambda: log.of("disconnected"), what="terminal disconnect")
    ctx = log.of("disconnected")[0]
    assert (ctx.code, ctx.reason) == (3500, "invalid token"), ctx
    assert client.state == ClientState.DISCONNECTED


async def wait_for(pred, what: str, timeout: float = T):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_rsa_and_ec_tokens_connect_and_subscribe(node_factory, jwks, json_sdk):
    node = jwks_node(node_factory, jwks, HERALD_PRESENCE=True)
    for key, alg, kid in [
        (RSA_KEY, "RS256", "rsa-1"),
        (RSA_KEY, "RS384", "rsa-1"),
        (RSA_KEY, "RS512", "rsa-1"),
        (EC_KEY, "ES256", "ec-1"),
        (EC384_KEY, "ES384", "ec384-1"),
    ]:
        client, _ = await connected(json_sdk, node, token(key, alg, kid, sub=f"u-{alg}"))
        await client.disconnect()
    # The HMAC secret still verifies HS256 tokens beside the JWKS.
    client, _ = await connected(json_sdk, node, node.token("alice"))
    # A subscription token from the JWKS for a private channel.
    log = EventLog()
    sub_tok = token(EC_KEY, "ES256", "ec-1", channel="$room", info={"seat": 3})
    sub = client.new_subscription("$room", token=sub_tok, events=SubEvents(log))
    await sub.subscribe()
    await sub.ready(T)
    presence = await sub.presence()
    assert [c.chan_info for c in presence.clients.values()] == [{"seat": 3}]


async def test_a_rotated_key_works_on_first_use(node_factory, jwks, json_sdk):
    node = jwks_node(node_factory, jwks)
    await connected(json_sdk, node, token(RSA_KEY, "RS256", "rsa-1"))
    before = jwks.requests
    # The provider publishes a new key after the node's last fetch.
    jwks.keys.append(jwk(RSA_KEY_2, "rsa-2"))
    await asyncio.sleep(1.1)  # past the refetch interval of the start-up fetch
    await connected(json_sdk, node, token(RSA_KEY_2, "RS256", "rsa-2"))
    assert jwks.requests == before + 1


async def test_bad_tokens_are_refused_with_3500(node_factory, jwks, json_sdk, raw):
    node = jwks_node(node_factory, jwks, HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL="5")
    await refused_3500(json_sdk, node, token(RSA_KEY, "RS256", "nobody-has-it"))
    # Signed by another key than the one its kid names.
    await refused_3500(json_sdk, node, token(RSA_KEY_2, "RS256", "rsa-1"))
    # No kid: a JWKS key cannot be chosen.
    await refused_3500(json_sdk, node, token(RSA_KEY, "RS256", None))
    # An RSA token naming the EC key.
    await refused_3500(json_sdk, node, token(RSA_KEY, "RS256", "ec-1"))

    # A flood of random kids does not become a flood of fetches: at most one per
    # HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL (5 s here; the flood takes far less).
    await asyncio.sleep(5.1)
    before = jwks.requests
    started = time.monotonic()
    for _ in range(30):
        c = await raw(node, token=None, connect=False)
        await c.send_json({"id": 1, "connect": {"token": token(RSA_KEY, "RS256", secrets.token_hex(8))}})
        await c.expect_disconnect(3500)
    elapsed = time.monotonic() - started
    assert jwks.requests - before <= 1 + int(elapsed / 5), (jwks.requests - before, elapsed)
    # A bad subscription token is error 103 and the connection stays.
    client, _ = await connected(json_sdk, node, token(RSA_KEY, "RS256", "rsa-1"))
    log = EventLog()
    bad = token(RSA_KEY_2, "RS256", "rsa-1", channel="$room")
    sub = client.new_subscription("$room", token=bad, events=SubEvents(log))
    await sub.subscribe()
    await log.wait(lambda: log.of("unsubscribed"), what="unsubscribed")
    assert log.of("unsubscribed")[0].code == 103
    assert client.state == ClientState.CONNECTED


async def test_endpoint_down_garbage_and_recovery(node_factory, jwks, json_sdk):
    jwks.status = 500
    node = jwks_node(node_factory, jwks)
    # The node starts and serves while the endpoint fails; JWKS tokens are refused,
    # HMAC tokens are not.
    r = await http("GET", f"{node.http_url}/readyz")
    assert r.status == 200
    await wait_for(lambda: jwks.requests >= 1, "the start-up fetch")
    await refused_3500(json_sdk, node, token(RSA_KEY, "RS256", "rsa-1"))
    await connected(json_sdk, node, node.token("alice"))

    # The endpoint comes back: the next token with an unknown kid refetches.
    jwks.status = 200
    await asyncio.sleep(1.1)
    await connected(json_sdk, node, token(RSA_KEY, "RS256", "rsa-1"))

    # A document that does not parse keeps the keys fetched before.
    jwks.body = b"<html>not a JWKS</html>"
    await asyncio.sleep(1.1)
    await refused_3500(json_sdk, node, token(EC_KEY, "ES256", "unknown"))
    await connected(json_sdk, node, token(EC_KEY, "ES256", "ec-1"))

    # Endpoint gone altogether: cached keys still work, unknown kids are refused.
    await jwks.stop()
    await asyncio.sleep(1.1)
    await refused_3500(json_sdk, node, token(RSA_KEY_2, "RS256", "rsa-2"))
    await connected(json_sdk, node, token(RSA_KEY, "RS256", "rsa-1"))
    r = await http("GET", f"{node.http_url}/healthz")
    assert r.status == 200
    metrics = (await http("GET", f"{node.http_url}/metrics")).text
    assert 'herald_node_jwks_fetches_total{result="status"}' in metrics
    assert 'herald_node_jwks_fetches_total{result="parse"}' in metrics
    assert 'herald_node_jwks_fetches_total{result="unreachable"}' in metrics
    assert 'herald_node_jwks_fetches_total{result="ok"}' in metrics


async def test_unsupported_keys_in_the_set_are_skipped(node_factory, jwks, json_sdk):
    jwks.keys = [
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        dict(jwk(RSA_KEY, "enc-1"), use="enc"),
        jwk(RSA_KEY, "rsa-1"),
    ]
    node = jwks_node(node_factory, jwks)
    await connected(json_sdk, node, token(RSA_KEY, "RS256", "rsa-1"))
    await refused_3500(json_sdk, node, token(RSA_KEY, "RS256", "enc-1"))
    # An HS256 token naming the symmetric JWK is checked with the node's own secret
    # only: a JWKS never supplies HMAC keys.
    forged = jwt.encode({"sub": "mallory"}, b"secret-secret-secret", algorithm="HS256", headers={"kid": "sym"})
    await refused_3500(json_sdk, node, forged)


async def test_an_https_endpoint_is_trusted_through_the_system_roots(node_factory, tmp_path, json_sdk):
    """https:// with a certificate from a test-made CA: trusted once the CA is among the
    system roots the node reads (`SSL_CERT_FILE`, as OpenSSL's tools read it), refused
    otherwise (the fetch fails, the node stays up, HMAC tokens still work)."""
    tls, ca_file = make_tls(tmp_path)
    server = JwksServer(tls)
    server.keys = standard_keys()
    await server.start()
    try:
        assert server.url.startswith("https://")
        trusting = jwks_node(node_factory, server, SSL_CERT_FILE=ca_file)
        await connected(json_sdk, trusting, token(RSA_KEY, "RS256", "rsa-1"))
        await connected(json_sdk, trusting, token(EC_KEY, "ES256", "ec-1"))
        ok = await http("GET", f"{trusting.http_url}/metrics")
        assert 'herald_node_jwks_fetches_total{result="ok"}' in ok.text

        # The usual system roots (this environment's own SSL_CERT_FILE, or the OS
        # store) do not include the test's CA.
        before = server.requests
        distrusting = jwks_node(node_factory, server)
        await refused_3500(json_sdk, distrusting, token(RSA_KEY, "RS256", "rsa-1"))
        await connected(json_sdk, distrusting, distrusting.token("alice"))
        # The handshake failed before any request was made.
        assert server.requests == before
        m = (await http("GET", f"{distrusting.http_url}/metrics")).text
        assert 'herald_node_jwks_fetches_total{result="unreachable"}' in m, m
        assert 'herald_node_jwks_fetches_total{result="ok"}' not in m
    finally:
        await server.stop()


async def test_jwks_url_must_be_http(node_factory):
    with pytest.raises(NodeStartError) as e:
        node_factory(HERALD_TOKEN_JWKS_URL="ftp://example.com/keys")
    assert "HERALD_TOKEN_JWKS_URL" in str(e.value)
