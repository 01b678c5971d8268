"""Pictures of keypoints and label maps, drawn with OpenCV (no matplotlib needed).

Every function accepts gray ``(H, W)``, ``(H, W, 1)`` or RGB ``(H, W, 3)``
images, returns a new RGB uint8 array and never modifies its inputs. Pixel
values are read by skkp's one rule, :func:`skkp._validation.pixel_scale`, as
for the estimators: integer images are on the 0-255 scale; a float image whose
values all lie in [0, 1] is on the 0-1 scale (multiplied by 255), any other
float image on the 0-255 scale; a value above 255 raises ``ValueError``.
Negative values are drawn black, NaN black; bool images black and white.
Keypoints are checked by :func:`skkp._validation.check_point_set`, label maps by
:func:`skkp._validation.check_labels`. Colours are RGB triples.
"""
import numbers
from pathlib import Path

import cv2
import numpy as np

from ._validation import _as_numeric_array, check_labels, check_point_set, pixel_scale
from .schemas import IGNORE_INDEX

_SHIFT = 4  # sub-pixel bits for cv2 drawing

#: Fixed colours for the 19 CelebAMask-HQ classes (index = class), then more.
#: Background is black; the ignore index (:data:`skkp.schemas.IGNORE_INDEX`, 255) is drawn grey.
PALETTE = np.array([
    [0, 0, 0], [204, 153, 120], [255, 140, 0], [0, 200, 255], [0, 0, 230], [230, 0, 230],
    [255, 255, 0], [150, 150, 0], [0, 130, 0], [0, 220, 120], [110, 0, 50], [255, 40, 40],
    [170, 0, 0], [110, 60, 20], [150, 80, 255], [255, 255, 170], [190, 255, 40], [250, 200, 220],
    [70, 130, 180], [0, 255, 0], [255, 0, 120], [0, 100, 100], [150, 150, 255], [90, 0, 160],
], dtype=np.uint8)
IGNORE_COLOUR = (128, 128, 128)
#: Predictions and ground truth: orange and blue of the Okabe-Ito palette, a pair that
#: stays distinct for the common colour-vision deficiencies (red/green does not).
PREDICTION_COLOUR = (230, 159, 0)
TRUTH_COLOUR = (0, 114, 178)


def _full_palette():
    """256 colours: :data:`PALETTE`, then fixed pseudo-random ones, the ignore index grey."""
    extra = np.random.RandomState(1234).randint(30, 256, size=(256 - len(PALETTE), 3))
    pal = np.vstack([PALETTE, extra]).astype(np.uint8)
    pal[IGNORE_INDEX] = IGNORE_COLOUR
    return pal


_PALETTE256 = _full_palette()


