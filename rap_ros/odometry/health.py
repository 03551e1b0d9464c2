"""Tracking health: ok / degraded / lost, and lost -> recovered events.

Signals, per frame: whether the map placed the frame (PnP), its inlier count, its inlier
reprojection RMS (pixels) and, with a motion prior, the model/geometry disagreement over the
last window (degrees of relative rotation). A frame is
- "ok": placed by PnP with at least ``degraded_inliers`` inliers and agreement with the model;
- "degraded": placed with fewer inliers, or carried by a fallback (model motion or constant
  velocity) for fewer than ``lost_after`` frames in a row, or in disagreement with the model;
- "lost": ``lost_after`` or more frames in a row without a map pose; the core re-initialises.
  The first frame placed again after a loss has ``recovered = True``.
"initialising" is reported before the first map exists.
"""
from dataclasses import dataclass

STATES = ("initialising", "ok", "degraded", "lost")


@dataclass
class HealthMonitor:
    degraded_inliers: int = 30
    lost_after: int = 3
    disagreement_deg: float = 5.0
    failures: int = 0
    lost: bool = False
    losses: int = 0
    recoveries: int = 0

    def update(self, placed, inliers=0, disagreement_deg=0.0):
        """State of this frame and whether it ends a loss: (state, recovered)."""
        recovered = False
        if placed:
            self.failures = 0
            if self.lost:
                self.lost, recovered = False, True
                self.recoveries += 1
            bad = inliers < self.degraded_inliers or disagreement_deg > self.disagreement_deg
            return ("degraded" if bad else "ok"), recovered
        self.failures += 1
        if self.failures >= self.lost_after:
            if not self.lost:
                self.losses += 1
            self.lost = True
            return "lost", False
        return "degraded", False

    def mark_lost(self):
        if not self.lost:
            self.losses += 1
        self.lost = True
