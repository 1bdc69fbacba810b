"""Offscreen rendering for the robosuite families: GL backend choice and a fast one-camera renderer.

MuJoCo reads ``MUJOCO_GL`` once, when it is first imported, so ``select_gl_backend``
must run before ``mujoco`` or ``robosuite`` are imported (``robot_envs.robosuite_common``
calls it at import). Workers started by the vector env inherit the choice through
the environment variable.

``FastCamera`` is the default image path. Where a robosuite env step with camera
observations spends its time (measured in benchmarks/env_speed.md): software GL drawing
~168k triangles of visual meshes (geom group 1) with shadows and reflections. The
fast camera draws collision geometry (~15k triangles) for the bodies with heavy visual
meshes (as convex hulls) and the plain visual primitives of the rest
(``mark_low_poly_geoms``), with shadows, reflections, skybox, fog and multisampling off,
through one reused ``mujoco.Renderer``.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import subprocess
import sys
import weakref

import numpy as np

log = logging.getLogger(__name__)

GL_BACKENDS: tuple[str, ...] = ("egl", "osmesa")
_PROBE = "import mujoco; mujoco.Renderer(mujoco.MjModel.from_xml_string('<mujoco/>'), 8, 8).render()"


def _backend_works(backend: str) -> bool:
    """Try a tiny render in a child process: a broken GL driver can abort the process, not just raise."""
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def preload_triton() -> None:
    """Import triton (if installed) before Mesa's software rasteriser loads its LLVM.

    Loading triton's bundled LLVM into a process in which llvmpipe (EGL or OSMesa) has
    already rendered segfaults; the other order works. torch imports triton lazily (e.g.
    ``torch.func`` in the meta-gradient), so a sampler rendering in the learner's process
    would crash there.
    """
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def select_gl_backend() -> str:
    """Set ``MUJOCO_GL`` (respecting a user's choice), else the first of egl, osmesa that renders; return it."""
    preload_triton()
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen:
        log.info("offscreen GL backend: %s (from MUJOCO_GL)", chosen)
    else:
        if "mujoco" in sys.modules:
            raise RuntimeError(
                "mujoco was imported before robot_envs chose an offscreen GL backend (MUJOCO_GL is unset, so "
                "mujoco picked glfw); import robot_envs.push/door first or set MUJOCO_GL=egl or osmesa"
            )
        chosen = next((b for b in GL_BACKENDS if _backend_works(b)), "")
        if not chosen:
            raise RuntimeError(f"no offscreen GL backend works; tried {list(GL_BACKENDS)}. Install libegl1 or libosmesa6")
        log.info("offscreen GL backend: %s (auto-selected)", chosen)
        os.environ["MUJOCO_GL"] = chosen
    if chosen in GL_BACKENDS:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    # Mesa's software rasteriser (llvmpipe, behind EGL without a GPU and behind OSMesa) hands each
    # frame to one helper thread per core by default. For policy images (24x32 to 64x64) the
    # hand-off costs more than it saves, and a sampler already runs one env process per core:
    # rasterising in the calling thread renders push at 24x32 in 1.3 ms instead of 1.9 ms, with
    # identical pixels (benchmarks/sampler_speed.md). Only llvmpipe reads it; a user's value wins.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    return chosen


def camera_names(model) -> list[str]:
    import mujoco

    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]


def check_camera(model, camera: str, height: int, width: int) -> None:
    """Reject a camera the model lacks or a size its offscreen buffer cannot hold, naming what is allowed."""
    names = camera_names(model)
    if camera not in names:
        raise ValueError(f"unknown camera {camera!r}; this scene has {names}")
    max_w, max_h = int(model.vis.global_.offwidth), int(model.vis.global_.offheight)
    if not (8 <= height <= max_h and 8 <= width <= max_w):
        raise ValueError(
            f"camera image size {height}x{width} (HxW) is not possible; height must be in [8, {max_h}] and width in [8, {max_w}]"
        )


_LIVE_CAMERAS: "weakref.WeakSet[FastCamera]" = weakref.WeakSet()


def _close_cameras() -> None:
    """Free GL contexts before mujoco's or robosuite's atexit terminates EGL (else ``__del__`` prints errors)."""
    for camera in list(_LIVE_CAMERAS):
        camera.close()


def refresh_exit_cleanup() -> None:
    """(Re-)register ``_close_cameras`` so it runs before every GL atexit handler registered so far.

    atexit runs handlers last-in first-out, and mujoco and robosuite each register one that
    terminates EGL when their GL module is first used: call this after creating GL users.
    """
    atexit.unregister(_close_cameras)
    atexit.register(_close_cameras)


