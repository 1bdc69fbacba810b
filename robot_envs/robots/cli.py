"""``vgmps robot serve``: run the robot server on the arm's computer.

    VGMPS_ROBOT_TOKEN=$(cat ~/.vgmps_token) vgmps robot serve --robot mypkg.arm:MyArm --kwargs '{"port": "/dev/ttyUSB0"}'

Binds to 127.0.0.1 unless ``--host`` names another address *and* ``--allow-remote`` is given.
Prints ``listening on HOST:PORT`` once ready (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from robot_envs.robots import make_robot
from robot_envs.robots.remote import TOKEN_ENV, RobotServer


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vgmps robot", description="serve a robot to `vgmps deploy robot=socket`")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the robot server (on the arm's computer)")
    s.add_argument("--robot", default="sim", help="sim, lerobot or module:Class of your Robot")
    s.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments for the robot")
    s.add_argument("--host", default="127.0.0.1", help="address to bind; non-loopback needs --allow-remote")
    s.add_argument("--port", type=int, default=5555)
    s.add_argument("--allow-remote", action="store_true", help="permit a non-loopback --host (token required)")
    s.add_argument("--token-file", help=f"file holding the shared token (default: ${TOKEN_ENV})")
    s.add_argument("--watchdog", type=float, default=0.5, help="hold the arm after this many seconds without a command")
    return p


def robot_main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get(TOKEN_ENV, "")
    try:
        kwargs = json.loads(args.kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("--kwargs must be a JSON object")
        robot = make_robot(args.robot, **kwargs)
        server = RobotServer(robot, token, args.host, args.port, args.allow_remote, args.watchdog)
    except (ValueError, json.JSONDecodeError) as err:
        print(f"vgmps robot serve: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    print(f"listening on {server.address[0]}:{server.address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(robot_main(sys.argv[1:]))
