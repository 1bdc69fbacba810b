"""The expert zoo: RL experts' actor weights (tensors only) plus JSON metadata, and ``ZooExpert``.

A zoo folder holds ``zoo.json`` (family, mode, state layout, one entry per expert: tasks, success
with its 95% Wilson interval, environment steps, wall time, SAC settings) and one ``<name>.pt`` per
expert: a plain dict of tensors, loaded with ``torch.load(weights_only=True)``. Nothing in a zoo is
pickled code; stable-baselines3's own zip (a pickle) is never written or read. The actor is
rebuilt here as a plain torch MLP, so using a zoo needs torch only, not stable-baselines3.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demos.rl.state_env import Layout, flatten_state, state_layout
from demos.scripted.base import ScriptedExpert
from robot_envs import Task, TaskFamily, make_family
from robot_envs.base import has_goal_contract
from robot_envs.errors import UserError

ZOO_FORMAT = "vgmps-expert-zoo/1"
MODES = ("per_task", "goal")
GOAL_KEYS = ("achieved_goal", "desired_goal", "observation")  # SB3's MultiInputPolicy concatenates in this (sorted) order
MATCH_TOL = 1e-4  # a state's hidden parameter matches an expert's task within this (float32 round trip)


class ZooError(UserError, ValueError):
    """A zoo that cannot be used as asked; the message names the file and the fix."""


class ActorMLP(torch.nn.Module):
    """SAC's deterministic actor, ``tanh(mu(relu-MLP(x)))``, rebuilt from plain tensors."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        n = len([k for k in tensors if k.endswith(".weight")])
        self.layers = torch.nn.ModuleList()
        for i in range(n):
            weight, bias = tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]
            layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
            layer.weight.data.copy_(weight)
            layer.bias.data.copy_(bias)
            self.layers.append(layer)

    @property
    def input_dim(self) -> int:
        return self.layers[0].in_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return torch.tanh(self.layers[-1](x))

    def act(self, x: np.ndarray) -> np.ndarray:
        return self(torch.as_tensor(np.asarray(x, np.float32))).numpy()


def actor_tensors(model: Any) -> dict[str, torch.Tensor]:
    """The deterministic actor of a stable-baselines3 SAC model as ``layers.<i>.weight/bias`` tensors."""
    actor = model.policy.actor
    linears = []
    for module in actor.latent_pi:
        if isinstance(module, torch.nn.Linear):
            linears.append(module)
        elif not isinstance(module, torch.nn.ReLU):
            raise ValueError(f"the zoo's actor supports ReLU MLPs only, this one has {type(module).__name__}")
    linears.append(actor.mu)
    out = {}
    for i, layer in enumerate(linears):
        out[f"layers.{i}.weight"] = layer.weight.detach().cpu().float().contiguous().clone()
        out[f"layers.{i}.bias"] = layer.bias.detach().cpu().float().contiguous().clone()
    return out


def save_actor(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    torch.save(tensors, path)


def load_actor(path: Path) -> ActorMLP:
    """Weights-only load: a file that is anything but a dict of tensors is refused, never run."""
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ZooError(f"{path}: not a weights-only expert file, refused without running it ({first[:160]}); "
                       "retrain it with `vgmps experts train`") from None
    except FileNotFoundError:
        raise ZooError(f"{path}: expert weights file missing; retrain the zoo with `vgmps experts train --force`") from None
    if not (isinstance(tensors, dict) and tensors and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                          for k, v in tensors.items())):
        raise ZooError(f"{path}: expected a dict of named tensors (layers.<i>.weight/bias)")
    try:
        return ActorMLP(tensors)
    except (KeyError, RuntimeError) as err:
        raise ZooError(f"{path}: actor tensors are incomplete or mis-shaped ({err})") from None