LOW_POLY_GROUP = 5
# Where ``lean_model_xml`` parks the placeholders of the visual geoms it drops: a group no camera
# of ours draws. Left in group 1, ``mark_low_poly_geoms`` moved them into ``LOW_POLY_GROUP`` (a body
# without heavy meshes gets its visual geoms drawn), and the 54 one-millimetre spheres, ~900
# triangles each, made push's 24x32 render 2.3-2.8x slower while adding no visible pixel.
HIDDEN_GROUP = 3
MAX_VISUAL_FACES = 500
POSE_ATTRIBUTES = ("pos", "quat", "euler", "axisangle", "xyaxes", "zaxis", "fromto")  # how MJCF places a geom
# Tessellation of the built-in primitives (cylinders, capsules, spheres) in the fast camera's GL context.
# MuJoCo's default (28 slices x 16 stacks) gives each table leg ~900 triangles, and llvmpipe's cost
# follows triangles, not pixels: at 24x32, 16 x 4 renders push 1.44x and door 1.8x faster, and moves
# 2% of push's and 8% of door's pixels by a few grey levels (benchmarks/env_speed.md;
# tests/test_lean_envs.py bounds the change).
PRIMITIVE_SLICES = 16
PRIMITIVE_STACKS = 4
# A drawn collision mesh whose convex hull has more faces than this is drawn as a coarser hull instead: a
# visual-only twin (no contacts, no mass) made by MuJoCo from ``COARSE_HULL_VERTICES`` of its hull's vertices,
# picked farthest-first. Robot link1's hull has 3,172 faces against 200-300 for every other link and cost a
# quarter of push's 24x32 render (benchmarks/env_speed.md; tests/test_lean_envs.py bounds the image change).
# ``lean_model_xml`` builds the twins; None keeps every hull as it is.
MAX_DRAWN_HULL_FACES: int | None = 400
COARSE_HULL_VERTICES = 150


def mark_low_poly_geoms(model) -> int:
    """Move the geoms the fast camera draws into ``LOW_POLY_GROUP``; return how many triangles remain.

    Per body: if its visual geoms (group 1) include a mesh heavier than ``MAX_VISUAL_FACES``
    (robot links, gripper), draw its collision geoms (group 0) instead; otherwise (table,
    door, block: boxes and cylinders) draw its visual geoms. Geom groups only affect
    rendering, so physics is unchanged; the robosuite renderer is never used on a model
    marked this way.
    """
    import mujoco

    mesh = mujoco.mjtGeom.mjGEOM_MESH
    heavy = np.zeros(model.nbody, bool)
    for g in range(model.ngeom):
        if model.geom_group[g] == 1 and model.geom_type[g] == mesh:
            heavy[model.geom_bodyid[g]] |= model.mesh_facenum[model.geom_dataid[g]] > MAX_VISUAL_FACES
    faces = 0
    for g in range(model.ngeom):
        body_heavy = heavy[model.geom_bodyid[g]]
        if (model.geom_group[g] == 0 and body_heavy) or (model.geom_group[g] == 1 and not body_heavy):
            model.geom_group[g] = LOW_POLY_GROUP
            if model.geom_type[g] == mesh:
                faces += int(model.mesh_facenum[model.geom_dataid[g]])
    return faces


