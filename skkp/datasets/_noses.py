"""Synthetic nose images with exact keypoints (their schemas are in :mod:`skkp.schemas`).

Every image is rendered from a random shape in *canonical* units (nose length
about 1, ``u`` towards the image's right, ``v`` downwards), mapped to pixels by a
random similarity transform. The keypoints are the geometric landmarks of the same
shape under the same transform, so they agree with the pixels exactly.
"""
import numbers

import cv2
import numpy as np
from sklearn.utils import check_random_state

from ..schemas import get_nose_schema

# canonical unit in pixels, as a fraction of image_size (at scale 1)
_UNIT = {"frontal": 0.62, "side": 0.62, "bottom": 0.8}
_CHUNK = 16     # images rendered together (small enough to stay in cache)
_TAB = 2.2      # the side profile is tabulated for v in [-_TAB, _TAB]


# ----------------------------------------------------------------------------- shapes
def _sig(x):
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _ell_q(u, v, cu, cv, ru, rv, theta=None):
    """Quadratic form of an ellipse: < 1 inside, 1 on the rim."""
    du, dv = u - cu, v - cv
    if theta is not None:
        c, s = np.cos(theta), np.sin(theta)
        if np.ndim(c) == 0:     # a Python float keeps float32 arrays float32
            c, s = float(c), float(s)
        du, dv = du * c + dv * s, dv * c - du * s
    return (du / ru) ** 2 + (dv / rv) ** 2


def _cap(q):
    """Ellipsoidal dome of unit height whose rim (q = 1) is a sharp crease."""
    return np.sqrt(np.maximum(1.0 - q, 0.0))


def _dome(q):
    """Smooth dome of unit height: zero slope on top, a soft crease at the rim (q = 1)."""
    x = np.maximum(1.0 - q, 0.0)
    return x * (2.0 - x)


def _inside(q, edge=0.35):
    """Soft indicator of an ellipse's interior (1 well inside, 0 outside)."""
    return np.clip((1.0 - q) / edge, 0.0, 1.0)


def _support(cu, cv, ru, rv, theta, d):
    """Point of a rotated ellipse furthest in direction ``d`` (exact, vectorised)."""
    c, s = np.cos(theta), np.sin(theta)
    # A = R diag(ru^2, rv^2) R^T with R the rotation by theta
    a11 = c * c * ru ** 2 + s * s * rv ** 2
    a22 = s * s * ru ** 2 + c * c * rv ** 2
    a12 = c * s * (ru ** 2 - rv ** 2)
    ad = (a11 * d[0] + a12 * d[1], a12 * d[0] + a22 * d[1])
    norm = np.sqrt(ad[0] * d[0] + ad[1] * d[1])
    return np.stack([cu + ad[0] / norm, cv + ad[1] / norm], axis=-1)


def _smax(a, b, k=0.015):
    """Smooth maximum: union of two height fields with a rounded seam."""
    return np.maximum(a, b) + k * np.log1p(np.exp(-np.abs(a - b) / k))


def _qmin(qs, k=0.15):
    """Smooth minimum of ellipse forms: one outline around overlapping ellipses."""
    m = np.minimum.reduce(qs)
    return m - k * np.log(sum(np.exp((m - q) / k) for q in qs))