def read_zoo(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "zoo.json"
    if not path.is_file():
        raise ZooError(f"{folder}: no zoo.json, so not an expert zoo; train one with `vgmps experts train zoo={folder}`")
    meta = json.loads(path.read_text())
    if meta.get("format") != ZOO_FORMAT:
        raise ZooError(f"{path}: format {meta.get('format')!r}, expected {ZOO_FORMAT!r}")
    return meta


def write_zoo(folder: Path, meta: dict[str, Any]) -> Path:
    path = folder / "zoo.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path)  # a crash mid-write leaves the previous zoo.json
    return path


def zoo_family(meta: dict[str, Any]) -> TaskFamily:
    spec = meta["family_spec"]
    return make_family(spec["family"], **spec.get("kwargs", {}))


class ZooExpert(ScriptedExpert):
    """The zoo's experts behind the scripted-expert interface (``act``/``act_batch`` on privileged state).

    ``per_task``: each state goes to the expert of its own task, found by the hidden parameter in the
    state (the family's ``goal_desired``); a state whose task has no expert is refused. ``goal``: one
    goal-conditioned actor, fed the achieved and desired goal with the state. Always the deterministic action.
    """

    def __init__(self, folder: str | Path, family: TaskFamily | None = None) -> None:
        self.folder = Path(folder)
        self.meta = read_zoo(self.folder)
        self.mode = self.meta["mode"]
        self.family = family or zoo_family(self.meta)
        self.layout: Layout = [(k, int(n)) for k, n in self.meta["obs_layout"]]
        self.actors = [load_actor(self.folder / e["weights"]) for e in self.meta["experts"]]
        if not self.actors:
            raise ZooError(f"{self.folder}: the zoo holds no experts")
        self.goals = np.array([e["desired_goal"] for e in self.meta["experts"]], np.float32) if self.mode == "per_task" else None

    def _inputs(self, states: dict[str, np.ndarray]) -> np.ndarray:
        flat = flatten_state(states, self.layout)
        if self.mode == "per_task":
            return flat
        parts = {"observation": flat, "achieved_goal": np.asarray(self.family.goal_achieved(states), np.float32),
                 "desired_goal": np.asarray(self.family.goal_desired(states), np.float32)}
        return np.concatenate([parts[k].reshape(*flat.shape[:-1], -1) for k in GOAL_KEYS], axis=-1)

    def expert_index(self, states: dict[str, np.ndarray]) -> np.ndarray:
        """[B] index of the per-task expert for each state; refuses a state no expert was trained for."""
        desired = np.asarray(self.family.goal_desired(states), np.float32).reshape(-1, self.goals.shape[1])
        gap = np.abs(desired[:, None, :] - self.goals[None]).max(-1)  # [B, experts]
        index = gap.argmin(1)
        missing = gap[np.arange(len(index)), index] > MATCH_TOL
        if missing.any():
            bad = desired[np.flatnonzero(missing)[0]].round(4).tolist()
            raise ZooError(f"a state's task (hidden parameter {bad}) has no expert in the per-task zoo {self.folder} "
                           f"({len(self.goals)} experts); add one with `vgmps experts train zoo={self.folder} --append ...` "
                           "or use a goal-conditioned zoo (mode=goal)")
        return index

    def act(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return self.act_batch({k: np.asarray(v)[None] for k, v in state.items()})[0]

    def act_batch(self, states: dict[str, np.ndarray]) -> np.ndarray:
        x = self._inputs(states).reshape(-1, self._input_size())
        if self.mode == "goal":
            return self.actors[0].act(x).astype(np.float32)
        index = self.expert_index(states)
        out = np.empty((len(x), self.actors[0].layers[-1].out_features), np.float32)
        for e in np.unique(index):
            rows = index == e
            out[rows] = self.actors[e].act(x[rows])
        return out

    def _input_size(self) -> int:
        return self.actors[0].input_dim

    # ----------------------------------------------------------- checks before any rollout
    def check(self, family: TaskFamily, tasks: list[Task] | None = None) -> None:
        """Refuse, before any rollout, a zoo for another family, another state layout, or (per task) missing tasks."""
        if self.meta["family"] != family.name:
            raise ZooError(f"zoo {self.folder} holds {self.meta['family']!r} experts, this run's family is "
                           f"{family.name!r}; train a zoo for it with `vgmps experts train env={family.name}`")
        if self.mode == "goal" and not has_goal_contract(family):
            raise ZooError(f"family {family.name!r} declares no goal contract, which a goal-conditioned zoo needs")
        env = family.make_env(tasks[0] if tasks else None)
        try:
            _, info = env.reset(seed=0)
            layout = state_layout(info["state"])
            if layout != self.layout:
                raise ZooError(f"zoo {self.folder} was trained on privileged state {self.layout}, this env gives {layout}; "
                               "retrain the zoo with this env's settings")
            if self.mode == "per_task" and tasks:
                for task in tasks:
                    env.task = task
                    _, info = env.reset(seed=0)
                    self.expert_index({k: np.asarray(v)[None] for k, v in info["state"].items()})
        finally:
            env.close()


def load_zoo_expert(folder: str | Path, family: TaskFamily, tasks: list[Task] | None = None) -> ZooExpert:
    """A checked ``ZooExpert`` for ``family`` (and, per task, covering ``tasks``): the trainer's and collect's entry point."""
    expert = ZooExpert(folder, family)
    expert.check(family, tasks)
    return expert
