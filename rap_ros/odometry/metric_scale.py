"""Metric scale of monocular odometry from wheel odometry (distance travelled).

Monocular odometry knows its trajectory up to a scale. Wheel odometry knows the distance the
robot travelled (its heading drifts, its distance much less). Over the same time intervals
(between keyframes), metres per odometry unit = wheel distance / visual distance.

``WheelScale`` keeps the last wheel positions (bounded), interpolates them at the stamps of the
keyframes of the odometry's bundle-adjustment window, and estimates the scale over that
window's keyframe intervals as the ratio of the summed distances (local, so it follows the
monocular scale drift) (a least-squares fit through the origin would weigh long
intervals more; the ratio of sums does the same and ignores intervals with no motion). It
stays None until ``min_distance`` metres have been driven in the window. ``relative_sigma``
is the spread of the per-interval ratios divided by sqrt(count) over the scale: what a node
adds to its covariance so downstream fusion (robot_localization) stays honest.

Units: metres for wheel positions, odometry units for visual positions, seconds for stamps.
"""
import collections

import numpy as np


class WheelScale:
    def __init__(self, min_distance=0.3, max_wheel_samples=2000):
        self.min_distance = float(min_distance)
        self._wheel = collections.deque(maxlen=int(max_wheel_samples))  # (stamp, xyz)
        self.scale = None
        self.relative_sigma = None

    def reset(self):
        self._wheel.clear()
        self.scale = None
        self.relative_sigma = None

    def add_wheel(self, stamp, position):
        """A wheel odometry position (m) at ``stamp`` (s). Out-of-order samples are dropped."""
        position = np.asarray(position, dtype=np.float64)[:3]
        if not np.all(np.isfinite(position)):
            return False
        if self._wheel and stamp <= self._wheel[-1][0]:
            return False
        self._wheel.append((float(stamp), position))
        return True

    def _wheel_at(self, stamp):
        """Wheel position interpolated at ``stamp``; None outside the samples held."""
        if len(self._wheel) < 2 or not self._wheel[0][0] <= stamp <= self._wheel[-1][0]:
            return None
        stamps = np.fromiter((s for s, _ in self._wheel), float, len(self._wheel))
        i = int(np.searchsorted(stamps, stamp))
        if stamps[i] == stamp:
            return self._wheel[i][1]
        (s0, p0), (s1, p1) = self._wheel[i - 1], self._wheel[i]
        return p0 + (p1 - p0) * (stamp - s0) / (s1 - s0)

    def estimate(self, keyframes):
        """Scale from the keyframes of the odometry's current window: ``keyframes`` a list
        of (stamp s, position (3,) odometry units), oldest first, as last bundle-adjusted.
        Sets and returns ``scale`` (None until ``min_distance`` metres were driven)."""
        wheel_steps, visual_steps = [], []
        previous = None
        for stamp, visual in keyframes:
            visual = np.asarray(visual, dtype=np.float64)[:3]
            wheel = self._wheel_at(float(stamp))
            if wheel is not None and previous is not None:
                wheel_steps.append(np.linalg.norm(wheel - previous[0]))
                visual_steps.append(np.linalg.norm(visual - previous[1]))
            previous = None if wheel is None else (wheel, visual)
        wheel_steps, visual_steps = np.array(wheel_steps), np.array(visual_steps)
        moving = visual_steps > 1e-9
        if not moving.any() or wheel_steps[moving].sum() < self.min_distance:
            return self.scale
        self.scale = float(wheel_steps[moving].sum() / visual_steps[moving].sum())
        ratios = wheel_steps[moving] / visual_steps[moving]
        spread = float(np.std(ratios) / np.sqrt(len(ratios))) if len(ratios) > 1 else 0.0
        self.relative_sigma = spread / self.scale if self.scale > 0 else None
        return self.scale


class ScaleAnchor:
    """Odometry poses -> published poses under a scale that may change while running.

    Published pose = anchor_out @ (inv(anchor_in) @ pose, its translation times ``scale``).
    ``set_scale`` re-anchors at the given pose first, so the published trajectory stays
    continuous when the scale changes (wheel odometry refining it, a user setting it); poses
    from before the last change keep the scale they were published with.
    Poses are 4x4 camera-to-world (or base-to-odom) matrices; translations in odometry
    units in, metres out.
    """

    def __init__(self, scale=1.0):
        self.scale = float(scale)
        self._in = np.eye(4)
        self._out = np.eye(4)

    def reset(self):
        self._in, self._out = np.eye(4), np.eye(4)

    def apply(self, pose):
        relative = np.linalg.solve(self._in, np.asarray(pose, dtype=np.float64))
        relative[:3, 3] *= self.scale
        return self._out @ relative

    def set_scale(self, scale, pose=None):
        """Use ``scale`` from ``pose`` (the latest odometry pose) on."""
        if pose is not None:
            self._out = self.apply(pose)
            self._in = np.array(pose, dtype=np.float64)
        self.scale = float(scale)