def _draw_frontal(U, n, size):
    yaw = U(-0.08, 0.08)
    p = dict(vn=U(-0.53, -0.47), vt=U(0.15, 0.24), rt=U(0.1, 0.14), hbt=U(0.04, 0.09),
             ut=0.5 * yaw, wb=U(0.05, 0.08), wt=U(0.14, 0.2), hb=U(0.05, 0.09),
             Ht=U(0.22, 0.32), hg=U(0.1, 0.16), ha=U(0.12, 0.2), rnu=U(0.045, 0.065),
             rnv=U(0.025, 0.04), tilt=U(0.1, 0.5), rcu=U(0.035, 0.05), rcv=U(0.04, 0.06),
             uc=0.3 * yaw)
    p["val"] = p["vt"] + U(0.04, 0.09)
    p["vno"] = p["val"] + U(0.02, 0.05)
    p["vc"] = p["vno"] + U(0.0, 0.03)
    p["ve"] = p["vn"] + U(0.02, 0.07)
    ax, ra, ray, nx = U(0.15, 0.2), U(0.09, 0.12), U(0.09, 0.12), p["rcu"] + U(0.045, 0.07)
    ein, reu, rev = U(0.2, 0.27), U(0.14, 0.2), U(0.04, 0.065)
    for side, f in (("l", 1 - yaw), ("r", -(1 + yaw))):   # subject's left is +u
        p["ax" + side], p["ra" + side], p["ray" + side] = ax * f, ra * abs(f), ray
        p["nx" + side] = p["uc"] + nx * f
        p["ex" + side], p["reu" + side], p["rev" + side] = (ein + reu) * f, reu * abs(f), rev
    kp = [(0 * yaw, p["vn"]), (p["ut"], p["vt"]), (p["axl"] + p["ral"], p["val"]),
          (p["axr"] - p["rar"], p["val"]), (p["nxl"], p["vno"]), (p["nxr"], p["vno"]),
          (p["uc"], p["vc"] + p["rcv"])]
    return p, np.stack([np.stack(k, -1) for k in kp], 1)


def _frontal(u, v, p):
    t = np.clip((v - p["vn"]) / (p["vt"] - p["vn"]), 0.0, 1.0)
    w = p["wb"] + (p["wt"] - p["wb"]) * t * t                       # bridge half-width
    fall = np.maximum(v - p["vt"], 0.0) / (0.5 * (p["vc"] + p["rcv"] - p["vt"]))
    tent = ((p["hb"] + (p["Ht"] - p["hb"]) * t ** 1.3) * np.exp(-fall * fall)
            * _sig((v - p["vn"]) / 0.015) * np.exp(-(u - p["ut"] * t) ** 2 / (2 * w * w)))
    cheek = -0.3 * u * u
    h = cheek + tent + p["hg"] * _sig((p["vn"] - 0.03 - v) / 0.04) * np.exp(-u * u / 0.08)
    qt = _ell_q(u, v, p["ut"], p["vt"], p["rt"], 0.9 * p["rt"])
    h += p["hbt"] * np.maximum(1 - qt, 0) ** 2                            # tip bulb
    h += 0.04 * np.exp(-((v - p["vc"] - 0.18) / 0.1) ** 2 - (u / 0.3) ** 2)   # upper lip
    h = _smax(h, 0.55 * p["Ht"] * _cap(_ell_q(u, v, p["uc"], p["vc"], p["rcu"], p["rcv"])))
    dark = np.ones_like(u)
    qs = [_ell_q(u, v, p["ut"], p["vt"], 1.3 * p["rt"], p["rt"])]
    for s, sgn in (("l", -1.0), ("r", 1.0)):
        qs.append(_ell_q(u, v, p["ax" + s], p["val"], p["ra" + s], p["ray" + s]))
        qn = _ell_q(u, v, p["nx" + s], p["vno"], p["rnu"], p["rnv"], sgn * p["tilt"])
        h -= 0.04 * _cap(qn)
        qe = _ell_q(u, v, p["ex" + s], p["ve"], p["reu" + s], p["rev" + s])
        h -= 0.08 * np.exp(-0.3 * qe)                                        # eye socket
        dark -= 0.9 * _inside(qn) + 0.55 * _inside(qe, 0.5)
    h = _smax(h, cheek + p["ha"] * _dome(_qmin(qs, 0.5)), 0.03)             # tip and alar wings
    return h, dark, None


