"""Synthetic faces with CelebAMask-HQ label maps."""
import numbers

import cv2
import numpy as np
from sklearn.utils import check_random_state

from ..schemas import CELEBAMASK_CLASSES

# ---------------------------------------------------------------------------
# Synthetic faces (landmark label maps live in _landmark_masks.py)
# ---------------------------------------------------------------------------
_SHIFT = 4                      # cv2 fixed-point bits: vertices at 1/16 pixel
_ONE = float(1 << _SHIFT)
_CLS = {name: i for i, name in enumerate(CELEBAMASK_CLASSES)}

_SKIN_TONES = np.array([[255, 226, 200], [240, 196, 162], [214, 160, 120], [170, 112, 74],
                        [118, 74, 48], [80, 52, 36]], dtype=np.float64)
_HAIR_COLOURS = np.array([[28, 24, 22], [62, 40, 28], [104, 70, 44], [150, 104, 60],
                          [206, 170, 108], [146, 64, 34], [172, 172, 172], [232, 228, 220]],
                         dtype=np.float64)
_HAIR_P = np.array([0.24, 0.22, 0.16, 0.1, 0.1, 0.06, 0.07, 0.05])
_IRIS_COLOURS = np.array([[70, 42, 26], [110, 72, 40], [70, 110, 150], [80, 120, 80],
                          [40, 40, 40]], dtype=np.float64)


def _check_int(value, name, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {low}, got {value!r} "
                        f"({type(value).__name__}).")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    return int(value)


def _ellipse(cx, cy, a, b, n=40, t0=0.0, t1=2 * np.pi, angle=0.0):
    """Points of an (optionally rotated) ellipse arc, shape (n, 2)."""
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * np.pi - 1e-9)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _mirror(pts):
    """Mirror canonical points to the other side of the face (x -> -x)."""
    return pts * np.array([-1.0, 1.0])


class _Canvas:
    """Paints parts into one id map; every part owns a class label, a colour
    and a texture strength. Image and label map are both looked up from the
    same id map, so the label map is exactly what was painted."""

    def __init__(self, size, matrix, scale):
        self.ids = np.zeros((size, size), dtype=np.uint8)
        self.matrix, self.scale = matrix, scale
        self.labels, self.colours, self.texture, self.streaky = [], [], [], []

    def _part(self, label, colour, texture, streaky):
        self.labels.append(_CLS[label])
        self.colours.append(np.clip(colour, 0, 255))
        self.texture.append(texture)
        self.streaky.append(streaky)
        if len(self.labels) > 255:
            raise RuntimeError("too many parts")  # pragma: no cover - fixed by design
        return len(self.labels) - 1

    def _pix(self, pts, pixel):
        pts = np.asarray(pts, dtype=np.float64)
        if not pixel:
            pts = pts @ self.matrix[:, :2].T + self.matrix[:, 2]
        return np.round(pts * _ONE).astype(np.int32)

    def fill(self, polys, label, colour, texture=4.0, streaky=False, pixel=False):
        pid = self._part(label, colour, texture, streaky)
        for p in polys:  # one call each: cv2 fills overlaps of one call even-odd
            cv2.fillPoly(self.ids, [self._pix(p, pixel)], pid, cv2.LINE_8, _SHIFT)

    def line(self, polys, label, colour, width, closed=False, texture=3.0):
        pid = self._part(label, colour, texture, False)
        thickness = max(1, int(round(width * self.scale)))
        cv2.polylines(self.ids, [self._pix(p, False) for p in polys], closed, pid, thickness,
                      cv2.LINE_8, _SHIFT)


def _pick_colour(rng, table, p=None, jitter=10.0):
    return table[rng.choice(len(table), p=p)] + rng.uniform(-jitter, jitter, 3)


def _skin_colour(rng):
    t = rng.uniform(0, len(_SKIN_TONES) - 1)
    i = min(int(t), len(_SKIN_TONES) - 2)
    f = t - i
    return (1 - f) * _SKIN_TONES[i] + f * _SKIN_TONES[i + 1] + rng.uniform(-8, 8, 3)


