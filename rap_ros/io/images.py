"""Image helpers shared by the message decoder and the file readers (no ROS imports).

Out: uint8 RGB (H, W, 3), the images of every edge of rap_ros (or uint8 grey (H, W)).
"""
import cv2
import numpy as np


def decoded_to_rgb8(image):
    """An image as OpenCV decodes it (BGR, BGRA or grey; 8 or 16 bit) -> uint8 RGB (H, W, 3).
    16-bit values keep their 8 most significant bits."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1])


def as_rgb8(frame):
    """An RGB(A) or grey array of any numeric type -> uint8 RGB (H, W, 3) (values clipped to
    [0, 255], alpha dropped, grey replicated)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return frame[..., :3]


def to_gray(image):
    """uint8 (H, W), (H, W, 1) or RGB(A) (H, W, 3+) -> uint8 grey (H, W) (OpenCV's weights)."""
    image = np.asarray(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    if image.shape[2] == 1:
        return np.ascontiguousarray(image[..., 0], dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(image[..., :3], dtype=np.uint8), cv2.COLOR_RGB2GRAY)