def _draw_bottom(U, n, size):
    yaw = U(-0.08, 0.08)
    p = dict(ut=0.3 * yaw, vt=U(-0.32, -0.24), rtu=U(0.16, 0.22), rtv=U(0.11, 0.15),
             ht=U(0.12, 0.18), hb=U(0.08, 0.12), val=U(0.04, 0.1), ha=U(0.1, 0.15),
             rnu=U(0.045, 0.065), rnv=U(0.09, 0.13), tilt=U(0.1, 0.4), vno=U(-0.04, 0.03),
             rcu=U(0.03, 0.045), uc=0.15 * yaw)
    ax, rau, rav, ta = U(0.17, 0.23), U(0.11, 0.15), U(0.15, 0.2), U(0.0, 0.35)
    nx = p["rcu"] + 0.8 * p["rnu"] + U(0.01, 0.03)
    p["vc"] = p["vno"]
    p["rcv"] = p["val"] + 0.9 * rav - p["vc"]
    p["rbu"], p["vb"] = 0.8 * ax, 0.5 * (p["vt"] + p["val"])              # body of the lobule
    p["rbv"] = 0.5 * (p["val"] - p["vt"]) + 0.1
    for side, f in (("l", 1 - yaw), ("r", -(1 + yaw))):
        p["ax" + side], p["rau" + side], p["rav" + side] = ax * f, rau * abs(f), rav
        p["ta" + side] = -ta * np.sign(f)      # the lower ends of the alae flare outwards
        p["nx" + side] = p["uc"] + nx * f
    kp = [np.stack([p["ut"], p["vt"] - p["rtv"]], -1), np.stack([p["uc"], p["vc"]], -1),
          np.stack([p["uc"], p["vc"] + p["rcv"]], -1),
          np.stack([p["nxl"], p["vno"]], -1), np.stack([p["nxr"], p["vno"]], -1)]
    for d in ((0.0, 1.0), (1.0, 0.0)):   # subalare: lowest point; alare: most lateral
        for s, sgn in (("l", 1.0), ("r", -1.0)):
            kp.append(_support(p["ax" + s], p["val"], p["rau" + s], p["rav" + s], p["ta" + s],
                               (sgn * d[0], d[1])))
    return p, np.stack(kp, 1)


def _bottom(u, v, p):
    qs = [_ell_q(u, v, p["uc"], p["vb"], p["rbu"], p["rbv"]),
          _ell_q(u, v, p["ut"], p["vt"], p["rtu"], p["rtv"])]
    dark = np.ones_like(u)
    h = 0.0
    for s, sgn in (("l", -1.0), ("r", 1.0)):
        qs.append(_ell_q(u, v, p["ax" + s], p["val"], p["rau" + s], p["rav" + s], p["ta" + s]))
        h += 0.3 * p["ha"] * np.maximum(1 - qs[-1], 0) ** 2                 # alar lobes
        qn = _ell_q(u, v, p["nx" + s], p["vno"], p["rnu"], p["rnv"], sgn * p["tilt"])
        h -= 0.05 * _cap(qn)
        dark -= 0.92 * _inside(qn)
    h += 0.3 * p["ht"] * np.maximum(1 - qs[1], 0) ** 2                       # tip lobule
    h += 0.3 * p["hb"] * _cap(_ell_q(u, v, p["uc"], p["vc"], p["rcu"], p["rcv"]))
    lip = -0.2 * u * u + 0.03 * np.exp(-((v - 0.55) / 0.2) ** 2)
    h = _smax(lip, h + p["ha"] * _dome(_qmin(qs, 0.5)), 0.02)
    return h, dark, None