def lean_model_xml(xml: str, model) -> str:
    """``xml`` without what ``FastCamera`` never draws: the meshes of heavy-mesh bodies' visual geoms.

    ``model`` is ``xml`` compiled; geoms are matched by name (robosuite names every geom and
    looks its visual geoms up by name, so they stay, as 1 mm spheres in ``HIDDEN_GROUP``). The geoms the
    fast camera draws move into ``LOW_POLY_GROUP`` here, as ``mark_low_poly_geoms`` would (it
    is then a no-op). Visual geoms have no contacts and robosuite's links carry explicit
    inertials, so physics is unchanged; the model's statistics (which set the camera's clip
    planes) are pinned to the full model's, so images are too (both tested). The compiled push
    model drops from ~67 MB to ~17 MB and the GL context no longer holds those meshes.

    Drawn collision meshes with a hull over ``MAX_DRAWN_HULL_FACES`` faces (robot link1) stay undrawn in
    group 0 and get a coarse visual twin beside them: images move by a few grey levels, physics not at all.
    """
    import xml.etree.ElementTree as ET

    import mujoco

    mesh = mujoco.mjtGeom.mjGEOM_MESH
    heavy = np.zeros(model.nbody, bool)
    for g in range(model.ngeom):
        if model.geom_group[g] == 1 and model.geom_type[g] == mesh:
            heavy[model.geom_bodyid[g]] |= model.mesh_facenum[model.geom_dataid[g]] > MAX_VISUAL_FACES
    drop, drawn = set(), set()
    for g in range(model.ngeom):
        name, group, body_heavy = model.geom(g).name, model.geom_group[g], heavy[model.geom_bodyid[g]]
        if not name:
            raise ValueError("lean_model_xml needs every geom named (robosuite names them all)")
        if body_heavy and group == 1:
            drop.add(name)
        elif (body_heavy and group == 0) or (not body_heavy and group == 1):
            drawn.add(name)
    coarse = _heavy_drawn_hulls(model, drawn)
    root = ET.fromstring(xml)
    parents = {child: parent for parent in root.iter() for child in parent} if coarse else {}
    for geom in list(root.iter("geom")):
        name = geom.get("name")
        if name in coarse:
            _add_coarse_twin(root, parents[geom], geom, *coarse[name])  # the geom itself stays in group 0, undrawn
        elif name in drop:
            for key in ("mesh", *POSE_ATTRIBUTES):
                geom.attrib.pop(key, None)
            geom.set("type", "sphere")
            geom.set("size", "0.001")
            geom.set("group", str(HIDDEN_GROUP))
        elif name in drawn:
            geom.set("group", str(LOW_POLY_GROUP))
    used = {geom.get("mesh") for geom in root.iter("geom")}
    for asset in root.iter("asset"):
        for element in list(asset.findall("mesh")):
            if element.get("name") not in used:
                asset.remove(element)
    stat = root.find("statistic")
    if stat is None:
        stat = ET.SubElement(root, "statistic")
    stat.set("extent", repr(float(model.stat.extent)))
    stat.set("meansize", repr(float(model.stat.meansize)))
    stat.set("center", " ".join(repr(float(v)) for v in model.stat.center))
    return ET.tostring(root, encoding="unicode")


