"""``skkp.save`` and ``skkp.load``: one file per estimator that cannot run code when read.

A ``.skkp`` file is a zip archive of two members:

- ``skkp.json``: the format and its version, the skkp version, the estimator's class
  (one of skkp's estimators: the three of the core, ``FaceKeypointRegressor`` and
  ``FaceDetector``), its parameters, its fitted attributes and, for the neural
  estimators, the training history. Estimators inside an estimator (the regressor and
  detector of a ``FaceKeypointRegressor``, a ``FrozenEstimator`` around a fitted model)
  are nested documents of the same form;
- ``arrays.npz``: every array, the network weights included, read back with
  ``numpy.load(..., allow_pickle=False)``.

Nothing is unpickled when loading, so a file from someone else can at worst fail to
load, with a ``ValueError`` saying why. ``joblib.load`` / ``pickle.load`` run code from
the file they read: use them only for files you trust.
"""
import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ._version import __version__

__all__ = ["FORMAT_VERSION", "load", "save"]

#: Version of the file layout; files of a newer layout are refused by this skkp.
FORMAT_VERSION = 1
_FORMAT = "skkp-estimator"
#: The classes a file may name, and the module that defines each.
_CLASSES = {"NoseKeypointRegressor": "keypoints", "FaceParser": "parsing", "MaskEdgeKeypoints": "edges",
            "FaceKeypointRegressor": "faces", "FaceDetector": "detection"}
_NOT_STATE = {"net_"}  # rebuilt from the weights


def _older_parser_heads(params):
    from .parsing import _heads_of_older_parsers

    return _heads_of_older_parsers(params.get("net_kwargs"))


#: Parameters added to a class after files of the format were written, with the value that a
#: file lacking one implied (the behaviour it was saved with, not today's default): a value, or
#: a function of the file's other (decoded) parameters. FaceParser's ``heads`` became
#: "stride4" by default; older parsers have the three reference heads unless their
#: ``net_kwargs`` chose ``module__head_stages``; its ``boundary_weight`` became 2.0, and older
#: parsers were trained with the plain OHEM loss (it matters to warm_start and checkpoints); its
#: ``top_down`` head did not exist.
_IMPLIED_BY_OLDER_FILES = {"FaceParser": {"heads": _older_parser_heads, "boundary_weight": 0.0,
                                          "top_down": False}}


def _class_name(estimator):
    """The name under which ``estimator``'s class may be saved, or None for a foreign class."""
    name = type(estimator).__name__
    return name if _CLASSES.get(name) is not None and type(estimator).__module__ == f"skkp.{_CLASSES[name]}" else None


class _Encoder:
    """JSON-safe values, with arrays moved to the npz side: tuples, arrays, dicts, the keypoint
    frame, box calibrations and nested estimators are tagged, so decoding gives back the same
    types. An estimator met twice (a FrozenEstimator that is both a parameter and the fitted
    regressor) is written once and referred to after that."""

    def __init__(self):
        self.arrays = {}
        self.seen = {}  # id(estimator) -> its reference number

    def __call__(self, value, where):
        from sklearn.frozen import FrozenEstimator

        from ._keypoint_data import KeypointFrame
        from .detection import BoxCalibration

        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
            return value.item() if isinstance(value, np.generic) else value
        if isinstance(value, tuple):
            return {"tuple": [self(v, where) for v in value]}
        if isinstance(value, list):
            return [self(v, where) for v in value]
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"dict": {k: self(v, f"{where}[{k!r}]") for k, v in value.items()}}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                if not all(isinstance(v, str) for v in value.ravel()):
                    raise TypeError(f"{where} is an object array; only arrays of numbers or str can be saved.")
                return {"str_array": [str(v) for v in value.ravel()], "shape": list(value.shape)}
            key = f"a{len(self.arrays)}"
            self.arrays[key] = value
            return {"array": key}
        if isinstance(value, KeypointFrame):
            return {"KeypointFrame": {k: self(v, f"{where}.{k}") for k, v in vars(value).items()}}
        if isinstance(value, BoxCalibration):
            return {"BoxCalibration": value.to_dict()}
        if isinstance(value, FrozenEstimator) or _class_name(value) is not None:
            if id(value) in self.seen:
                return {"estimator_ref": self.seen[id(value)]}
            self.seen[id(value)] = ref = len(self.seen)
            if isinstance(value, FrozenEstimator):
                return {"FrozenEstimator": self(value.estimator, f"{where}.estimator"), "ref": ref}
            return {"estimator": _document(value, self, where), "ref": ref}
        what = f"a {type(value).__name__}"
        if callable(value) and not hasattr(value, "get_params"):
            what = f"a function or callable ({getattr(value, '__name__', type(value).__name__)})"
        raise TypeError(f"{where} is {what}, which the safe format cannot hold; use parameters made of "
                        f"numbers, str, lists, tuples, dicts and skkp estimators (e.g. no callback objects in "
                        f"net_kwargs, a detector backend name rather than a function), or joblib for files you "
                        f"keep to yourself.")


