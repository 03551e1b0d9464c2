"""Image helpers shared by the ROS conversions and the offline readers (no ROS imports)."""
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
