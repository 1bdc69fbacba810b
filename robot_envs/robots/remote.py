"""A robot over a socket: ``RobotServer`` runs next to the arm's driver, ``SocketRobot`` is its client.

The server is what a driver on the arm's own computer looks like: it owns a ``Robot``
and answers one controlling client at a time. Security:

* it binds to loopback (127.0.0.1) unless ``allow_remote=True`` is passed explicitly;
* every connection must prove it knows the shared token before any command reaches
  the arm: the server sends a random nonce, the client answers HMAC-SHA256(token, nonce),
  compared with ``hmac.compare_digest`` (the token itself never crosses the network);
* messages are JSON headers plus raw image bytes (``robot_envs.robots.wire``), never pickle.

Safety on the arm's side: the server holds the arm when its client goes away, and when
no command arrives within ``watchdog_s`` during an episode (a stalled or killed policy
process cannot leave the arm moving).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import socket
import threading
import time
from hashlib import sha256
from typing import Any

import numpy as np

from robot_envs.robots.base import CameraFault, Observation, Robot, RobotFault, reset_robot
from robot_envs.robots.wire import PROTOCOL, WireError, decode_observation, encode_observation, recv_message, send_message

log = logging.getLogger("robot_envs.robots")
TOKEN_ENV = "VGMPS_ROBOT_TOKEN"
AUTH_HEADER_LIMIT = 4096  # an unauthenticated peer may send no more than this


class AuthenticationError(RobotFault):
    """The robot server refused this client's token."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen_address(host: str, token: str, allow_remote: bool) -> None:
    """Refuse a listener that would expose the arm: non-loopback needs the explicit flag and a token."""
    if not token:
        raise ValueError(f"the robot server needs a shared token: set {TOKEN_ENV} or pass --token-file")
    if not is_loopback(host) and not allow_remote:
        raise ValueError(f"refusing to listen on {host}: the arm would be reachable from the network. "
                         "Pass --allow-remote (and share the token only with the deploy machine) to do so")
    if not is_loopback(host) and len(token) < 16:
        raise ValueError("a token for a non-loopback listener must be at least 16 characters; "
                         "generate one with: python -c 'import secrets; print(secrets.token_hex(16))'")


def _mac(token: str, nonce: str) -> str:
    return hmac.new(token.encode(), nonce.encode(), sha256).hexdigest()


