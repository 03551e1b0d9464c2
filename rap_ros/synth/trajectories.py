"""Robot-like and hand-held camera trajectories, sampled at a frame rate.

Frames and conventions:
- World: z up, right-handed (REP-103). The origin lies on the floor beneath the robot's base at
  the first frame, x along the base's initial heading, y to its left.
- Body (robot base / walker): x forward, y left, z up. Yaw turns left about z, pitch > 0 looks
  down, roll > 0 tilts to the right (about body x).
- Camera: OpenCV optical axes (x right, y down, z forward); poses are camera-to-world 4x4
  ``c2w`` in metres. The camera sits ``mount`` metres ahead of the base's turning axis, so
  turning in place also moves it a little, as on a real robot.

A trajectory is made by integrating smooth velocity commands (forward and lateral speed, yaw
rate) on a fine time grid, then sampling it at the frames.
"""
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from rap_ros.geometry.frames import BODY_FROM_OPTICAL

KINDS = ("forward", "turn_in_place", "arc", "strafe", "stop_and_go", "handheld", "orbit")
SUBSTEPS = 10  # integration steps per frame interval
# Rotation from the body frame (x fwd, y left, z up) to the OpenCV camera frame: its columns
# are the camera's x (right), y (down) and z (forward) axes written in the body frame.
BODY_FROM_CAMERA = BODY_FROM_OPTICAL


@dataclass
class Trajectory:
    """Camera poses over time.

    c2w:    (T, 4, 4) float64 camera-to-world poses (OpenCV camera axes, metres).
    stamps: (T,) float64 seconds from the first frame.
    kind:   trajectory kind, one of KINDS or "drive".
    focus:  (3,) world point the camera looks at (orbit only), else None.
    """

    c2w: np.ndarray
    stamps: np.ndarray
    kind: str
    focus: np.ndarray = None


FOV_DEG = (45.0, 100.0)  # the horizontal field of view ``sample_intrinsics`` draws from


def sample_intrinsics(rng: np.random.Generator, width: int, height: int,
                      fov_deg=FOV_DEG) -> np.ndarray:
    """Random pinhole K (3, 3): horizontal FOV uniform in ``fov_deg`` (degrees; 45-100 by
    default), fy = fx within 2 %, principal point within 3 % of the image size of the
    centre ((W-1)/2, (H-1)/2), pixel centres at integer coordinates. The same random draws
    whatever the range, so a clip's scene and path do not depend on it."""
    fov = np.deg2rad(rng.uniform(*fov_deg))
    fx = 0.5 * width / np.tan(0.5 * fov)
    fy = fx * rng.uniform(0.98, 1.02)
    cx = (width - 1) / 2 + rng.uniform(-0.03, 0.03) * width
    cy = (height - 1) / 2 + rng.uniform(-0.03, 0.03) * height
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def body_to_c2w(position: np.ndarray, yaw: np.ndarray, pitch: np.ndarray,
                roll: np.ndarray) -> np.ndarray:
    """Camera-to-world poses (T, 4, 4) from camera positions (T, 3) and body yaw, pitch and
    roll (T,) in radians."""
    body = Rotation.from_euler("ZYX", np.stack([yaw, pitch, roll], axis=1)).as_matrix()
    c2w = np.tile(np.eye(4), (len(position), 1, 1))
    c2w[:, :3, :3] = body @ BODY_FROM_CAMERA
    c2w[:, :3, 3] = position
    return c2w


