"""Differential test: Herald against Centrifugo v6.9.1, configured alike.

Both get the same HMAC secret, API key and channel options (a default namespace with
history, recovery and presence; `chat` with join/leave pushed to every subscriber;
`nohist` with neither history nor presence). Every script in SCRIPTS runs once against
each, with raw JSON frames (the client protocol encoding is a parameter: protobuf can
join the list), and the normalised transcripts are compared field by field.

The token scripts in JWKS_SCRIPTS run a second time against a second pair configured
with a JWKS endpoint instead of the HMAC secret (`HERALD_TOKEN_JWKS_URL`, Centrifugo's
`client.token.jwks_public_endpoint`), the test's own endpoint serving RSA and EC keys:
tokens are then RS256 with a `kid`, plus the cases only a key set has (unknown kid, no
kid, an EC key, an HS256 token).

Every difference found must be in KNOWN_DIFFERENCES with its reason, and every entry
there must still be found and be listed in README's "Differences from Centrifugo":
a new difference, or a fixed one still listed, fails the test.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import secrets
import time
from pathlib import Path

import jwt
import pytest

from centrifugo import Centrifugo
from differential import Peer, Transcript, b64, compare, normalise
from harness import REPO_ROOT, start_node
from jwksutil import EC_KEY, RSA_KEY, standard_keys, static_jwks, token as jwks_token

HISTORY_SIZE = 10
HISTORY_TTL = 300

HERALD_TOML = f"""
history_size = {HISTORY_SIZE}
history_ttl = {HISTORY_TTL}
presence = true
allow_publish = true
allow_subscribe = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true
recovery = true

[namespaces.chat]
join_leave = true
force_push_join_leave = true