def _document(estimator, encode, where=None):
    """The JSON document of one skkp estimator: class, parameters, fitted state, and for the neural
    estimators their weights (as keys into ``encode.arrays``) and history. ``where`` names a nested
    estimator in error messages."""
    name = _class_name(estimator)
    if name is None:
        raise TypeError(f"{where or 'estimator'} must be one of skkp's {sorted(_CLASSES)}, got "
                        f"{type(estimator).__name__}.")
    params = estimator.get_params(deep=False)
    if hasattr(params.get("init"), "get_params"):
        warnings.warn("init is an estimator object, which the safe format does not hold: the file says init=None "
                      "(the fitted weights are saved; started_from_ records where they started). Pass init as a "
                      "saved file's path or a shipped model's name to keep it.", UserWarning, stacklevel=4)
        params["init"] = None
    prefix = "" if where is None else f"{where}: "
    document = {"class": name, "params": {k: encode(v, f"{prefix}parameter {k}") for k, v in params.items()},
                "fitted": {k: encode(v, f"{prefix}attribute {k}") for k, v in vars(estimator).items()
                           if k.endswith("_") and not k.startswith("_") and k not in _NOT_STATE}}
    if hasattr(estimator, "net_"):
        document["weights"] = {}
        for key, tensor in estimator.net_.module_.state_dict().items():
            array_key = f"w{len(encode.arrays)}"
            encode.arrays[array_key] = tensor.detach().cpu().numpy()
            document["weights"][key] = array_key
        document["history"] = list(estimator.net_.history)  # numbers and str; numpy scalars via _history_value
    return document


