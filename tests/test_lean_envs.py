"""Memory cuts for robosuite envs (lean model, one shared GL renderer per process) change no image or state;
the render cuts (coarse primitives, coarse hulls) move a few pixels by a few grey levels."""

from __future__ import annotations

import numpy as np
import pytest

import robot_envs.robosuite_common as common  # chooses the GL backend before mujoco is imported
from robot_envs import make_family, rendering


def run(env, seed: int, actions: np.ndarray):
    obs, info = env.reset(seed=seed)
    frames, states = [obs["image"]], [info["state"]]
    for action in actions:
        obs, _, _, _, info = env.step(action)
        frames.append(obs["image"])
        states.append(info["state"])
    return np.stack(frames), {k: np.stack([s[k] for s in states]) for k in states[0]}


def test_lean_shared_envs_match_full_model(monkeypatch):
    family = make_family("push", image_size=(24, 32), horizon=6)
    task_a, task_b = family.sample("train", 2)
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 3))
    monkeypatch.setattr(rendering, "MAX_DRAWN_HULL_FACES", None)  # coarse hulls change pixels: tested below
    monkeypatch.setattr(common, "LEAN_MODEL", False)
    full = family.make_env(task_a)
    monkeypatch.setattr(common, "LEAN_MODEL", True)
    lean_a, lean_b = family.make_env(task_a), family.make_env(task_b)
    try:
        assert lean_a._camera._shared is lean_b._camera._shared  # one GL context for both
        assert full._camera._shared is not lean_a._camera._shared  # different meshes: not shared
        assert lean_a.model.nmeshvert < full.model.nmeshvert / 2
        assert lean_a.model_xml() == full.model_xml()  # demo files keep the full scene
        # interleave the two lean envs' steps, so a shared renderer that leaked state would show
        lean_a.reset(seed=1), lean_b.reset(seed=2)
        images_a, images_b = [lean_a.render()], [lean_b.render()]
        for action in actions:
            images_b.append(lean_b.step(action)[0]["image"])
            images_a.append(lean_a.step(action)[0]["image"])
        for env, seed, images in ((lean_a, 1, images_a), (lean_b, 2, images_b)):
            full.task = env.task
            ref_images, ref_states = run(full, seed, actions)
            assert np.array_equal(np.stack(images), ref_images)
            lean_images, lean_states = run(env, seed, actions)
            assert np.array_equal(lean_images, ref_images)
            for key, value in ref_states.items():
                assert np.array_equal(lean_states[key], value), key  # physics unchanged, bit for bit
        assert not np.array_equal(images_a[-1], images_b[-1])  # the two envs did differ
        # the dropped meshes' placeholders are not drawn: the same geoms as the full model's low-poly
        # scene (drawn, 54 sub-pixel spheres left every image equal but made each render 2.3-2.8x slower)
        drawn = []
        for env in (lean_a, full):
            env.render()
            drawn.append(env._camera._shared.renderer.scene.ngeom)
        assert drawn[0] == drawn[1], f"lean scene draws {drawn[0]} geoms, the full model's {drawn[1]}"
    finally:
        for env in (full, lean_a, lean_b):
            env.close()


@pytest.mark.parametrize("name", ["push", "door"])
def test_coarse_primitives_barely_change_images(name, monkeypatch):
    """The fast camera tessellates cylinders and capsules coarsely (rendering.PRIMITIVE_SLICES/STACKS) for speed;
    against MuJoCo's default tessellation the image may move by a few grey levels, not change what it shows."""
    env = make_family(name, image_size=(24, 32)).make_env()
    try:
        env.reset(seed=0)
        for action in np.random.default_rng(0).uniform(-1, 1, (5, env.action_space.shape[0])):
            env.step(action)
        fast = env.render().astype(int)
        monkeypatch.setattr(rendering, "PRIMITIVE_SLICES", 28)  # MuJoCo's defaults
        monkeypatch.setattr(rendering, "PRIMITIVE_STACKS", 16)
        fine_camera = rendering.FastCamera(env.model, env._camera.camera, 24, 32)
        try:
            fine = fine_camera.render(env.data).astype(int)
        finally:
            fine_camera.close()
        if name == "door":  # its frame and handle are cylinders and capsules: the two tessellations must differ
            assert not np.array_equal(fast, fine)
        change = np.abs(fast - fine)
        moved = change.max(-1)
        assert change.mean() < 0.5, f"{name}: mean change {change.mean():.2f} grey levels"
        assert (moved > 16).mean() < 0.005, f"{name}: {(moved > 16).mean():.1%} of pixels moved by more than 16"
    finally:
        env.close()


@pytest.mark.parametrize("name", ["push", "door"])
def test_coarse_hulls_keep_physics_and_barely_change_images(name, monkeypatch):
    """Robot link1's 3,172-face hull is drawn from a 150-vertex visual twin (rendering.MAX_DRAWN_HULL_FACES):
    states stay bit-identical (no contacts, no mass) and the image moves by a few grey levels at most."""
    family = make_family(name, image_size=(24, 32), horizon=8)
    task = family.sample("train", 1)[0]
    monkeypatch.setattr(rendering, "MAX_DRAWN_HULL_FACES", None)
    exact = family.make_env(task)
    monkeypatch.undo()
    coarse = family.make_env(task)
    actions = np.random.default_rng(0).uniform(-1, 1, (8, exact.action_space.shape[0]))
    try:
        assert coarse.model.ngeom > exact.model.ngeom  # the twin was added
        twin = coarse.model.geom("robot0_link1_collision_drawn_hull")
        assert coarse.model.geom_contype[twin.id] == coarse.model.geom_conaffinity[twin.id] == 0
        mesh = coarse.model.geom_dataid[twin.id]
        assert coarse.model.mesh_facenum[mesh] <= 2 * rendering.COARSE_HULL_VERTICES
        exact_images, exact_states = run(exact, 3, actions)
        coarse_images, coarse_states = run(coarse, 3, actions)
        for key, value in exact_states.items():
            assert np.array_equal(coarse_states[key], value), key
        change = np.abs(coarse_images.astype(int) - exact_images.astype(int))
        moved = change.max(-1)
        assert change.mean() < 0.5, f"{name}: mean change {change.mean():.2f} grey levels"
        assert (moved > 16).mean() < 0.005, f"{name}: {(moved > 16).mean():.1%} of pixels moved by more than 16"
    finally:
        exact.close()
        coarse.close()