def _as_rgb(image, name="image", scale=None):
    """Return a new (H, W, 3) uint8 RGB array from gray/RGB input, read by :func:`pixel_scale`.

    ``scale`` (1.0 or 255.0) overrides the rule, for an image cut from a stack
    whose scale was decided once for the whole stack.
    """
    arr = _as_numeric_array(image, name, what="an image (H, W), (H, W, 1) or (H, W, 3)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
        raise ValueError(f"{name} must be gray (H, W), (H, W, 1) or RGB (H, W, 3), got shape "
                         f"{arr.shape}.")
    if arr.dtype == np.uint8:
        out = arr.copy()
    elif arr.dtype == bool:
        out = arr.astype(np.uint8) * 255
    else:
        scale = pixel_scale(arr, name) if scale is None else scale
        f = arr.astype(np.float64) * (255.0 / scale)
        out = np.clip(np.nan_to_num(np.rint(f)), 0, 255).astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def _check_colour(color, name):
    try:
        c = tuple(float(v) for v in color)
    except (TypeError, ValueError):
        c = ()
    if len(c) != 3 or not all(0 <= v <= 255 for v in c):
        raise ValueError(f"{name} must be an (R, G, B) triple of numbers in [0, 255], got "
                         f"{color!r}.")
    return tuple(int(round(v)) for v in c)


def _draw_points(out, pts, color, radius, labels):
    scale = 1 << _SHIFT
    font = max(0.25, min(out.shape[:2]) / 400.0)
    for k, (x, y) in enumerate(pts):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue  # NaN = not labelled
        centre = (int(round(x * scale)), int(round(y * scale)))
        cv2.circle(out, centre, int(round(radius * scale)), color, -1, cv2.LINE_AA, _SHIFT)
        if labels:
            cv2.putText(out, str(k), (int(round(x + radius + 1)), int(round(y - radius - 1))),
                        cv2.FONT_HERSHEY_SIMPLEX, font, color, 1, cv2.LINE_AA)


def draw_keypoints(image, keypoints, color=PREDICTION_COLOUR, radius=None, labels=False, truth=None,
                   truth_color=TRUTH_COLOUR):
    """Draw keypoints (and optionally the ground truth) on a copy of an image.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1) or (H, W, 3)
        Gray or RGB, uint8 or float.
    keypoints : array-like of shape (2K,) or (K, 2)
        ``x0, y0, x1, y1, ...`` in pixels; NaN points are skipped.
    color : (int, int, int), default=PREDICTION_COLOUR
        RGB colour of the points (orange).
    radius : float or None, default=None
        Point radius in pixels; ``None`` picks ``max(1, min(H, W) / 100)``.
    labels : bool, default=False
        Write each point's index next to it.
    truth : array-like of shape (2K,) or (K, 2), optional
        Ground-truth points, drawn first in ``truth_color`` with a line to the
        matching prediction.
    truth_color : (int, int, int), default=TRUTH_COLOUR
        Blue: with orange, a colour-blind-safe pair.

    Returns
    -------
    out : ndarray of shape (H, W, 3), uint8
        RGB copy with the points drawn.

    Examples
    --------
    >>> out = draw_keypoints(np.zeros((32, 32)), [10.0, 12.0], radius=2)
    >>> out.shape, out[12, 10].tolist()
    ((32, 32, 3), [230, 159, 0])
    """
    out = _as_rgb(image)
    pts = check_point_set(keypoints, "keypoints")
    color = _check_colour(color, "color")
    truth_color = _check_colour(truth_color, "truth_color")
    if radius is None:
        radius = max(1.0, min(out.shape[:2]) / 100.0)
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not radius > 0:
        raise ValueError(f"radius must be a positive number or None, got {radius!r}.")
    if truth is not None:
        gt = check_point_set(truth, "truth", n_points=len(pts))  # as many points as keypoints
        scale = 1 << _SHIFT
        for p, q in zip(pts, gt):
            if np.all(np.isfinite(p)) and np.all(np.isfinite(q)):
                cv2.line(out, tuple(int(round(v * scale)) for v in q),
                         tuple(int(round(v * scale)) for v in p), truth_color, 1, cv2.LINE_AA,
                         _SHIFT)
        _draw_points(out, gt, truth_color, radius, False)
    _draw_points(out, pts, color, radius, labels)
    return out


def _as_labels(labels, name="labels"):
    """Labels in [0, 255] (255 = ignore), by :func:`skkp._validation.check_labels`."""
    return check_labels(labels, IGNORE_INDEX, name, ignore_index=IGNORE_INDEX)


def colorize_labels(labels, palette=None):
    """Colour a label map (or a stack of them) with a fixed palette.

    Parameters
    ----------
    labels : array-like of ints, shape (H, W) or (n, H, W)
        Class indices in [0, 255]; 255 is the ignore index.
    palette : array-like of shape (K, 3), optional
        RGB colour per class. Default: :data:`PALETTE` (background black, the
        CelebAMask-HQ classes in fixed colours), fixed colours beyond, and grey
        for 255. With a custom palette, 255 is grey unless it has 256 rows.

    Returns
    -------
    rgb : ndarray of shape labels.shape + (3,), uint8

    Examples
    --------
    >>> colorize_labels(np.array([[0, 1], [4, 255]])).reshape(-1, 3).tolist()
    [[0, 0, 0], [204, 153, 120], [0, 0, 230], [128, 128, 128]]
    """
    arr = _as_labels(labels)
    if palette is None:
        pal = _PALETTE256
    else:
        p = np.asarray(palette)
        if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0 or not np.issubdtype(p.dtype, np.number) \
                or p.min() < 0 or p.max() > 255:
            raise ValueError(f"palette must have shape (K, 3) with RGB values in [0, 255], got "
                             f"shape {p.shape}.")
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[:len(p)] = np.rint(p[:256]).astype(np.uint8)
        if len(p) < 256:
            pal[IGNORE_INDEX] = IGNORE_COLOUR
            used = arr[arr != IGNORE_INDEX]
            if used.size and used.max() >= len(p):
                raise ValueError(f"labels holds class {used.max()} but palette has only {len(p)} "
                                 f"colours.")
    return pal[arr.astype(np.intp)]


def overlay_labels(image, labels, alpha=0.5, palette=None):
    """Blend coloured labels over an image; background (0) and ignore (255) stay as they are.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1) or (H, W, 3)
    labels : array-like of ints, shape (H, W)
    alpha : float in [0, 1], default=0.5
        Weight of the label colours.
    palette : array-like of shape (K, 3), optional
        See :func:`colorize_labels`.

    Returns
    -------
    out : ndarray of shape (H, W, 3), uint8

    Examples
    --------
    >>> out = overlay_labels(np.full((4, 4), 200, np.uint8), np.eye(4, dtype=int) * 4, alpha=1.0)
    >>> out[0, 0].tolist(), out[0, 1].tolist()
    ([0, 0, 230], [200, 200, 200])
    """
    out = _as_rgb(image)
    arr = _as_labels(labels)
    if arr.shape != out.shape[:2]:
        raise ValueError(f"labels must have the image's height and width {out.shape[:2]}, got "
                         f"shape {arr.shape}.")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}.")
    colours = colorize_labels(arr, palette).astype(np.float32)
    blend = (1 - alpha) * out.astype(np.float32) + alpha * colours
    keep = (arr == 0) | (arr == IGNORE_INDEX)
    return np.where(keep[:, :, None], out, np.rint(blend).astype(np.uint8))