[namespaces.nohist]
history_size = 0
presence = false
recovery = false
"""


def centrifugo_config(secret: str, api_key: str, jwks_url: str | None = None) -> dict:
    common = {
        "allow_subscribe_for_client": True,
        "allow_publish_for_subscriber": True,
        "allow_presence_for_subscriber": True,
        "allow_history_for_subscriber": True,
    }
    history = {
        "history_size": HISTORY_SIZE,
        "history_ttl": f"{HISTORY_TTL}s",
        "force_recovery": True,
        "force_positioning": True,
        "presence": True,
    }
    token = {"jwks_public_endpoint": jwks_url} if jwks_url else {"hmac_secret_key": secret}
    return {
        "client": {"token": token, "allowed_origins": ["*"]},
        "http_api": {"key": api_key},
        "channel": {
            "without_namespace": {**common, **history},
            "namespaces": [
                {"name": "chat", **common, **history, "join_leave": True, "force_push_join_leave": True},
                {"name": "nohist", **common},
            ],
        },
    }


# -- scripts -------------------------------------------------------------------------
# Each takes a peer and a transcript, drives clients and the API, and records.

SCRIPTS = {}


def script(fn):
    SCRIPTS[fn.__name__] = fn
    return fn


@script
async def connect_plain(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", info={"color": "red"})})
    await a.send("again", "connect", {"token": p.token("alice")})
    await a.record_close("closed after second connect")


@script
async def connect_anonymous_token(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("")})


@script
async def connect_no_token(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {})
    await a.record_close("closed")


@script
async def connect_channels_claim(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", channels=["news", "chat:room"])})
    await p.api(t, "publish", "publish", {"channel": "news", "data": {"n": 1}})
    await a.pushes("pub push", 1)
    await p.api(t, "presence", "presence", {"channel": "chat:room"})


@script
async def connect_channels_unknown_namespace(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", channels=["news", "nope:x"])})
    await a.record_close("closed", timeout=1)


@script
async def connect_subs_claim(p: Peer, t: Transcript):
    subs = {
        "news": {"data": {"welcome": True}, "info": {"role": "reader"}},
        "chat:s": {"b64info": b64({"role": "b64"}), "override": {"force_push_join_leave": {"value": True}}},
    }
    a = await p.open(t, "a")
    # `subs` wins over `channels`.
    await a.send("connect", "connect", {"token": p.token("alice", subs=subs, channels=["other"])})
    await p.api(t, "presence chat:s", "presence", {"channel": "chat:s"})
    await p.api(t, "presence news", "presence", {"channel": "news"})
    await p.api(t, "history other", "presence", {"channel": "other"})


@script
async def connect_subs_bad_b64info(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", subs={"news": {"b64info": "%%%"}})})
    await a.record_close("closed")


@script
async def connect_bad_b64info(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", b64info="not base64!")})
    await a.record_close("closed", timeout=1)


@script
async def connect_b64info_and_meta(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    tok = p.token("alice", b64info=b64({"from": "b64"}), info={"from": "json"}, meta={"secret": "server-only"})
    await a.send("connect", "connect", {"token": tok})
    await a.send("subscribe", "subscribe", {"channel": "chat:meta"})
    b = await p.open(t, "b")
    await b.send("connect b", "connect", {"token": p.token("bob")})
    await b.send("subscribe b", "subscribe", {"channel": "chat:meta"})
    await a.pushes("join of bob", 1)
    await b.send("presence", "presence", {"channel": "chat:meta"})
    await b.send("publish", "publish", {"channel": "chat:meta", "data": {"x": 1}})
    await a.pushes("pub from bob", 1)


@script
async def connect_expired(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", exp_in=-60)})
    await a.record_close("after 109", timeout=1)
    await a.send("connect with a fresh token", "connect", {"token": p.token("alice")})


@script
async def connect_bad_signature(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", key="another-secret-of-32-characters!")})
    await a.record_close("closed")


@script
async def connect_expire_at(p: Peer, t: Transcript):
    now = int(time.time())
    a = await p.open(t, "a")
    await a.send("expire_at sooner than exp", "connect", {"token": p.token("alice", expire_at=now + 600)})
    b = await p.open(t, "b")
    await b.send("expire_at 0: never", "connect", {"token": p.token("alice", expire_at=0)})
    c = await p.open(t, "c")
    await c.send("expire_at past", "connect", {"token": p.token("alice", expire_at=now - 10)})
    await c.record_close("after past expire_at", timeout=1)


@script
async def refresh_client(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", exp_in=600)})
    await a.send("refresh", "refresh", {"token": p.token("alice", exp_in=1200)})
    await a.send("refresh expired", "refresh", {"token": p.token("alice", exp_in=-60)})
    await a.send("refresh other user", "refresh", {"token": p.token("bob", exp_in=1200)})
    await a.record_close("closed")


@script
async def subscribe_public(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice")})
    await a.send("subscribe", "subscribe", {"channel": "news"})
    await a.send("subscribe again", "subscribe", {"channel": "news"})
    await a.send("unknown namespace", "subscribe", {"channel": "nope:x"})
    await a.send("no history channel", "subscribe", {"channel": "nohist:x"})
    await a.send("unsubscribe", "unsubscribe", {"channel": "news"})
    await a.send("unsubscribe again", "unsubscribe", {"channel": "news"})


@script
async def subscribe_private(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice")})
    await a.send("no token", "subscribe", {"channel": "$secret"})
    await a.send(
        "good token",
        "subscribe",
        {"channel": "$secret", "token": p.sub_token("alice", "$secret", info={"seat": 1})},
    )
    await p.api(t, "presence", "presence", {"channel": "$secret"})
    await a.send(
        "expired token", "subscribe", {"channel": "$secret2", "token": p.sub_token("alice", "$secret2", exp_in=-60)}
    )
    await a.send("token of another user", "subscribe", {"channel": "$secret4", "token": p.sub_token("bob", "$secret4")})
    await a.record_close("after another user's token", timeout=1)
    cases = {
        "token for another channel": p.sub_token("alice", "$other"),
        "bad signature": p.token("alice", channel="$secret3", key="another-secret-of-32-characters!"),
        "connection token as subscription token": p.token("alice"),
    }
    for step, tok in cases.items():
        b = await p.open(t, step)
        await b.send(f"connect for {step}", "connect", {"token": p.token("alice")})
        await b.send(step, "subscribe", {"channel": "$secret3", "token": tok})
        await b.record_close(f"closed after {step}", timeout=1)


@script
async def subscribe_token_claims(p: Peer, t: Transcript):
    now = int(time.time())
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice")})
    tok = p.sub_token("alice", "$c1", b64info=b64({"seat": 2}), data={"welcome": 1})
    await a.send("b64info and data", "subscribe", {"channel": "$c1", "token": tok})
    await p.api(t, "presence $c1", "presence", {"channel": "$c1"})
    tok = p.sub_token("alice", "$c2", b64data=b64({"from": "b64"}), expire_at=now + 600)
    await a.send("b64data, expire_at sooner than exp", "subscribe", {"channel": "$c2", "token": tok})
    tok = p.sub_token("alice", "$c3", expire_at=0)
    await a.send("expire_at 0", "subscribe", {"channel": "$c3", "token": tok})
    tok = p.sub_token("alice", "$c4", expire_at=now - 10)
    await a.send("expire_at past", "subscribe", {"channel": "$c4", "token": tok})
    tok = p.sub_token("alice", "chat:c5", override={"presence": {"value": False}, "join_leave": {"value": False}})
    await a.send("override presence and join_leave off", "subscribe", {"channel": "chat:c5", "token": tok})
    await p.api(t, "presence chat:c5", "presence", {"channel": "chat:c5"})
    tok = p.sub_token("alice", "nohist:c6", override={"presence": {"value": True}})
    await a.send("override presence on", "subscribe", {"channel": "nohist:c6", "token": tok})
    await p.api(t, "presence nohist:c6", "presence", {"channel": "nohist:c6"})


@script
async def recover(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice")})
    sub = await a.send("subscribe", "subscribe", {"channel": "rec"})
    epoch = sub.get("subscribe", {}).get("epoch", "")
    for i in range(3):
        await p.api(t, f"publish {i}", "publish", {"channel": "rec", "data": {"i": i}})
    await a.pushes("live", 3)
    b = await p.open(t, "b")
    await b.send("connect b", "connect", {"token": p.token("bob")})
    await b.send("recover from 1", "subscribe", {"channel": "rec", "recover": True, "offset": 1, "epoch": epoch})
    c = await p.open(t, "c")
    await c.send("connect c", "connect", {"token": p.token("carol")})
    await c.send("recover wrong epoch", "subscribe", {"channel": "rec", "recover": True, "offset": 1, "epoch": "nope"})
    d = await p.open(t, "d")
    await d.send("connect d", "connect", {"token": p.token("dave")})
    await d.send("recover from the future", "subscribe", {"channel": "rec", "recover": True, "offset": 99, "epoch": epoch})
    e = await p.open(t, "e")
    await e.send(
        "connect e recovering a claimed channel",
        "connect",
        {"token": p.token("erin", channels=["rec"]), "subs": {"rec": {"recover": True, "offset": 2, "epoch": epoch}}},
    )


@script
async def publish_history_presence(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice", info={"color": "red"})})
    await a.send("subscribe", "subscribe", {"channel": "chat:h"})
    b = await p.open(t, "b")
    await b.send("connect b", "connect", {"token": p.token("bob")})
    await b.send("subscribe b", "subscribe", {"channel": "chat:h", "join_leave": True})
    await a.pushes("join of bob", 1)
    for i in range(5):
        await a.send(f"publish {i}", "publish", {"channel": "chat:h", "data": {"i": i}})
    await b.pushes("pubs", 5)
    await a.send("publish not subscribed", "publish", {"channel": "chat:other", "data": {}})
    await a.send("history all", "history", {"channel": "chat:h", "limit": -1})
    await a.send("history limit 2", "history", {"channel": "chat:h", "limit": 2})
    await a.send("history reverse", "history", {"channel": "chat:h", "limit": 2, "reverse": True})
    await a.send("history no limit", "history", {"channel": "chat:h"})
    epoch = a.raw.replies[2].get("subscribe", {}).get("epoch", "")
    await a.send("history since 3", "history", {"channel": "chat:h", "limit": 10, "since": {"offset": 3, "epoch": epoch}})
    await a.send(
        "history since bad epoch", "history", {"channel": "chat:h", "limit": 10, "since": {"offset": 3, "epoch": "x"}}
    )
    await a.send("presence", "presence", {"channel": "chat:h"})
    await a.send("presence_stats", "presence_stats", {"channel": "chat:h"})
    await b.send("unsubscribe b", "unsubscribe", {"channel": "chat:h"})
    await a.pushes("leave of bob", 1)
    await a.send("presence_stats after leave", "presence_stats", {"channel": "chat:h"})
    c = await p.open(t, "c")
    await c.send("connect c", "connect", {"token": p.token("carol")})
    await c.send("subscribe nohist", "subscribe", {"channel": "nohist:x"})
    await c.send("history nohist", "history", {"channel": "nohist:x", "limit": 1})
    await c.send("presence nohist", "presence", {"channel": "nohist:x"})
    await c.send("history not subscribed", "history", {"channel": "chat:h", "limit": 1})


@script
async def server_api(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("connect", "connect", {"token": p.token("alice")})
    await a.send("subscribe", "subscribe", {"channel": "api"})
    await p.api(t, "publish", "publish", {"channel": "api", "data": {"x": 1}})
    await p.api(t, "publish b64data", "publish", {"channel": "api", "b64data": b64({"y": 2})})
    await p.api(t, "publish tags", "publish", {"channel": "api", "data": 3, "tags": {"k": "v"}})
    await p.api(t, "publish unknown namespace", "publish", {"channel": "nope:x", "data": 1})
    await p.api(t, "publish no data", "publish", {"channel": "api"})
    await p.api(t, "broadcast", "broadcast", {"channels": ["api", "api2", "nope:x"], "data": {"b": 1}})
    await a.pushes("pubs", 4)
    await p.api(t, "subscribe user", "subscribe", {"user": "alice", "channel": "api-srv"})
    await a.pushes("subscribe push", 1)
    await p.api(t, "unsubscribe user", "unsubscribe", {"user": "alice", "channel": "api-srv"})
    await a.pushes("unsubscribe push", 1)
    await p.api(t, "presence", "presence", {"channel": "api"})
    await p.api(t, "presence_stats", "presence_stats", {"channel": "api"})
    await p.api(t, "presence nohist", "presence", {"channel": "nohist:x"})
    await p.api(t, "history", "history", {"channel": "api", "limit": 10})
    await p.api(t, "history reverse", "history", {"channel": "api", "limit": 1, "reverse": True})
    await p.api(t, "history_remove", "history_remove", {"channel": "api"})
    await p.api(t, "history after remove", "history", {"channel": "api", "limit": 10})
    await p.api(t, "channels", "channels", {"pattern": "api*"})
    # Node lists are each server's own: compare the shape of the answer only.
    await p.api(t, "info", "info", {}, reduce=lambda b: {"nodes": len(b.get("result", {}).get("nodes", []))})
    await p.api(
        t,
        "batch",
        "batch",
        {
            "commands": [
                {"publish": {"channel": "api", "data": {"in": "batch"}}},
                {"presence_stats": {"channel": "api"}},
                {"publish": {"channel": "nope:x", "data": 1}},
                {"unknown_method": {}},
            ]
        },
    )
    await p.api(
        t,
        "batch parallel",
        "batch",
        {"commands": [{"history": {"channel": "api", "limit": 0}}, {"channels": {}}], "parallel": True},
    )
    await a.pushes("batch pub", 1)
    await p.api(t, "refresh", "refresh", {"user": "alice", "expire_at": int(time.time()) + 900})
    await a.pushes("refresh push", 1)
    await p.api(t, "refresh expired", "refresh", {"user": "alice", "expired": True})
    await a.record_close("closed by refresh expired")
    b = await p.open(t, "b")
    await b.send("connect b", "connect", {"token": p.token("bob")})
    await p.api(t, "disconnect", "disconnect", {"user": "bob", "disconnect": {"code": 4999, "reason": "bye"}})
    await b.record_close("closed by disconnect")


@script
async def server_api_bad_input(p: Peer, t: Transcript):
    await p.api(t, "bad JSON", "publish", "{not json")
    await p.api(t, "wrong key", "publish", {"channel": "x", "data": 1}, key="wrong")
    await p.api(t, "no key", "publish", {"channel": "x", "data": 1}, key=None)
    await p.api(t, "unknown method", "no_such_method", {})
    await p.api(t, "empty channel", "publish", {"channel": "", "data": 1})
    await p.api(t, "bad b64data", "publish", {"channel": "x", "b64data": "%%%"})
    await p.api(t, "batch of nulls", "batch", {"commands": [None]})
    await p.api(t, "bad disconnect code", "disconnect", {"user": "u", "disconnect": {"code": 1, "reason": ""}})


@script
async def client_bad_input(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send_raw("bad JSON before connect", "not JSON at all")
    b = await p.open(t, "b")
    await b.send("connect", "connect", {"token": p.token("bob")})
    await b.send("unknown method", "no_such_method", {})
    await b.record_close("after unknown method", timeout=1)
    c = await p.open(t, "c")
    await c.send("connect", "connect", {"token": p.token("carol")})
    await c.send_raw("wrong type", json.dumps({"id": 7, "subscribe": {"channel": 5}}))
    d = await p.open(t, "d")
    await d.send("connect", "connect", {"token": p.token("dave")})
    await d.send_raw("binary frame on a JSON connection", b"\x00\x01binary")
    e = await p.open(t, "e")
    await e.send("connect", "connect", {"token": p.token("erin")})
    await e.send_raw("frame over 64 KiB", "x" * (70 * 1024))
    f = await p.open(t, "f")
    await f.send("subscribe before connect", "subscribe", {"channel": "news"})
    g = await p.open(t, "g")
    await g.send("connect", "connect", {"token": p.token("gus")})
    await g.send("subscribe empty channel", "subscribe", {"channel": ""})
    await g.send("publish without data", "publish", {"channel": "news"})
    await g.send_raw("command without id", json.dumps({"subscribe": {"channel": "news"}}))


# -- with a JWKS ------------------------------------------------------------------------
# The token scripts above that run again against the JWKS pair (their tokens RS256 with
# kid rsa-1), and scripts for what only a key set has.

JWKS_SCRIPTS = [
    "connect_plain",
    "connect_subs_claim",
    "connect_expired",
    "connect_bad_signature",
    "connect_expire_at",
    "refresh_client",
    "subscribe_private",
    "subscribe_token_claims",
]


@script
async def jwks_keys_by_kid(p: Peer, t: Transcript):
    a = await p.open(t, "a")
    await a.send("EC P-256 key", "connect", {"token": jwks_token(EC_KEY, "ES256", "ec-1", info={"k": "ec"})})
    ec_sub = jwks_token(EC_KEY, "ES256", "ec-1", channel="$ec")
    await a.send("subscribe", "subscribe", {"channel": "$ec", "token": ec_sub})
    rs384_sub = jwks_token(RSA_KEY, "RS384", "rsa-1", channel="$rs")
    await a.send("RS384 by the same RSA key", "subscribe", {"channel": "$rs", "token": rs384_sub})
    cases = {
        "unknown kid": jwks_token(RSA_KEY, "RS256", "nobody-has-it"),
        "no kid": jwks_token(RSA_KEY, "RS256", None),
        "RSA token naming the EC key": jwks_token(RSA_KEY, "RS256", "ec-1"),
        "HS256 token": jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, p.secret, algorithm="HS256"),
    }
    for step, tok in cases.items():
        b = await p.open(t, step)
        await b.send(step, "connect", {"token": tok})
        await b.record_close(f"closed after {step}", timeout=1)


JWKS_ONLY = ["jwks_keys_by_kid"]


# -- what may differ, and why ----------------------------------------------------------
# (script, step, path) -> README id; each part a glob (fnmatch). Paths are as
# `differential.compare` writes them. Every entry must match at least one difference.

KNOWN_DIFFERENCES: dict[tuple[str, str, str], str] = {
    # Herald tells the client which node serves it.
    ("*", "*", ".connect.node"): "D1",
    # Herald sends a `disconnect` push before the close frame.
    ("*", "*", ".disconnect_push"): "D2",
    # Centrifugo marks a stream's first publication with its epoch.
    ("*", "*", "*.pub.epoch"): "D3",
    ("*", "*", "*.publications[[]0[]].epoch"): "D3",
    # Centrifugo pushes a subscriber its own join (force_push_join_leave).
    ("connect_channels_claim", "pub push", ".pushes"): "D4",
    ("connect_b64info_and_meta", "join of bob", ".pushes"): "D4",
    ("publish_history_presence", "join of bob", ".pushes"): "D4",
    ("publish_history_presence", "pubs", ".pushes"): "D4",
    # After recovery Herald's subscribe result carries the stream top, not the asked offset.
    ("recover", "recover from 1", ".subscribe.offset"): "D5",
    ("recover", "connect e recovering a claimed channel", ".connect.subs.rec.offset"): "D5",
    # A malformed top-level b64info: Herald refuses the token (3500), Centrifugo says 100.
    ("connect_bad_b64info", "*", "*"): "D6",
    # After a connect error Herald lets the client connect again on the same socket.
    ("connect_expired", "connect with a fresh token", "*"): "D7",
    # Transport-level API errors: Herald answers JSON bodies with the same status.
    ("server_api_bad_input", "bad JSON", ".body.*"): "D8",
    ("server_api_bad_input", "wrong key", ".body.*"): "D8",
    ("server_api_bad_input", "no key", ".body.*"): "D8",
    ("server_api_bad_input", "unknown method", ".body.*"): "D8",
    # Herald refuses disconnect codes outside 3000..4999 (not valid close codes).
    ("server_api_bad_input", "bad disconnect code", ".body.*"): "D9",
    # Unknown client method: Herald answers error 104 and keeps the connection.
    ("client_bad_input", "unknown method", "*"): "D10",
    ("client_bad_input", "after unknown method", "*"): "D10",
    # A binary frame on a JSON connection: both close 3501, Herald's reason names it.
    ("client_bad_input", "binary frame on a JSON connection", ".closed.reason"): "D11",
    # A frame over the size limit: same close code (1009), Herald gives a reason.
    ("client_bad_input", "frame over 64 KiB", ".closed.reason"): "D12",
}


def readme_differences() -> set[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Differences from Centrifugo\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README has no '## Differences from Centrifugo' section"
    return set(re.findall(r"^\| `(D\d+)` \|", m.group(1), re.M))


@pytest.fixture(scope="module")
def jwks_url():
    """The test's JWKS endpoint (RSA rsa-1, EC ec-1 and ec384-1), for both servers."""
    with static_jwks(standard_keys()) as url:
        yield url


