"""Envs in worker processes, observations in shared memory, the policy in the learner's process.

``SharedMemoryVectorEnv`` has the part of gymnasium's ``VectorEnv`` interface the
``Sampler`` uses (``set_attr("task", ...)``, ``reset(seed=[...])``, ``step(actions)``,
``single_observation_space``/``single_action_space``, ``close``). Its ``num_envs`` envs are
split over ``workers`` processes; every control step the learner writes the [num_envs, A]
actions into shared memory, each worker steps its slice of envs and writes observations,
rewards and infos into shared arrays, and the learner copies them out. Only a few-byte
command crosses each pipe per step: images are never pickled (gymnasium's
``AsyncVectorEnv`` runs one process per env and pickles every info dict, which measured
slower than one process on this project's 2-core machine).

Because the policy is called once per control step on all ``num_envs`` envs, in the
learner, episodes are identical to the in-process ``sync`` backend for the same seeds,
whatever the worker count.

Workers are started with ``spawn``: a forked child would inherit the learner's torch
threads and any GL context, which MuJoCo's EGL/OSMesa contexts do not survive. Every wait
has a timeout, and a worker that dies, hangs or raises stops the sampler with an error
naming the worker (never a hang).

Why hand-written rather than gymnasium's ``AsyncVectorEnv(shared_memory=True)``: that
shares only observations, runs exactly one env per process (each robosuite env needs
~200-300 MB and its own interpreter) and still pickles infos through pipes.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
import time
import traceback
from collections.abc import Iterator
from multiprocessing import connection, shared_memory
from typing import Any

import numpy as np

from robot_envs import TaskFamily
from vision_gmps.sampling.env_group import Arrays, EnvGroup, SplitVectorEnv

Leaf = tuple[str, ...]  # path of an array in the nested obs/info dicts, e.g. ("info", "state", "eef_pos")


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """Start spawned workers without re-importing the parent's ``__main__``.

    ``spawn`` re-imports the parent's main module in every child; under ``vgmps`` or
    ``python -m vision_gmps.cli`` that imports torch, about +300 MB anonymous memory per
    worker (measured), which a worker that only steps envs never uses. With ``__spec__``
    and ``__file__`` hidden while ``Process.start`` records what the child must import,
    the child imports only ``worker_main``'s module.
    """
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__dict__["__spec__"] = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.update(saved)


class SamplerWorkerError(RuntimeError):
    """A sampler worker died, hung or raised; the message names it and what it was doing."""


def _leaves(tree: Arrays, prefix: Leaf = ()) -> dict[Leaf, np.ndarray]:
    out: dict[Leaf, np.ndarray] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = np.asarray(value)
    return out


def _tree(leaves: dict[Leaf, np.ndarray], root: str) -> Arrays:
    """Rebuild the nested dict under ``root`` from leaf paths, copying out of shared memory."""
    out: Arrays = {}
    for path, array in leaves.items():
        if path[0] != root:
            continue
        node = out
        for key in path[1:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = array.copy()
    return out


def _spec(obs: Arrays, info: Arrays) -> dict[Leaf, tuple[tuple[int, ...], str]]:
    """Per-env shape and dtype of every array a step produces (rewards and actions added by the learner)."""
    leaves = {**_leaves({"obs": obs}), **_leaves({"info": info})}
    return {path: (a.shape[1:], a.dtype.str) for path, a in leaves.items()}


def _write(views: dict[Leaf, np.ndarray], tree: Arrays, root: str) -> None:
    for path, value in _leaves({root: tree}).items():
        if path not in views:
            raise KeyError(f"env returned {'/'.join(path[1:])!r}, which its first reset did not; infos must keep their keys")
        views[path][...] = value


def worker_main(conn: connection.Connection, family: TaskFamily, num_envs: int) -> None:
    """Worker loop: build the envs, describe one step's arrays, then serve reset/step commands."""
    views: dict[Leaf, np.ndarray] = {}
    blocks: list[shared_memory.SharedMemory] = []
    group = None
    try:
        group = EnvGroup(family, num_envs)
        probe_obs, probe_info = group.reset([env.get_wrapper_attr("task") for env in group.envs], [0] * num_envs)
        conn.send(("spec", group.observation_space, group.action_space, _spec(probe_obs, probe_info)))
        while True:
            command, *args = conn.recv()
            if command == "attach":
                layout, start, stop = args
                for path, (name, shape, dtype) in layout.items():
                    block = shared_memory.SharedMemory(name=name)
                    blocks.append(block)
                    views[path] = np.ndarray(shape, np.dtype(dtype), buffer=block.buf)[start:stop]
            elif command == "reset":
                tasks, seeds = args
                obs, info = group.reset(tasks, seeds)
                _write(views, obs, "obs")
                _write(views, info, "info")
            elif command == "step":
                obs, rewards, info = group.step(views[("actions",)])
                _write(views, obs, "obs")
                _write(views, info, "info")
                views[("rewards",)][...] = rewards
            elif command == "close":
                break
            else:
                raise ValueError(f"unknown worker command {command!r}")
            conn.send(("ok",))
    except (EOFError, KeyboardInterrupt):
        pass  # the learner went away: nothing to report to
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        views.clear()
        for block in blocks:
            block.close()
        if group is not None:
            group.close()


