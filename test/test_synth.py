"""Synthetic data: textures, trajectories, scenes, renderer geometry, clips and streams."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from rap_ros.synth import dataset, scenes, textures, trajectories
from rap_ros.synth.render import camera_rays, intersect, render
from rap_ros.synth.scenes import Scene

SKY = np.array([0.0, 0.0, 1.0], np.float32)  # pure blue: no box below is blue


def box_scene(lo, hi, yaw=0.0) -> Scene:
    """Boxes lo/hi (B, 3) with flat lighting, no fog, a blue sky and no blue in any texture."""
    lo, hi = np.array(lo, np.float32), np.array(hi, np.float32)
    count = len(lo)
    return Scene(
        kind="test", lo=lo, hi=hi, texture=np.zeros(count, np.int32),
        tile=np.ones(count, np.float32), uv_offset=np.zeros((count, 2), np.float32),
        tint=np.tile(np.float32([1, 1, 0]), (count, 1)), yaw=yaw, light=np.float32([0, 0, 1]),
        ambient=1.0, fog_colour=SKY, fog_distance=1e9, sky_horizon=SKY, sky_zenith=SKY)


def look(position, yaw, pitch=0.0) -> np.ndarray:
    """c2w (1, 4, 4) of a camera at ``position`` (world) with body yaw and pitch (rad)."""
    return trajectories.body_to_c2w(np.array([position], float), np.array([yaw]),
                                    np.array([pitch]), np.zeros(1))


def texture_energy(frames: np.ndarray) -> np.ndarray:
    """Mean absolute grey-level gradient (x plus y) of each frame (T,)."""
    grey = frames.astype(float).mean(axis=-1)
    along_x = np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))
    along_y = np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))
    return along_x + along_y


def test_photos_are_bundled_with_scikit_image():
    bundled = {path.stem for path in Path(skimage.data.__file__).parent.iterdir()}
    assert set(textures.PHOTOS) <= bundled  # loading them needs no download


def test_texture_bank_tiles_wrap_seamlessly():
    atlas = textures.texture_atlas()
    assert len(atlas) == len(textures.TEXTURE_NAMES) == len(atlas.offsets)
    side = textures.TEXTURE_SIZE
    for index in range(len(atlas)):
        start = int(atlas.offsets[index, 0])
        rgb0 = atlas.texels[start:start + side * side].view(np.uint8).reshape(side, side, 4)
        tile = rgb0[..., :3].astype(float)
        assert tile.std() > 10, atlas.names[index]
        steepest_inner_column_step = np.abs(np.diff(tile, axis=1)).mean(axis=(0, 2)).max()
        wrap_step = np.abs(tile[:, 0] - tile[:, -1]).mean()
        assert wrap_step <= steepest_inner_column_step + 1, atlas.names[index]


def test_sample_intrinsics_ranges():
    rng = np.random.default_rng(0)
    for _ in range(200):
        K = trajectories.sample_intrinsics(rng, 64, 48)
        fov = np.degrees(2 * np.arctan(32 / K[0, 0]))
        assert 45 <= fov <= 100
        assert abs(K[1, 1] / K[0, 0] - 1) <= 0.02
        assert abs(K[0, 2] - 31.5) <= 0.03 * 64 and abs(K[1, 2] - 23.5) <= 0.03 * 48


def test_a_clip_with_another_field_of_view_range_keeps_its_scene_and_path():
    """Training can draw narrower cameras (``TrainConfig.fov_deg``) without changing what
    each seed films otherwise."""
    default = dataset.sample_clip(21, frames=3, height=32, width=32)
    narrow = dataset.sample_clip(21, frames=3, height=32, width=32, fov_deg=(25.0, 30.0))
    fov = np.degrees(2 * np.arctan(16 / narrow.K[0, 0]))
    assert 25.0 <= fov <= 30.0
    assert np.array_equal(default.c2w, narrow.c2w) and default.meta == narrow.meta


@pytest.mark.parametrize("kind", trajectories.KINDS)
def test_trajectory_shapes_start_and_realism(kind):
    for seed in range(20):
        path = trajectories.make_trajectory(kind, np.random.default_rng(seed), 30, 10.0)
        R, position = path.c2w[:, :3, :3], path.c2w[:, :3, 3]
        assert path.c2w.shape == (30, 4, 4) and np.allclose(path.stamps, np.arange(30) / 10.0)
        assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-9)
        assert np.allclose(np.linalg.det(R), 1.0)
        assert np.linalg.norm(position[0, :2]) <= 0.4  # mount offset (+ hand-held sway)
        forward = path.c2w[0, :3, 2]
        assert forward[0] > 0.9 * np.linalg.norm(forward[:2])  # starts heading along +x
        assert np.all((position[:, 2] > 0.25) & (position[:, 2] < 1.7))
        assert np.all(R[:, 2, 1] < -0.7)  # image "down" points roughly down: no wild roll or pitch
        speed = np.linalg.norm(np.diff(position, axis=0), axis=1) * 10.0
        assert speed.max() < 2.6


def test_trajectory_kinds_move_as_named():
    rng = np.random.default_rng(1)

    def heading(path):
        forward = path.c2w[:, :3, 2]
        return np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))

    turn = trajectories.make_trajectory("turn_in_place", rng, 21, 10.0)
    rate = np.degrees(np.abs(heading(turn)[-1] - heading(turn)[0])) / 2.0
    assert 10 < rate < 70
    stop = trajectories.make_trajectory("stop_and_go", rng, 30, 10.0)
    step = np.linalg.norm(np.diff(stop.c2w[:, :3, 3], axis=0), axis=1)
    assert step.min() < 1e-9 < step.max()  # stands still at some point, moves at another
    orbit = trajectories.make_trajectory("orbit", rng, 20, 10.0)
    to_focus = orbit.focus - orbit.c2w[:, :3, 3]
    to_focus /= np.linalg.norm(to_focus, axis=1, keepdims=True)
    assert np.allclose(np.einsum("ti,ti->t", to_focus, orbit.c2w[:, :3, 2]), 1.0)
    strafe = trajectories.make_trajectory("strafe", rng, 20, 10.0)
    motion = strafe.c2w[-1, :3, 3] - strafe.c2w[0, :3, 3]
    assert abs(motion[1]) > 2 * abs(motion[0])


def test_cameras_never_inside_or_touching_boxes():
    for seed in range(150):
        rng = np.random.default_rng(seed)
        kind = trajectories.KINDS[seed % len(trajectories.KINDS)]
        path = trajectories.make_trajectory(kind, rng, 16, 10.0)
        scene = scenes.make_scene(scenes.KINDS[seed % 3], rng, path)
        assert scene.signed_distance(path.c2w[:, :3, 3]).min() > scenes.CLEARANCE, (seed, kind)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        path = trajectories.drive_trajectory(rng, 200, 10.0)
        scene = scenes.make_scene(scenes.KINDS[seed % 3], rng, path)
        assert scene.signed_distance(path.c2w[:, :3, 3]).min() > scenes.CLEARANCE


def test_intersect_hits_a_wall_at_its_distance_and_the_nearest_box():
    K = trajectories.sample_intrinsics(np.random.default_rng(0), 32, 24)
    v, u = np.mgrid[:24, :32].reshape(2, -1)
    rays = camera_rays(K, u.astype(float), v.astype(float))
    at_rest = rays @ trajectories.BODY_FROM_CAMERA.T  # camera at the origin looking along +x
    direction = at_rest.astype(np.float32)
    origin = np.zeros_like(direction)
    lo = np.float32([[4.0, -50, -50], [2.0, -0.1, -0.1]])  # a wall at x = 4, a box before it
    hi = np.float32([[4.5, 50, 50], [2.5, 0.1, 0.1]])
    t, box = intersect(origin, direction, lo, hi)
    on_axis = direction[:, 0]  # cosine to the wall's normal
    expected = np.where(box == 1, 2.0, 4.0) / on_axis
    assert np.allclose(t, expected, rtol=1e-4)
    centre = (np.abs(u - K[0, 2]) < 1) & (np.abs(v - K[1, 2]) < 1)
    assert np.all(box[centre] == 1) and np.mean(box == 0) > 0.9


def test_rendered_box_covers_its_projected_corners():
    """Project a box's corners with K and c2w: the render shows the box inside the silhouette
    and sky outside it (turned scene frame and camera, so all transforms are exercised)."""
    height, width = 48, 64
    K = trajectories.sample_intrinsics(np.random.default_rng(2), width, height)
    yaw = 0.4
    scene = box_scene([[3.0, -0.5, 0.2]], [[4.0, 0.7, 1.3]], yaw=yaw)
    c2w = look([0.0, 0.0, 0.8], yaw=yaw + 0.1, pitch=0.05)
    image = render(scene, K, c2w, height, width)[0]
    corners = np.array(np.meshgrid(*zip(scene.lo[0], scene.hi[0]), indexing="ij")).reshape(3, -1).T
    world = corners @ scene.world_from_scene.T
    camera = (world - c2w[0, :3, 3]) @ c2w[0, :3, :3]
    pixels = camera @ K.T
    pixels = pixels[:, :2] / pixels[:, 2:]
    silhouette = np.zeros((height, width), np.uint8)
    hull = cv2.convexHull(np.round(pixels * 16).astype(np.int32))  # 1/16 pixel units
    cv2.fillConvexPoly(silhouette, hull, 1, shift=4)
    kernel = np.ones((3, 3), np.uint8)
    inside = cv2.erode(silhouette, kernel).astype(bool)
    outside = ~cv2.dilate(silhouette, kernel).astype(bool)
    assert inside.sum() > 100 and outside.sum() > 100
    is_sky = (image[..., 2] == 255) & (image[..., 0] == 0)
    assert not is_sky[inside].any() and is_sky[outside].all()


def test_sample_clip_is_deterministic_by_seed():
    first, again, other = dataset.sample_clip(11), dataset.sample_clip(11), dataset.sample_clip(12)
    assert first.frames.tobytes() == again.frames.tobytes()
    assert np.array_equal(first.c2w, again.c2w) and np.array_equal(first.K, again.K)
    assert first.frames.tobytes() != other.frames.tobytes()
    assert first.frames.shape == (8, 64, 64, 3) and first.frames.dtype == np.uint8
    assert first.meta["seed"] == 11 and first.meta["scene"] in scenes.KINDS


def test_clips_are_textured_and_show_motion():
    for seed in range(24):
        kinds = {"trajectory": trajectories.KINDS[seed % 7], "scene": scenes.KINDS[seed % 3]}
        clip = dataset.sample_clip(seed, **kinds)
        assert texture_energy(clip.frames).min() > 2.0, clip.meta
        assert clip.frames.reshape(8, -1, 3).std(axis=1).max() > 4, clip.meta
        assert np.abs(np.diff(clip.frames.astype(float), axis=0)).mean() > 0.5, clip.meta


def test_supersampling_changes_only_edge_pixels():
    rng = np.random.default_rng(4)
    path = trajectories.make_trajectory("forward", rng, 4, 10.0)
    K = trajectories.sample_intrinsics(rng, 64, 64)
    scene = scenes.make_scene("street", rng, path)
    plain, smooth = render(scene, K, path.c2w, 64, 64, 1), render(scene, K, path.c2w, 64, 64, 2)
    changed = (plain != smooth).any(axis=-1).mean()
    assert 0 < changed < 0.4


def test_make_drive_is_long_deterministic_and_in_free_space():
    size = {"frames": 40, "height": 32, "width": 48, "scene": "corridor"}
    drive = dataset.make_drive(dataset.held_out_seed(0), **size)
    assert drive.frames.shape == (40, 32, 48, 3) and drive.c2w.shape == (40, 4, 4)
    assert np.allclose(np.diff(drive.stamps), 0.1)
    assert drive.meta["trajectory"] == "drive" and drive.meta["scene"] == "corridor"
    again = dataset.make_drive(dataset.held_out_seed(0), **size)
    assert drive.frames.tobytes() == again.frames.tobytes()


def test_clip_stream_batches_and_disjoint_seeds():
    stream = dataset.ClipStream(3, frames=4, height=16, width=24, batch_size=2)
    batch = next(stream)
    assert batch["frames"].shape == (2, 4, 16, 24, 3) and batch["frames"].dtype == np.uint8
    assert batch["K"].shape == (2, 3, 3) and batch["c2w"].shape == (2, 4, 4, 4)
    assert list(batch["seeds"]) == [3 * dataset.STREAM_LENGTH, 3 * dataset.STREAM_LENGTH + 1]
    clip = dataset.sample_clip(int(batch["seeds"][1]), 4, 16, 24)
    assert np.array_equal(batch["frames"][1], clip.frames)
    resumed = dataset.ClipStream(3, frames=4, height=16, width=24, batch_size=2, start=2)
    assert list(next(resumed)["seeds"]) == list(next(stream)["seeds"])
    last_train = dataset.stream_seed(dataset.MAX_STREAMS - 1, dataset.STREAM_LENGTH - 1)
    assert last_train == dataset.TRAIN_SEED_LIMIT - 1 < dataset.held_out_seed(0)
    with pytest.raises(ValueError):
        dataset.ClipStream(dataset.MAX_STREAMS)
    with pytest.raises(ValueError):
        dataset.train_seed(dataset.TRAIN_SEED_LIMIT)