def _draw_side(U, n, size):
    p = dict(vn=U(-0.53, -0.47), vt=U(0.18, 0.28), D=U(0.28, 0.4), hg=U(0.05, 0.09),
             hl=U(0.04, 0.09), q=U(1.4, 2.2), hump=U(-0.02, 0.04), k=U(0.012, 0.025),
             rau=U(0.13, 0.17), rav=U(0.08, 0.1), ve=U(0.0, 0.06), ue=U(-0.36, -0.28))
    p["vsn"] = p["vt"] + U(0.14, 0.2)
    p["ua"], p["va"] = p["D"] * U(0.25, 0.4), p["vsn"] - p["rav"] * U(0.7, 1.0)
    g = np.linspace(-0.8, 0.9, max(512, 4 * size))[None, :]
    pc = {k: a[:, None] for k, a in p.items()}
    prof = _profile(g, pc)
    gv, rows = np.broadcast_to(g, prof.shape), np.arange(n)

    def pick(lo, hi, sign):      # extreme of the profile for v in [lo, hi], refined by a parabola
        sel = np.where((gv >= lo) & (gv <= hi), sign * prof, -np.inf)
        i = sel.argmax(1)
        f0, f1, f2 = (sign * prof[rows, j] for j in (i - 1, i, i + 1))
        step = 0.5 * (f0 - f2) / np.minimum(f0 - 2 * f1 + f2, -1e-12)
        return g[0, i] + np.clip(step, -0.5, 0.5) * (g[0, 1] - g[0, 0])

    vn, vt = pick(pc["vn"] - 0.15, pc["vt"], -1), pick(pc["vn"], pc["vsn"], 1)
    vs = pick(pc["vt"], pc["vsn"] + 0.13, -1)
    vs_all = np.stack([vn, 0.5 * (vn + vt), vt, 0.5 * (vt + vs), vs], 1)
    p["tab"] = _profile(np.linspace(-_TAB, _TAB, max(1024, 8 * size))[None, :], pc)  # pixels
    return p, np.stack([_profile(vs_all, pc), vs_all], -1)


def _profile(v, p):
    """u of the silhouette at height v (face to the left, air to the right)."""
    base = (-0.08 * v + p["hg"] * np.exp(-((v - p["vn"] + 0.17) / 0.12) ** 2)
            + p["hl"] * np.exp(-((v - p["vsn"] - 0.15) / 0.1) ** 2)
            - 0.05 * np.exp(-((v - p["vsn"] - 0.32) / 0.03) ** 2))
    t = (v - p["vn"]) / (p["vt"] - p["vn"])
    l1 = p["D"] * t + p["hump"] * np.sin(np.pi * np.clip(t, 0.0, 1.0))
    l2 = p["D"] * (1.0 - np.maximum((v - p["vt"]) / (p["vsn"] - p["vt"]), 0.0) ** p["q"])
    k = p["k"]   # smooth minimum (rounded tip) then smooth clip at 0 (rounded nasion)
    nose = np.minimum(l1, l2) - k * np.log1p(np.exp(-np.abs(l1 - l2) / k))
    return base + np.maximum(nose, 0.0) + 0.01 * np.log1p(np.exp(-np.abs(nose) / 0.01))


def _side(u, v, p):
    tab = p["tab"]   # the profile sampled densely: linear interpolation is exact to ~1e-4
    m, t = tab.shape
    x = np.clip((v + _TAB) * ((t - 1) / (2 * _TAB)), 0, t - 1.001)
    i = x.astype(np.int32)
    x -= i
    i += (np.arange(m, dtype=np.int32) * t)[:, None, None]
    lo, hi = np.take(tab, i), np.take(tab, i + 1)
    signed = lo + (hi - lo) * x - u
    x = np.clip(signed / 0.35, 0.0, 1.0)
    h = 0.2 * x * (2.0 - x)                           # the face rounds off towards the air
    qa = _ell_q(u, v, p["ua"], p["va"], p["rau"], p["rav"], -0.2)
    h += 0.08 * _cap(qa)
    qn = _ell_q(u, v, p["ua"] + 0.5 * p["rau"], p["va"] + 0.55 * p["rav"], 0.45 * p["rau"],
                0.25 * p["rav"], -0.3)
    qe = _ell_q(u, v, p["ue"], p["vn"] + p["ve"], 0.07, 0.035, 0.15)
    dark = 1.0 - 0.8 * _inside(qn, 0.6) - 0.6 * _inside(qe, 0.5)
    return h, dark, signed


_VIEWS = {"frontal": (_draw_frontal, _frontal), "side": (_draw_side, _side),
          "bottom": (_draw_bottom, _bottom)}


