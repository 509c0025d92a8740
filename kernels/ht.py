"""GradBench ``ht``: hand tracking residuals and their Jacobian.

This is the objective of the GradBench ``ht`` eval (``evals/ht/README.md`` in
https://github.com/gradbench/gradbench, checked at commit f26651a7), i.e. the
ADBench "HAND" problem (Srajer, Schkufza & Fitzgibbon, 2018, section 4.3): a
linear-blend-skinned hand mesh is posed by 26 parameters ``theta`` and compared
with ``N`` observed 3-D points.  Both variants are implemented:

* **simple** (``us`` empty): point ``i`` corresponds to mesh *vertex*
  ``correspondences[i]``;
* **complicated** (``us`` of shape ``(N, 2)``): point ``i`` corresponds to the
  point with barycentric coordinates ``(u0, u1, 1 - u0 - u1)`` on mesh *triangle*
  ``correspondences[i]``.

Model (``B`` bones, ``V`` vertices; every array float64 unless stated)::

    parents                : (B,) int    parent bone, -1 for the root (parents
                                         come before their children)
    base_relatives         : (B, 4, 4)   rest pose of each bone relative to its parent
    inverse_base_absolutes : (B, 4, 4)   inverse rest pose of each bone (absolute)
    base_positions         : (V, 4)      rest vertex positions, homogeneous (w = 1)
    weights                : (V, B)      skinning weights
    triangles              : (T, 3) int  mesh triangles (vertex indices)
    is_mirrored            : bool        mirror the mesh in x

Pose.  ``theta[0:3]`` is the global rotation (angle-axis), ``theta[3:6]`` the
global translation, ``theta[6:26]`` the finger angles.  They are spread into a
``3 x (B + 3)`` matrix of pose parameters ``P`` (all zero unless set):
``P[:, 0] = theta[0:3]``, ``P[:, 1] = 1`` (scale), ``P[:, 2] = theta[3:6]`` and,
for finger ``f = 0..4`` and joint ``j = 0, 1, 2``, column ``c = 5 + 4 f + j``
gets ``P[0, c] = `` the next theta and, for ``j = 0`` only, ``P[1, c] = `` the one
after (so each finger takes 4 parameters: two at its base joint, one at each of
the two others).  Bone ``b`` uses column ``b + 3`` as Euler angles in the order
``(x, z, y)``.

Forward kinematics::

    R_b        = Rz(P[1, b+3]) @ Ry(P[2, b+3]) @ Rx(P[0, b+3])        (3 x 3)
    relative_b = base_relatives[b] @ [[R_b, 0], [0, 1]]
    absolute_b = absolute_{parent b} @ relative_b  (relative_b at the root)
    T_b        = absolute_b @ inverse_base_absolutes[b]
    x_v        = sum_b weights[v, b] * (T_b @ base_positions[v])[0:3]
    x_v[0]    *= -1                                       if is_mirrored
    y_v        = rodrigues(theta[0:3]) @ (P[:, 1] * x_v) + theta[3:6]

where ``rodrigues(w)`` is the rotation of angle ``|w|`` about ``w / |w|``
(the identity when ``|w| < 1e-4``, as in the reference implementation).

Residuals (the eval's ``objective``), ``3 N`` of them, ``err[3 i + j]``::

    simple:       points[i, j] - y_{c_i}[j]                      c_i = correspondences[i]
    complicated:  points[i, j] - (u0 y_{t0}[j] + u1 y_{t1}[j] + (1 - u0 - u1) y_{t2}[j])
                  with (t0, t1, t2) = triangles[c_i], (u0, u1) = us[i]

The eval's ``jacobian`` is the dense ``3N x 26`` Jacobian of the residuals with
respect to ``theta`` (simple) or the ``3N x 28`` matrix whose first two columns
are ``d err[3 i + j] / d us[i, 0]`` and ``d err[3 i + j] / d us[i, 1]`` (the
non-zero entries of the block-diagonal Jacobian with respect to ``us``; residual
``i`` depends on ``us[i]`` only) followed by the 26 theta columns
(complicated), exactly the layout of GradBench's ``HTJacobianOutput``.

:func:`ht_objective_simple` / :func:`ht_objective_complicated` are written the
way a Numba user would write them (explicit loops, small helper functions,
scratch arrays).  :func:`ht_objective_reference` is an independent vectorised
NumPy/SciPy implementation (rotations from :mod:`scipy.spatial.transform`,
batched matrix products) used to test them.  The Jacobian is computed with
gradjit's vector forward mode, one primal sweep carrying several tangent lanes
(:func:`ht_jacobian`).  The lanes are compressed directions (Curtis, Powell &
Reid 1974): the ``theta`` columns are colored from the model's structure
(:func:`ht_sparsity`, :class:`gradjit.JacobianColoring`) so that columns that
never affect the same residual -- the joints of different fingers, the three
translations -- share a lane, 8 to 10 lanes instead of 26 (while ``N <= 2 V``;
beyond, one lane per column: see :func:`ht_jacobian`); for the complicated
variant two more lanes carry the "all ``us[:, k]`` at once" directions, which
are exact because residual ``i`` depends on ``us[i]`` only.

Data.  ``kernels/data/ht`` holds GradBench's (= ADBench's) hand model
(``model/``: bones, triangles and the 544 vertices of the "small" model; the
"big" model's ``vertices.txt`` is the same 544 lines repeated cyclically to
10000 lines, which :func:`load_model` reproduces -- verified line by line
against GradBench's file) and the instance files ``hand1`` ... ``hand7`` of the
four directories ``{simple,complicated}_{small,big}`` (MIT licence, see
``LICENSE.TXT``).  The larger instances ``hand8`` ... ``hand12`` (6400 to 100000
points, 0.3 to 3.3 MB each) are not stored: :func:`generate` synthesises them
with GradBench's sizes and the same structure and distributions (theta standard
normal, uniform correspondences, ``us`` uniform on ``[0, 0.5)``, points = the
posed model plus ``N(0, 0.1^2)`` noise, the residual scale of GradBench's files);
see :func:`synthetic_instance`.  The Jacobian does not depend on the points.
"""

