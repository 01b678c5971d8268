"""Readers and preprocessing for real data: Kaggle CSV, landmark CSV, .pts, crops, CelebAMask-HQ."""
import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from skkp.datasets import (BISENET_CLASSES, CELEBAMASK_CLASSES, IBUG68_NOSE, IBUG68_SCHEMA,
                           KAGGLE_FEATURE_NAMES, KAGGLE_SCHEMA, convert_class_order, crop_faces,
                           load_celebamask_hq, load_kaggle_facial_keypoints, load_landmarks_csv,
                           person_id, read_pts, uncrop_keypoints, write_pts)

YTF68 = Path(os.environ.get("SKKP_YTF68")
             or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ytf68")


# --------------------------------------------------------------------------- Kaggle CSV

def _pixels(rng):
    return rng.randint(0, 256, size=(96, 96)).astype(np.uint8)


def _kaggle_row(keypoints, image):
    kp = ["" if np.isnan(v) else repr(float(v)) for v in keypoints]
    return ",".join(kp + [" ".join(map(str, image.ravel()))])


def _write_kaggle(path, rows, header=None):
    header = header or ",".join(KAGGLE_FEATURE_NAMES + ("Image",))
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


@pytest.fixture
def kaggle_rows():
    rng = np.random.RandomState(0)
    images = [_pixels(rng) for _ in range(3)]
    kps = rng.uniform(0, 95, size=(3, 30))
    kps[1, 4:] = np.nan          # typical Kaggle row: only eye centres... labelled
    kps[2, [0, 1, 21]] = np.nan
    return images, kps


def test_kaggle_training_good(tmp_path, kaggle_rows):
    images, kps = kaggle_rows
    path = _write_kaggle(tmp_path / "training.csv",
                         [_kaggle_row(k, im) for k, im in zip(kps, images)] + [""])
    data = load_kaggle_facial_keypoints(path)
    assert data.images.shape == (3, 96, 96) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, np.stack(images))
    assert data.keypoints.shape == (3, 30) and data.keypoints.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(data.keypoints), np.isnan(kps))
    np.testing.assert_array_equal(np.nan_to_num(data.keypoints), np.nan_to_num(kps))
    assert data.feature_names == KAGGLE_FEATURE_NAMES and len(data.keypoint_names) == 15
    assert data.n_skipped == 0 and data.image_ids is None


def test_kaggle_test_layout(tmp_path, kaggle_rows):
    images, _ = kaggle_rows
    rows = [f"{i + 1}," + " ".join(map(str, im.ravel())) for i, im in enumerate(images)]
    path = _write_kaggle(tmp_path / "test.csv", rows, header="ImageId,Image")
    data = load_kaggle_facial_keypoints(path)
    assert data.keypoints is None
    np.testing.assert_array_equal(data.image_ids, [1, 2, 3])
    np.testing.assert_array_equal(data.images[2], images[2])


@pytest.mark.parametrize("damage, message", [
    (lambda row: row.rsplit(" ", 1)[0], "9215 pixel values"),
    (lambda row: row[:-3] + "abc", "space-separated integers"),
    (lambda row: row.rsplit(" ", 1)[0] + " 300", "outside 0..255"),
    (lambda row: "x" + row, "not a number"),
    (lambda row: row.split(",", 1)[1], "30 fields, expected 31"),
    (lambda row: "inf," + row.split(",", 1)[1], "infinite"),
])
def test_kaggle_corrupt_row_raise_and_skip(tmp_path, kaggle_rows, damage, message):
    images, kps = kaggle_rows
    rows = [_kaggle_row(k, im) for k, im in zip(kps, images)]
    rows[1] = damage(rows[1])
    path = _write_kaggle(tmp_path / "training.csv", rows)
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3") + ".*" + re.escape(message)):
        load_kaggle_facial_keypoints(path)
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        data = load_kaggle_facial_keypoints(path, errors="skip")
    assert data.n_skipped == 1 and len(data.images) == 2
    np.testing.assert_array_equal(data.images, np.stack([images[0], images[2]]))
    np.testing.assert_array_equal(np.isnan(data.keypoints), np.isnan(kps[[0, 2]]))