# ----------------------------------------------------------------------------- rendering
def _render(n, view, size, rng, clean=False):
    """Draw shapes and poses and render them: ``(images uint8, keypoints (n, K, 2))``.

    ``clean=True`` lights the shape from the camera and leaves out texture, noise,
    cast shadows, highlights and the illumination gradient (for tests of the geometry);
    shapes and poses are the same as without it.
    """
    draw, shape = _VIEWS[view]

    def U(lo, hi):
        return rng.uniform(lo, hi, n)

    p, kp = draw(U, n, size)
    ang, scale = np.deg2rad(U(-20.0, 20.0)), U(0.8, 1.2) * _UNIT[view] * size
    ca, sa = np.cos(ang), np.sin(ang)
    centre = (size - 1) / 2.0 + rng.uniform(-0.1, 0.1, (n, 2)) * size
    pts = np.stack([ca[:, None] * kp[..., 0] + sa[:, None] * kp[..., 1],
                    ca[:, None] * kp[..., 1] - sa[:, None] * kp[..., 0]], -1)
    pts = centre[:, None] + scale[:, None, None] * pts
    margin = 0.04 * size + 1.0       # keep every keypoint well inside the image
    fix = (np.clip(margin - pts.min(1), 0, None)
           - np.clip(pts.max(1) - (size - 1 - margin), 0, None))
    centre, pts = centre + fix, pts + fix[:, None]

    az, el = -np.pi / 2 + U(-1.8, 1.8), U(0.5, 1.2)                # light direction
    if clean:
        el = np.full(n, np.pi / 2)                                 # lit from the camera
    light = dict(lx=np.cos(el) * np.cos(az), ly=np.cos(el) * np.sin(az), lz=np.sin(el))
    hz = np.sqrt(2 + 2 * light["lz"])                              # half vector (L + z) / |.|
    half = dict(hx=light["lx"] / hz, hy=light["ly"] / hz, hz=(light["lz"] + 1) / hz)
    mat = dict(skin=U(0.3, 0.85), amb=U(0.2, 0.45), ks=U(0.0, 0.25), tex=U(0.03, 0.12),
               pores=U(0.003, 0.015), sigma=U(1.0, 6.0), gx=U(-0.3, 0.3), gy=U(-0.3, 0.3))
    flat = mat["skin"] * (mat["amb"] + (1 - mat["amb"]) * light["lz"])   # a face facing us
    delta = U(0.25, 0.45) * np.where(flat > 0.45, -1.0, 1.0)   # air differs from the face
    mat["bg"], mat["bgx"], mat["bgy"] = flat + delta, U(-0.15, 0.15), U(-0.15, 0.15)
    grid = np.arange(size, dtype=np.float32)
    basis = np.exp(-(grid[:, None] / (size - 1) * 4 - np.arange(5)) ** 2).astype(np.float32)
    images = np.empty((n, size, size), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        m = sl.stop - start

        def col(a):
            a = np.asarray(a[sl], dtype=np.float32)
            return a[:, None, None] if a.ndim == 1 else a

        dx, dy = grid[None, None, :] - col(centre[:, 0]), grid[None, :, None] - col(centre[:, 1])
        u = (col(ca) * dx - col(sa) * dy) / col(scale)
        v = (col(sa) * dx + col(ca) * dy) / col(scale)
        h, dark, signed = shape(u, v, {k: col(a) for k, a in p.items()})
        hp = h * col(scale)
        gy, gx = np.gradient(hp, axis=(1, 2))
        inv = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
        ndotl = np.maximum((col(light["lz"]) - gx * col(light["lx"]) - gy * col(light["ly"]))
                           * inv, 0.0)
        albedo = col(mat["skin"]) * np.maximum(dark, 0.05)
        shadow = np.zeros_like(hp)
        if not clean:
            z = rng.standard_normal((m, 5, 5)).astype(np.float32)
            albedo *= 1.0 + col(mat["tex"]) * (basis @ z @ basis.T)
            albedo *= 1.0 - 0.12 * (rng.randint(0, 256, (m, size, size), dtype=np.uint8)
                                    < 256 * col(mat["pores"]))
            _cast_shadows(hp, shadow, {k: a[sl] for k, a in light.items()}, size)
        img = albedo * (col(mat["amb"]) + (1 - col(mat["amb"])) * ndotl * (1 - 0.8 * shadow))
        if not clean:
            ndoth = np.maximum((col(half["hz"]) - gx * col(half["hx"]) - gy * col(half["hy"]))
                               * inv, 0.0)
            ndoth *= ndoth
            ndoth *= ndoth
            ndoth *= ndoth        # (n . h) ** 8, then ** 24
            img += col(mat["ks"]) * (1 - shadow) * ndoth * ndoth * ndoth
        if signed is not None:   # side view: face on the left of the silhouette, then air
            bg = col(mat["bg"]) + (col(mat["bgx"]) * dx + col(mat["bgy"]) * dy) / size
            if not clean:
                z = rng.standard_normal((m, 5, 5)).astype(np.float32)
                bg += 0.05 * (basis @ z @ basis.T)
            face = _sig(signed * col(scale) / 0.5)
            img = face * img + (1 - face) * bg
        if not clean:
            img *= 1.0 + (col(mat["gx"]) * dx + col(mat["gy"]) * dy) / size
            z = sum(rng.randint(-128, 128, img.shape, dtype=np.int8).astype(np.int16)
                    for _ in range(3))             # ~ Gaussian (Irwin-Hall), std 128
            img = img * 255.0 + (col(mat["sigma"]) / 128.0) * z
        else:
            img = img * 255.0
        images[sl] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return images, pts


def _cast_shadows(hp, out, light, size):
    """Soft cast shadows: a pixel is shadowed when the surface rises above the ray to the light."""
    lxy = np.hypot(light["lx"], light["ly"])
    for i in range(hp.shape[0]):
        ux, uy, slope = light["lx"][i] / lxy[i], light["ly"][i] / lxy[i], light["lz"][i] / lxy[i]
        for d in (0.04 * size, 0.1 * size):
            M = np.array([[1.0, 0.0, d * ux], [0.0, 1.0, d * uy]])
            ahead = cv2.warpAffine(hp[i], M, (size, size), flags=cv2.INTER_LINEAR |
                                   cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
            np.maximum(out[i], np.clip((ahead - hp[i] - d * slope) / (0.02 * size), 0, 1),
                       out=out[i])


def _check_args(n_samples, view, image_size):
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) \
            or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    get_nose_schema(view)
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}")