import math
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "HTProblem",
    "ht_objective_simple",
    "ht_objective_complicated",
    "ht_objective_reference",
    "ht_residuals",
    "ht_jacobian",
    "load_model",
    "read_instance",
    "synthetic_instance",
]

DATA_DIR = Path(__file__).resolve().parent / "data" / "ht"
N_THETA = 26
N_VERTICES = {"small": 544, "big": 10000}
# Number of correspondences of GradBench's instance files hand1 ... hand12.
N_POINTS = {1: 100, 2: 192, 3: 200, 4: 400, 5: 800, 6: 1600, 7: 3200, 8: 6400,
            9: 12800, 10: 25600, 11: 51200, 12: 100000}


# ---------------------------------------------------------------------------
# Numba kernel
# ---------------------------------------------------------------------------


@numba.njit
def angle_axis_to_rotation_matrix(w0, w1, w2, R):
    """Rotation by angle ``|w|`` about ``w / |w|`` into the 3x3 array ``R``."""
    norm = math.sqrt(w0 * w0 + w1 * w1 + w2 * w2)
    if norm < 1e-4:
        for i in range(3):
            for j in range(3):
                R[i, j] = 1.0 if i == j else 0.0
        return
    x = w0 / norm
    y = w1 / norm
    z = w2 / norm
    s = math.sin(norm)
    c = math.cos(norm)
    R[0, 0] = x * x + (1.0 - x * x) * c
    R[0, 1] = x * y * (1.0 - c) - z * s
    R[0, 2] = x * z * (1.0 - c) + y * s
    R[1, 0] = x * y * (1.0 - c) + z * s
    R[1, 1] = y * y + (1.0 - y * y) * c
    R[1, 2] = y * z * (1.0 - c) - x * s
    R[2, 0] = x * z * (1.0 - c) - y * s
    R[2, 1] = z * y * (1.0 - c) + x * s
    R[2, 2] = z * z + (1.0 - z * z) * c


@numba.njit
def euler_angles_to_rotation_matrix(tx, ty, tz, R):
    """``R = Rz(tz) @ Ry(ty) @ Rx(tx)`` (written out) into the 3x3 array ``R``."""
    cx = math.cos(tx)
    sx = math.sin(tx)
    cy = math.cos(ty)
    sy = math.sin(ty)
    cz = math.cos(tz)
    sz = math.sin(tz)
    R[0, 0] = cz * cy
    R[0, 1] = cz * sy * sx - sz * cx
    R[0, 2] = cz * sy * cx + sz * sx
    R[1, 0] = sz * cy
    R[1, 1] = sz * sy * sx + cz * cx
    R[1, 2] = sz * sy * cx - cz * sx
    R[2, 0] = -sy
    R[2, 1] = cy * sx
    R[2, 2] = cy * cx


@numba.njit
def to_pose_params(theta, n_bones):
    """The ``3 x (n_bones + 3)`` pose parameter matrix of the module docstring."""
    pose = np.zeros((3, n_bones + 3))
    for i in range(3):
        pose[i, 0] = theta[i]
        pose[i, 1] = 1.0
        pose[i, 2] = theta[3 + i]
    i_theta = 6
    i_pose = 5
    for finger in range(5):
        for joint in range(3):
            pose[0, i_pose] = theta[i_theta]
            i_theta += 1
            if joint == 0:
                pose[1, i_pose] = theta[i_theta]
                i_theta += 1
            i_pose += 1
        i_pose += 1
    return pose


