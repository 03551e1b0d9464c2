"""TF from a recording: the transforms of /tf and /tf_static, and the chain between two
frames composed and interpolated over time (ground truth given as TF).

Transforms are 4x4 ``T_parent_child`` (child-frame points to the parent frame), frame names
without a leading '/'; stamps in seconds (a zero header stamp takes the bag time). The
readers take a bag reader of ``rap_ros.io.bag`` (``messages(topics)``).
"""
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from rap_ros.io.errors import InputError
from rap_ros.io.messages import stamp_seconds, transform_to_matrix
from rap_ros.io.stamped import StampedPoses


def tf_messages(bag, tf_topics, notes=None):
    """Yield (parent, child, stamp s, T_parent_child, is_static) from TF topics."""
    count = 0
    try:
        for topic, _, timestamp, msg in bag.messages(set(tf_topics)):
            static = "static" in topic
            for tr in msg.transforms:
                count += 1
                yield (str(tr.header.frame_id).lstrip("/"), str(tr.child_frame_id).lstrip("/"),
                       stamp_seconds(tr.header.stamp, timestamp),
                       transform_to_matrix(tr.transform), static)
    except Exception as error:
        if notes is None:
            raise
        notes.append(f"reading TF stopped after {count} transforms "
                     f"({type(error).__name__}: {error}); the bag may be truncated")


def tf_frame_pairs(bag, tf_topics):
    pairs = set()
    try:
        for parent, child, *_ in tf_messages(bag, tf_topics):
            pairs.add((parent, child))
    except Exception:
        pass
    return pairs


def read_tf_chain(bag, tf_topics, frames, path):
    """Compose T_parent_child over the TF tree at the stamps of the chain's dynamic edges.

    Every edge (parent -> child) keeps its samples; a static edge (from a *static* topic, or
    with a single sample) is constant. The chain from PARENT to CHILD is found in the tree
    (edges may be walked backwards, i.e. inverted). The output stamps are those of the dynamic
    edge with the most samples, restricted to where every dynamic edge can be interpolated
    (translation linearly, rotation by slerp); no extrapolation.
    """
    notes = []
    edges = {}
    for parent, child, stamp, T, static in tf_messages(bag, tf_topics, notes):
        entry = edges.setdefault((parent, child), {"stamps": [], "T": [], "static": False})
        entry["stamps"].append(stamp)
        entry["T"].append(T)
        entry["static"] |= static
    parent, child = (f.lstrip("/") for f in frames)
    frames_seen = sorted({f for edge in edges for f in edge})
    for frame in (parent, child):
        if frame not in frames_seen:
            raise InputError(f"{path}: frame {frame!r} not in TF; frames: "
                             f"{', '.join(frames_seen) or 'none'}")
    # Breadth-first search on the undirected tree.
    neighbours = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append((b, (a, b), False))
        neighbours.setdefault(b, []).append((a, (a, b), True))
    previous = {parent: None}
    queue = [parent]
    while queue:
        node = queue.pop(0)
        for nxt, edge, inverted in neighbours.get(node, []):
            if nxt not in previous:
                previous[nxt] = (node, edge, inverted)
                queue.append(nxt)
    if child not in previous:
        raise InputError(f"{path}: TF has no chain from {parent!r} to {child!r}; transforms: "
                         f"{', '.join(f'{a} -> {b}' for a, b in sorted(edges))}")
    chain, node = [], child
    while previous[node] is not None:
        node_before, edge, inverted = previous[node]
        chain.append((edge, inverted))
        node = node_before
    chain.reverse()

    samplers, dynamic = [], []
    for edge, inverted in chain:
        entry = edges[edge]
        stamps = np.array(entry["stamps"])
        order = np.argsort(stamps, kind="stable")
        stamps = stamps[order]
        T = np.array(entry["T"])[order]
        keep = np.concatenate([[True], np.diff(stamps) > 0])
        stamps, T = stamps[keep], T[keep]
        if entry["static"] or len(stamps) == 1:
            samplers.append((inverted, T[-1], None, None, None))
        else:
            slerp = Slerp(stamps, Rotation.from_matrix(T[:, :3, :3]))
            samplers.append((inverted, None, stamps, T[:, :3, 3], slerp))
            dynamic.append(stamps)
    if not dynamic:
        raise InputError(f"{path}: the TF chain {parent} -> {child} is static: no trajectory")
    stamps = max(dynamic, key=len)
    lo = max(s[0] for s in dynamic)
    hi = min(s[-1] for s in dynamic)
    stamps = stamps[(stamps >= lo) & (stamps <= hi)]
    poses = np.tile(np.eye(4), (len(stamps), 1, 1))
    for inverted, fixed, edge_stamps, translations, slerp in samplers:
        if fixed is not None:
            T = np.broadcast_to(fixed, poses.shape)
        else:
            T = np.tile(np.eye(4), (len(stamps), 1, 1))
            T[:, :3, :3] = slerp(stamps).as_matrix()
            for axis in range(3):
                T[:, axis, 3] = np.interp(stamps, edge_stamps, translations[:, axis])
        if inverted:
            T = np.linalg.inv(T)
        poses = poses @ T
    chain_text = " , ".join(f"{'inv ' if inv else ''}{a}->{b}" for (a, b), inv in chain)
    notes.append(f"TF chain: {chain_text}")
    return StampedPoses(stamps.copy(), poses), notes
