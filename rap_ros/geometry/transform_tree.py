"""A tree of named frames fed by transforms, as `/tf` and `/tf_static` carry them.

The same job as tf2's buffer for what rap_ros needs where `tf2_ros` is not installed: the
latest transform of every edge (no interpolation in time), lookups along the tree between any
two connected frames, and who parents whom, so a node can refuse to publish a transform that
would give a frame a second parent.

Transforms are 4x4 float64 ``T_parent_child`` (a point in child coordinates, multiplied on the
left, gives parent coordinates), metres. Frame names are compared without a leading "/"
(tf2 accepts neither form in a frame id, ROS 1 bags still carry it).
"""
import numpy as np


def frame_name(frame_id):
    """A frame id without its leading '/'."""
    return str(frame_id).lstrip("/")


class TransformTree:
    """Latest transforms between frames; each child has one parent.

    ``max_frames`` bounds memory whatever a publisher sends: edges past the bound are
    refused (``set`` returns False). Not thread-safe: a caller that sets from one thread and
    reads from another serialises the calls (``nodes.tf_listener.TfTopics``).
    """

    def __init__(self, max_frames=10000):
        self.max_frames = int(max_frames)
        self._parent = {}   # child -> parent
        self._T = {}        # child -> T_parent_child
        self._static = {}   # child -> bool
        self._stamp = {}    # child -> seconds of the latest update

    def __len__(self):
        return len(self._parent)

    def set(self, parent, child, T_parent_child, static=False, stamp=0.0):
        """Store an edge; a new parent replaces the old one (tf2 does the same). Returns
        False when the transform is unusable (non-finite, same frame twice, or the tree
        is full)."""
        parent, child = frame_name(parent), frame_name(child)
        T = np.asarray(T_parent_child, dtype=np.float64)
        if not parent or not child or parent == child or T.shape != (4, 4) \
                or not np.all(np.isfinite(T)):
            return False
        if child not in self._parent and len(self._parent) >= self.max_frames:
            return False
        self._T[child] = T  # the parent last: a child is in the tree once its edge is
        self._static[child] = bool(static)
        self._stamp[child] = float(stamp)
        self._parent[child] = parent
        return True

    def parent(self, child):
        """The frame that parents ``child``, or None."""
        return self._parent.get(frame_name(child))

    def is_static(self, child):
        return self._static.get(frame_name(child), False)

    def _chain(self, frame):
        """[(frame, T_root_frame)] from ``frame`` up to its root (cycles cut)."""
        frame = frame_name(frame)
        seen = {frame}
        # Walk up: T_ancestor_frame accumulates parent transforms on the left.
        T, current = np.eye(4), frame
        chain = [(current, T.copy())]
        while current in self._parent:
            T = self._T[current] @ T
            current = self._parent[current]
            if current in seen:
                break
            seen.add(current)
            chain.append((current, T.copy()))
        return chain

    def lookup(self, target, source):
        """T_target_source (4x4): coordinates in ``source`` -> coordinates in ``target``,
        through their nearest common ancestor; None when the frames are not connected."""
        up_source = self._chain(source)       # [(ancestor, T_ancestor_source)]
        up_target = dict(self._chain(target))  # ancestor -> T_ancestor_target
        for ancestor, T_ancestor_source in up_source:
            if ancestor in up_target:
                return np.linalg.solve(up_target[ancestor], T_ancestor_source)
        return None

    def clear(self, keep_static=True):
        """Forget the dynamic edges (a time jump), or everything."""
        for child in [c for c in self._parent if not (keep_static and self._static[c])]:
            for table in (self._parent, self._T, self._static, self._stamp):
                del table[child]