@numba.njit
def bone_transforms(pose, parents, base_relatives, inverse_base_absolutes):
    """``T_b = absolute_b @ inverse_base_absolutes[b]`` for every bone, ``(B, 4, 4)``."""
    n_bones = parents.shape[0]
    R = np.empty((3, 3))
    relative = np.empty((4, 4))
    absolutes = np.empty((n_bones, 4, 4))
    transforms = np.empty((n_bones, 4, 4))
    for b in range(n_bones):
        euler_angles_to_rotation_matrix(pose[0, b + 3], pose[2, b + 3], pose[1, b + 3], R)
        # relative = base_relatives[b] @ [[R, 0], [0, 1]]
        for r in range(4):
            for c in range(3):
                acc = 0.0
                for k in range(3):
                    acc += base_relatives[b, r, k] * R[k, c]
                relative[r, c] = acc
            relative[r, 3] = base_relatives[b, r, 3]
        p = parents[b]
        if p == -1:
            for r in range(4):
                for c in range(4):
                    absolutes[b, r, c] = relative[r, c]
        else:
            for r in range(4):
                for c in range(4):
                    acc = 0.0
                    for k in range(4):
                        acc += absolutes[p, r, k] * relative[k, c]
                    absolutes[b, r, c] = acc
        for r in range(4):
            for c in range(4):
                acc = 0.0
                for k in range(4):
                    acc += absolutes[b, r, k] * inverse_base_absolutes[b, k, c]
                transforms[b, r, c] = acc
    return transforms


@numba.njit
def skinned_vertex_positions(theta, parents, base_relatives, inverse_base_absolutes,
                             base_positions, weights, is_mirrored):
    """Posed vertex positions ``y_v`` of every vertex, ``(V, 3)``."""
    n_bones = parents.shape[0]
    n_verts = base_positions.shape[0]
    pose = to_pose_params(theta, n_bones)
    transforms = bone_transforms(pose, parents, base_relatives, inverse_base_absolutes)

    R = np.empty((3, 3))
    angle_axis_to_rotation_matrix(pose[0, 0], pose[1, 0], pose[2, 0], R)
    for i in range(3):  # scale column i by the scale pose parameter
        for j in range(3):
            R[j, i] *= pose[i, 1]

    positions = np.empty((n_verts, 3))
    x = np.empty(3)
    for v in range(n_verts):
        for i in range(3):
            x[i] = 0.0
        for b in range(n_bones):
            w = weights[v, b]
            if w != 0.0:
                for i in range(3):
                    acc = 0.0
                    for k in range(4):
                        acc += transforms[b, i, k] * base_positions[v, k]
                    x[i] += w * acc
        if is_mirrored:
            x[0] = -x[0]
        for i in range(3):
            positions[v, i] = R[i, 0] * x[0] + R[i, 1] * x[1] + R[i, 2] * x[2] + pose[i, 2]
    return positions


@numba.njit
def ht_objective_simple(theta, parents, base_relatives, inverse_base_absolutes,
                        base_positions, weights, is_mirrored, correspondences,
                        points, err):
    """Simple-variant residuals into ``err`` (``3 N``): point minus its vertex."""
    positions = skinned_vertex_positions(theta, parents, base_relatives,
                                         inverse_base_absolutes, base_positions,
                                         weights, is_mirrored)
    for i in range(correspondences.shape[0]):
        v = correspondences[i]
        for j in range(3):
            err[3 * i + j] = points[i, j] - positions[v, j]


@numba.njit
def ht_objective_complicated(theta, us, parents, base_relatives, inverse_base_absolutes,
                             base_positions, weights, is_mirrored, triangles,
                             correspondences, points, err):
    """Complicated-variant residuals into ``err`` (``3 N``): point minus the
    barycentric point ``us[i]`` of its triangle."""
    positions = skinned_vertex_positions(theta, parents, base_relatives,
                                         inverse_base_absolutes, base_positions,
                                         weights, is_mirrored)
    for i in range(correspondences.shape[0]):
        t = correspondences[i]
        v0 = triangles[t, 0]
        v1 = triangles[t, 1]
        v2 = triangles[t, 2]
        u0 = us[i, 0]
        u1 = us[i, 1]
        u2 = 1.0 - u0 - u1
        for j in range(3):
            hand = u0 * positions[v0, j] + u1 * positions[v1, j] + u2 * positions[v2, j]
            err[3 * i + j] = points[i, j] - hand


# ---------------------------------------------------------------------------
# Problem container and the two eval functions
# ---------------------------------------------------------------------------


