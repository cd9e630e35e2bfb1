"""A JWKS endpoint owned by the tests: an aiohttp server publishing public keys made
here with `cryptography`, over http:// or (with a certificate authority the test makes
for the occasion) https://, and tokens signed with the private halves (PyJWT, `kid` in
the header). Used by `test_jwks.py` and `test_differential_jwks.py`."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from harness import serve_app

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC384_KEY = ec.generate_private_key(ec.SECP384R1())


def jwk(private_key, kid: str) -> dict:
    algo = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    k = algo.to_jwk(private_key.public_key(), as_dict=True)
    k.update(kid=kid, use="sig")
    return k


def token(private_key, alg: str, kid: str | None, sub: str = "alice", exp_in: float = 3600, **claims) -> str:
    payload = {"sub": sub, "exp": int(time.time() + exp_in), **claims}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, private_key, algorithm=alg, headers=headers)


def make_tls(workdir: Path) -> tuple[ssl.SSLContext, Path]:
    """A certificate authority made for this test and a server certificate it signed
    for 127.0.0.1: the server's TLS context, and the CA's PEM file for the client."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herald test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = workdir / "jwks-ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file = workdir / "jwks-cert.pem"
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file = workdir / "jwks-key.pem"
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx, ca_file


class JwksServer:
    """Serves `keys` at /jwks, or `status`/`body` when set; counts the requests.
    With `tls` (a server context) it serves https://."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.keys: list[dict] = []
        self.status = 200
        self.body: bytes | None = None
        self.requests = 0
        self.url = ""
        self.tls = tls
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> "JwksServer":
        app = web.Application()
        app.router.add_get("/jwks", self._handle)
        self._runner, self.port = await serve_app(app, self.port, self.tls)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/jwks"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.status != 200:
            return web.Response(status=self.status, text="nope")
        if self.body is not None:
            return web.Response(body=self.body, content_type="application/json")
        return web.json_response({"keys": self.keys})


def standard_keys() -> list[dict]:
    return [jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1"), jwk(EC384_KEY, "ec384-1")]


@contextlib.contextmanager
def static_jwks(keys: list[dict]):
    """Serves `{"keys": keys}` at /jwks from a thread, for as long as the block runs;
    yields its URL. For module-scoped fixtures, which have no event loop to run a
    [`JwksServer`] on (the suite's loop scope is per test)."""
    body = json.dumps({"keys": keys}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    finally:
        server.shutdown()
        server.server_close()
