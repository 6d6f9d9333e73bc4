"""A loopback proxy in front of the embedded broker that adds TLS and SASL.

The embedded broker cannot serve either for these tests: its `--cert` and
`--key` flags exclude each other, so TLS cannot be turned on, and with
`--authentication` it offers only SCRAM, with users that can be created only
by an authenticated client (none exists yet on an empty in-memory broker).
The proxy terminates what the broker cannot: TLS with the test's own CA, and
SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for the users it is given. Before
a client has authenticated it forwards only ApiVersions; any other request
closes the connection, as a broker requiring authentication does. After
that it pipes bytes both ways. The broker advertises the proxy's address, so
every connection a client makes goes through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import ssl
import struct
from dataclasses import dataclass, field

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
ITERATIONS = 4096


@dataclass
class KafkaProxy:
    """Listens on `port`, forwards to the broker at `upstream_port`."""

    port: int
    upstream_port: int
    tls: ssl.SSLContext | None = None
    users: dict[str, str] = field(default_factory=dict)  # SASL users; empty: no SASL
    authenticated: int = 0  # connections that passed SASL
    refused: int = 0  # connections closed for a bad login or a request before one
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        """Accept connections."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
            if self.users and not await self._authenticate(
                reader, writer, up_reader, upstream_writer
            ):
                self.refused += 1
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> bool:
        mechanism = None
        scram: _Scram | None = None
        while True:
            frame = await _frame(reader)
            api_key, api_version, correlation = struct.unpack(">hhi", frame[:8])
            if api_key == API_VERSIONS:
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                answer = await _frame(up_reader)
                writer.write(struct.pack(">i", len(answer)) + answer)
                await writer.drain()
                continue
            body = _after_header(frame)
            if api_key == SASL_HANDSHAKE:
                mechanism = _string(body)[0]
                offered = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
                error = 0 if mechanism in offered else 33  # UNSUPPORTED_SASL_MECHANISM
                mechanisms = b"".join(_str(m) for m in offered)
                _answer(writer, correlation, struct.pack(">hi", error, len(offered)) + mechanisms)
                await writer.drain()
                if error:
                    return False
                continue
            if api_key != SASL_AUTHENTICATE or mechanism is None:
                return False  # anything else before a login: as a broker does, hang up
            (size,) = struct.unpack(">i", body[:4])
            token = body[4 : 4 + size]
            if mechanism == "PLAIN":
                _, user, password = token.split(b"\0", 2)
                ok = self.users.get(user.decode()) == password.decode()
                reply, done = b"", True
            else:
                if scram is None:
                    scram = _Scram(mechanism, self.users)
                ok, reply, done = scram.step(token)
            error = 0 if ok else 58  # SASL_AUTHENTICATION_FAILED
            message = _nullable(None if ok else "authentication failed")
            payload = struct.pack(">h", error) + message + struct.pack(">i", len(reply)) + reply
            if api_version >= 1:
                payload += struct.pack(">q", 0)  # session lifetime: none
            _answer(writer, correlation, payload)
            await writer.drain()
            if not ok:
                return False
            if done:
                self.authenticated += 1
                return True


class _Scram:
    """The server side of RFC 5802 for one connection."""

    def __init__(self, mechanism: str, users: dict[str, str]) -> None:
        self._hash = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
        self._users = users
        self._auth_message = ""
        self._salted: bytes | None = None
        self._nonce = ""

    def step(self, token: bytes) -> tuple[bool, bytes, bool]:
        text = token.decode()
        if self._salted is None:
            bare = text.split(",", 2)[2]
            fields = dict(p.split("=", 1) for p in bare.split(","))
            password = self._users.get(fields["n"])
            if password is None:
                return False, b"", True
            salt = os.urandom(16)
            self._nonce = fields["r"] + base64.b64encode(os.urandom(12)).decode()
            first = f"r={self._nonce},s={base64.b64encode(salt).decode()},i={ITERATIONS}"
            self._salted = hashlib.pbkdf2_hmac(
                self._hash().name, password.encode(), salt, ITERATIONS
            )
            self._auth_message = f"{bare},{first}"
            return True, first.encode(), False
        without_proof, _, proof_part = text.rpartition(",p=")
        fields = dict(p.split("=", 1) for p in without_proof.split(","))
        if fields.get("r") != self._nonce:
            return False, b"", True
        message = f"{self._auth_message},{without_proof}".encode()
        client_key = hmac.new(self._salted, b"Client Key", self._hash).digest()
        stored_key = self._hash(client_key).digest()
        signature = hmac.new(stored_key, message, self._hash).digest()
        proof = base64.b64decode(proof_part)
        recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if self._hash(recovered).digest() != stored_key:
            return False, b"", True
        server_key = hmac.new(self._salted, b"Server Key", self._hash).digest()
        verifier = base64.b64encode(hmac.new(server_key, message, self._hash).digest())
        return True, b"v=" + verifier, True


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.close()


async def _frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _after_header(frame: bytes) -> bytes:
    """A v1 request header is api key, version, correlation id and a nullable client id."""
    (client_id_length,) = struct.unpack(">h", frame[8:10])
    return frame[10 + max(client_id_length, 0) :]


def _string(data: bytes) -> tuple[str, bytes]:
    (length,) = struct.unpack(">h", data[:2])
    return data[2 : 2 + length].decode(), data[2 + length :]


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _nullable(text: str | None) -> bytes:
    return struct.pack(">h", -1) if text is None else _str(text)


def _answer(writer: asyncio.StreamWriter, correlation: int, payload: bytes) -> None:
    body = struct.pack(">i", correlation) + payload
    writer.write(struct.pack(">i", len(body)) + body)