class HTProblem(NamedTuple):
    """A prepared ``ht`` input (C-contiguous arrays; ints are int64)."""

    theta: np.ndarray                   # (26,)
    us: np.ndarray                      # (N, 2), (0, 2) for the simple variant
    parents: np.ndarray                 # (B,) int64
    base_relatives: np.ndarray          # (B, 4, 4)
    inverse_base_absolutes: np.ndarray  # (B, 4, 4)
    base_positions: np.ndarray          # (V, 4)
    weights: np.ndarray                 # (V, B)
    is_mirrored: bool
    triangles: np.ndarray               # (T, 3) int64
    correspondences: np.ndarray         # (N,) int64
    points: np.ndarray                  # (N, 3)

    @property
    def complicated(self):
        return self.us.size > 0

    @property
    def n_residuals(self):
        return 3 * self.correspondences.shape[0]

    def model_args(self):
        return (self.parents, self.base_relatives, self.inverse_base_absolutes,
                self.base_positions, self.weights, self.is_mirrored)


def ht_residuals(p, theta=None, us=None):
    """Residuals ``(3N,)`` of problem ``p`` with the Numba kernel (``theta``/``us``
    override the problem's)."""
    theta = p.theta if theta is None else theta
    us = p.us if us is None else us
    err = np.empty(p.n_residuals)
    if p.complicated:
        ht_objective_complicated(theta, us, *p.model_args(), p.triangles,
                                 p.correspondences, p.points, err)
    else:
        ht_objective_simple(theta, *p.model_args(), p.correspondences, p.points, err)
    return err


_DERIVATIVES = {}


def _derivative(variant, mode, width=1):
    """gradjit derivative of the variant's objective (created once per arguments).

    Forward: ``theta`` (and ``us``) and ``err`` are ``Dual``; reverse: they are
    ``Duplicated``; the model and the data are ``Const``.  ``width`` > 1 is the
    vector mode: one primal sweep carries ``width`` tangents (the forward Jacobian
    uses one lane per color of ``theta``'s columns, plus two for ``us``; or 26
    and 28 lanes with one lane per column).
    """
    key = (variant, mode, width)
    df = _DERIVATIVES.get(key)
    if df is None:
        import gradjit
        from gradjit import Const, Dual, Duplicated

        act = Dual if mode == "forward" else Duplicated
        model = (Const,) * 6  # parents ... is_mirrored
        if variant == "simple":
            df = gradjit.autodiff(ht_objective_simple, mode, act, *model, Const, Const, act,
                                  width=width)
        else:
            df = gradjit.autodiff(ht_objective_complicated, mode, act, act, *model,
                                  Const, Const, Const, act, width=width)
        _DERIVATIVES[key] = df
    return df


_US_SEEDS = {}


def _us_seeds(us_shape, lanes):
    """Tangent seed of ``us`` for the complicated variant's forward Jacobian:
    lane ``k < 2`` seeds ``us[:, k] = 1`` on every row (exact, since residual ``i``
    depends on ``us[i]`` only), the other lanes 0.  Lane axis fastest
    (``dus[:, i, j]`` contiguous), the layout gradjit reads in place and loads as
    one vector per element.  Cached per shape and width (it depends on neither
    ``theta`` nor the data)."""
    key = (us_shape, lanes)
    dus = _US_SEEDS.get(key)
    if dus is None:
        dus = np.zeros(us_shape + (lanes,)).transpose(2, 0, 1)
        dus[0, :, 0] = 1.0
        dus[1, :, 1] = 1.0
        _US_SEEDS[key] = dus
    return dus


def _pose_entry_masks(n_bones):
    """``(3, n_bones + 3)`` int64: bit ``t`` of entry ``[i, c]`` is set when pose
    parameter ``P[i, c]`` is ``theta[t]`` (:func:`to_pose_params`, read off by
    tracing where each ``theta`` entry lands)."""
    theta = np.arange(N_THETA, dtype=np.float64) + 2.0  # distinct from 0 and 1
    pose = to_pose_params(theta, n_bones)
    masks = np.zeros(pose.shape, np.int64)
    hit = pose >= 2.0
    masks[hit] = np.left_shift(1, (pose[hit] - 2.0).astype(np.int64))
    return masks