def test_kaggle_bad_files(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        load_kaggle_facial_keypoints(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        load_kaggle_facial_keypoints(empty)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01" * 50)
    with pytest.raises(ValueError, match=re.escape(str(binary))):
        load_kaggle_facial_keypoints(binary)
    header = tmp_path / "header.csv"
    header.write_text("a,b,Image\n1,2,3\n")
    with pytest.raises(ValueError, match="line 1: not a Kaggle"):
        load_kaggle_facial_keypoints(header)
    with pytest.raises(ValueError, match="errors must be"):
        load_kaggle_facial_keypoints(header, errors="ignore")


def test_kaggle_header_only_gives_empty_arrays(tmp_path):
    data = load_kaggle_facial_keypoints(_write_kaggle(tmp_path / "t.csv", []))
    assert data.images.shape == (0, 96, 96) and data.keypoints.shape == (0, 30)


def test_kaggle_schema():
    assert KAGGLE_SCHEMA.n_keypoints == 15
    names = KAGGLE_SCHEMA.names
    for i, j in KAGGLE_SCHEMA.flip_pairs:  # every pair is a left/right twin
        assert names[i].replace("left", "right") == names[j]
    assert KAGGLE_FEATURE_NAMES[:2] == ("left_eye_center_x", "left_eye_center_y")
    assert KAGGLE_FEATURE_NAMES[-1] == "mouth_center_bottom_lip_y"


# --------------------------------------------------------------------------- landmark CSV

@pytest.fixture
def landmark_dir(tmp_path):
    rng = np.random.RandomState(1)
    rgb = {}
    for name, shape in [("Ann_Lee_1.png", (20, 30)), ("Ann_Lee_2.png", (25, 25)),
                        ("12345_abc.png", (16, 18))]:
        image = rng.randint(0, 256, size=shape + (3,)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / name), image[:, :, ::-1])  # written as BGR
        rgb[name] = image
    (tmp_path / "points.csv").write_text(
        "image,x0,y0,x1,y1\n"
        "Ann_Lee_1.png,1,2,3,4\n"
        "12345_abc.png,5.5,,7,8\n"
        "Ann_Lee_2.png,9,10,11,12\n"
        "Ann_Lee_1.png,0,0,1,1\n")
    return tmp_path, rgb


def test_landmarks_csv_good(landmark_dir):
    root, rgb = landmark_dir
    with pytest.warns(UserWarning, match="1 image names \\(e.g. Ann_Lee_1.png\\) are on more than one row"):
        data = load_landmarks_csv(root / "points.csv", root)
    assert list(data.filenames) == ["Ann_Lee_1.png", "12345_abc.png", "Ann_Lee_2.png",
                                    "Ann_Lee_1.png"]  # duplicate name kept
    assert data.n_conflicting == 2
    assert list(data.groups) == ["Ann_Lee", "12345_abc", "Ann_Lee", "Ann_Lee"]
    for name, image in zip(data.filenames, data.images):
        np.testing.assert_array_equal(image, rgb[name])  # RGB, not BGR
    assert data.keypoints.shape == (4, 4)
    np.testing.assert_array_equal(data.keypoints[1], [5.5, np.nan, 7, 8])
    assert data.n_skipped == 0
    with pytest.warns(UserWarning, match="more than one row"):
        gray = load_landmarks_csv(root / "points.csv", root, gray=True)
    assert gray.images[0].shape == (20, 30)
    expected = cv2.cvtColor(rgb["Ann_Lee_1.png"], cv2.COLOR_RGB2GRAY)
    assert np.abs(gray.images[0].astype(int) - expected).max() <= 1


def test_landmarks_csv_names_with_conflicting_points(landmark_dir):
    root, _ = landmark_dir
    dropped = load_landmarks_csv(root / "points.csv", root, duplicates="drop")
    assert list(dropped.filenames) == ["12345_abc.png", "Ann_Lee_2.png"] and dropped.n_conflicting == 2
    assert dropped.keypoints.shape == (2, 4) and len(dropped.images) == 2 and list(dropped.groups)[1] == "Ann_Lee"
    same = root / "same.csv"  # a name repeated with the same points (NaN included) is no conflict
    same.write_text("image,x0,y0,x1,y1\nAnn_Lee_1.png,1,,3,4\nAnn_Lee_1.png,1,,3,4\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_landmarks_csv(same, root).n_conflicting == 0
    with pytest.raises(ValueError, match="duplicates must be"):
        load_landmarks_csv(same, root, duplicates="first")


@pytest.mark.parametrize("row, message", [
    ("Missing_1.png,1,2,3,4", "image file not found"),
    ("broken.png,1,2,3,4", "cannot read image"),
    ("Ann_Lee_1.png,1,2,3", "4 fields, expected 5"),
    ("Ann_Lee_1.png,1,2,three,4", "'x1' is not a number"),
    (",1,2,3,4", "empty image file name"),
])
def test_landmarks_csv_bad_rows(landmark_dir, row, message):
    root, _ = landmark_dir
    (root / "broken.png").write_bytes(b"not an image at all")
    path = root / "bad.csv"
    path.write_text("image,x0,y0,x1,y1\nAnn_Lee_2.png,1,2,3,4\n" + row + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3") + ".*" + re.escape(message)):
        load_landmarks_csv(path, root)
    with pytest.warns(UserWarning, match="skipped 1"):
        data = load_landmarks_csv(path, root, errors="skip")
    assert data.n_skipped == 1 and len(data.images) == 1 and data.keypoints.shape == (1, 4)


def test_landmarks_csv_bad_header_and_dir(landmark_dir):
    root, _ = landmark_dir
    no_header = root / "nohead.csv"
    no_header.write_text("Ann_Lee_1.png,1,2,3,4\n")
    with pytest.raises(ValueError, match="header"):
        load_landmarks_csv(no_header, root)
    odd = root / "odd.csv"
    odd.write_text("image,x0,y0,x1\n")
    with pytest.raises(ValueError, match="x,y pairs"):
        load_landmarks_csv(odd, root)
    with pytest.raises(ValueError, match="image_dir"):
        load_landmarks_csv(root / "points.csv", root / "nowhere")


def test_person_id():
    assert person_id("Warren_Buffett_12.jpg") == "Warren_Buffett"
    assert person_id("dir/Ann_Lee_00.png") == "Ann_Lee"
    assert person_id("1084239450_e76e00b7e7.jpg") == "1084239450_e76e00b7e7"
    assert person_id("2382SJ8.jpg") == "2382SJ8"


def test_ibug68_schema():
    assert IBUG68_SCHEMA.n_keypoints == 68 and IBUG68_SCHEMA.normalizer == (36, 45)
    assert IBUG68_NOSE == tuple(range(27, 36))
    used = sorted(i for pair in IBUG68_SCHEMA.flip_pairs for i in pair)
    centre = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]  # points on the mirror axis
    assert sorted(used + centre) == list(range(68))
    names = IBUG68_SCHEMA.names
    for i, j in IBUG68_SCHEMA.flip_pairs:
        if names[i].startswith(("r_", "l_")):
            assert {names[i][:2], names[j][:2]} == {"r_", "l_"}


# --------------------------------------------------------------------------- .pts

def test_pts_round_trip_exact(tmp_path):
    rng = np.random.RandomState(2)
    points = rng.uniform(-5, 500, size=(68, 2))
    write_pts(tmp_path / "a.pts", points)
    np.testing.assert_array_equal(read_pts(tmp_path / "a.pts"), points)
    write_pts(tmp_path / "b.pts", points.ravel())  # (2K,) layout
    np.testing.assert_array_equal(read_pts(tmp_path / "b.pts"), points)


def test_read_pts_handwritten(tmp_path):
    path = tmp_path / "h.pts"
    path.write_text("version: 1\nn_points:  3\n{\n1.5 2\n\n3 4\n5 6.25\n}\n\n")
    np.testing.assert_array_equal(read_pts(path), [[1.5, 2], [3, 4], [5, 6.25]])


@pytest.mark.parametrize("text, message", [
    ("version: 1\n{\n1 2\n}\n", "line 2: '{' before an 'n_points:'"),
    ("version: 1\nn_points: 2\n{\n1 2\n}\n", "line 5: 1 points before '}'"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n", "line 5: expected two finite numbers"),
    ("version: 1\nn_points: 1\n{\n1 2\n", "incomplete"),
    ("version: 1\nn_points: 1\n{\n1 2\n}\nextra\n", "line 6: unexpected text"),
    ("version: 1\nn_points: two\n{\n}\n", "line 2: n_points is not an integer"),
    ("hello\n", "line 1: expected 'key: value'"),
])
def test_read_pts_errors(tmp_path, text, message):
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        read_pts(path)


def test_write_pts_rejects_bad_points(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_pts(tmp_path / "x.pts", [[1.0, np.nan]])
    with pytest.raises(ValueError, match="points contains infinity"):
        write_pts(tmp_path / "x.pts", [[1.0, np.inf]])
    with pytest.raises(ValueError, match=r"points must have shape \(2K,\).*\(K, 2\); got \(2, 3\)"):
        write_pts(tmp_path / "x.pts", np.zeros((2, 3)))
    with pytest.raises(TypeError, match="points must hold numbers"):
        write_pts(tmp_path / "x.pts", [["1", "2"]])
    assert not (tmp_path / "x.pts").exists()  # nothing written on an error


# --------------------------------------------------------------------------- crops

def _blob_image(shape, centre, sigma):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2))
    return (255 * g).astype(np.uint8)


def _centroid(image):
    w = image.astype(np.float64)
    yy, xx = np.mgrid[:w.shape[0], :w.shape[1]]
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


@pytest.mark.parametrize("shape, box", [((400, 380), (100, 150, 260, 300)),  # > 2x shrink
                                        ((120, 100), (20, 40, 80, 100))])   # mild shrink
def test_crop_content_follows_the_keypoints(shape, box):
    centre = ((box[0] + box[2]) / 2 + 9.3, (box[1] + box[3]) / 2 - 6.4)
    image = _blob_image(shape, centre, sigma=shape[0] / 40)
    out = crop_faces([image], np.array([centre]), boxes=np.array([box]), size=64, margin=0.2)
    assert out.images.shape == (1, 64, 64) and out.images.dtype == np.uint8
    np.testing.assert_allclose(_centroid(out.images[0]), out.keypoints[0], atol=0.15)


def test_crop_box_geometry_and_margin():
    out = crop_faces(np.zeros((2, 50, 60), np.uint8), boxes=[[10, 10, 30, 20], [0, 0, 40, 40]],
                     size=30, margin=0.25)
    # box side 20 (max of 20, 10) grows to 30 px, mapped onto 30 px: scale 1
    np.testing.assert_allclose(out.transforms[0], [[1, 0, -(20 - 15) - 0.5], [0, 1, -(15 - 15) - 0.5]])
    np.testing.assert_allclose(out.transforms[1][0, 0], 30 / 60)
    assert out.keypoints is None


def test_crop_round_trip_with_jitter_and_nan():
    rng = np.random.RandomState(3)
    images = [rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
              for h, w in [(90, 120), (200, 150), (64, 64)]]
    pts = rng.uniform(10, 60, size=(3, 5, 2))
    pts[1, 2] = np.nan
    pts[2, 4, 1] = np.nan              # half-labelled point: missing as a whole
    before = pts.copy()
    out = crop_faces(images, pts, size=48, jitter=0.05, random_state=0, gray=False)
    np.testing.assert_array_equal(pts, before)  # input untouched
    assert out.images.shape == (3, 48, 48, 3) and out.keypoints.shape == (3, 5, 2)
    assert np.isnan(out.keypoints[1, 2]).all() and not np.isnan(out.keypoints[0]).any()
    assert np.isnan(out.keypoints[2, 4]).all()
    pts[2, 4] = np.nan
    back = uncrop_keypoints(out.keypoints, out.transforms)
    np.testing.assert_allclose(back, pts, atol=1e-6)
    flat = uncrop_keypoints(out.keypoints.reshape(3, -1), out.transforms)
    assert flat.shape == (3, 10)
    np.testing.assert_allclose(flat, pts.reshape(3, -1), atol=1e-6)


def test_crop_jitter_is_seeded_and_bounded():
    image = np.zeros((100, 100), np.uint8)
    pts = np.tile([[30.0, 30.0, 70.0, 70.0]], (400, 1))
    plain = crop_faces([image] * 400, pts, size=32, margin=0.25)
    a = crop_faces([image] * 400, pts, size=32, margin=0.25, jitter=0.05, random_state=7)
    b = crop_faces([image] * 400, pts, size=32, margin=0.25, jitter=0.05,
                   random_state=np.random.RandomState(7))
    c = crop_faces([image] * 400, pts, size=32, margin=0.25, jitter=0.05, random_state=8)
    np.testing.assert_array_equal(a.transforms, b.transforms)
    assert not np.allclose(a.transforms, c.transforms)
    assert np.ptp(plain.transforms, axis=0).max() == 0
    scale = plain.transforms[0, 0, 0] / a.transforms[:, 0, 0]   # crop side relative to plain
    assert 0.9 <= scale.min() < 0.92 and 1.08 < scale.max() <= 1.1
    centre = uncrop_keypoints(np.full((400, 2), 15.5), a.transforms)  # crop centre, original px
    shift = (centre - 50.0) / 40.0                                   # in box sides
    assert np.abs(shift).max() <= 0.05 and np.abs(shift).max() > 0.045
    sep = crop_faces([image] * 400, pts, size=32, jitter=(0.0, 0.2), random_state=0)
    np.testing.assert_allclose(uncrop_keypoints(np.full((400, 2), 15.5), sep.transforms), 50.0)


def test_crop_from_keypoints_ignores_nan_points():
    image = np.zeros((100, 100), np.uint8)
    pts = np.array([[20.0, 20.0, 60.0, 60.0, np.nan, 99.0]])
    a = crop_faces([image], pts, margin=0.0, size=40)
    b = crop_faces([image], boxes=[[20, 20, 60, 60]], margin=0.0, size=40)
    np.testing.assert_allclose(a.transforms, b.transforms)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(), ValueError, "keypoints or boxes"),
    (dict(keypoints=np.full((1, 4), np.nan)), ValueError, "no labelled point"),
    (dict(keypoints=np.ones((2, 4))), ValueError, "2 rows but there are 1 images"),
    (dict(boxes=[[0, 0, 10]]), ValueError, "boxes must have shape"),
    (dict(boxes=[[5, 5, 5, 5]]), ValueError, "zero or negative size"),
    (dict(boxes=[[0, 0, 9, 9]], jitter=(0.1,)), ValueError, "jitter"),
    (dict(boxes=[[0, 0, 9, 9]], size=0), ValueError, "size"),
    (dict(boxes=[[0, 0, 9, 9]], margin=-1), ValueError, "margin"),
    (dict(keypoints=np.ones((1, 3))), ValueError, r"keypoints must have shape \(n, 2K\)"),
    (dict(keypoints=[[0.0, 0.0, np.inf, 5.0]]), ValueError, "keypoints contains infinity"),
    (dict(keypoints=[["a", "b"]]), TypeError, "keypoints must hold numbers"),
])
def test_crop_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        crop_faces([np.zeros((10, 10), np.uint8)], **kwargs)


