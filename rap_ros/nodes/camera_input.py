"""The trajectory_estimator's images as the trackers take them: downscaled, undistorted, with K.

A thin adapter over ``rap_ros.io.camera_frames.CameraFrames``, the admission `rap-ros
evaluate` runs too (images above ``max_image_pixels`` downscaled first, intrinsics with them;
then K and D of camera_info, or its P when ``rectified``): this class adds the node's
diagnostics (downscaled images counted, an unsupported distortion model or a camera_info
for another image size warned of). Images are (H, W, 3) uint8 rgb; K is the (3, 3) pinhole
intrinsics of the returned image in pixels (OpenCV camera axes), or None without a usable
camera_info. Sizes are (width, height).
"""
from rap_ros.io.camera_frames import CameraFrames


class CameraInput:
    """The calibration in use and the images through it (the node serialises calibrations
    under its own lock, see ``calibrate``). ``diagnostics``: where downscaled images
    and unusable calibrations are reported; ``rectified``: use camera_info's P (image_rect
    topics) in ``calibrate_from_info``. A calibration is replaced by one assignment, so
    ``prepare`` may run on another thread (``CameraFrames``)."""

    def __init__(self, diagnostics, *, max_image_pixels, rectified=False):
        self.diagnostics = diagnostics
        self.frames = CameraFrames(max_image_pixels=max_image_pixels, rectified=rectified)

    @property
    def calibration(self):
        """The calibration in use (``Undistorter``: K, size (width, height), model, d), or
        None."""
        return self.frames.calibration

    def calibrate_from_info(self, msg):
        """Use a sensor_msgs/CameraInfo (P when rectified, else K and D) -> True when it
        differs from the one in use; raises ValueError for an unusable one (the one in use
        kept). Caller holds the node's lock."""
        return self._changed(self.frames.calibrate_from_info(msg))

    def calibrate(self, K, size, model, d):
        """Use camera_info's calibration (intrinsics K of images of ``size``, distortion
        ``model`` and coefficients ``d``) -> True when it differs from the one in use.
        Caller holds the node's lock."""
        return self._changed(self.frames.calibrate(K, size, model, d))

    def _changed(self, changed):
        if changed and self.frames.unsupported_note:
            self.diagnostics.warn(self.frames.unsupported_note)
        return changed

    def prepare(self, rgb):
        """A decoded image -> (rgb, its recorded size, K or None): downscaled to
        max_image_pixels (counted), then undistorted."""
        frame = self.frames.admit(rgb)
        if frame.downscaled:
            self.diagnostics.count("images downscaled (max_image_pixels)")
        self._check(frame.K, frame.recorded_size)
        return frame.rgb, frame.recorded_size, frame.K

    def undistort(self, rgb, recorded_size):
        """Remove lens distortion with the latest camera_info -> (rgb, K or None); K is None
        without camera_info or when it is for another image size."""
        rgb, K = self.frames.undistort(rgb, recorded_size)
        self._check(K, recorded_size)
        return rgb, K

    def _check(self, K, recorded_size):
        calibration = self.frames.calibration
        if K is None and calibration is not None:
            self.diagnostics.warn(f"camera_info is for {calibration.size[0]}x"
                                  f"{calibration.size[1]} images, the images are "
                                  f"{recorded_size[0]}x{recorded_size[1]}: intrinsics not used")