class RobotServer:
    """Serves ``robot`` on ``host:port`` (port 0: any free port; see ``address`` after ``start``)."""

    def __init__(self, robot: Robot, token: str, host: str = "127.0.0.1", port: int = 0,
                 allow_remote: bool = False, watchdog_s: float = 0.5) -> None:
        check_listen_address(host, token, allow_remote)
        self.robot, self.token, self.watchdog_s = robot, token, float(watchdog_s)
        self._listener = socket.create_server((host, port))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._lock = threading.Lock()  # one robot call at a time (handler and watchdog threads)
        self._moving = False  # an action was sent and no hold/reset since
        self._last_command = time.monotonic()
        self._control = threading.Lock()  # held by the one client that controls the arm
        self._stop = threading.Event()
        self.refused = 0  # clients refused for a wrong token (tests)
        self.watchdog_holds = 0

    def serve_forever(self) -> None:
        threading.Thread(target=self._watchdog, daemon=True).start()
        log.info("robot server for %s listening on %s:%d", self.robot.name, *self.address)
        while not self._stop.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                break
            threading.Thread(target=self._serve_client, args=(conn, peer), daemon=True).start()

    def start(self) -> "RobotServer":
        """Serve in a background thread (tests, notebooks)."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            if self.robot.is_connected:
                self.robot.hold()
                self.robot.disconnect()

    def _hold(self, why: str) -> None:
        with self._lock:
            if self._moving and self.robot.is_connected:
                self.robot.hold()
                log.warning("arm held: %s", why)
            self._moving = False

    def _watchdog(self) -> None:
        while not self._stop.wait(self.watchdog_s / 5):
            if self._moving and time.monotonic() - self._last_command > self.watchdog_s:
                self.watchdog_holds += 1
                self._hold(f"no command for {self.watchdog_s:.2f} s (server watchdog)")

    def _authenticate(self, conn: socket.socket) -> bool:
        nonce = secrets.token_hex(16)
        send_message(conn, {"op": "challenge", "nonce": nonce, "protocol": PROTOCOL})
        header, _ = recv_message(conn, max_header=AUTH_HEADER_LIMIT, max_payload=0)
        if hmac.compare_digest(str(header.get("mac", "")), _mac(self.token, nonce)):
            return True
        self.refused += 1
        send_message(conn, {"ok": False, "error": "authentication failed: wrong token"})
        return False

    def _serve_client(self, conn: socket.socket, peer: Any) -> None:
        controlling = False
        with conn:
            try:
                conn.settimeout(5.0)
                if not self._authenticate(conn):
                    log.warning("refused client %s: wrong token", peer)
                    return
                if not self._control.acquire(blocking=False):
                    send_message(conn, {"ok": False, "error": "another client controls this arm"})
                    return
                controlling = True
                send_message(conn, {"ok": True, "robot": self.robot.name})
                conn.settimeout(None)
                while True:
                    header, payload = recv_message(conn)
                    self._last_command = time.monotonic()
                    reply, data = self._handle(header)
                    send_message(conn, reply, data)
                    if header.get("op") == "disconnect":
                        return
            except (WireError, OSError) as err:
                log.info("client %s gone (%s)", peer, err)
            finally:
                if controlling:
                    self._control.release()
                    self._hold("the controlling client disconnected")

    def _handle(self, header: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        op = header.get("op")
        try:
            with self._lock:
                if op == "features":
                    return {"ok": True, "observation_features": _lists(self.robot.observation_features),
                            "action_features": _lists(self.robot.action_features), "describe": self.robot.describe()}, b""
                if op == "connect":
                    if not self.robot.is_connected:
                        self.robot.connect(calibrate=bool(header.get("calibrate", True)))
                    return {"ok": True}, b""
                if op in ("get_observation", "reset"):
                    obs = reset_robot(self.robot, header.get("seed")) if op == "reset" else self.robot.get_observation()
                    self._moving = False if op == "reset" else self._moving
                    head, data = encode_observation(obs)
                    return {"ok": True, **head}, data
                if op == "send_action":
                    sent = self.robot.send_action(np.asarray(header["action"], dtype=np.float32))
                    self._moving = True
                    return {"ok": True, "sent": np.asarray(sent, dtype=np.float64).tolist()}, b""
                if op == "hold":
                    self.robot.hold()
                    self._moving = False
                    return {"ok": True}, b""
                if op == "set_task":
                    self.robot.set_task(header["task"])
                    return {"ok": True}, b""
                if op == "disconnect":
                    self.robot.hold()
                    self._moving = False
                    return {"ok": True}, b""
            return {"ok": False, "error": f"unknown op {op!r}"}, b""
        except CameraFault as err:
            return {"ok": False, "fault": "camera", "error": str(err)}, b""
        except (RobotFault, ValueError, KeyError, TypeError) as err:
            return {"ok": False, "fault": "robot", "error": f"{type(err).__name__}: {err}"}, b""


def _lists(features: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in features.items()}


class SocketRobot(Robot):
    """Client of a ``RobotServer``; every failure of the link becomes a ``RobotFault`` saying what to do."""

    name = "socket"

    def __init__(self, host: str = "127.0.0.1", port: int = 5555, token: str | None = None,
                 token_env: str = TOKEN_ENV, timeout_s: float = 2.0, reset_timeout_s: float = 60.0) -> None:
        self.host, self.port, self.timeout_s = host, int(port), float(timeout_s)
        self.reset_timeout_s = float(reset_timeout_s)  # homing and connecting take seconds on a real arm
        self.token = token if token is not None else os.environ.get(token_env, "")
        if not self.token:
            raise ValueError(f"SocketRobot needs the server's token: set {token_env} or pass token=")
        self._sock: socket.socket | None = None
        self._features: dict[str, Any] | None = None

    @property
    def where(self) -> str:
        return f"robot server at {self.host}:{self.port}"

    def _open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as err:
            raise RobotFault(f"cannot reach the {self.where} ({err}); start it on the arm's computer with "
                             "`vgmps robot serve ...` and check host/port") from err
        try:
            challenge, _ = recv_message(sock)
            send_message(sock, {"op": "auth", "mac": _mac(self.token, str(challenge.get("nonce", "")))})
            answer, _ = recv_message(sock)
        except (WireError, OSError) as err:
            sock.close()
            raise RobotFault(f"the {self.where} closed the connection during the handshake ({err})") from err
        if not answer.get("ok"):
            sock.close()
            error = answer.get("error", "refused")
            if "token" in error:
                raise AuthenticationError(f"the {self.where} refused this client: {error}. Use the token the server "
                                          f"was started with ({TOKEN_ENV} on both machines); no command was sent")
            raise RobotFault(f"the {self.where} refused this client: {error}")
        self._sock = sock

    def _call(self, op: str, timeout_s: float | None = None, **fields: Any) -> tuple[dict[str, Any], bytes]:
        if self._sock is None:
            self._open()
        assert self._sock is not None
        timeout_s = timeout_s or self.timeout_s
        try:
            self._sock.settimeout(timeout_s)
            send_message(self._sock, {"op": op, **fields})
            reply, payload = recv_message(self._sock)
        except socket.timeout as err:
            self._drop()
            raise RobotFault(f"the {self.where} did not answer {op!r} within {timeout_s:.1f} s; check the arm's "
                             "computer, then rerun the same command to resume") from err
        except (WireError, OSError) as err:
            self._drop()
            raise RobotFault(f"lost the connection to the {self.where} during {op!r} ({err}): the server stopped or "
                             "crashed. Restart it on the arm's computer, then rerun the same command to resume") from err
        if not reply.get("ok"):
            kind = CameraFault if reply.get("fault") == "camera" else RobotFault
            raise kind(f"{self.where}: {reply.get('error', 'unknown error')}")
        return reply, payload

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def _feature_info(self) -> dict[str, Any]:
        if self._features is None:
            self._features, _ = self._call("features")
        return self._features

    @property
    def observation_features(self) -> dict[str, Any]:
        return {k: tuple(v) for k, v in self._feature_info()["observation_features"].items()}

    @property
    def action_features(self) -> dict[str, Any]:
        return {k: tuple(v) for k, v in self._feature_info()["action_features"].items()}

    @property
    def is_connected(self) -> bool:
        return self._sock is not None

    def connect(self, calibrate: bool = True) -> None:
        self._call("connect", timeout_s=self.reset_timeout_s, calibrate=calibrate)

    def disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._call("disconnect")
            except RobotFault:
                pass
            self._drop()

    def get_observation(self) -> Observation:
        return decode_observation(*self._call("get_observation"))

    def reset(self, seed: int | None = None) -> Observation:
        """``seed`` reaches a simulated robot behind the server; a real arm ignores it."""
        return decode_observation(*self._call("reset", timeout_s=self.reset_timeout_s, seed=seed))

    def send_action(self, action: np.ndarray) -> np.ndarray:
        reply, _ = self._call("send_action", action=np.asarray(action, dtype=np.float64).ravel().tolist())
        return np.asarray(reply["sent"], dtype=np.float32)

    def hold(self) -> None:
        self._call("hold")

    def set_task(self, task: Any) -> None:
        self._call("set_task", task=task.to_json() if hasattr(task, "to_json") else task)

    def describe(self) -> dict[str, Any]:
        return {**self._feature_info()["describe"], "via": f"socket {self.host}:{self.port}"}