def test_crop_rejects_bad_images():
    with pytest.raises(TypeError, match=r"images\[0\] must be uint8"):
        crop_faces([np.zeros((10, 10))], boxes=[[0, 0, 5, 5]])
    with pytest.raises(ValueError, match=r"images\[0\]"):
        crop_faces([np.zeros((10, 10, 4), np.uint8)], boxes=[[0, 0, 5, 5]])
    with pytest.raises(ValueError, match=r"transforms must have shape"):
        uncrop_keypoints(np.zeros((1, 2)), np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="keypoints has 2 rows but there are 1 images"):
        uncrop_keypoints(np.zeros((2, 2)), np.tile(np.eye(2, 3), (1, 1, 1)))


# --------------------------------------------------------------------------- CelebAMask-HQ

def _fake_celebamask(root, ids=(0, 1, 2001)):
    """Images 32x32 of one colour each; masks 16x16: skin square, hair band, l_eye dot."""
    (root / "CelebA-HQ-img").mkdir()
    for idx in ids:
        colour = np.array([idx % 256, 50, 200], np.uint8)
        cv2.imwrite(str(root / "CelebA-HQ-img" / f"{idx}.jpg"),
                    np.broadcast_to(colour[::-1], (32, 32, 3)).copy())
        folder = root / "CelebAMask-HQ-mask-anno" / str(idx // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        skin = np.zeros((16, 16), np.uint8)
        skin[2:14, 2:14] = 255
        hair = np.zeros((16, 16), np.uint8)
        hair[0:5, :] = 255                      # overlaps the top of the skin
        eye = np.zeros((16, 16), np.uint8)
        eye[7, 9] = 255
        for part, mask in [("skin", skin), ("hair", hair), ("l_eye", eye)]:
            cv2.imwrite(str(folder / f"{idx:05d}_{part}.png"), mask)
    return root


def test_celebamask_merge_order(tmp_path):
    root = _fake_celebamask(tmp_path)
    data = load_celebamask_hq(root)
    assert data.images.shape == (3, 16, 16, 3) and data.labels.shape == (3, 16, 16)
    np.testing.assert_array_equal(data.ids, [0, 1, 2001])
    assert data.classes == CELEBAMASK_CLASSES
    hair, skin, l_eye = (CELEBAMASK_CLASSES.index(c) for c in ("hair", "skin", "l_eye"))
    lab = data.labels[2]
    assert lab[3, 5] == hair          # hair (13) painted after skin (1)
    assert lab[10, 5] == skin and lab[7, 9] == l_eye and lab[15, 15] == 0
    assert np.abs(data.images[2].astype(int) - [2001 % 256, 50, 200]).max() <= 3  # RGB


def test_celebamask_size_classes_and_ids(tmp_path):
    root = _fake_celebamask(tmp_path)
    small = load_celebamask_hq(root, size=8, ids=[1])
    assert small.images.shape == (1, 8, 8, 3) and small.labels.shape == (1, 8, 8)
    assert set(np.unique(small.labels)) <= {0, 1, 13}
    only_skin = load_celebamask_hq(root, classes=("background", "skin"))
    assert only_skin.labels[0, 3, 5] == 1 and only_skin.labels[0, 0, 5] == 0
    assert only_skin.labels.max() == 1
    with pytest.raises(ValueError, match="ids not found"):
        load_celebamask_hq(root, ids=[5])
    with pytest.raises(ValueError, match=r"classes must be a background name.*\['whiskers'\]"):
        load_celebamask_hq(root, classes=("background", "whiskers"))
    with pytest.raises(ValueError, match=r"classes must be unique names; repeated: \['skin'\]"):
        load_celebamask_hq(root, classes=("background", "skin", "skin"))
    with pytest.raises(TypeError, match="classes"):
        load_celebamask_hq(root, classes="skin")
    with pytest.raises(ValueError, match="size"):
        load_celebamask_hq(root, size=0)


def test_celebamask_split(tmp_path):
    root = _fake_celebamask(tmp_path)
    with pytest.raises(ValueError, match="CelebA-HQ-to-CelebA-mapping.txt"):
        load_celebamask_hq(root, split="train")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text(
        "idx         orig_idx  orig_file\n0 119 000120.jpg\n1 1000 001001.jpg\n"
        "2001 200000 200001.jpg\n")
    (root / "list_eval_partition.txt").write_text(
        "000120.jpg 0\n001001.jpg 2\n200001.jpg 0\n")
    np.testing.assert_array_equal(load_celebamask_hq(root, split="train").ids, [0, 2001])
    np.testing.assert_array_equal(load_celebamask_hq(root, split="test").ids, [1])
    assert load_celebamask_hq(root, split="val").images.shape[0] == 0
    with pytest.raises(ValueError, match="split must be"):
        load_celebamask_hq(root, split="training")


def test_celebamask_missing_parts(tmp_path):
    root = _fake_celebamask(tmp_path, ids=(0,))
    with pytest.raises(ValueError, match="CelebA-HQ-img"):
        load_celebamask_hq(tmp_path / "nowhere")
    for f in (root / "CelebAMask-HQ-mask-anno" / "0").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="no mask files for image 0"):
        load_celebamask_hq(root)