def _draw_face(rng, size):
    """Paint one face; return the canvas (id map plus per-part tables)."""
    u = rng.uniform
    # pose: canonical face units (face half-width ~ 1, y down) -> pixels
    scale = size * u(0.16, 0.21)
    angle = np.deg2rad(u(-15, 15))
    cx, cy = size * (0.5 + u(-0.06, 0.06)), size * (0.47 + u(-0.05, 0.05))
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    cv = _Canvas(size, np.array([[c, s, cx], [-s, c, cy]]), scale)

    # background: base colour plus a few blobs, all labelled background
    cv.fill([np.array([[-1, -1], [size, -1], [size, size], [-1, size]])], "background",
            u(0, 255, 3), texture=u(2, 10), pixel=True)
    for _ in range(rng.randint(0, 5)):
        p = rng.uniform(-0.2, 1.2, 2) * size
        blob = _ellipse(p[0], p[1], *(rng.uniform(0.05, 0.5, 2) * size), n=24,
                        angle=u(0, np.pi))
        cv.fill([blob], "background", u(0, 255, 3), texture=u(2, 10), pixel=True)

    # shape
    w = u(0.92, 1.05)
    h = w * u(1.22, 1.42)
    chin = u(0.12, 0.32)
    y_eye = -h * u(0.05, 0.18)
    es, ea = w * u(0.36, 0.45), w * u(0.16, 0.21)
    eb = ea * u(0.38, 0.55)
    y_nose = y_eye + h * u(0.38, 0.48)
    nose_w = w * u(0.15, 0.23)
    y_mouth = y_nose + h * u(0.2, 0.26)
    mw = w * u(0.26, 0.38)
    y_brow = y_eye - u(0.2, 0.28)
    brow_t = u(0.05, 0.09)

    def face_x(y):
        st = np.clip(np.asarray(y) / h, -1, 1)
        return w * np.sqrt(1 - st ** 2) * (1 - chin * np.clip(st, 0, None) ** 2)

    skin = _skin_colour(rng)
    hair = _pick_colour(rng, _HAIR_COLOURS, _HAIR_P)
    style = rng.choice(["bald", "short", "bob", "long"], p=[0.06, 0.34, 0.3, 0.3])
    vol = u(0.08, 0.28)
    locks = style in ("bob", "long") and rng.rand() < 0.65

    # back hair (behind everything of the person)
    if style != "bald":
        if style == "short":  # a cap down to about eye level
            tc = np.arcsin((y_eye + u(-0.1, 0.15)) / (h + vol))
            cap = _ellipse(0, 0, w + vol, h + vol, n=60, t0=np.pi - tc, t1=2 * np.pi + tc)
        else:  # down to the jaw or over the shoulders
            cap = _ellipse(0, 0, w + vol, h + vol, n=60, t0=np.pi, t1=2 * np.pi)
            y_end = y_mouth + u(0, 0.3) if style == "bob" else h + u(0.6, 1.8)
            xo = (w + vol) * (u(1.0, 1.2) if style == "long" else 1.0)
            cap = np.vstack([[[-xo, y_end]], cap, [[xo, y_end]]])
        cv.fill([cap], "hair", hair, texture=14, streaky=True)

    # neck, a shadow below the chin, clothes and an optional necklace
    nw = w * u(0.48, 0.62)
    neck = np.array([[-nw, 0.3], [nw, 0.3], [nw * 1.05, 9], [-nw * 1.05, 9]])
    cv.fill([neck], "neck", skin * u(0.85, 0.95), texture=3)
    cv.fill([_ellipse(0, h * 0.9, nw * 1.05, 0.28, n=30)], "neck", skin * u(0.6, 0.75), texture=3)
    y_sh = h + u(0.3, 0.65)
    sw = u(1.8, 2.6)
    depth = u(0.1, 0.6)
    xn = np.linspace(-nw * 1.25, nw * 1.25, 15)
    vneck = rng.rand() < 0.4
    yn = y_sh + depth * (1 - (np.abs(xn) / xn[-1] if vneck else (xn / xn[-1]) ** 2))
    cloth = np.vstack([[[-sw - 0.4, 9], [-sw, y_sh + 0.6], [-sw * 0.7, y_sh + 0.12]],
                       np.stack([xn, yn], 1), [[sw * 0.7, y_sh + 0.12], [sw, y_sh + 0.6],
                                               [sw + 0.4, 9]]])
    cv.fill([cloth], "cloth", u(0, 255, 3), texture=u(3, 9))
    if rng.rand() < 0.25:
        xk = np.linspace(-nw * 0.97, nw * 0.97, 21)
        yk = h * u(0.85, 1.0) + (y_sh + depth * u(0.3, 0.9) - h * 0.9) * (1 - (xk / xk[-1]) ** 2)
        metal = np.array([212, 175, 60]) if rng.rand() < 0.5 else np.array([200, 200, 205])
        cv.line([np.stack([xk, yk], 1)], "neck_l", metal + u(-15, 15, 3), u(0.03, 0.07))
        if rng.rand() < 0.5:
            cv.fill([_ellipse(0, yk[10] + 0.05, 0.07, 0.09, n=16)], "neck_l", metal, texture=2)

    # ears (maybe covered later by hair) and earrings
    y_ear = y_eye + u(0.12, 0.3)
    ea_x, ea_y = u(0.11, 0.16), u(0.24, 0.32)
    ear_x = face_x(y_ear) + ea_x * 0.15
    tilt = u(-0.2, 0.2)
    ear_colour = skin * u(0.9, 0.98)
    for name, sign in (("r_ear", -1), ("l_ear", 1)):  # subject's right = image left
        cv.fill([_ellipse(sign * ear_x, y_ear, ea_x, ea_y, n=30, angle=sign * tilt)], name,
                ear_colour, texture=3)
    if rng.rand() < 0.3:
        metal = np.array([212, 175, 60]) if rng.rand() < 0.5 else np.array([205, 205, 210])
        r = u(0.04, 0.08)
        for sign in (-1, 1):
            ring = _ellipse(sign * ear_x, y_ear + ea_y * 0.95 + r, r, r * u(1, 1.6), n=16)
            cv.fill([ring], "ear_r", metal + u(-15, 15, 3), texture=2)

    # face, nose, brows, eyes, mouth
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    outline = np.stack([w * np.cos(t) * (1 - chin * np.clip(np.sin(t), 0, None) ** 2),
                        h * np.sin(t)], 1)
    cv.fill([outline], "skin", skin, texture=3)
    bw = nose_w * u(0.3, 0.45)
    half = np.array([[bw * 0.7, y_eye + 0.03], [bw, y_nose - 0.2], [nose_w, y_nose - 0.02],
                     [nose_w * 0.85, y_nose + 0.06], [nose_w * 0.3, y_nose + 0.09]])
    nose = np.vstack([half, [[0, y_nose + 0.07]], _mirror(half[::-1])])
    cv.fill([nose], "nose", skin * u(0.9, 0.97), texture=3)
    nostrils = [_ellipse(sx * nose_w * 0.42, y_nose + 0.04, 0.06, 0.028, n=12) for sx in (-1, 1)]
    cv.fill(nostrils, "nose", skin * 0.45, texture=2)

    bx = np.linspace(es - ea * u(0.8, 1.0), es + ea * u(1.2, 1.5), 9)  # inner -> outer
    arch = y_brow - u(0.02, 0.07) * np.sin(np.linspace(0.3, np.pi, 9))
    thick = brow_t * np.linspace(1.0, 0.55, 9)
    brow = np.vstack([np.stack([bx, arch - thick / 2], 1), np.stack([bx, arch + thick / 2], 1)[::-1]])
    brow_colour = hair * 0.75 if style != "bald" else skin * 0.5
    cv.fill([_mirror(brow)], "r_brow", brow_colour, texture=6)
    cv.fill([brow], "l_brow", brow_colour, texture=6)

    iris = _pick_colour(rng, _IRIS_COLOURS, jitter=15)
    gaze = u(-0.3, 0.3) * (ea - eb)
    for name, sign in (("r_eye", -1), ("l_eye", 1)):
        ex = sign * es
        cv.fill([_ellipse(ex, y_eye, ea, eb, n=32)], name, [235, 232, 226], texture=2)
        cv.fill([_ellipse(ex + gaze, y_eye, eb * 0.85, eb * 0.85, n=20)], name, iris, texture=4)
        cv.fill([_ellipse(ex + gaze, y_eye, eb * 0.38, eb * 0.38, n=12)], name, [15, 12, 12],
                texture=1)
        cv.line([_ellipse(ex, y_eye, ea, eb, n=16, t0=np.pi, t1=2 * np.pi)], name,
                [30, 22, 20], 0.02)

    lips = skin * [0.82, 0.55, 0.55] + [30, 0, 0]
    if rng.rand() < 0.25:  # lipstick
        lips = np.array([u(150, 220), u(20, 80), u(40, 110)])
    xm = np.linspace(-mw, mw, 21)
    rel = np.sqrt(np.clip(1 - (xm / mw) ** 2, 0, 1))
    opening = u(0.02, 0.12) if rng.rand() < 0.6 else 0.0
    ul, ll = u(0.05, 0.1), u(0.07, 0.13)
    bow = ul * 0.4 * np.exp(-(xm / (0.12 * mw / 0.3)) ** 2)
    up_out = np.stack([xm, y_mouth - opening / 2 * rel - ul * rel + bow * rel], 1)
    up_in = np.stack([xm, y_mouth - opening / 2 * rel], 1)
    lo_in = np.stack([xm, y_mouth + opening / 2 * rel], 1)
    lo_out = np.stack([xm, y_mouth + opening / 2 * rel + ll * rel], 1)
    cv.fill([np.vstack([up_out, up_in[::-1]])], "u_lip", lips * 0.92, texture=3)
    cv.fill([np.vstack([lo_in, lo_out[::-1]])], "l_lip", lips, texture=3)
    if opening > 0:
        cv.fill([np.vstack([up_in, lo_in[::-1]])], "mouth", [70, 18, 24], texture=3)
        if opening > 0.05 and rng.rand() < 0.6:  # upper teeth
            teeth = np.vstack([up_in[4:17], up_in[16:3:-1] + [0, opening * 0.4]])
            cv.fill([teeth], "mouth", [228, 222, 205], texture=2)

    # front hair: fringe over the forehead, locks over the ears
    if style != "bald" and rng.rand() < 0.75:
        top = -h - vol * 0.5
        y_edge = top + u(0.25, 0.95) * (y_brow - brow_t - 0.05 - top)
        slant, wave = u(-0.25, 0.25), u(0, 0.06)
        arc = _ellipse(0, 0, w + 0.02, h + vol * 0.5, n=80, t0=np.pi, t1=2 * np.pi)
        edge = lambda x: y_edge + slant * x + wave * np.sin(x * 9)  # noqa: E731
        arc = arc[arc[:, 1] <= edge(arc[:, 0])]
        if len(arc) > 2:
            xe = np.linspace(arc[-1, 0], arc[0, 0], 30)
            cv.fill([np.vstack([arc, np.stack([xe, edge(xe)], 1)])], "hair", hair, texture=14,
                    streaky=True)
    if locks:
        y0 = -h * 0.55
        y1 = y_mouth + u(0, 0.3) if style == "bob" else h + u(0.5, 1.2)
        ys = np.linspace(y0, y1, 16)
        inner = np.maximum(face_x(ys) - u(0.12, 0.28), nw * 0.9)
        outer = w + vol + 0.05 + u(0, 0.3) * (ys - y0) / (y1 - y0)
        tips = np.linspace(outer[-1], inner[-1], 7)
        tips = np.stack([tips, y1 + np.where(np.arange(7) % 2, 0.0, u(0.05, 0.15))], 1)
        lock = np.vstack([np.stack([outer, ys], 1)[::-1], [[w + vol * 0.5, -h * 0.75]],
                          np.stack([inner, ys], 1), tips[::-1]])
        cv.fill([lock, _mirror(lock)], "hair", hair, texture=14, streaky=True)

    # glasses: frames (and dark lenses for sunglasses)
    if rng.rand() < 0.3:
        la, lb = ea + u(0.05, 0.12), eb + u(0.08, 0.16)
        p = 2 / rng.choice([2.0, 3.5])
        tt = np.linspace(0, 2 * np.pi, 36, endpoint=False)
        ring = np.stack([la * np.sign(np.cos(tt)) * np.abs(np.cos(tt)) ** p,
                         lb * np.sign(np.sin(tt)) * np.abs(np.sin(tt)) ** p], 1)
        lenses = [ring + [-es, y_eye], ring + [es, y_eye]]
        frame = np.array([20, 20, 20]) + u(0, 140) * (rng.rand() < 0.4)
        if rng.rand() < 0.3:
            cv.fill(lenses, "eye_g", u(10, 60, 3), texture=2)
        fw = u(0.025, 0.05)
        cv.line(lenses, "eye_g", frame, fw, closed=True)
        bridge = np.array([[-es + la * 0.95, y_eye - 0.03], [0, y_eye - 0.07],
                           [es - la * 0.95, y_eye - 0.03]])
        temple = np.array([[es + la, y_eye - 0.02], [face_x(y_eye) + 0.05, y_eye + 0.03]])
        cv.line([bridge, temple, _mirror(temple)], "eye_g", frame, fw)

    # hat over the top of the head
    if rng.rand() < 0.2:
        y_hb = min(-h + u(0.3, 0.55), y_brow - brow_t - 0.2)
        hw = w + vol + u(0.05, 0.2)
        crown = _ellipse(0, y_hb, hw, u(0.6, 1.0) + max(0.0, h + y_hb), n=40, t0=np.pi,
                         t1=2 * np.pi)
        colour = u(0, 255, 3)
        cv.fill([crown], "hat", colour, texture=6)
        if rng.rand() < 0.5:
            cv.fill([_ellipse(0, y_hb, hw + u(0.2, 0.6), u(0.05, 0.12), n=40)], "hat",
                    colour * 0.8, texture=6)
    return cv