def _heavy_drawn_hulls(model, drawn: set[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Drawn mesh geoms whose hull exceeds ``MAX_DRAWN_HULL_FACES``: name -> (coarse vertices, geom pos, geom quat).

    The vertices are in the compiled mesh's frame, so they go with the compiled geom pose (MuJoCo re-centres
    the new mesh and moves the pose to match).
    """
    import mujoco

    if MAX_DRAWN_HULL_FACES is None:
        return {}
    out = {}
    for g in range(model.ngeom):
        name = model.geom(g).name
        if name not in drawn or model.geom_type[g] != mujoco.mjtGeom.mjGEOM_MESH:
            continue
        mesh = model.geom_dataid[g]
        adr = model.mesh_graphadr[mesh]
        if adr < 0 or model.mesh_graph[adr + 1] <= MAX_DRAWN_HULL_FACES:
            continue
        numvert = model.mesh_graph[adr]
        hull_ids = model.mesh_graph[adr + 2 + numvert: adr + 2 + 2 * numvert]
        points = model.mesh_vert[model.mesh_vertadr[mesh] + hull_ids].astype(np.float64)
        out[name] = (_farthest_first(points, COARSE_HULL_VERTICES), model.geom_pos[g].copy(), model.geom_quat[g].copy())
    return out


def _farthest_first(points: np.ndarray, k: int) -> np.ndarray:
    """``k`` of ``points`` spread over the shape: each next one the farthest from those already picked."""
    if len(points) <= k:
        return points
    picked = [int(np.argmax(np.linalg.norm(points - points.mean(0), axis=1)))]
    gap = np.linalg.norm(points - points[picked[0]], axis=1)
    for _ in range(k - 1):
        picked.append(int(np.argmax(gap)))
        gap = np.minimum(gap, np.linalg.norm(points - points[picked[-1]], axis=1))
    return points[picked]


def _add_coarse_twin(root, parent, geom, vertices: np.ndarray, pos: np.ndarray, quat: np.ndarray) -> None:
    """Beside ``geom``, a drawn copy of it whose mesh is the convex hull of ``vertices``; no contacts, no mass."""
    import copy
    import xml.etree.ElementTree as ET

    name = geom.get("name") + "_drawn_hull"
    asset = root.find("asset")
    if asset is None:
        asset = ET.SubElement(root, "asset")
    # only vertices: MuJoCo makes the mesh their convex hull
    ET.SubElement(asset, "mesh", name=name, vertex=" ".join(repr(float(v)) for v in vertices.ravel()))
    twin = copy.deepcopy(geom)
    for key in (*POSE_ATTRIBUTES, "size", "mass", "density"):
        twin.attrib.pop(key, None)
    twin.attrib.update(name=name, type="mesh", mesh=name, group=str(LOW_POLY_GROUP), contype="0", conaffinity="0",
                       mass="0", pos=" ".join(repr(float(v)) for v in pos), quat=" ".join(repr(float(v)) for v in quat))
    parent.insert(list(parent).index(geom) + 1, twin)


class _SharedRenderer:
    """One ``mujoco.Renderer`` (a GL context plus the meshes and textures uploaded to it) per process and scene.

    A renderer's context costs ~60-110 MB (measured, llvmpipe); envs of one family in one
    process have identical meshes and textures, so their cameras share one, keyed by a digest
    of everything ``mjr_makeContext`` uploads. Each camera still builds the scene from its own
    model and data (``mjv_updateScene``), so geometry, colours and camera poses stay its own.
    """

    _live: "dict[tuple, _SharedRenderer]" = {}

    def __init__(self, key: tuple, model, height: int, width: int) -> None:
        import mujoco

        self.key, self.users = key, 0
        self.renderer = mujoco.Renderer(model, height, width)

    @classmethod
    def acquire(cls, model, height: int, width: int) -> "_SharedRenderer":
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        for name in ("mesh_vert", "mesh_normal", "mesh_face", "mesh_facenum", "mesh_graph", "mesh_texcoord",
                     "tex_data", "tex_height", "tex_width", "tex_nchannel", "hfield_data", "skin_vert"):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(getattr(model, name, np.zeros(0))).tobytes())
        g, q = model.vis.global_, model.vis.quality
        key = (height, width, g.offwidth, g.offheight, q.offsamples, q.shadowsize, q.numslices, q.numstacks,
               q.numquads, model.vis.global_.fovy,
               digest.hexdigest())
        shared = cls._live.get(key) or cls(key, model, height, width)
        cls._live[key] = shared
        shared.users += 1
        return shared

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self._live.pop(self.key, None)
            self.renderer.close()


class FastCamera:
    """One camera, one reused renderer, low-polygon geometry, no shadows or reflections.

    ``low_poly=False`` keeps the visual meshes (still without shadows/reflections),
    for a fair look at what the geometry switch alone costs.
    """

    def __init__(self, model, camera: str, height: int, width: int, low_poly: bool = True) -> None:
        import mujoco

        check_camera(model, camera, height, width)
        self._mujoco = mujoco
        self.camera = camera
        # 4x multisampling (robosuite's default) quadruples the software rasteriser's work at 64x64
        model.vis.quality.offsamples = 0
        # shadows are never drawn (see render), so skip the 4096^2 shadow map: ~60 MB per camera
        model.vis.quality.shadowsize = 0
        # the context builds the primitives' meshes from these (mjr_makeContext), so set them first
        model.vis.quality.numslices, model.vis.quality.numstacks = PRIMITIVE_SLICES, PRIMITIVE_STACKS
        self._model = model
        self._shared: _SharedRenderer | None = _SharedRenderer.acquire(model, height, width)
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 0
        if low_poly:
            mark_low_poly_geoms(model)
            self._option.geomgroup[LOW_POLY_GROUP] = 1
        else:
            self._option.geomgroup[1] = 1
        self._option.sitegroup[:] = 0  # robosuite's sites (eef markers, object sites) are debug-only
        # convex hulls of the collision meshes: robot link1 alone has 12.5k faces, its hull ~100
        self._option.flags[mujoco.mjtVisFlag.mjVIS_CONVEXHULL] = int(low_poly)
        _LIVE_CAMERAS.add(self)
        refresh_exit_cleanup()

    def render(self, data, markers: list[tuple[np.ndarray, float, np.ndarray]] = ()) -> np.ndarray:
        """Render ``data``; ``markers`` (position, radius, rgba) are debug spheres drawn on top, for videos."""
        mujoco = self._mujoco
        if self._shared is None:
            raise RuntimeError("render called after close")
        renderer = self._shared.renderer
        scene = renderer.scene
        mujoco.mjv_updateScene(self._model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_FOG):
            scene.flags[flag] = 0
        for pos, radius, rgba in markers:
            if scene.ngeom >= scene.maxgeom:
                break
            mujoco.mjv_initGeom(scene.geoms[scene.ngeom], mujoco.mjtGeom.mjGEOM_SPHERE, np.full(3, radius),
                                np.asarray(pos, np.float64), np.eye(3).ravel(), np.asarray(rgba, np.float32))
            scene.ngeom += 1
        return renderer.render()

    def close(self) -> None:
        if self._shared is not None:
            self._shared.release()
            self._shared = None