def test_convert_class_order():
    assert len(BISENET_CLASSES) == 19 and set(BISENET_CLASSES) == set(CELEBAMASK_CLASSES)
    labels = np.array([[0, 1, 2, 4], [6, 13, 18, 255]], dtype=np.uint8)
    before = labels.copy()
    out = convert_class_order(labels)
    np.testing.assert_array_equal(labels, before)
    names = [BISENET_CLASSES[v] if v != 255 else None for v in out.ravel()]
    assert names == ["background", "skin", "nose", "l_eye", "l_brow", "hair", "cloth", None]
    every = np.append(np.arange(19), 255).astype(np.int64)
    back = convert_class_order(convert_class_order(every), "bisenet", "celebamask")
    np.testing.assert_array_equal(back, every)
    with pytest.raises(ValueError, match=r"labels has labels outside the 19 classes.*255 = ignore.*\[19\]"):
        convert_class_order(np.array([19]))
    with pytest.raises(ValueError, match=r"labels has labels outside.*\[-1\]"):
        convert_class_order(np.array([-1, 0]))
    with pytest.raises(ValueError, match="labels must hold integer class labels"):
        convert_class_order(np.array([1.5]))
    with pytest.raises(TypeError, match="labels must hold numbers"):
        convert_class_order(np.array(["skin"]))
    # whole-number floats are labels too, and bool maps are classes 0 and 1
    np.testing.assert_array_equal(convert_class_order(labels.astype(np.float32)), out)
    np.testing.assert_array_equal(convert_class_order(np.array([False, True])), [0, 1])
    with pytest.raises(ValueError, match="not in target"):
        convert_class_order(np.array([1]), target=("background", "hair"))
    two = convert_class_order(np.array([0, 1]), ("bg", "hair"), ("hair", "bg"))
    np.testing.assert_array_equal(two, [1, 0])