def smooth_noise(rng: np.random.Generator, t: np.ndarray, max_hz: float) -> np.ndarray:
    """Zero-mean smooth random signal of unit-order amplitude: three sinusoids below ``max_hz``."""
    freqs = rng.uniform(0.05, max_hz, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    return np.sin(2 * np.pi * freqs * t[:, None] + phases).sum(axis=1) / np.sqrt(1.5)


def _integrate(t: np.ndarray, speed: np.ndarray, lateral: np.ndarray, yaw_rate: np.ndarray):
    """Planar base path (x, y, yaw) on grid ``t`` from body-frame speeds (m/s) and yaw rate
    (rad/s)."""
    dt = np.diff(t, prepend=t[0])
    yaw = np.cumsum(yaw_rate * dt)
    vx = speed * np.cos(yaw) - lateral * np.sin(yaw)
    vy = speed * np.sin(yaw) + lateral * np.cos(yaw)
    return np.cumsum(vx * dt), np.cumsum(vy * dt), yaw


def _from_commands(rng, t, speed, lateral, yaw_rate, height, sway=0.0):
    """Camera c2w on grid ``t`` from base velocity commands, with a mount offset and slight
    pitch/roll wobble (``sway`` adds walking-like jitter in all 6 DoF)."""
    x, y, yaw = _integrate(t, speed, lateral, yaw_rate)
    mount = rng.uniform(0.0, 0.3)
    position = np.stack([x + mount * np.cos(yaw), y + mount * np.sin(yaw), np.full_like(t, height)],
                        axis=1)
    pitch = np.deg2rad(rng.normal(0.0, 3.0) + 0.3 * smooth_noise(rng, t, 2.0))
    roll = np.deg2rad(rng.normal(0.0, 1.0) + 0.2 * smooth_noise(rng, t, 2.0))
    if sway:
        position += sway * 0.01 * np.stack([smooth_noise(rng, t, 2.0) for _ in range(3)], axis=1)
        yaw = yaw + np.deg2rad(sway * smooth_noise(rng, t, 2.0))
        pitch = pitch + np.deg2rad(sway * smooth_noise(rng, t, 2.0))
        roll = roll + np.deg2rad(sway * smooth_noise(rng, t, 2.0))
    return body_to_c2w(position, yaw, pitch, roll)


def _stop_profile(rng, t, top_speed, frame_interval):
    """Speed (m/s) that halts during 1-3 random stops (each at least two frames still), ramping
    linearly back to ``top_speed`` within 0.4 s."""
    duration = t[-1]
    gap = np.full_like(t, np.inf)  # distance in seconds to the nearest stop
    for _ in range(rng.integers(1, 4)):
        length = max(2 * frame_interval, rng.uniform(0.15, 0.4) * duration)
        start = rng.uniform(0.0, max(duration - length, 0.0))
        gap = np.minimum(gap, np.maximum(np.maximum(start - t, t - start - length), 0.0))
    return top_speed * np.clip(gap / 0.4, 0.0, 1.0)


def _orbit(rng, t, height):
    """Circle around a focus point ahead of the start, always looking at it."""
    radius = rng.uniform(1.2, 3.0)
    focus = np.array([radius, 0.0, rng.uniform(0.3, max(0.35, height - 0.1))])
    angle = np.pi + np.deg2rad(rng.uniform(10, 40) * rng.choice([-1, 1])) * t
    position = np.stack([focus[0] + radius * np.cos(angle), radius * np.sin(angle),
                         np.full_like(t, height)], axis=1)
    offset = focus - position
    yaw = np.arctan2(offset[:, 1], offset[:, 0])
    pitch = np.arctan2(-offset[:, 2], np.hypot(offset[:, 0], offset[:, 1]))
    roll = np.deg2rad(rng.normal(0.0, 1.0) + 0.2 * smooth_noise(rng, t, 2.0))
    return body_to_c2w(position, yaw, pitch, roll), focus


def make_trajectory(kind: str, rng: np.random.Generator, frames: int, fps: float) -> Trajectory:
    """Sample a trajectory of ``kind`` (one of KINDS) with ``frames`` poses at ``fps`` Hz.

    Speeds: forward 0.3-2 m/s, arcs up to 45 deg/s, turns in place 15-60 deg/s, strafing
    0.2-0.8 m/s, walking 0.5-1.4 m/s. Camera 0.3-1.5 m above the floor (hand-held 1.2-1.6 m).
    """
    t = np.arange((frames - 1) * SUBSTEPS + 1) / (fps * SUBSTEPS)
    zero = np.zeros_like(t)
    wander = np.deg2rad(5.0) * smooth_noise(rng, t, 0.5)  # slight steering noise, rad/s
    height = rng.uniform(0.3, 1.5)
    direction = rng.choice([-1.0, 1.0])
    focus = None
    if kind == "forward":
        speed = rng.uniform(0.3, 2.0) * (1 + 0.1 * smooth_noise(rng, t, 0.5))
        c2w = _from_commands(rng, t, speed, zero, wander, height)
    elif kind == "turn_in_place":
        rate = direction * np.deg2rad(rng.uniform(15, 60)) * (1 + 0.1 * smooth_noise(rng, t, 0.5))
        c2w = _from_commands(rng, t, zero, zero, rate, height)
    elif kind == "arc":
        rate = direction * np.deg2rad(rng.uniform(10, 45))
        c2w = _from_commands(rng, t, rng.uniform(0.3, 1.5) + zero, zero, rate + wander, height)
    elif kind == "strafe":
        lateral = direction * rng.uniform(0.2, 0.8) + zero
        c2w = _from_commands(rng, t, rng.uniform(-0.1, 0.1) + zero, lateral, wander, height)
    elif kind == "stop_and_go":
        speed = _stop_profile(rng, t, rng.uniform(0.5, 2.0), 1.0 / fps)
        c2w = _from_commands(rng, t, speed, zero, wander * (speed > 0), height)
    elif kind == "handheld":
        speed = rng.uniform(0.5, 1.4) * (1 + 0.1 * smooth_noise(rng, t, 1.0))
        height, sway = rng.uniform(1.2, 1.6), rng.uniform(1.0, 3.0)
        c2w = _from_commands(rng, t, speed, zero, 2 * wander, height, sway=sway)
        step_hz = rng.uniform(1.6, 2.2)  # footsteps: vertical bob at the step rate
        c2w[:, 2, 3] += rng.uniform(0.01, 0.03) * np.sin(2 * np.pi * step_hz * t)
    elif kind == "orbit":
        c2w, focus = _orbit(rng, t, height)
    else:
        raise ValueError(f"unknown trajectory kind {kind!r}; expected one of {KINDS}")
    return Trajectory(c2w=c2w[::SUBSTEPS], stamps=t[::SUBSTEPS], kind=kind, focus=focus)


DRIVE_SEGMENTS = ("forward", "turn", "arc", "stop")


def _drive_commands(rng, t, step):
    """Piecewise commands (speed m/s, yaw rate rad/s) on grid ``t`` (spacing ``step`` s) for
    segments of 1.5-5 s, blended over 0.5 s."""
    speed, rate = np.zeros_like(t), np.zeros_like(t)
    start = 0.0
    while start < t[-1]:
        segment = rng.choice(DRIVE_SEGMENTS, p=[0.4, 0.2, 0.25, 0.15])
        length = rng.uniform(1.5, 5.0)
        inside = (t >= start) & (t < start + length)
        if segment == "forward":
            speed[inside] = rng.uniform(0.3, 2.0)
        elif segment == "turn":  # 45-120 degrees in place
            rate[inside] = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(45, 120)) / length
        elif segment == "arc":
            speed[inside] = rng.uniform(0.3, 1.5)
            rate[inside] = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(10, 30))
        start += length
    width = min(len(t), max(1, round(0.5 / step)))
    kernel = np.ones(width) / width
    return np.convolve(speed, kernel, "same"), np.convolve(rate, kernel, "same")


def drive_trajectory(rng: np.random.Generator, frames: int, fps: float) -> Trajectory:
    """A long robot drive mixing forward runs, turns in place, arcs and stops."""
    step = 1.0 / (fps * SUBSTEPS)
    t = np.arange((frames - 1) * SUBSTEPS + 1) * step
    speed, rate = _drive_commands(rng, t, step)
    wander = np.deg2rad(3.0) * smooth_noise(rng, t, 0.5) * (speed > 0.05)
    c2w = _from_commands(rng, t, speed, np.zeros_like(t), rate + wander, rng.uniform(0.3, 1.5))
    return Trajectory(c2w=c2w[::SUBSTEPS], stamps=t[::SUBSTEPS], kind="drive")