def _render(cv, rng, size):
    """Colour, lighting gradient and texture noise from the painted id map."""
    ids = cv.ids
    image = np.asarray(cv.colours, dtype=np.float32)[ids]
    grid = np.arange(size, dtype=np.float32) / size - 0.5
    theta = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0, 0.5) * (np.cos(theta) * grid[None, :] + np.sin(theta) * grid[:, None])
    image *= light[:, :, None]
    coarse = rng.standard_normal((6, 6, 3)).astype(np.float32)
    image += rng.uniform(2, 8) * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    fine = rng.standard_normal((size, size)).astype(np.float32)
    streaks = cv2.GaussianBlur(fine, (1, 9), 0) * 2.5
    streaky = np.asarray(cv.streaky, dtype=bool)[ids]
    amp = np.asarray(cv.texture, dtype=np.float32)[ids]
    image += (amp * np.where(streaky, streaks, fine))[:, :, None]
    image += rng.standard_normal((size, size, 3)).astype(np.float32) * rng.uniform(1, 4)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_faces(n_samples=100, image_size=128, random_state=None):
    """Synthetic face images with 19-class CelebAMask-HQ label maps.

    Every face is painted with OpenCV polygons at sub-pixel precision in a
    random pose (rotation within +-15 degrees, scale, shift) and shape (face
    width and height, eye spacing, nose length, mouth width and opening, hair
    style), with random skin, hair, lip and clothing colours, a lighting
    gradient, texture noise and a random background. Glasses, hats, earrings
    and necklaces appear at random; long hair sometimes hides the ears.

    The image and the label map come from one painted id map, so the labels are
    exactly what was painted (later parts cover earlier ones): background,
    back hair, neck, clothes, necklace, ears, earrings, skin, nose, brows, eyes,
    lips, mouth, fringe, locks, glasses, hat.

    Parameters
    ----------
    n_samples : int, default=100
        Number of images.
    image_size : int, default=128
        Side of the square images in pixels (at least 16).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible output; the global NumPy RNG is never used.

    Returns
    -------
    images : ndarray of shape (n_samples, image_size, image_size, 3), uint8
        RGB images.
    labels : ndarray of shape (n_samples, image_size, image_size), uint8
        Class indices into :data:`CELEBAMASK_CLASSES` (``l_*`` is the
        subject's left, on the image's right).

    Examples
    --------
    >>> images, labels = make_faces(n_samples=2, image_size=64, random_state=0)
    >>> images.shape, images.dtype, labels.shape, int(labels.max()) < 19
    ((2, 64, 64, 3), dtype('uint8'), (2, 64, 64), True)
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    image_size = _check_int(image_size, "image_size", 16)
    rng = check_random_state(random_state)
    images = np.empty((n_samples, image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty((n_samples, image_size, image_size), dtype=np.uint8)
    for i in range(n_samples):
        cv = _draw_face(rng, image_size)
        labels[i] = np.asarray(cv.labels, dtype=np.uint8)[cv.ids]
        images[i] = _render(cv, rng, image_size)
    return images, labels

