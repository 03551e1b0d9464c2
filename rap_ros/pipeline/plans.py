"""Planned paths -> the camera poses the view job needs (pure geometry, no ROS).

A plan is a list of base (or camera body) poses in the plan's frame, 4x4 ``T_plan_base``,
with stamps in seconds (all zero when unstamped). The view job wants camera poses (OpenCV
optical axes) relative to the current camera, at the contract's normalised scale
(``geometry.relative_to_first``), T of them, equally spaced along the path.
"""
import numpy as np

from rap_ros.geometry.cameras import invert_pose, relative_to_first
from rap_ros.geometry.rotations import rotation_angle_deg, slerp_rotations


def resample_path(poses, stamps, count):
    """Resample poses (N, 4, 4) and stamps (N,) to ``count`` poses equally spaced in arc
    length (camera centres); rotations are interpolated on the shortest arc.

    A path that does not move (total length ~ 0) is spaced by rotation angle instead, and
    a path that neither moves nor turns by index. Returns (poses (count, 4, 4), stamps).
    """
    poses = np.asarray(poses, dtype=np.float64)
    stamps = np.asarray(stamps, dtype=np.float64)
    if len(poses) == 1:
        return np.repeat(poses, count, axis=0), np.repeat(stamps, count)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    if steps.sum() < 1e-9:
        steps = np.radians(rotation_angle_deg(
            np.swapaxes(poses[:-1, :3, :3], 1, 2) @ poses[1:, :3, :3]))
    if steps.sum() < 1e-9:
        steps = np.ones(len(poses) - 1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    targets = np.linspace(0.0, arc[-1], count)
    segment = np.clip(np.searchsorted(arc, targets, side="right") - 1, 0, len(poses) - 2)
    length = arc[segment + 1] - arc[segment]
    weight = np.where(length > 0, (targets - arc[segment]) / np.where(length > 0, length, 1), 0)
    weight = np.clip(weight, 0.0, 1.0)
    out = np.tile(np.eye(4), (count, 1, 1))
    a, b = poses[segment], poses[segment + 1]
    out[:, :3, 3] = (1 - weight[:, None]) * a[:, :3, 3] + weight[:, None] * b[:, :3, 3]
    out[:, :3, :3] = slerp_rotations(a[:, :3, :3], b[:, :3, :3], weight)
    out_stamps = (1 - weight) * stamps[segment] + weight * stamps[segment + 1]
    return out, out_stamps


def plan_cameras(plan_poses, plan_stamps, T_plan_camera_now, source_seconds, T_base_camera,
                 count, default_speed):
    """Camera poses and stamps along a plan, ready for the model.

    plan_poses (N, 4, 4): base (or camera body) poses in the plan frame; plan_stamps (N,)
    seconds, all zero when unstamped; T_plan_camera_now (4, 4): the current camera (optical)
    in the plan frame; source_seconds: stamp of the source image.
    Returns (world (count, 4, 4) optical camera poses in the plan frame, stamps (count,),
    rel (count, 4, 4) relative to the current camera at the model's normalised scale).
    """
    cameras = np.asarray(plan_poses) @ T_base_camera
    poses = np.concatenate([T_plan_camera_now[None], cameras])
    if np.any(plan_stamps):
        stamps = np.concatenate([[source_seconds], plan_stamps])
        stamps = np.maximum.accumulate(stamps)
    else:
        steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
        stamps = source_seconds + np.concatenate([[0.0], np.cumsum(steps)]) / default_speed
        if not steps.any():  # turning in place: one frame per 0.1 s
            stamps = source_seconds + 0.1 * np.arange(len(poses))
    world, stamps = resample_path(poses, stamps, count)
    world[0] = T_plan_camera_now
    stamps[0] = source_seconds
    rel, _ = relative_to_first(invert_pose(T_plan_camera_now) @ world)
    return world, stamps, rel