# --------------------------------------------------------------------------- real data

@pytest.mark.skipif(not (YTF68 / "keypoints.csv").is_file(), reason="ytf68 data not available")
def test_ytf68_real_data():
    data = load_landmarks_csv(YTF68 / "keypoints.csv", YTF68 / "images", gray=True)
    assert len(data.images) == 3240 and data.keypoints.shape == (3240, 136)
    assert data.n_skipped == 0 and not np.isnan(data.keypoints).any()
    assert len(np.unique(data.groups)) == 313
    assert len(np.unique(data.filenames)) < 3240  # repeated names are all kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crops = crop_faces(data.images, data.keypoints, size=96, margin=0.25, jitter=0.05,
                           random_state=0)
    assert crops.images.shape == (3240, 96, 96)
    pts = crops.keypoints.reshape(-1, 68, 2)
    # the landmark extent plus a 25% margin (+-5% shift, +-10% scale) stays inside the crop
    assert pts.min() > 0 and pts.max() < 95
    nose = pts[:, IBUG68_NOSE]
    off_centre = np.abs(nose.mean(axis=1) - 47.5).max(axis=1)  # profiles reach ~30 px
    assert np.median(off_centre) < 12 and off_centre.max() < 40
    # mirror pairs: the subject's right (first of each pair) lies left in the image
    x = pts[..., 0]
    for i, j in IBUG68_SCHEMA.flip_pairs:
        assert np.median(x[:, i] - x[:, j]) < 0


