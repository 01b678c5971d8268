"""Tests for skkp.plotting: cv2-based pictures of keypoints and label maps."""
import cv2
import numpy as np
import pytest

from skkp._validation import pixel_scale
from skkp.plotting import (IGNORE_COLOUR, PALETTE, PREDICTION_COLOUR, TRUTH_COLOUR, add_caption, colorize_labels,
                           draw_keypoints, image_grid, overlay_labels, plot_history, save_png)
from skkp.schemas import IGNORE_INDEX


def _rng():
    return np.random.RandomState(0)


@pytest.mark.parametrize("image", [
    np.zeros((30, 40), np.uint8), np.zeros((30, 40, 1), np.uint8), np.zeros((30, 40, 3), np.uint8),
    np.zeros((30, 40), np.float32), np.full((30, 40, 3), 0.5), np.zeros((30, 40), bool),
])
def test_draw_keypoints_accepts_gray_rgb_float(image):
    before = image.copy()
    out = draw_keypoints(image, [[5.0, 6.0], [20.0, 15.0]], radius=2)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert out[6, 5].tolist() == list(PREDICTION_COLOUR) and out[15, 20].tolist() == list(PREDICTION_COLOUR)
    assert np.array_equal(image, before)
    assert not np.shares_memory(out, image)


@pytest.mark.parametrize("image, expected", [
    (np.full((8, 8), 0.5), 128),                      # floats within [0, 1]: the 0-1 scale
    (np.full((8, 8), 1.0, np.float32), 255),
    (np.full((8, 8), 0.5, np.float16), 128),
    (np.array([[0.5, 2.0]] * 4), 0),                  # any other float image: the 0-255 scale
    (np.full((8, 8), 200.0), 200),
    (np.full((8, 8), 1, np.int64), 1),                # integers: always 0-255
    (np.full((8, 8), 200, np.uint16), 200),
    (np.full((8, 8), -3.0), 0),                       # negative and NaN pixels are drawn black
    (np.full((8, 8), np.nan), 0),
    (np.ones((8, 8), bool), 255),                     # bool: black and white
])
def test_pixel_values_follow_the_one_rule(image, expected):
    out = draw_keypoints(image, [])
    assert out[0, 0].tolist() == [expected] * 3
    if image.dtype.kind in "iuf":  # the same reading as the estimators' pixel_scale
        scale = pixel_scale(image)
        with np.errstate(invalid="ignore"):
            want = np.clip(np.nan_to_num(np.rint(image[0, 0] * 255.0 / scale)), 0, 255)
        assert out[0, 0, 0] == want


@pytest.mark.parametrize("image", [np.full((8, 8), 300.0), np.full((8, 8), 256, np.uint16),
                                   np.array([[0.5, 255.5]])])
def test_pixel_values_above_255_raise(image):
    with pytest.raises(ValueError, match="image has pixel values up to"):
        draw_keypoints(image, [])
    with pytest.raises(ValueError, match=r"images\[0\] has pixel values up to"):
        image_grid([image])


def test_image_grid_reads_a_stack_on_one_scale():
    stack = np.stack([np.full((4, 4), 0.75), np.full((4, 4), 100.0)])
    grid = image_grid(stack, ncols=2, padding=0)
    assert grid[0, 0].tolist() == [1] * 3 and grid[0, 4].tolist() == [100] * 3  # 0.75 on 0-255
    listed = image_grid(list(stack), ncols=2, padding=0)                         # one scale each
    assert listed[0, 0].tolist() == [191] * 3 and listed[0, 4].tolist() == [100] * 3


def test_draw_keypoints_colour_nan_labels_and_truth():
    image = _rng().randint(0, 100, (64, 64, 3)).astype(np.uint8)
    before = image.copy()
    kp = np.array([10.0, 10.0, np.nan, np.nan, 40.0, 30.0])
    out = draw_keypoints(image, kp, color=(255, 0, 255), radius=2.5)
    assert out[10, 10].tolist() == [255, 0, 255] and out[30, 40].tolist() == [255, 0, 255]
    changed = np.any(out != image, axis=2)
    assert not changed[50:, :].any() and not changed[:, 50:].any()  # only near the two points
    with_text = draw_keypoints(image, kp, radius=1, labels=True)
    plain = draw_keypoints(image, kp, radius=1)
    assert np.any(with_text != image, axis=2).sum() > np.any(plain != image, axis=2).sum()
    truth = kp + 12
    both = draw_keypoints(image, kp, truth=truth, radius=2)
    assert both[22, 22].tolist() == list(TRUTH_COLOUR) and both[10, 10].tolist() == list(PREDICTION_COLOUR)
    assert np.array_equal(image, before)