@numba.njit(cache=True)
def _sparsity(pose_masks, parents, weights, triangles, correspondences, complicated):
    """The sparsity pattern of the residuals' Jacobian with respect to ``theta``:
    ``(indptr, indices, rows)``, a CSR pattern of the distinct pattern rows and
    the pattern row ``rows[r]`` of each residual ``r``.

    Residual ``3 i + j`` depends on the global rotation (``theta[0:3]``), on the
    translation ``theta[3 + j]`` (``y = R x + t``), and on the parameters of every
    bone that skins one of its vertices and of that bone's ancestors.  Points
    whose vertices (simple) or triangle (complicated) depend on the same bones'
    parameters share their three pattern rows, so the pattern has a few dozen
    rows on a hand model, whatever ``N``.  Time ``O(N + K B)`` for ``K``
    distinct referenced vertices or triangles and ``B`` bones.
    """
    n_bones = parents.shape[0]
    bone = np.empty(n_bones, np.int64)
    for b in range(n_bones):
        m = pose_masks[0, b + 3] | pose_masks[1, b + 3] | pose_masks[2, b + 3]
        if parents[b] >= 0:
            m |= bone[parents[b]]
        bone[b] = m
    rotation = pose_masks[0, 0] | pose_masks[1, 0] | pose_masks[2, 0]
    n = correspondences.shape[0]
    n_items = triangles.shape[0] if complicated else weights.shape[0]
    # slot[item]: the distinct mask index of a referenced vertex / triangle
    slot = np.full(n_items, -1, np.int64)
    size = 64
    while size < 2 * min(n, n_items):
        size *= 2
    table_key = np.full(size, -1, np.int64)  # open addressing: mask -> index
    table_val = np.empty(size, np.int64)
    masks = np.empty(min(n, n_items), np.int64)
    used = 0
    rows = np.empty(3 * n, np.int64)
    for i in range(n):
        c = correspondences[i]
        if slot[c] < 0:
            m = rotation
            for corner in range(3 if complicated else 1):
                v = triangles[c, corner] if complicated else c
                for b in range(n_bones):
                    if weights[v, b] != 0.0:
                        m |= bone[b]
            h = ((m * 0x2545F4914F6CDD1D) >> 32) & (size - 1)  # high bits of a multiplicative hash
            while table_key[h] != -1 and table_key[h] != m:
                h = (h + 1) & (size - 1)
            if table_key[h] == -1:
                table_key[h] = m
                table_val[h] = used
                masks[used] = m
                used += 1
            slot[c] = table_val[h]
        for j in range(3):
            rows[3 * i + j] = 3 * slot[c] + j
    indptr = np.zeros(3 * used + 1, np.int64)
    indices = np.empty(3 * used * N_THETA, np.int64)
    k = 0
    for s in range(used):
        for j in range(3):
            m = masks[s] | pose_masks[j, 2]  # component j's translation only
            for col in range(N_THETA):
                if (m >> col) & 1:
                    indices[k] = col
                    k += 1
            indptr[3 * s + j + 1] = k
    return indptr, indices[:k], rows


_POSE_MASKS = {}


def ht_sparsity(p):
    """The theta part of problem ``p``'s Jacobian as a column coloring:
    ``(coloring, rows)``, a :class:`gradjit.JacobianColoring` of the distinct
    pattern rows and the pattern row of each residual (for ``decompress``).

    Built from the model's structure (which bones skin each vertex, the bone
    hierarchy, which ``theta`` entries pose which bone), never from ``theta``.
    """
    import gradjit

    n_bones = p.parents.shape[0]
    masks = _POSE_MASKS.get(n_bones)
    if masks is None:
        masks = _POSE_MASKS[n_bones] = _pose_entry_masks(n_bones)
    indptr, indices, rows = _sparsity(masks, p.parents, p.weights, p.triangles,
                                      p.correspondences, p.complicated)
    return gradjit.JacobianColoring.from_csr(indptr, indices, N_THETA), rows


def _colored(p):
    """Does ``ht_jacobian(p)`` use the colored lanes: ``N <= 2 V`` (see there)."""
    return p.correspondences.shape[0] <= 2 * p.base_positions.shape[0]