def make_noses(n_samples=100, view="frontal", image_size=96, random_state=None):
    """Generate grayscale nose images with exact keypoints.

    Each image is a shaded height field of a random nose (bridge, tip, alae,
    columella, dark nostrils, eyes or face around it) under a random light, with
    cast shadows, skin texture, pores, an illumination gradient and Gaussian
    noise, placed with a random rotation (+-20 deg), scale (0.8-1.2) and shift
    (+-10% of the size). The keypoints are the landmarks of that same shape under
    that same transform; all lie inside the image.

    Parameters
    ----------
    n_samples : int, default=100
        Number of images.
    view : {"frontal", "side", "bottom"}, default="frontal"
        Which nose view and keypoint schema (see :data:`NOSE_SCHEMAS`).
    image_size : int, default=96
        Side of the square images in pixels (>= 16); the geometry scales with it.
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible output; the global NumPy RNG is never used.

    Returns
    -------
    images : ndarray of shape (n_samples, image_size, image_size), uint8
    keypoints : ndarray of shape (n_samples, 2 * K), float64
        Pixel coordinates ``x0, y0, x1, y1, ...`` in the order of
        ``get_nose_schema(view).names``.

    Examples
    --------
    >>> X, y = make_noses(4, view="bottom", image_size=64, random_state=0)
    >>> X.shape, X.dtype, y.shape
    ((4, 64, 64), dtype('uint8'), (4, 18))
    """
    _check_args(n_samples, view, image_size)
    rng = check_random_state(random_state)
    images, pts = _render(int(n_samples), view, int(image_size), rng)
    return images, pts.reshape(len(pts), -1).astype(np.float64)
