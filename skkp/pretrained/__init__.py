"""Keypoint models trained on real faces, shipped with skkp in the safe file format.

:func:`list_models` names them, :func:`load_model` returns one as a fitted estimator and
:func:`model_card` says how it was made. Nothing is downloaded: the files are package data,
written by ``python benchmarks/train_pretrained.py --all`` (docs/pretrained.md is the card).
Each model expects 96x96 gray face crops framed like its training crops: the box of the 68
landmarks with a margin of 0.25 of its size on each side (see
:func:`skkp.datasets.crop_faces`).
"""
import json
from importlib import resources

__all__ = ["list_models", "load_model", "model_card"]

#: What each shipped model predicts.
DESCRIPTIONS = {
    "ibug68_face": "the 68 iBUG 300-W face landmarks",
    "ibug68_nose": "the 9 iBUG nose points 27-35 (bridge and lower nose)",
}


def _folder():
    return resources.files(__name__) / "models"


def list_models():
    """Names of the models shipped with this skkp, sorted.

    Examples
    --------
    >>> "ibug68_nose" in list_models()
    True
    """
    return sorted(name for name in DESCRIPTIONS if (_folder() / f"{name}.skkp").is_file())


def _check(name):
    known = list_models()
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"name must be one of the shipped models {known}, got {name!r}.")


def load_model(name, device="auto"):
    """A shipped model as a fitted :class:`~skkp.NoseKeypointRegressor`.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    device : {"auto", "cpu", "cuda"}, default="auto"

    Returns
    -------
    NoseKeypointRegressor

    Examples
    --------
    >>> model = load_model("ibug68_nose", device="cpu")
    >>> model.n_keypoints_, model.keypoint_names_[3]
    (9, 'nose_bridge_3')
    """
    from ..io import load

    _check(name)
    with resources.as_file(_folder() / f"{name}.skkp") as path:
        return load(path, device=device)


def model_card(name):
    """How a shipped model was made: data, recipe, command, versions, and its predictions on fixed
    probe images (the tests check that the file still reproduces them).

    Examples
    --------
    >>> model_card("ibug68_face")["n_people"]
    313
    """
    _check(name)
    return json.loads((_folder() / f"{name}.json").read_text())