def test_draw_keypoints_default_radius_scales_with_image():
    small = np.any(draw_keypoints(np.zeros((50, 50)), [25, 25]) > 0, axis=2).sum()
    big = np.any(draw_keypoints(np.zeros((500, 500)), [250, 250]) > 0, axis=2).sum()
    assert big > 5 * small


@pytest.mark.parametrize("kwargs, match", [
    ({"keypoints": [1.0, 2.0, 3.0]}, "keypoints"), ({"color": (0, 300, 0)}, "color"),
    ({"radius": -1}, "radius"), ({"truth": [1.0, 2.0]}, "truth must hold 2 points"),
    ({"keypoints": np.zeros((2, 3))}, r"keypoints must have shape \(2K,\)"),
    ({"keypoints": [1.0, np.inf]}, "keypoints contains infinity"),
])
def test_draw_keypoints_bad_input(kwargs, match):
    args = {"image": np.zeros((10, 10)), "keypoints": [1.0, 2.0, 3.0, 4.0]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        draw_keypoints(**args)


def test_bad_images():
    with pytest.raises(ValueError, match="image"):
        draw_keypoints(np.zeros((10, 10, 4)), [1, 1])
    with pytest.raises(TypeError, match="image"):
        draw_keypoints("picture.png", [1, 1])
    with pytest.raises(TypeError, match="image must hold numbers"):
        draw_keypoints(np.full((4, 4), "x"), [1, 1])
    with pytest.raises(TypeError, match="keypoints must hold numbers"):
        draw_keypoints(np.zeros((4, 4)), ["a", "b"])


def test_colorize_labels():
    labels = np.array([[0, 1, 2], [18, 255, 5]])
    before = labels.copy()
    rgb = colorize_labels(labels)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[1, 1].tolist() == list(IGNORE_COLOUR)
    assert rgb[0, 1].tolist() == PALETTE[1].tolist() and rgb[1, 0].tolist() == PALETTE[18].tolist()
    assert np.array_equal(labels, before)
    # the 19 CelebAMask-HQ classes get 19 distinct colours, none of them the ignore grey
    classes = colorize_labels(np.arange(19)).tolist()
    assert len({tuple(c) for c in classes}) == 19
    assert list(IGNORE_COLOUR) not in colorize_labels(np.arange(IGNORE_INDEX)).tolist()
    assert colorize_labels(np.array([IGNORE_INDEX]))[0].tolist() == list(IGNORE_COLOUR)
    stack = colorize_labels(np.stack([labels, labels]).astype(np.uint8))
    assert stack.shape == (2, 2, 3, 3)
    custom = colorize_labels(np.array([[0, 1, 255]]), palette=[[1, 2, 3], [4, 5, 6]])
    assert custom.tolist() == [[[1, 2, 3], [4, 5, 6], list(IGNORE_COLOUR)]]
    with pytest.raises(ValueError, match="palette"):
        colorize_labels(np.array([[2]]), palette=[[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match=r"labels has labels outside.*\[-1\]"):
        colorize_labels(np.array([[-1]]))
    with pytest.raises(ValueError, match=r"labels has labels outside.*\[256\]"):
        colorize_labels(np.array([[256]]))
    with pytest.raises(ValueError, match="labels must hold integer class labels.*0.5"):
        colorize_labels(np.array([[0.5]]))
    with pytest.raises(TypeError, match="labels must hold numbers"):
        colorize_labels(np.array([["a"]]))
    assert colorize_labels(np.array([[1.0, 255.0]])).tolist() == colorize_labels([[1, 255]]).tolist()


def test_overlay_labels():
    image = np.full((6, 6, 3), 100, np.uint8)
    labels = np.zeros((6, 6), np.uint8)
    labels[1, 1], labels[2, 2] = 4, 255
    image0, labels0 = image.copy(), labels.copy()
    out = overlay_labels(image, labels, alpha=1.0)
    assert out[1, 1].tolist() == PALETTE[4].tolist()
    assert out[0, 0].tolist() == [100] * 3 and out[2, 2].tolist() == [100] * 3
    half = overlay_labels(image[:, :, 0], labels, alpha=0.5)
    assert half[1, 1].tolist() == np.rint((100 + PALETTE[4].astype(float)) / 2).tolist()
    assert np.array_equal(overlay_labels(image, labels, alpha=0.0), image)
    assert np.array_equal(image, image0) and np.array_equal(labels, labels0)
    with pytest.raises(ValueError, match="labels"):
        overlay_labels(image, labels[:5])
    with pytest.raises(ValueError, match="alpha"):
        overlay_labels(image, labels, alpha=2)


def test_image_grid():
    a = np.full((10, 8), 50, np.uint8)
    b = np.full((6, 12, 3), 0.5)
    grid = image_grid([a, b, a], ncols=2, padding=1, fill=(255, 0, 0))
    assert grid.shape == (2 * 11 + 1, 2 * 13 + 1, 3) and grid.dtype == np.uint8
    assert grid[0, 0].tolist() == [255, 0, 0]
    assert grid[1 + 5, 1 + 2 + 4].tolist() == [50] * 3          # a, centred horizontally
    assert grid[1 + 2 + 3, 14 + 6].tolist() == [128] * 3       # b, centred vertically
    assert grid[12 + 5, 14 + 6].tolist() == [255, 0, 0]        # empty cell
    stack = image_grid(np.zeros((5, 4, 4, 3), np.uint8))
    assert stack.shape == (2 * 6 + 2, 3 * 6 + 2, 3)
    with pytest.raises(ValueError, match="images"):
        image_grid([])
    with pytest.raises(ValueError, match="ncols"):
        image_grid([a], ncols=0)


def test_save_png_roundtrip(tmp_path):
    image = _rng().randint(0, 256, (9, 7, 3)).astype(np.uint8)
    before = image.copy()
    path = save_png(tmp_path / "x.png", image)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, image) and np.array_equal(image, before)
    gray = save_png(str(tmp_path / "g.png"), np.linspace(0, 1, 12).reshape(3, 4))
    assert cv2.imread(str(gray)).shape == (3, 4, 3)
    with pytest.raises(FileNotFoundError, match="path"):
        save_png(tmp_path / "missing" / "x.png", image)


def test_default_colours_are_a_colour_blind_safe_pair():
    # simulated deuteranopia (Machado et al. 2009, severity 1): red and green become one hue (parallel
    # RGB vectors, differing in lightness only); the default pair keeps two hues
    deut = np.array([[0.367, 0.861, -0.228], [0.280, 0.673, 0.047], [-0.012, 0.043, 0.969]])

    def hue_cosine(a, b):
        a, b = deut @ np.array(a, float), deut @ np.array(b, float)
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    assert hue_cosine((255, 0, 0), (0, 255, 0)) > 0.99
    assert hue_cosine(PREDICTION_COLOUR, TRUTH_COLOUR) < 0.8


def test_add_caption_writes_text_below_and_keeps_the_image():
    image = np.full((30, 60, 3), 7, np.uint8)
    out = add_caption(image, "1.23 px", height=16)
    assert out.shape == (46, 60, 3)
    assert np.array_equal(out[:30], image)
    assert (out[30:] < 128).any() and (out[30:] == 255).mean() > 0.5  # dark text on a white strip
    with pytest.raises(ValueError, match="height"):
        add_caption(image, "x", height=2)


def test_plot_history_draws_the_recorded_curves(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.0 / e, "valid_loss": 1.2 / e, "train_mae_px": 3.0 / e,
             "valid_mae_px": 3.5 / e} for e in (1, 2, 3)]
    fig = plot_history(rows, tmp_path / "h.png", title="demo")
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "MAE (px)"]
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]
    np.testing.assert_allclose(fig.axes[1].lines[1].get_ydata(), [3.5, 1.75, 3.5 / 3])
    assert (tmp_path / "h.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="history"):
        plot_history([])
