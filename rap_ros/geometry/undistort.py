"""Lens distortion removal for the distortion models of sensor_msgs/CameraInfo.

``undistortion(K, d, model, width, height)`` gives the OpenCV remap tables that turn a
distorted image into the pinhole image of the same K (pixels in, pixels out, same size), so
that everything downstream keeps the pinhole conventions of ``geometry.cameras``.
"""
import cv2
import numpy as np

# OpenCV's radial-tangential models, and the Kannala-Brandt fisheye model (cv2.fisheye).
SUPPORTED_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


def undistortion(K, d, model, width, height):
    """Remap tables for one camera -> (maps or None, note or None).

    K: (3, 3) intrinsics in pixels; d: distortion coefficients of ``model``; width, height:
    image size in pixels. Returns (``(map_x, map_y)`` float32 (height, width) for
    ``cv2.remap``, a note for the report), or (None, None) when there is nothing to undo, or
    (None, note) for a model this does not support (the images are used as they are).
    """
    d = np.asarray(d, dtype=np.float64)
    if not d.size or not np.any(d != 0):
        return None, None
    if model not in SUPPORTED_MODELS:
        return None, f"distortion model {model!r} not supported: images used as they are"
    K = np.asarray(K, dtype=np.float64)
    size = (int(width), int(height))
    if model == "equidistant":
        coefficients = np.zeros(4)
        coefficients[:min(4, d.size)] = d[:4]
        maps = cv2.fisheye.initUndistortRectifyMap(K, coefficients, np.eye(3), K, size,
                                                   cv2.CV_32FC1)
    else:
        maps = cv2.initUndistortRectifyMap(K, d, None, K, size, cv2.CV_32FC1)
    return maps, f"{model} distortion removed (cv2.remap, same K)"


def undistort(image, maps):
    """Apply ``undistortion``'s tables to an image (H, W, C) (bilinear)."""
    return cv2.remap(image, *maps, cv2.INTER_LINEAR)