def start_pair(workdir: Path, node_bin, api_key: str, token_env: dict, cf_config: dict, secret: str, jwks: bool):
    """Herald (with `token_env` for its token settings) and Centrifugo (`cf_config`),
    and a Peer for each."""
    herald = start_node(
        node_bin,
        workdir,
        "herald",
        HERALD_TOML,
        {**token_env, "HERALD_API_KEY": api_key, "HERALD_NODE_ID": "herald-diff"},
    )
    centrifugo = Centrifugo.start(cf_config, workdir)
    return {
        "herald": (herald, Peer("herald", herald.ws_url, herald.api_url, secret, api_key, jwks=jwks)),
        "centrifugo": (centrifugo, Peer("centrifugo", centrifugo.ws_url, centrifugo.api_url, secret, api_key, jwks=jwks)),
    }


def stop_pair(pair) -> None:
    herald, centrifugo = pair["herald"][0], pair["centrifugo"][0]
    centrifugo.stop()
    assert herald.stop() == 0, herald.log_text()


@pytest.fixture(scope="module")
def jwks_peers(tmp_path_factory, node_bin, jwks_url):
    """Herald and Centrifugo that check tokens with the JWKS only (no HMAC secret)."""
    api_key = secrets.token_urlsafe(24)
    token_env = {"HERALD_TOKEN_HMAC_SECRET": None, "HERALD_TOKEN_JWKS_URL": jwks_url}
    # The secret only signs the HS256 token the JWKS servers must refuse.
    unused = secrets.token_hex(16)
    workdir = tmp_path_factory.mktemp("differential-jwks")
    pair = start_pair(workdir, node_bin, api_key, token_env, centrifugo_config("", api_key, jwks_url), unused, True)
    yield pair
    stop_pair(pair)


