"""Procedural scenes of textured axis-aligned boxes, laid out around a camera trajectory.

Scenes are built after the trajectory and kept out of its way: enclosing walls leave a margin
around the path, and every other box is rejected if it comes within CLEARANCE of a camera
centre or of a point LOOKAHEAD metres in front of a camera. So no camera is ever inside or
touching a box, and no box fills the view at point-blank range.

Frames: boxes are axis-aligned in a *scene frame*, which is the world frame (z up, metres; see
trajectories.py) turned by ``Scene.yaw`` about z: ``p_world = Rz(yaw) @ p_scene``. Planes
(floor, ground, ceiling, walls) are thin boxes. Rays that hit nothing see the sky (street) or
fog (indoors).
"""
from dataclasses import dataclass

import numpy as np

from rap_ros.synth.textures import TEXTURE_NAMES
from rap_ros.synth.trajectories import Trajectory

KINDS = ("room", "corridor", "street")
CLEARANCE = 0.3  # metres
LOOKAHEAD = 1.0  # metres
SLAB = 0.2  # thickness of floors, ceilings and walls, metres
# Texture pools by surface role: name prefixes in TEXTURE_NAMES.
POOLS = {
    "floor": ("photo:gravel", "photo:brick", "photo:coins", "checker", "noise"),
    "ground": ("photo:gravel", "photo:grass", "photo:brick", "noise"),
    "wall": ("bricks", "stripes", "noise", "photo:brick", "photo:page", "photo:camera"),
    "poster": ("photo:astronaut", "photo:chelsea", "photo:coffee", "photo:rocket", "photo:camera"),
    "object": ("",),  # anything
}