# --------------------------------------------------------------------------- damaged image files
def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_truncated_jpeg_in_a_landmark_csv_raises_or_is_skipped(tmp_path):
    rng = np.random.RandomState(0)
    for name in ("A_1.jpg", "A_2.jpg"):
        cv2.imwrite(str(tmp_path / name), rng.randint(0, 256, (40, 40, 3)).astype(np.uint8))
    assert cv2.imread(str(tmp_path / "A_2.jpg")) is not None
    _truncate(tmp_path / "A_2.jpg")
    assert cv2.imread(str(tmp_path / "A_2.jpg")) is not None  # OpenCV alone decodes half a grey image
    (tmp_path / "points.csv").write_text("image,x0,y0\nA_1.jpg,1,2\nA_2.jpg,3,4\n")
    with pytest.raises(ValueError, match=r"line 3: truncated JPEG .*A_2.jpg"):
        load_landmarks_csv(tmp_path / "points.csv", tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        data = load_landmarks_csv(tmp_path / "points.csv", tmp_path, errors="skip")
    assert data.n_skipped == 1 and list(data.filenames) == ["A_1.jpg"]


def test_truncated_jpeg_in_celebamask_raises_or_is_skipped(tmp_path):
    root = _fake_celebamask(tmp_path)
    _truncate(root / "CelebA-HQ-img" / "1.jpg", keep=0.5)
    with pytest.raises(ValueError, match=r"truncated JPEG .*1\.jpg"):
        load_celebamask_hq(root)
    with pytest.warns(UserWarning, match=r"skipped 1 image\(s\): 1: truncated JPEG"):
        data = load_celebamask_hq(root, errors="skip")
    assert data.n_skipped == 1 and list(data.ids) == [0, 2001] and len(data.images) == 2
    with pytest.raises(ValueError, match="errors must be"):
        load_celebamask_hq(root, errors="ignore")