class SharedMemoryVectorEnv(SplitVectorEnv):
    """``num_envs`` envs over ``workers`` spawned processes; see the module docstring."""

    def __init__(
        self, family: TaskFamily, num_envs: int, workers: int = 2, timeout_s: float = 120.0, start_timeout_s: float = 600.0
    ) -> None:
        super().__init__(num_envs, workers)
        if timeout_s <= 0 or start_timeout_s <= 0:
            raise ValueError(f"sampler timeouts must be > 0, got {timeout_s} and {start_timeout_s}")
        self.timeout_s = float(timeout_s)
        self._blocks: list[shared_memory.SharedMemory] = []
        self._procs: list[mp.Process] = []
        self._conns: list[connection.Connection] = []
        ctx = mp.get_context("spawn")
        try:
            for start, stop in self._bounds:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=worker_main, args=(child, family, stop - start), daemon=True,
                                   name=f"vgmps-sampler-{len(self._procs)}")
                with main_module_hidden():
                    proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
            replies = self._wait_all("building its envs", float(start_timeout_s))
            _, self.single_observation_space, self.single_action_space, spec = replies[0]
            spec[("rewards",)] = ((), "<f8")
            spec[("actions",)] = (self.single_action_space.shape, np.dtype(self.single_action_space.dtype).str)
            layout = {}
            self._views: dict[Leaf, np.ndarray] = {}
            for path, (shape, dtype) in spec.items():
                full = (num_envs, *shape)
                block = shared_memory.SharedMemory(create=True, size=max(1, int(np.prod(full)) * np.dtype(dtype).itemsize))
                self._blocks.append(block)
                layout[path] = (block.name, full, dtype)
                self._views[path] = np.ndarray(full, np.dtype(dtype), buffer=block.buf)
            for conn, (start, stop) in zip(self._conns, self._bounds):
                conn.send(("attach", layout, start, stop))
            self._wait_all("attaching shared memory", self.timeout_s)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ waiting
    def _wait_all(self, what: str, timeout: float) -> list[tuple]:
        """One reply from every worker within ``timeout`` seconds, else a ``SamplerWorkerError`` (workers stopped)."""
        replies: dict[int, tuple] = {}
        pending = dict(enumerate(self._conns))
        deadline = _now() + timeout
        while pending:
            remaining = deadline - _now()
            if remaining <= 0:
                self._fail(f"sampler worker(s) {sorted(pending)} did not finish {what} within {timeout:.0f} s "
                           "(hung, or envs slower than sampler.timeout_s allows: raise it)")
            sentinels = {self._procs[i].sentinel: i for i in pending}
            ready = connection.wait([*pending.values(), *sentinels], timeout=remaining)
            for obj in ready:
                i = next((k for k, c in pending.items() if c is obj), None)
                if i is None:  # a process sentinel: read a last message if the worker left one
                    i = sentinels[obj]
                    if i not in pending or pending[i].poll():
                        continue
                    self._died(i, what)
                try:
                    reply = pending[i].recv()
                except (EOFError, OSError):  # its pipe closed: it died (the sentinel may not have fired yet)
                    self._died(i, what)
                if reply[0] == "error":
                    self._fail(f"sampler worker {i} raised while {what}:\n{reply[1]}")
                replies[i] = reply
                del pending[i]
        return [replies[i] for i in range(len(self._conns))]

    def _died(self, i: int, what: str) -> None:
        self._procs[i].join(timeout=5.0)  # reap it, so its exit code is known
        self._fail(f"sampler worker {i} (pid {self._procs[i].pid}) exited with code {self._procs[i].exitcode} "
                   f"while {what} (killed? out of memory?)")

    def _fail(self, message: str) -> None:
        self.close(kill=True)
        raise SamplerWorkerError(message)

    def _send_all(self, messages: list[tuple], what: str) -> None:
        for i, (conn, message) in enumerate(zip(self._conns, messages)):
            try:
                conn.send(message)
            except (BrokenPipeError, OSError):
                self._died(i, f"sending {what}")

    # ------------------------------------------------------------------ VectorEnv subset
    def reset(self, seed: list[int]) -> tuple[Arrays, Arrays]:
        seeds = self._reset_seeds(seed)
        self._send_all([("reset", self._tasks[a:b], seeds[a:b]) for a, b in self._bounds], "reset")
        self._wait_all("reset", self.timeout_s)
        return _tree(self._views, "obs"), _tree(self._views, "info")

    def step(self, actions: np.ndarray):
        self._views[("actions",)][...] = actions
        self._send_all([("step",)] * len(self._conns), "step")
        self._wait_all("step", self.timeout_s)
        done = np.zeros(self.num_envs, dtype=bool)
        return _tree(self._views, "obs"), self._views[("rewards",)].copy(), done, done.copy(), _tree(self._views, "info")

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self, kill: bool = False) -> None:
        """Stop the workers (politely, unless ``kill``: after a fault, a hung worker would not answer)."""
        for conn in self._conns:
            try:
                conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            if kill:
                proc.kill()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._procs, self._conns = [], []
        self._views = {}
        for block in self._blocks:
            block.close()
            block.unlink()
        self._blocks = []


def _now() -> float:
    return time.monotonic()