@dataclass
class Scene:
    """Boxes with materials, lighting and sky. Per-box arrays have B rows.

    lo, hi:      (B, 3) float32 box corners in the scene frame, metres.
    texture:     (B,) int32 index into TEXTURE_NAMES.
    tile:        (B,) float32 metres covered by one repeat of the texture.
    uv_offset:   (B, 2) float32 texture shift, in tiles.
    tint:        (B, 3) float32 RGB gain applied to the texture.
    yaw:         scene-frame rotation about world z, radians.
    light:       (3,) unit vector towards the directional light, scene frame.
    ambient:     share of light that reaches every surface, in [0, 1].
    fog_colour:  (3,) RGB in [0, 1]; fog_distance: metres at which 63 % of a colour is fog.
    sky_horizon, sky_zenith: (3,) RGB in [0, 1] seen by rays that hit nothing.
    """

    kind: str
    lo: np.ndarray
    hi: np.ndarray
    texture: np.ndarray
    tile: np.ndarray
    uv_offset: np.ndarray
    tint: np.ndarray
    yaw: float
    light: np.ndarray
    ambient: float
    fog_colour: np.ndarray
    fog_distance: float
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray

    @property
    def world_from_scene(self) -> np.ndarray:
        """Rotation (3, 3) taking scene-frame vectors to the world frame."""
        return _yaw_matrix(self.yaw)

    def to_scene_frame(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> scene frame (..., 3)."""
        return points @ self.world_from_scene

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Distance (N,) in metres from world points (N, 3) to the nearest box; < 0 inside one."""
        return _box_distance(self.to_scene_frame(points), self.lo, self.hi).min(axis=1)


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _box_distance(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Signed distance (N, B) from points (N, 3) to boxes (B, 3)-(B, 3)."""
    q = np.abs(points[:, None] - (lo + hi) / 2) - (hi - lo) / 2
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)


def _heading(c2w: np.ndarray) -> float:
    """Yaw (rad) of the first camera's viewing direction in the world xy plane."""
    forward = c2w[0, :3, 2]
    return float(np.arctan2(forward[1], forward[0]))


class _Builder:
    """Collects boxes and their materials; ``try_add`` keeps the camera path clear."""

    def __init__(self, rng: np.random.Generator, keep_clear: np.ndarray):
        self.rng = rng
        self.keep_clear = keep_clear  # (N, 3) scene-frame points boxes must stay away from
        self.gain = rng.uniform(0.85, 1.15, 3)  # scene-wide colour cast
        self.boxes, self.materials = [], []

    def add(self, lo, hi, pool: str, tile: tuple):
        """Add box ``lo``-``hi`` (scene frame) textured from ``POOLS[pool]`` with a tile size
        drawn from ``tile`` (min, max) metres."""
        names = [i for i, name in enumerate(TEXTURE_NAMES) if name.startswith(POOLS[pool])]
        material = (
            self.rng.choice(names),
            self.rng.uniform(*tile),
            self.rng.uniform(0, 1, 2),
            self.gain * self.rng.uniform(0.7, 1.2, 3),
        )
        self.boxes.append((np.asarray(lo, float), np.asarray(hi, float)))
        self.materials.append(material)

    def try_add(self, lo, hi, pool: str, tile: tuple) -> bool:
        """Add the box only if it keeps CLEARANCE from every ``keep_clear`` point."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        if _box_distance(self.keep_clear, lo[None], hi[None]).min() <= CLEARANCE:
            return False
        self.add(lo, hi, pool, tile)
        return True

    def scatter(self, count: int, sample_box, pool: str, tile: tuple, attempts: int = 4):
        """Try ``attempts * count`` boxes from ``sample_box() -> (lo, hi)``; keep up to
        ``count`` of them."""
        placed = 0
        for _ in range(attempts * count):
            placed += self.try_add(*sample_box(), pool, tile)
            if placed == count:
                return

    def build(self, kind: str, yaw: float, outdoor: bool) -> Scene:
        """The Scene of the boxes added so far, with random light and either a sky and light
        haze (``outdoor``) or dim fog."""
        rng = self.rng
        lo, hi = (np.array(side, np.float32) for side in zip(*self.boxes))
        texture, tile, uv_offset, tint = zip(*self.materials)
        elevation, azimuth = np.deg2rad(rng.uniform(30, 70)), rng.uniform(0, 2 * np.pi)
        light = np.array([np.cos(elevation) * np.cos(azimuth),
                          np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
        if outdoor:
            horizon = rng.uniform([0.7, 0.75, 0.8], [0.9, 0.92, 0.98])
            zenith = rng.uniform([0.2, 0.35, 0.6], [0.45, 0.6, 0.95])
        else:
            horizon = zenith = rng.uniform(0.1, 0.4) * self.gain
        return Scene(
            kind=kind,
            lo=lo,
            hi=hi,
            texture=np.array(texture, np.int32),
            tile=np.array(tile, np.float32),
            uv_offset=np.array(uv_offset, np.float32),
            tint=np.array(tint, np.float32),
            yaw=float(yaw),
            light=light.astype(np.float32),
            ambient=float(rng.uniform(0.35, 0.6)),
            fog_colour=horizon.astype(np.float32),
            fog_distance=float(rng.uniform(40, 120) if outdoor else rng.uniform(15, 40)),
            sky_horizon=horizon.astype(np.float32),
            sky_zenith=zenith.astype(np.float32),
        )


def _extent(rng, low: float, high: float, margin: tuple, min_size: float):
    """Interval around [low, high] with random margins, grown symmetrically to ``min_size``."""
    a, b = low - rng.uniform(*margin), high + rng.uniform(*margin)
    grow = max(0.0, min_size - (b - a)) / 2
    return a - grow, b + grow


def _room(b: _Builder, cams: np.ndarray, focus):
    """Closed room: floor, ceiling, four walls, posters, furniture (against walls or free).
    The walls enclose the cameras and the points LOOKAHEAD in front of them, with a margin."""
    rng = b.rng
    inside = b.keep_clear
    x0, x1 = _extent(rng, inside[:, 0].min(), inside[:, 0].max(), (0.8, 2.5), 3.5)
    y0, y1 = _extent(rng, inside[:, 1].min(), inside[:, 1].max(), (0.8, 2.5), 3.5)
    height = max(rng.uniform(2.4, 3.5), cams[:, 2].max() + 0.5)
    b.add((x0 - SLAB, y0 - SLAB, -SLAB), (x1 + SLAB, y1 + SLAB, 0.0), "floor", (0.5, 2.0))
    b.add((x0 - SLAB, y0 - SLAB, height), (x1 + SLAB, y1 + SLAB, height + SLAB), "wall", (0.5, 2.0))
    b.add((x0 - SLAB, y0, 0.0), (x0, y1, height), "wall", (0.5, 3.0))
    b.add((x1, y0, 0.0), (x1 + SLAB, y1, height), "wall", (0.5, 3.0))
    b.add((x0, y0 - SLAB, 0.0), (x1, y0, height), "wall", (0.5, 3.0))
    b.add((x0, y1, 0.0), (x1, y1 + SLAB, height), "wall", (0.5, 3.0))
    if focus is not None:
        _pedestal(b, cams, focus)

    def poster():
        size, bottom = rng.uniform(0.6, 1.5), rng.uniform(0.8, 1.4)
        side = rng.integers(4)
        u = rng.uniform(0, 1)
        if side < 2:  # on a wall of constant x
            x, y = (x0, y0 + u * (y1 - y0)) if side == 0 else (x1 - 0.02, y0 + u * (y1 - y0))
            return (x, y - size / 2, bottom), (x + 0.02, y + size / 2, bottom + size)
        x, y = (x0 + u * (x1 - x0), y0) if side == 2 else (x0 + u * (x1 - x0), y1 - 0.02)
        return (x - size / 2, y, bottom), (x + size / 2, y + 0.02, bottom + size)

    def furniture():
        w, d = rng.uniform(0.3, 1.5, 2)
        h = rng.uniform(0.3, 2.2)
        cx, cy = rng.uniform(x0 + w / 2, x1 - w / 2), rng.uniform(y0 + d / 2, y1 - d / 2)
        if rng.random() < 0.5:  # push against the nearer wall of constant x
            cx = x0 + w / 2 if cx - x0 < x1 - cx else x1 - w / 2
        return (cx - w / 2, cy - d / 2, 0.0), (cx + w / 2, cy + d / 2, h)

    b.scatter(int(rng.integers(2, 5)), poster, "poster", (0.6, 1.5))
    area = (x1 - x0) * (y1 - y0)
    b.scatter(int(np.clip(area / 3, 4, 20)), furniture, "object", (0.3, 1.5))


def _corridor(b: _Builder, cams: np.ndarray, focus):
    """Long corridor along scene x: thick side walls broken by niches (doorways), end walls,
    cabinets and pillars."""
    rng = b.rng
    x0, x1 = cams[:, 0].min() - rng.uniform(2, 6), cams[:, 0].max() + rng.uniform(4, 15)
    y0, y1 = _extent(rng, cams[:, 1].min(), cams[:, 1].max(), (0.7, 1.3), 1.8)
    height = max(rng.uniform(2.4, 3.2), cams[:, 2].max() + 0.4)
    depth = rng.uniform(1.5, 3.0)  # of the niches behind the doorways
    ya, yb = y0 - depth - SLAB, y1 + depth + SLAB  # outer faces of the walls
    b.add((x0 - SLAB, ya, -SLAB), (x1 + SLAB, yb, 0.0), "floor", (0.5, 2.0))
    b.add((x0 - SLAB, ya, height), (x1 + SLAB, yb, height + SLAB), "wall", (0.5, 2.0))
    b.add((x0 - SLAB, ya, 0.0), (x0, yb, height), "wall", (0.5, 3.0))
    b.add((x1, ya, 0.0), (x1 + SLAB, yb, height), "wall", (0.5, 3.0))
    sides = (((y0 - depth, y0), (ya, y0 - depth)), ((y1, y1 + depth), (y1 + depth, yb)))
    for (wall_a, wall_b), (back_a, back_b) in sides:  # y ranges of doorway wall and back wall
        b.add((x0, back_a, 0.0), (x1, back_b, height), "wall", (0.5, 3.0))
        x = x0
        while x < x1:
            length = rng.uniform(2.0, 6.0)
            b.add((x, wall_a, 0.0), (min(x + length, x1), wall_b, height), "wall", (0.5, 3.0))
            x += length + rng.uniform(0.9, 2.0)  # doorway
    if focus is not None:
        _pedestal(b, cams, focus)

    def cabinet():
        w, d, h = rng.uniform(0.4, 2.0), rng.uniform(0.3, 0.6), rng.uniform(0.5, 2.0)
        cx = rng.uniform(x0, x1)
        if rng.random() < 0.2:  # free-standing pillar
            y = rng.uniform(y0, y1)
            return (cx - d / 2, y - d / 2, 0.0), (cx + d / 2, y + d / 2, height)
        lo_y = y0 if rng.random() < 0.5 else y1 - d
        return (cx - w / 2, lo_y, 0.0), (cx + w / 2, lo_y + d, h)

    b.scatter(int(np.clip((x1 - x0) / 3, 3, 12)), cabinet, "object", (0.3, 1.5))


def _street(b: _Builder, cams: np.ndarray, focus):
    """Street along scene x: ground, kerbs, buildings on both sides, parked cars and poles."""
    rng = b.rng
    x0, x1 = cams[:, 0].min() - 15, cams[:, 0].max() + 25
    y0, y1 = _extent(rng, cams[:, 1].min(), cams[:, 1].max(), (2.0, 5.0), 6.0)
    walk = rng.uniform(1.5, 3.0)  # sidewalk width
    b.add((x0 - 60, y0 - 60, -SLAB), (x1 + 60, y1 + 60, 0.0), "ground", (1.0, 3.0))
    b.try_add((x0, y0 - walk, 0.0), (x1, y0, 0.15), "floor", (0.5, 2.0))
    b.try_add((x0, y1, 0.0), (x1, y1 + walk, 0.15), "floor", (0.5, 2.0))
    for side in (-1, 1):
        x = x0
        while x < x1:
            width, depth, height = rng.uniform(5, 15), rng.uniform(6, 15), rng.uniform(4, 20)
            front = (y0 - walk - rng.uniform(0, 1)) if side < 0 else (y1 + walk + rng.uniform(0, 1))
            ys = sorted((front, front + side * depth))
            b.add((x, ys[0], 0.0), (x + width, ys[1], height), "wall", (1.0, 3.0))
            x += width + rng.uniform(0, 3)
    if focus is not None:
        _pedestal(b, cams, focus)

    def street_object():
        cx = rng.uniform(x0, x1)
        if rng.random() < 0.5:  # parked car by the kerb
            length, width = rng.uniform(3.5, 4.8), rng.uniform(1.6, 1.9)
            height = rng.uniform(1.3, 1.8)
            cy = y0 + width / 2 + 0.2 if rng.random() < 0.5 else y1 - width / 2 - 0.2
            return (cx - length / 2, cy - width / 2, 0.0), (cx + length / 2, cy + width / 2, height)
        size, height = rng.uniform(0.15, 0.5), rng.uniform(1.0, 5.0)  # pole, bin, tree trunk
        cy = y0 - rng.uniform(0.3, walk) if rng.random() < 0.5 else y1 + rng.uniform(0.3, walk)
        return (cx - size / 2, cy - size / 2, 0.0), (cx + size / 2, cy + size / 2, height)

    b.scatter(int(np.clip((x1 - x0) / 5, 4, 12)), street_object, "object", (0.3, 1.5))


def _pedestal(b: _Builder, cams: np.ndarray, focus: np.ndarray):
    """A box under the orbit focus point (scene frame), small enough to stay off the path."""
    distance = np.linalg.norm(cams[:, :2] - focus[:2], axis=1).min()
    half = min(b.rng.uniform(0.15, 0.4), (distance - CLEARANCE) / 1.5)
    top = focus[2] + b.rng.uniform(0.05, 0.3)
    lo, hi = (focus[0] - half, focus[1] - half, 0.0), (focus[0] + half, focus[1] + half, top)
    b.add(lo, hi, "object", (0.2, 0.8))


BUILDERS = {"room": _room, "corridor": _corridor, "street": _street}


def make_scene(kind: str, rng: np.random.Generator, trajectory: Trajectory) -> Scene:
    """Build a scene of ``kind`` (one of KINDS) around ``trajectory``, keeping its path clear.

    Rooms take any orientation; corridors and streets run roughly along the first camera's
    heading so that driving follows them.
    """
    if kind not in BUILDERS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {KINDS}")
    if kind == "room":
        yaw = rng.uniform(-np.pi, np.pi)
    else:
        yaw = _heading(trajectory.c2w) + np.deg2rad(rng.normal(0.0, 4.0))
    rotate = _yaw_matrix(yaw)
    cams = trajectory.c2w[:, :3, 3] @ rotate
    ahead = (trajectory.c2w[:, :3, 3] + LOOKAHEAD * trajectory.c2w[:, :3, 2]) @ rotate
    focus = None if trajectory.focus is None else trajectory.focus @ rotate
    builder = _Builder(rng, np.concatenate([cams, ahead]))
    BUILDERS[kind](builder, cams, focus)
    return builder.build(kind, yaw, outdoor=kind == "street")