@pytest.fixture(scope="module")
def peers(tmp_path_factory, node_bin):
    secret = secrets.token_hex(16)
    api_key = secrets.token_urlsafe(24)
    token_env = {"HERALD_TOKEN_HMAC_SECRET": secret}
    workdir = tmp_path_factory.mktemp("differential")
    pair = start_pair(workdir, node_bin, api_key, token_env, centrifugo_config(secret, api_key), secret, False)
    yield pair
    stop_pair(pair)


async def run(script_fn, peer: Peer) -> Transcript:
    t = Transcript(peer.name)
    try:
        await script_fn(peer, t)
    finally:
        await t.close()
    return t


CASES = [pytest.param(name, "hmac", id=name) for name in SCRIPTS if name not in JWKS_ONLY] + [
    pytest.param(name, "jwks", id=f"jwks-{name}") for name in JWKS_SCRIPTS + JWKS_ONLY
]


@pytest.mark.parametrize("encoding", ["json"])
@pytest.mark.parametrize("name,auth", CASES)
async def test_same_answers_as_centrifugo(request, name, auth, encoding):
    fn = SCRIPTS[name]
    pair = request.getfixturevalue("jwks_peers" if auth == "jwks" else "peers")
    h_peer = pair["herald"][1]
    c_peer = pair["centrifugo"][1]
    h_peer.encoding = c_peer.encoding = encoding
    # One after the other, so both see the same sequence; channel names differ per script.
    h = normalise(await run(fn, h_peer))
    c = normalise(await run(fn, c_peer))
    found = {(name, step, path): (hv, cv) for step, path, hv, cv in compare(h, c)}
    new = {}
    for k, v in found.items():
        entry = known_entry(k)
        if entry is None:
            new[k] = v
        else:
            MATCHED.add(entry)
    # Entries naming this script exactly must still be found here.
    gone = [
        k
        for k in KNOWN_DIFFERENCES
        if k[0] == name and not any(fnmatch.fnmatchcase(f[1], k[1]) and fnmatch.fnmatchcase(f[2], k[2]) for f in found)
    ]
    report = "\n".join(f"  {k[1]!r} {k[2]!r}: herald={v[0]!r} centrifugo={v[1]!r}" for k, v in new.items())
    assert not new, (
        f"{len(new)} new difference(s) from Centrifugo in {name}:\n{report}\n"
        f"herald: {json.dumps(h, indent=1)[:6000]}\ncentrifugo: {json.dumps(c, indent=1)[:6000]}"
    )
    assert not gone, f"listed differences no longer found (fixed? remove them): {gone}"


def known_entry(k: tuple[str, str, str]):
    for entry in KNOWN_DIFFERENCES:
        if all(fnmatch.fnmatchcase(part, pat) for part, pat in zip(k, entry)):
            return entry
    return None


# Known entries matched by some difference in this run (the wildcard ones are checked
# after every script ran).
MATCHED: set[tuple[str, str, str]] = set()


def test_every_known_difference_was_seen():
    """Runs after the scripts (pytest keeps file order): a listed difference that no
    script shows any more is stale."""
    if len(MATCHED) == 0:
        pytest.skip("no differential script ran in this session")
    stale = [k for k in KNOWN_DIFFERENCES if k not in MATCHED]
    assert not stale, f"listed differences no longer found (fixed? remove them): {stale}"


def test_known_differences_are_in_the_readme():
    listed = readme_differences()
    used = set(KNOWN_DIFFERENCES.values())
    assert used <= listed, f"known differences missing from README: {sorted(used - listed)}"
    assert listed <= used, f"README lists differences the test does not know: {sorted(listed - used)}"