def ht_jacobian(p, mode="forward"):
    """The eval's Jacobian of problem ``p``: ``(3N, 26)`` or ``(3N, 28)``.

    * ``"colored"``: gradjit's compressed vector forward mode.  The ``theta``
      columns are colored (:func:`ht_sparsity`: columns that never share a
      residual share a tangent lane; 8 to 10 lanes instead of 26 on GradBench's
      hand model), one primal sweep carries all lanes, and the result is
      decompressed into the dense Jacobian.  The complicated variant adds two
      lanes for the ``us`` columns.
    * ``"dense"``: the same with one lane per column (26 or 28 lanes), written
      straight into the Jacobian;
    * ``"forward"`` (the benchmarked one): ``"colored"`` while ``N <= 2 V``
      (``V`` vertices), else ``"dense"``.  The colored sweep saves lanes on the
      skinning of all ``V`` vertices but adds a pass over the compressed
      ``3N x p`` result; past ``N ~ 2 V`` that pass costs more than the lanes
      save (measured crossover between ``N = 12800`` and ``25600`` for
      ``V = 10000``, see ``benchmarks/results/2026-12-03-x86_64-2cpu-default-ht-coloring.md``).
    * ``"reverse"``: gradjit's reverse mode, one sweep per residual (``3N``
      sweeps, for testing).
    """
    m = p.n_residuals
    complicated = p.complicated
    variant = "complicated" if complicated else "simple"
    off = 2 if complicated else 0
    ncols = N_THETA + off
    if mode == "forward":
        mode = "colored" if _colored(p) else "dense"
    err = np.empty(m)
    if mode in ("colored", "dense"):
        if mode == "colored":
            coloring, rows = ht_sparsity(p)
            dtheta_lanes = coloring.seeds()
        else:
            dtheta_lanes = np.eye(N_THETA)
        lanes = off + dtheta_lanes.shape[0]
        dtheta = np.zeros((lanes, N_THETA))
        dtheta[off:] = dtheta_lanes
        df = _derivative(variant, "forward", width=lanes)
        # Every residual is written by the objective, so every tangent is too:
        # the output tangents need no zeroing.  They are passed as the transpose
        # of a row-major (m, lanes) array (lane axis fastest): gradjit then
        # writes each residual's lanes next to each other.
        jac = np.empty((m, ncols))
        compressed = jac if mode == "dense" else np.empty((m, lanes))
        if complicated:
            df(p.theta, dtheta, p.us, _us_seeds(p.us.shape, lanes), *p.model_args(),
               p.triangles, p.correspondences, p.points, err, compressed.T)
            if mode == "colored":
                jac[:, :2] = compressed[:, :2]
        else:
            df(p.theta, dtheta, *p.model_args(), p.correspondences, p.points, err,
               compressed.T)
        if mode == "colored":
            coloring.decompress(compressed[:, off:], out=jac[:, off:], rows=rows)
        return jac
    if mode != "reverse":
        raise ValueError(f"unknown mode {mode!r}")
    df = _derivative(variant, "reverse")
    jac = np.zeros((m, ncols))
    for r in range(m):
        dtheta = np.zeros(N_THETA)
        derr = np.zeros(m)
        derr[r] = 1.0
        if complicated:
            dus = np.zeros(p.us.shape)
            df(p.theta, dtheta, p.us, dus, *p.model_args(), p.triangles,
               p.correspondences, p.points, err, derr)
            jac[r, :2] = dus[r // 3]
        else:
            df(p.theta, dtheta, *p.model_args(), p.correspondences, p.points, err, derr)
        assert not derr.any()  # the seed is consumed
        jac[r, off:] = dtheta
    return jac


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def _rotvec_matrix(w):
    from scipy.spatial.transform import Rotation

    w = np.asarray(w, dtype=np.float64)
    if np.linalg.norm(w) < 1e-4:
        return np.eye(3)
    return Rotation.from_rotvec(w).as_matrix()


def reference_vertex_positions(theta, model):
    """``(V, 3)`` posed vertices, vectorised; ``model`` = :meth:`HTProblem.model_args`."""
    from scipy.spatial.transform import Rotation

    parents, base_rel, inv_base_abs, base_pos, weights, mirrored = model
    theta = np.asarray(theta, dtype=np.float64)
    n_bones = len(parents)
    pose = np.zeros((3, n_bones + 3))
    pose[:, 0], pose[:, 1], pose[:, 2] = theta[0:3], 1.0, theta[3:6]
    # columns 5 + 4 f + j: (x angle of joints 0..2, z angle of joint 0) per finger
    fingers = theta[6:].reshape(5, 4)
    cols = 5 + 4 * np.arange(5)[:, None] + np.arange(3)[None, :]
    pose[0, cols] = fingers[:, [0, 2, 3]]
    pose[1, cols[:, 0]] = fingers[:, 1]

    # Euler (x, z, y) -> Rz Ry Rx: intrinsic "ZYX" rotation with angles (z, y, x).
    eul = pose[:, 3:].T  # (B, 3) rows (x, z, y)
    rot = Rotation.from_euler("ZYX", eul[:, [1, 2, 0]]).as_matrix()
    block = np.tile(np.eye(4), (n_bones, 1, 1))
    block[:, :3, :3] = rot
    relatives = base_rel @ block
    absolutes = np.empty_like(relatives)
    for b in range(n_bones):
        absolutes[b] = relatives[b] if parents[b] < 0 else absolutes[parents[b]] @ relatives[b]
    transforms = absolutes @ inv_base_abs
    x = np.einsum("vb,bij,vj->vi", weights, transforms[:, :3, :], base_pos)
    if mirrored:
        x[:, 0] = -x[:, 0]
    R = _rotvec_matrix(pose[:, 0]) * pose[:, 1][None, :]
    return x @ R.T + pose[:, 2]


def ht_objective_reference(p, theta=None, us=None):
    """Residuals ``(3N,)`` of problem ``p``, vectorised NumPy/SciPy (same meaning
    as :func:`ht_residuals`)."""
    theta = p.theta if theta is None else theta
    us = p.us if us is None else np.asarray(us, dtype=np.float64)
    y = reference_vertex_positions(theta, p.model_args())
    if p.complicated:
        tri = p.triangles[p.correspondences]  # (N, 3)
        bary = np.column_stack([us[:, 0], us[:, 1], 1.0 - us[:, 0] - us[:, 1]])
        hand = np.einsum("nk,nkj->nj", bary, y[tri])
    else:
        hand = y[p.correspondences]
    return (p.points - hand).ravel()


# ---------------------------------------------------------------------------
# Inputs: GradBench's data files and synthetic instances
# ---------------------------------------------------------------------------


def load_model(model="big", data_dir=DATA_DIR):
    """The hand model as a dict in GradBench's JSON layout (``HTModel``), arrays
    as NumPy arrays.  ``model="big"`` repeats the 544 stored vertices cyclically
    to 10000, which is GradBench's ``*_big/model/vertices.txt``."""
    mdir = Path(data_dir) / "model"
    names, parents, rel, inv = [], [], [], []
    for line in (mdir / "bones.txt").read_text().splitlines():
        if not line.strip():
            continue
        f = line.split(":")
        names.append(f[0])
        parents.append(int(f[1]))
        rel.append([float(s) for s in f[2:18]])
        inv.append([float(s) for s in f[18:34]])
    n_bones = len(names)
    vlines = [s for s in (mdir / "vertices.txt").read_text().splitlines() if s.strip()]
    n_verts = N_VERTICES[model]
    positions = np.ones((n_verts, 4))
    weights = np.zeros((n_verts, n_bones))
    for v in range(n_verts):
        f = vlines[v % len(vlines)].split(":")
        positions[v, :3] = [float(s) for s in f[:3]]
        for k in range(int(f[8])):
            weights[v, int(f[9 + 2 * k])] = float(f[10 + 2 * k])
    triangles = np.array([[int(s) for s in line.split(":")]
                          for line in (mdir / "triangles.txt").read_text().splitlines()
                          if line.strip()], dtype=np.int64)
    return {
        "bone_count": n_bones,
        "bone_names": names,
        "parents": np.array(parents, dtype=np.int64),
        "base_relatives": np.array(rel).reshape(n_bones, 4, 4),
        "inverse_base_absolutes": np.array(inv).reshape(n_bones, 4, 4),
        "base_positions": positions,
        "weights": weights,
        "triangles": triangles,
        "is_mirrored": False,
    }


def instance_path(variant, model, n, data_dir=DATA_DIR):
    """Path of GradBench's instance file with ``n`` points (``hand{i}_t26_c{n}.txt``)
    of ``{variant}_{model}``, or None when it is not stored."""
    return next((Path(data_dir) / f"{variant}_{model}").glob(f"hand*_t26_c{n}.txt"), None)


def read_instance(path, complicated):
    """``(theta, correspondences, points, us)`` from an ADBench instance file."""
    lines = Path(path).read_text().splitlines()
    n, n_theta = (int(s) for s in lines[0].split())
    rows = [line.split() for line in lines[1:1 + n]]
    correspondences = np.array([int(r[0]) for r in rows], dtype=np.int64)
    points = np.array([[float(s) for s in r[1:4]] for r in rows]).reshape(n, 3)
    pos = 1 + n
    us = np.zeros((0, 2))
    if complicated:
        us = np.array([[float(s) for s in lines[pos + k].split()] for k in range(n)]).reshape(n, 2)
        pos += n
    theta = np.array([float(lines[pos + k]) for k in range(n_theta)])
    return theta, correspondences, points, us


def _problem(theta, us, model, correspondences, points):
    c = np.ascontiguousarray
    return HTProblem(
        theta=c(np.asarray(theta, dtype=np.float64).reshape(-1)),
        us=c(np.asarray(us, dtype=np.float64).reshape(-1, 2)),
        parents=c(np.asarray(model["parents"], dtype=np.int64)),
        base_relatives=c(np.asarray(model["base_relatives"], dtype=np.float64)),
        inverse_base_absolutes=c(np.asarray(model["inverse_base_absolutes"], dtype=np.float64)),
        base_positions=c(np.asarray(model["base_positions"], dtype=np.float64)),
        weights=c(np.asarray(model["weights"], dtype=np.float64)),
        is_mirrored=bool(model["is_mirrored"]),
        triangles=c(np.asarray(model["triangles"], dtype=np.int64).reshape(-1, 3)),
        correspondences=c(np.asarray(correspondences, dtype=np.int64).reshape(-1)),
        points=c(np.asarray(points, dtype=np.float64).reshape(-1, 3)),
    )


def synthetic_instance(model, n, complicated, seed=31337, noise=0.1):
    """A synthetic instance with ``n`` correspondences on ``model`` (a
    :func:`load_model` dict), shaped and distributed like GradBench's files:
    ``theta ~ N(0, 1)``, correspondences uniform over the vertices (simple) or
    triangles (complicated), ``us ~ U[0, 0.5)^2``, points = the model posed at
    ``theta`` plus ``N(0, noise^2)`` noise.  Returns
    ``(theta, correspondences, points, us)``."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=N_THETA)
    n_targets = len(model["triangles"]) if complicated else len(model["base_positions"])
    correspondences = rng.integers(0, n_targets, size=n)
    us = rng.uniform(0.0, 0.5, size=(n, 2)) if complicated else np.zeros((0, 2))
    p = _problem(theta, us, model, correspondences, np.zeros((n, 3)))
    points = -ht_objective_reference(p).reshape(n, 3) + noise * rng.normal(size=(n, 3))
    return theta, correspondences, points, us


def make_problem(variant="complicated", model="big", n=100, seed=31337):
    """:class:`HTProblem` for GradBench's instance with ``n`` points of
    ``{variant}_{model}`` (synthetic when the file is not stored, see the module
    docstring)."""
    return prepare(DERIVATIVE, generate(seed=seed, variant=variant, model=model, n=n))


# ---------------------------------------------------------------------------
# GradBench interface (see benchmarks/README.md)
# ---------------------------------------------------------------------------

MODULE = "ht"
PRIMAL, DERIVATIVE = "objective", "jacobian"
SIZES = {
    "quick": [dict(variant="simple", model="big", n=100),
              dict(variant="complicated", model="big", n=100),
              dict(variant="complicated", model="big", n=1600)],
    # GradBench's default run: the big model, hand1 ... hand12 (n = 100 ... 100000
    # points); here for both variants.
    "default": [dict(variant=v, model="big", n=n)
                for v in ("simple", "complicated") for n in N_POINTS.values()],
}


def generate(seed=31337, variant="complicated", model="big", n=100):
    """A GradBench ``ht`` input (``HTInput``) with ``n`` points: GradBench's
    ``hand{i}_t26_c{n}`` of ``{variant}_{model}`` when it is stored (n <= 3200),
    else a synthetic instance of that size (``seed`` is only used for those)."""
    if variant not in ("simple", "complicated") or model not in N_VERTICES:
        raise ValueError(f"unknown ht variant/model {variant!r}/{model!r}")
    complicated = variant == "complicated"
    m = load_model(model)
    path = instance_path(variant, model, n)
    if path is not None:
        theta, corr, points, us = read_instance(path, complicated)
    else:
        theta, corr, points, us = synthetic_instance(m, n, complicated, seed=seed + n)
    model_json = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in m.items()}
    return {"theta": theta.tolist(),
            "data": {"model": model_json, "correspondences": corr.tolist(),
                     "points": points.tolist()},
            "us": us.tolist()}


def prepare(function, input):
    """JSON input -> :class:`HTProblem` (not timed)."""
    data = input["data"]
    return _problem(input["theta"], input.get("us", []), data["model"],
                    data["correspondences"], data["points"])


def evaluate(function, p):
    """The timed computation: the residuals, or their Jacobian with gradjit."""
    if function == PRIMAL:
        return ht_residuals(p)
    if function == DERIVATIVE:
        return ht_jacobian(p, "forward")
    raise ValueError(f"ht has no function {function!r}")


def compile_key(function, p):
    """What else decides whether ``evaluate`` compiles anew (not timed): the
    number of tangent lanes of the Jacobian (:func:`ht_jacobian`)."""
    if function != DERIVATIVE:
        return None
    return ht_sparsity(p)[0].lanes if _colored(p) else "dense"


def output(function, result):
    """``HTObjectiveOutput`` (3N floats) or ``HTJacobianOutput`` (3N rows)."""
    return np.asarray(result).tolist()


def flat_problem(p):
    """``(f, x0)``: the residuals as a function of the Jacobian's columns.

    Simple: ``x = theta``.  Complicated: ``x = (s0, s1, theta)`` with
    ``us = p.us + (s0, s1)`` on every row and ``s = 0`` at ``x0``; since residual
    ``i`` depends on ``us[i]`` only, ``d f / d s_k`` is exactly the eval's
    compressed ``us`` column ``k``.
    """
    if not p.complicated:
        return (lambda x: ht_residuals(p, theta=np.ascontiguousarray(x))), p.theta.copy()

    def f(x):
        return ht_residuals(p, theta=np.ascontiguousarray(x[2:]),
                            us=np.ascontiguousarray(p.us + x[:2]))
    return f, np.concatenate([np.zeros(2), p.theta])


def flat_derivative(result):
    return np.asarray(result)