class _Decoder:
    """The inverse of :class:`_Encoder`, building each nested estimator once, its network on ``device``."""

    def __init__(self, arrays, path, device):
        self.arrays, self.path, self.device = arrays, path, device
        self.built = {}  # reference number -> estimator

    def __call__(self, value, where):
        from ._keypoint_data import KeypointFrame
        from .detection import BoxCalibration

        if isinstance(value, list):
            return [self(v, where) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and "tuple" in value:
            return tuple(self(v, where) for v in value["tuple"])
        if len(value) == 1 and "dict" in value:
            return {k: self(v, f"{where}[{k!r}]") for k, v in value["dict"].items()}
        if len(value) == 1 and "array" in value:
            if value["array"] not in self.arrays:
                raise ValueError(f"{where} refers to array {value['array']!r}, which the file does not hold.")
            return self.arrays[value["array"]]
        if set(value) == {"str_array", "shape"}:
            return np.array(value["str_array"], dtype=object).reshape(value["shape"])
        if len(value) == 1 and "KeypointFrame" in value:
            frame = KeypointFrame.__new__(KeypointFrame)
            frame.__dict__.update({k: self(v, where) for k, v in value["KeypointFrame"].items()})
            return frame
        if len(value) == 1 and isinstance(value.get("BoxCalibration"), dict):
            try:
                return BoxCalibration(**value["BoxCalibration"])
            except TypeError as exc:
                raise ValueError(f"{where} holds a damaged box calibration: {exc}") from None
        if len(value) == 1 and "estimator_ref" in value:
            if value["estimator_ref"] not in self.built:
                raise ValueError(f"{where} refers to estimator {value['estimator_ref']!r}, which the file does not "
                                 f"hold before it.")
            return self.built[value["estimator_ref"]]
        if set(value) == {"FrozenEstimator", "ref"}:
            from sklearn.frozen import FrozenEstimator

            return self.built.setdefault(value["ref"], FrozenEstimator(self(value["FrozenEstimator"], where)))
        if set(value) == {"estimator", "ref"} and isinstance(value["estimator"], dict):
            return self.built.setdefault(value["ref"], self.estimator(value["estimator"], where))
        raise ValueError(f"{where} holds an unknown value {str(value)[:80]}.")

    def estimator(self, document, where=None):
        """The estimator a :func:`_document` describes, with its fitted state and weights."""
        import importlib

        name = document.get("class")
        if name not in _CLASSES:
            raise ValueError(f"{self.path} names the class {name!r}{f' ({where})' if where else ''}; an skkp file "
                             f"may only hold one of {sorted(_CLASSES)}.")
        cls = getattr(importlib.import_module(f"skkp.{_CLASSES[name]}"), name)
        params = {k: self(v, f"parameter {k}") for k, v in document.get("params", {}).items()}
        for key, implied in _IMPLIED_BY_OLDER_FILES.get(name, {}).items():
            if key not in params:
                params[key] = implied(params) if callable(implied) else implied
        estimator = cls(**params)
        for key, value in document.get("fitted", {}).items():
            if not (isinstance(key, str) and key.endswith("_") and key.isidentifier() and not key.startswith("_")):
                raise ValueError(f"{self.path} has an invalid attribute name {key!r}.")
            setattr(estimator, key, self(value, f"attribute {key}"))
        if "weights" in document:
            _restore_net(estimator, document, self.arrays, self.path, self.device)
        return estimator


def save(estimator, path):
    """Write a skkp estimator (fitted or not) to ``path`` in the safe format.

    Parameters
    ----------
    estimator : NoseKeypointRegressor, FaceParser, MaskEdgeKeypoints, FaceKeypointRegressor or FaceDetector
        A ``FaceKeypointRegressor`` is saved with its regressor (which must be a skkp
        estimator, or a ``FrozenEstimator`` around one), its detector (a backend name or
        a :class:`~skkp.detection.FaceDetector`; not a function) and its box calibration.
    path : str or path-like
        The file to write (the ``.skkp`` suffix is usual, not required).

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    TypeError
        For another class, or a parameter or attribute the format cannot hold
        (e.g. callback objects in ``net_kwargs``, a detector function).

    Examples
    --------
    >>> import os, tempfile
    >>> import skkp
    >>> from skkp.datasets import make_noses
    >>> X, y = make_noses(32, image_size=32, random_state=0)
    >>> model = skkp.NoseKeypointRegressor(architecture="mlp", image_size=32, max_epochs=1,
    ...                                    random_state=0, device="cpu").fit(X, y)
    >>> path = skkp.save(model, os.path.join(tempfile.mkdtemp(), "nose.skkp"))
    >>> again = skkp.load(path)
    >>> bool(np.allclose(again.predict(X[:2]), model.predict(X[:2])))
    True
    """
    encode = _Encoder()
    document = {"format": _FORMAT, "format_version": FORMAT_VERSION, "skkp_version": __version__,
                **_document(estimator, encode)}
    buffer = io.BytesIO()
    np.savez(buffer, **encode.arrays)
    path = Path(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("skkp.json", json.dumps(document, indent=1, default=_history_value),
                         compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("arrays.npz", buffer.getvalue(), compress_type=zipfile.ZIP_STORED)
    return path


def _history_value(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"history value {value!r} is not a number or str")


def _read(path):
    """(document, arrays) of a .skkp file, checked; ValueError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a file.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if names != {"skkp.json", "arrays.npz"}:
                raise ValueError(f"{path} is not an skkp model file: it holds {sorted(names)[:5]}.")
            document = json.loads(archive.read("skkp.json").decode("utf-8"))
            raw = archive.read("arrays.npz")
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is not an skkp model file (not a zip archive: truncated, or another "
                         f"format such as a pickle).") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} has a damaged skkp.json: {exc}") from None
    except (OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise ValueError(f"{path} cannot be read: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an skkp model file (no '{_FORMAT}' header).")
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} uses file format {version!r}; this skkp ({__version__}) reads format "
                         f"{FORMAT_VERSION} and older: upgrade skkp to load it.")
    if document.get("class") not in _CLASSES:
        raise ValueError(f"{path} names the class {document.get('class')!r}; an skkp file may only hold one of "
                         f"{sorted(_CLASSES)}.")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} has damaged or unsafe arrays (objects are never unpickled): {exc}") from None
    return document, arrays


def load(path, device="auto"):
    """Read an estimator written by :func:`save`; nothing in the file is executed.

    Parameters
    ----------
    path : str or path-like
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the network goes: "auto" is CUDA when available, else the CPU (a model
        saved on a GPU loads on a CPU-only machine).

    Returns
    -------
    estimator
        Of the class the file names, with its parameters and fitted state;
        ``predict`` gives the same answers as the saved estimator.

    Raises
    ------
    ValueError
        For a file that is not an skkp model (a pickle renamed, a truncated file),
        names a class outside skkp, has weights that do not fit its network, or uses
        a newer format version.
    """
    document, arrays = _read(path)
    estimator = _Decoder(arrays, path, device).estimator(document)
    saved = document.get("skkp_version")
    if saved != __version__:
        warnings.warn(f"{path} was saved with skkp {saved} and is loaded with skkp {__version__}; results may "
                      f"differ.", UserWarning, stacklevel=2)
    return estimator


def _restore_net(estimator, document, arrays, path, device):
    import torch
    from skorch.history import History

    from ._training import isolated_rng, prepare_for_pickle, resolve_device

    device = resolve_device(device)
    with isolated_rng(device):  # building the network draws from torch's generator: leave the caller's alone
        net = estimator._unfitted_net(device)
    try:
        state = {key: torch.from_numpy(np.asarray(arrays[array_key])) for key, array_key in document["weights"].items()}
        net.module_.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{path} holds weights that do not fit the {document['class']} network it describes: "
                         f"{str(exc)[:300]}") from None
    net.history = History(document.get("history") or [])
    estimator.net_ = prepare_for_pickle(net)
    estimator.device_ = str(net.device)