def add_caption(image, text, height=None, color=(0, 0, 0), fill=(255, 255, 255)):
    """A copy of ``image`` with a strip of ``text`` below it (e.g. a tile's error, a legend).

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1) or (H, W, 3)
    text : str
    height : int or None, default=None
        Height of the strip in pixels; ``None`` picks about 12% of the width (at least 12).
    color, fill : (int, int, int)
        RGB colours of the text and the strip.

    Returns
    -------
    out : ndarray of shape (H + height, W, 3), uint8

    Examples
    --------
    >>> add_caption(np.zeros((40, 60), np.uint8), "1.2 px").shape
    (52, 60, 3)
    """
    out = _as_rgb(image)
    w = out.shape[1]
    if height is None:
        height = max(12, int(round(0.12 * w)))
    if isinstance(height, bool) or not isinstance(height, numbers.Integral) or height < 8:
        raise ValueError(f"height must be an int >= 8 or None, got {height!r}.")
    strip = np.empty((int(height), w, 3), np.uint8)
    strip[:] = _check_colour(fill, "fill")
    font_scale = 0.028 * height
    (tw, th), _ = cv2.getTextSize(str(text), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    if tw > w - 4:  # shrink long text to fit the width
        font_scale *= (w - 4) / tw
        (tw, th), _ = cv2.getTextSize(str(text), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    cv2.putText(strip, str(text), (max(2, (w - tw) // 2), (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                font_scale, _check_colour(color, "color"), 1, cv2.LINE_AA)
    return np.concatenate([out, strip])


def plot_history(history, path=None, title=None):
    """Training curves of a fitted estimator: losses, and pixel MAE (or validation mIoU), per epoch.

    Needs matplotlib (``pip install "skkp[plot]"``).

    Parameters
    ----------
    history : skorch History or list of dict
        ``estimator.history_``.
    path : str, path-like or None, default=None
        Where to save the figure as PNG; None only returns it.
    title : str or None, default=None

    Returns
    -------
    figure : matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_history([{"epoch": 1, "train_loss": 2.0, "valid_loss": 2.5},
    ...                     {"epoch": 2, "train_loss": 1.0, "valid_loss": 1.5}])
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['loss']
    """
    try:  # a bare Figure (no pyplot): it draws off screen and leaves the user's backend alone
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plot_history needs matplotlib: pip install "skkp[plot]"') from None
    rows = list(history)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("history must be a non-empty skorch History or list of dicts (estimator.history_).")
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    panels = [("loss", ("train_loss", "valid_loss"))]
    if any("train_mae_px" in r or "valid_mae_px" in r for r in rows):
        panels.append(("MAE (px)", ("train_mae_px", "valid_mae_px")))
    if any("valid_miou" in r for r in rows):
        panels.append(("mean IoU", ("valid_miou",)))
    fig = Figure(figsize=(4.2 * len(panels), 3.2), layout="constrained")
    for k, (label, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for key, colour in zip(keys, ("#E69F00", "#0072B2")):
            values = [r.get(key, np.nan) for r in rows]
            if np.isfinite(values).any():
                ax.plot(epochs, values, color=colour, marker="o", markersize=3, label=key.split("_")[0])
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(Path(path), dpi=100)
    return fig


def image_grid(images, ncols=None, padding=2, fill=(255, 255, 255)):
    """Tile images into one RGB picture, row by row.

    Images of different sizes are centred in cells of the largest height and
    width; gray and float images are converted as described in the module
    (for an ``(n, H, W[, C])`` array the pixel scale is decided once for the
    whole stack, for a sequence once per image).

    Parameters
    ----------
    images : sequence of arrays, or array of shape (n, H, W[, C])
    ncols : int or None, default=None
        Number of columns; ``None`` makes the grid roughly square.
    padding : int, default=2
        Pixels between cells and around the border.
    fill : (int, int, int), default=(255, 255, 255)
        Colour of the padding and empty cells.

    Returns
    -------
    grid : ndarray of shape (rows * (h + padding) + padding, ncols * (w + padding) + padding, 3)

    Examples
    --------
    >>> image_grid([np.zeros((4, 4)), np.zeros((6, 2, 3))], ncols=2, padding=1).shape
    (8, 11, 3)
    """
    scale = None
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        if images.dtype.kind in "iuf" and images.dtype != np.uint8 and images.size:
            scale = pixel_scale(images, "images")  # one scale for the whole stack
        images = list(images)
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__") or len(images) == 0:
        raise ValueError("images must be a non-empty sequence of images or an (n, H, W[, C]) "
                         "array.")
    tiles = [_as_rgb(im, f"images[{i}]", scale) for i, im in enumerate(images)]
    n = len(tiles)
    if ncols is None:
        ncols = int(np.ceil(np.sqrt(n)))
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be a positive int or None, got {ncols!r}.")
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}.")
    fill = _check_colour(fill, "fill")
    ncols = min(int(ncols), n)
    nrows = -(-n // ncols)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    grid = np.empty((nrows * (h + padding) + padding, ncols * (w + padding) + padding, 3), np.uint8)
    grid[:] = fill
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        y = padding + r * (h + padding) + (h - t.shape[0]) // 2
        x = padding + c * (w + padding) + (w - t.shape[1]) // 2
        grid[y:y + t.shape[0], x:x + t.shape[1]] = t
    return grid


def save_png(path, image):
    """Write an RGB (or gray, or float) image to a PNG file.

    Parameters
    ----------
    path : str or path-like
        File name; the folder must exist.
    image : array-like of shape (H, W), (H, W, 1) or (H, W, 3)

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import tempfile, os
    >>> p = save_png(os.path.join(tempfile.mkdtemp(), "a.png"), np.zeros((8, 8, 3), np.uint8))
    >>> p.suffix
    '.png'
    """
    path = Path(path)
    rgb = _as_rgb(image)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: folder {str(path.parent)!r} does not exist.")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 failure
        raise OSError(f"could not encode a PNG for {str(path)!r}.")
    path.write_bytes(buf.tobytes())
    return path
