"""Round-trip cost of the robot server: one control step (send_action + get_observation) over loopback.

Serves a simulated ``point`` robot with a 64x64 or 128x128 camera from a separate process
(``vgmps robot serve``) and times steps from the client, against the same robot in-process,
so the difference is the wire (JSON header + raw image bytes) and the process hop.

    OMP_NUM_THREADS=1 python benchmarks/socket_latency.py [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from robot_envs.robots.remote import SocketRobot
from robot_envs.robots.sim import SimRobot

TOKEN = "benchmark-token-0123456789"


def time_steps(robot, steps: int) -> np.ndarray:
    robot.connect()
    action = np.zeros(2, np.float32)
    out = []
    for k in range(steps + 20):
        if k % 20 == 0:
            robot.reset()
        t0 = time.perf_counter()
        robot.send_action(action)
        robot.get_observation()
        if k >= 20:
            out.append(1000 * (time.perf_counter() - t0))
    robot.disconnect()
    return np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    print("| camera | path | p50 (ms) | p99 (ms) | budget at 20 Hz |")
    print("|---|---|---:|---:|---:|")
    for size in (64, 128):
        kwargs = {"family": "point", "family_kwargs": {"image_size": [size, size], "horizon": 20}}
        local = time_steps(SimRobot(**kwargs), args.steps)
        env = {**os.environ, "VGMPS_ROBOT_TOKEN": TOKEN, "PYTHONPATH": str(root)}
        proc = subprocess.Popen([sys.executable, "-m", "robot_envs.robots.cli", "serve", "--port", "0", "--watchdog", "5",
                                 "--kwargs", json.dumps(kwargs)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        port = int(proc.stdout.readline().strip().rsplit(":", 1)[1])
        try:
            remote = time_steps(SocketRobot("127.0.0.1", port, token=TOKEN, timeout_s=10), args.steps)
        finally:
            proc.kill()
        for name, t in (("in-process SimRobot", local), ("SocketRobot -> robot server", remote)):
            print(f"| {size}x{size} | {name} | {np.percentile(t, 50):.3f} | {np.percentile(t, 99):.3f} | 50 ms |")


if __name__ == "__main__":
    main()
