"""The robot server's wire format: a JSON header plus raw bytes, never pickle.

Each message is ``>II`` (header length, payload length), a UTF-8 JSON header and a
payload of raw bytes (the camera image, uint8, shape in the header). Decoding a
message can only produce dicts, lists, numbers, strings and a numpy array of a
declared shape, so a malicious peer cannot make the other side run code. Sizes are
bounded before anything is read, so it cannot exhaust memory either.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import numpy as np

PROTOCOL = 1
_PREFIX = struct.Struct(">II")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 64 << 20


class WireError(ConnectionError):
    """The peer sent something that is not a message of this protocol, or the connection closed."""


def send_message(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    body = json.dumps(header, separators=(",", ":")).encode()
    sock.sendall(_PREFIX.pack(len(body), len(payload)) + body + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise WireError("connection closed by the peer")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket, max_header: int = MAX_HEADER, max_payload: int = MAX_PAYLOAD) -> tuple[dict[str, Any], bytes]:
    header_len, payload_len = _PREFIX.unpack(_recv_exact(sock, _PREFIX.size))
    if header_len > max_header or payload_len > max_payload:
        raise WireError(f"message too large ({header_len} header bytes, {payload_len} payload bytes)")
    try:
        header = json.loads(_recv_exact(sock, header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"message header is not JSON: {err}") from err
    if not isinstance(header, dict):
        raise WireError("message header is not a JSON object")
    return header, _recv_exact(sock, payload_len) if payload_len else b""


def encode_observation(obs: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    image = np.ascontiguousarray(obs["image"], dtype=np.uint8)
    header: dict[str, Any] = {
        "image_shape": list(image.shape),
        "proprio": np.asarray(obs["proprio"], dtype=np.float64).tolist(),
        "timestamp": float(obs["timestamp"]),
    }
    if "state" in obs:
        header["state"] = np.asarray(obs["state"], dtype=np.float64).ravel().tolist()
    if "success" in obs:
        header["success"] = bool(obs["success"])
    return header, image.tobytes()


def decode_observation(header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    shape = tuple(int(x) for x in header["image_shape"])
    if len(shape) != 3 or int(np.prod(shape)) != len(payload):
        raise WireError(f"image of shape {shape} does not match its {len(payload)} payload bytes")
    obs: dict[str, Any] = {
        "image": np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy(),
        "proprio": np.asarray(header["proprio"], dtype=np.float32),
        "timestamp": float(header["timestamp"]),
    }
    if "state" in header:
        obs["state"] = np.asarray(header["state"], dtype=np.float64)
    if "success" in header:
        obs["success"] = bool(header["success"])
    return obs
