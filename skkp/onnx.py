"""ONNX export of fitted skkp networks, and predictors that run them on onnxruntime without torch.

:func:`export` writes a fitted :class:`~skkp.NoseKeypointRegressor` or
:class:`~skkp.FaceParser` to one ``.onnx`` file; :func:`load` reads it back as an
object with the estimator's ``predict`` (and ``predict_proba`` for the parser):
same input layouts, same resize, same mapping back to the input pixels. Loading
and predicting import numpy, OpenCV and onnxruntime only, never torch or skorch.

What runs where: the graph holds what does not depend on the input's size, the
standardisation of fit and the network. The predictor does the rest in numpy, with the very
functions the estimator uses:

- keypoints: layouts, gray conversion and pixel scale (:func:`skkp._validation.check_images`)
  and the resize to ``image_size`` (:func:`skkp.augment.resize_stack`) before the graph;
  after it the network's [-1, 1] units (for direct-regression networks first
  ``output * y_scale + y_offset``) become pixels of the input images
  (:func:`skkp._frames.from_unit`, :func:`skkp._frames.rescale_points`), or, for the
  MLP on a feature matrix, targets (``units * y_scale + y_offset``);
- the parser: layouts and uint8 RGB (:func:`skkp._validation.check_parsing_X`) and the
  resize before the graph, which takes the resized uint8 RGB images and applies the
  ImageNet normalisation itself; after it the logits are upsampled (bilinear, half-pixel
  centres, as :func:`skkp.resnet.upsample_bilinear`) to the input size, a band of rows at
  a time, then softmax or argmax over the classes.

Everything the predictor needs (and a description of the graph's input and output,
for use without skkp) is JSON in the model's ``metadata_props`` under the key
``"skkp"`` (:data:`METADATA_KEY`). An ONNX file holds a graph of standard operators and
weights, no code: opening one cannot run anything, unlike a pickle.

Needs ``pip install "skkp[onnx]"`` (onnx, onnxruntime; onnxscript only where torch lacks the TorchScript exporter).
"""
import copy
import functools
import importlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ._frames import from_unit, rescale_points
from ._validation import check_fitted_input, check_images, check_parsing_X
from ._version import __version__
from .augment import IMAGENET_MEAN, IMAGENET_STD, resize_stack

__all__ = ["METADATA_KEY", "OnnxFaceParser", "OnnxKeypointModel", "export", "load"]

#: Key of the JSON metadata in an exported model's ``metadata_props``.
METADATA_KEY = "skkp"
#: Version of the metadata layout; files of a newer layout are refused by this skkp.
FORMAT_VERSION = 1
_FORMAT = "skkp-onnx"
_INSTALL = 'pip install "skkp[onnx]"'
#: Lowest opset accepted: per-channel quantisation and the Softmax/Resize semantics used need 13.
_MIN_OPSET = 13
#: float32 values per band of upsampled logits in the parser's predict (16 MB), as the estimator
_BAND_ELEMENTS = 1 << 22
#: Largest disagreement, relative to the output's magnitude, that export accepts between the
#: written graph (run on onnxruntime) and the torch network on a probe batch.
_VERIFY_TOL = 1e-4


def _require(module):
    """Import an optional dependency, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"skkp.onnx needs the package {module!r}, which is not installed: "
                          f"{_INSTALL}") from e


# ----------------------------------------------------------------------------- export
def export(estimator, path, opset=None):
    """Write a fitted estimator's network to an ONNX file with a dynamic batch dimension.

    The graph holds the input standardisation and the network; the preprocessing
    it does not hold (layouts, resize, mapping back to the input pixels) is
    described in the file's metadata and done by :func:`load`'s predictors, so
    their predictions match the estimator's. The written graph is checked
    against the torch network on a probe batch before the file is written.

    Parameters
    ----------
    estimator : NoseKeypointRegressor or FaceParser
        Fitted. Every keypoint architecture, the MLP also when fitted on a plain
        feature matrix.
    path : str or path-like
        File to write (its folder must exist); ``.onnx`` by convention.
    opset : int or None, default=None
        ONNX opset of the graph, >= 13; None takes torch's default.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        ``estimator`` is not one of the two estimators, or ``path`` / ``opset`` has a wrong type.
    ValueError
        ``estimator`` is not fitted (:class:`sklearn.exceptions.NotFittedError`), or ``opset``
        is out of range.
    FileNotFoundError
        The folder of ``path`` does not exist.
    ImportError
        onnx or onnxruntime is missing.
    RuntimeError
        The exported graph disagrees with the torch network (nothing is written).

    Notes
    -----
    The graph is made by torch's TorchScript-based exporter (``dynamo=False``),
    which needs no onnxscript and exports these networks in well under a second;
    where it fails or no longer exists, by the ``torch.export``-based exporter
    (``dynamo=True``, needs onnxscript). ``estimator.to_onnx(path)`` is the same.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import skkp.onnx
    >>> from skkp import NoseKeypointRegressor
    >>> from skkp.datasets import make_noses
    >>> X, y = make_noses(32, image_size=32, random_state=0)
    >>> model = NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=1,
    ...                               random_state=0).fit(X, y)
    >>> path = skkp.onnx.export(model, os.path.join(tempfile.mkdtemp(), "nose.onnx"))
    >>> path.name
    'nose.onnx'
    >>> bool(np.abs(skkp.onnx.load(path).predict(X) - model.predict(X)).max() < 1e-3)
    True
    """
    kind = _estimator_kind(estimator)
    path = _check_path(path, "path")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path {str(path)!r}: its folder {str(path.parent)!r} does not exist.")
    opset = _check_opset(opset)
    onnx = _require("onnx")
    _require("onnxruntime")
    import torch

    max_opset = getattr(getattr(torch.onnx, "_constants", None), "ONNX_MAX_OPSET", None)
    if opset is not None and max_opset is not None and opset > max_opset:
        raise ValueError(f"opset must be at most {max_opset} with this torch ({torch.__version__}), got {opset}.")
    module = estimator.net_.module_
    was_training = module.training
    try:
        build = _keypoint_graph if kind == "keypoints" else _parser_graph
        graph, probe, meta = build(estimator, torch)
        graph.eval()
        example = torch.from_numpy(probe)
        with torch.no_grad():
            expected = graph(example).float().cpu().numpy()
        with tempfile.TemporaryDirectory(prefix="skkp-onnx-") as tmp:
            raw = Path(tmp) / "graph.onnx"
            exporter = _torch_export(torch, graph, example, raw, meta["graph"]["input"]["name"],
                                     meta["graph"]["output"]["name"], opset)
            model = onnx.load(str(raw))
    finally:
        module.train(was_training)
    meta["exporter"] = exporter
    _set_shapes(model, meta["graph"])
    meta["opset"] = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    _set_metadata(model, meta)
    _verify(model.SerializeToString(), probe, expected, meta)
    onnx.save(model, str(path))
    return path


def _check_path(path, name):
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like, got {type(path).__name__}.")
    return Path(path)


def _check_opset(opset):
    if opset is None:
        return None
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int or None, got {type(opset).__name__}.")
    if int(opset) < _MIN_OPSET:
        raise ValueError(f"opset must be >= {_MIN_OPSET}, got {opset}.")
    return int(opset)


def _estimator_kind(estimator):
    """"keypoints" or "parser" for a fitted estimator; TypeError or NotFittedError otherwise."""
    from sklearn.exceptions import NotFittedError

    name = type(estimator).__name__
    if name == "MaskEdgeKeypoints":
        raise TypeError("estimator is a MaskEdgeKeypoints, which has no network to export; export takes a "
                        "fitted NoseKeypointRegressor or FaceParser.")
    from .keypoints import NoseKeypointRegressor
    from .parsing import FaceParser

    if isinstance(estimator, NoseKeypointRegressor):
        kind = "keypoints"
    elif isinstance(estimator, FaceParser):
        kind = "parser"
    else:
        raise TypeError(f"estimator must be a fitted skkp NoseKeypointRegressor or FaceParser, got {name}.")
    if not hasattr(estimator, "net_") or (kind == "parser" and not hasattr(estimator, "class_names_")):
        raise NotFittedError(f"estimator: this {name} is not fitted yet; call fit (or skkp.load a saved "
                             f"model) before export.")
    return kind


@functools.lru_cache(maxsize=None)
def _wrappers(torch):
    """The two torch modules that put the preprocessing into the graph (built on first use, so that
    importing this module does not import torch)."""
    nn = torch.nn

    class Standardised(nn.Module):
        """``net((x - mean) / std)``: the keypoint frame's standardisation, then the network."""

        def __init__(self, net, mean, std):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

        def forward(self, x):
            return self.net((x - self.mean) / self.std)

    class NormalisedRGB(nn.Module):
        """uint8 RGB (B, S, S, 3) -> ImageNet-normalised (B, 3, S, S) -> the parser's logits,
        in the order of operations of :func:`skkp.augment.normalize_image`."""

        def __init__(self, net):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32))

        def forward(self, image):
            x = (image.float() / 255.0 - self.mean) / self.std
            return self.net(x.permute(0, 3, 1, 2))

    return Standardised, NormalisedRGB


def _cpu_module(module, torch):
    """The network on the CPU in float32: itself when it is there already, else a copy (the
    estimator's stays where it is). The graph is traced and checked on the CPU, where
    onnxruntime runs it by default."""
    params = list(module.parameters()) + list(module.buffers())
    if all(p.device.type == "cpu" and (p.dtype == torch.float32 or not p.is_floating_point()) for p in params):
        return module
    return copy.deepcopy(module).to(device="cpu", dtype=torch.float32)


def _floats(value):
    """JSON numbers: a float, or a list of floats, exactly (float32 values convert exactly)."""
    if value is None:
        return None
    arr = np.asarray(value)
    return float(arr) if arr.ndim == 0 else [float(v) for v in arr.ravel()]


def _keypoint_graph(est, torch):
    frame = est.frame_
    S = int(frame.image_size)
    rng = np.random.RandomState(0)  # a local generator: the probe batch, never the global state
    if est.input_kind_ == "image":
        probe = rng.uniform(0.0, 1.0, size=(2, 1, S, S)).astype(np.float32)
        graph_input = {"name": "image", "shape": ["batch", 1, S, S], "dtype": "float32",
                       "meaning": f"gray images resized to {S}x{S} (skkp.augment.resize_stack), pixels on "
                                  "the 0-1 scale"}
        graph_output = {"name": "units", "shape": ["batch", int(est.n_outputs_)], "dtype": "float32",
                        "meaning": f"x0, y0, x1, y1, ... in [-1, 1] units of the {S}x{S} network image: pixel "
                                   f"= (unit + 1) * {S} / 2 - 0.5, then rescaled to the input image "
                                   "(skkp._frames.rescale_points)"}
        if frame.y_scale is not None:  # a direct-regression network's standardised coordinates
            graph_output["meaning"] = ("standardised coordinates: unit = output * y_scale + y_offset, then "
                                       + graph_output["meaning"])
    else:
        p = int(est.n_features_in_)
        probe = (rng.standard_normal((2, p)) * np.asarray(frame.x_std) + np.asarray(frame.x_mean)).astype(np.float32)
        graph_input = {"name": "features", "shape": ["batch", p], "dtype": "float32",
                       "meaning": "the feature matrix, as passed to predict"}
        graph_output = {"name": "units", "shape": ["batch", int(est.n_outputs_)], "dtype": "float32",
                        "meaning": "standardised targets: target = units * y_scale + y_offset"}
    Standardised, _ = _wrappers(torch)
    mean = np.asarray(frame.x_mean, dtype=np.float32)
    std = np.asarray(frame.x_std, dtype=np.float32)
    graph = Standardised(_cpu_module(est.net_.module_, torch), mean, std)
    names = getattr(est, "feature_names_in_", None)
    meta = {
        "estimator": "NoseKeypointRegressor",
        "architecture": est.architecture,
        "image_size": S,
        "input_kind": est.input_kind_,
        "n_channels_in": int(est.n_channels_in_),
        "image_shape": None if est.image_shape_ is None else [int(v) for v in est.image_shape_],
        "pixel_scale": None if est.pixel_scale_ is None else float(est.pixel_scale_),
        "n_features_in": int(est.n_features_in_),
        "feature_names_in": None if names is None else [str(v) for v in names],
        "x_mean": _floats(mean),
        "x_std": _floats(std),
        "y_offset": _floats(frame.y_offset),
        "y_scale": _floats(frame.y_scale),
        "y_ndim": int(est.y_ndim_),
        "n_outputs": int(est.n_outputs_),
        "n_keypoints": None if est.n_keypoints_ is None else int(est.n_keypoints_),
        "keypoint_names": None if est.keypoint_names_ is None else [str(v) for v in est.keypoint_names_],
        "flip_pairs": [[int(i), int(j)] for i, j in est.flip_pairs_],
        "batch_size": int(est.batch_size),
        "graph": {"input": graph_input, "output": graph_output,
                  "in_graph": ["standardisation (input - x_mean) / x_std", "network"]},
    }
    return graph, probe, meta


def _parser_graph(est, torch):
    S = int(est.image_size)
    probe = np.random.RandomState(0).randint(0, 256, size=(2, S, S, 3)).astype(np.uint8)
    _, NormalisedRGB = _wrappers(torch)
    graph = NormalisedRGB(_cpu_module(est.net_.module_, torch))
    n = int(est.n_classes_)
    meta = {
        "estimator": "FaceParser",
        "image_size": S,
        "class_names": [str(c) for c in est.class_names_],
        "n_classes": n,
        "width": float(est.width),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "batch_size": int(est.batch_size),
        "band_elements": _BAND_ELEMENTS,
        "graph": {"input": {"name": "image", "shape": ["batch", S, S, 3], "dtype": "uint8",
                            "meaning": f"RGB images resized to {S}x{S} (skkp.augment.resize_stack), 0-255"},
                  "output": {"name": "logits", "shape": ["batch", n, S, S], "dtype": "float32",
                             "meaning": "per-class logits at the network resolution; upsample bilinearly "
                                        "(half-pixel centres) to the input size, then softmax/argmax over "
                                        "the classes"},
                  "in_graph": ["uint8 -> float, / 255, - mean, / std (ImageNet), NHWC -> NCHW", "network"]},
    }
    return graph, probe, meta


def _torch_export(torch, graph, example, path, input_name, output_name, opset):
    """Export ``graph`` to ``path`` with a dynamic batch; returns the exporter used.

    The TorchScript exporter first: it is fast and needs no onnxscript. It is deprecated in
    torch >= 2.9 (its DeprecationWarning is silenced here); if it fails or is gone, the
    torch.export-based exporter, which needs onnxscript."""
    kwargs = {"input_names": [input_name], "output_names": [output_name], "opset_version": opset}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer chatter
            torch.onnx.export(graph, (example,), str(path), dynamo=False,
                              dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, **kwargs)
        return "torchscript"
    except Exception as legacy_error:  # noqa: BLE001  (any failure: try the other exporter)
        first = legacy_error
    try:
        importlib.import_module("onnxscript")
    except ImportError as e:
        raise ImportError(f"torch's TorchScript ONNX exporter failed ({type(first).__name__}: {first}) and the "
                          f"torch.export-based one needs onnxscript, which is not installed: {_INSTALL}") from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), **kwargs)
    except Exception as e:
        raise RuntimeError(f"ONNX export failed with both of torch's exporters; TorchScript: "
                           f"{type(first).__name__}: {first}; torch.export: {type(e).__name__}: {e}") from e
    return "dynamo"


def _set_shapes(model, graph_meta):
    """Declare the input's and output's shapes as the metadata gives them ("batch" the one dynamic
    dimension), in place of the exporter's generated dimension names."""
    pairs = ((model.graph.input[0], graph_meta["input"]), (model.graph.output[0], graph_meta["output"]))
    for value, described in pairs:
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(described["shape"]):
            continue
        for dim, size in zip(dims, described["shape"]):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = int(size)


def _set_metadata(model, meta):
    model.producer_name = "skkp"
    model.producer_version = __version__
    model.doc_string = (f"skkp {meta['estimator']} exported by skkp.onnx.export; the JSON under metadata key "
                        f"{METADATA_KEY!r} describes the input, the output and the preprocessing.")
    doc = {"format": _FORMAT, "format_version": FORMAT_VERSION, "skkp_version": __version__, **meta}
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(doc)


def _verify(model_bytes, probe, expected, meta):
    """Run the finished model on onnxruntime and compare it with the torch network's output."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = meta["graph"]["input"]["name"]
    got = session.run(None, {name: probe})[0]
    single = session.run(None, {name: probe[:1]})[0]  # another batch size: the batch is dynamic
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(got.astype(np.float64) - expected).max()) if got.shape == expected.shape else np.inf
    if single.shape == expected[:1].shape:
        err = max(err, float(np.abs(single.astype(np.float64) - expected[:1]).max()))
    else:
        err = np.inf
    if not err <= _VERIFY_TOL * scale:
        raise RuntimeError(f"The exported ONNX graph disagrees with the torch network on a probe batch "
                           f"(shape {got.shape} vs {expected.shape}, max difference {err:.3g}); nothing was "
                           f"written. Please report this with your torch and onnx versions.")


# ----------------------------------------------------------------------------- load / predict
def load(path, providers=None):
    """Read an ONNX file written by :func:`export` as a predictor running on onnxruntime.

    Parameters
    ----------
    path : str or path-like
    providers : sequence or None, default=None
        onnxruntime execution providers, in order of preference (e.g.
        ``["CUDAExecutionProvider", "CPUExecutionProvider"]``); None is the CPU.

    Returns
    -------
    OnnxKeypointModel or OnnxFaceParser
        As the file's estimator was.

    Raises
    ------
    ValueError
        The file is not an ONNX model, or has no skkp metadata (not written by
        :func:`export`), or a newer metadata layout.
    ImportError
        onnxruntime is missing.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import skkp.onnx
    >>> from skkp import FaceParser
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randint(0, 255, size=(4, 40, 40, 3)).astype(np.uint8)
    >>> y = (X[..., 0] > 127).astype(np.uint8)
    >>> parser = FaceParser(image_size=32, classes=["bg", "fg"], width=0.125, max_epochs=1,
    ...                     batch_size=2, random_state=0).fit(X, y)
    >>> m = skkp.onnx.load(skkp.onnx.export(parser, os.path.join(tempfile.mkdtemp(), "parser.onnx")))
    >>> m.class_names_, m.predict(X).shape, m.predict_proba(X).shape
    (['bg', 'fg'], (4, 40, 40), (4, 2, 40, 40))
    """
    path = _check_path(path, "path")
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} is not a file.")
    if providers is not None and (isinstance(providers, (str, bytes)) or not hasattr(providers, "__iter__")):
        raise TypeError(f"providers must be a sequence of onnxruntime provider names or None, "
                        f"got {providers!r}.")
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a load must not print warnings about the graph
    try:
        session = ort.InferenceSession(str(path), options,
                                       providers=list(providers) if providers is not None else
                                       ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable files
        raise ValueError(f"path {str(path)!r} is not a readable ONNX model: {e}") from e
    meta = _session_metadata(session, path)
    cls = {"NoseKeypointRegressor": OnnxKeypointModel, "FaceParser": OnnxFaceParser}.get(meta.get("estimator"))
    if cls is None:
        raise ValueError(f"path {str(path)!r} names the estimator {meta.get('estimator')!r}, which skkp.onnx "
                         f"cannot run.")
    return cls(session)


def _session_metadata(session, where="the session"):
    props = session.get_modelmeta().custom_metadata_map
    text = props.get(METADATA_KEY)
    if text is None:
        raise ValueError(f"{where} is not an skkp ONNX file: its metadata has no {METADATA_KEY!r} entry "
                         f"(write one with skkp.onnx.export).")
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{where}: the {METADATA_KEY!r} metadata is not valid JSON.") from e
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{where}: the {METADATA_KEY!r} metadata is not skkp's ONNX description.")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{where} was written with metadata layout {meta['format_version']} by skkp "
                         f"{meta.get('skkp_version')}; this skkp ({__version__}) reads up to layout "
                         f"{FORMAT_VERSION}: upgrade skkp.")
    return meta


class _OnnxPredictor:
    """An onnxruntime session and the skkp metadata of its model."""

    _estimator = None

    def __init__(self, session):
        if not hasattr(session, "get_modelmeta") or not hasattr(session, "run"):
            raise TypeError(f"session must be an onnxruntime.InferenceSession, got {type(session).__name__}.")
        meta = _session_metadata(session)
        if meta.get("estimator") != self._estimator:
            raise ValueError(f"session holds a {meta.get('estimator')} model; {type(self).__name__} runs "
                             f"{self._estimator} models.")
        #: the onnxruntime.InferenceSession
        self.session = session
        #: the file's skkp metadata (a dict, as written by :func:`export`)
        self.metadata = meta
        self._input = meta["graph"]["input"]["name"]
        self._output = meta["graph"]["output"]["name"]
        self.image_size = int(meta["image_size"])
        self.batch_size = int(meta["batch_size"])

    def _run(self, inputs):
        """The graph's output for ``inputs``, ``batch_size`` samples per run."""
        bs = self.batch_size
        for start in range(0, len(inputs), bs):
            batch = np.ascontiguousarray(inputs[start:start + bs])
            yield start, self.session.run([self._output], {self._input: batch})[0]

    def __repr__(self):
        m = self.metadata
        return f"{type(self).__name__}(<{m.get('estimator')} exported by skkp {m.get('skkp_version')}>)"


def _check_finite(out, what, n_images):
    if not np.isfinite(out).all():
        raise ValueError(f"The network produced NaN or infinite {what} for some of these {n_images} images: "
                         f"the model is broken (e.g. it diverged in training). Refit it, with a lower lr.")


class OnnxKeypointModel(_OnnxPredictor):
    """An exported :class:`~skkp.NoseKeypointRegressor`, predicting on onnxruntime.

    Made by :func:`load`; predictions equal the estimator's (to float32 rounding).

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        Of a file written by :func:`export` (make your own to set threads or providers).

    Attributes
    ----------
    session : onnxruntime.InferenceSession
    metadata : dict
        The file's skkp metadata.
    image_size, batch_size : int
    architecture : str
    input_kind_, n_channels_in_, n_features_in_, n_outputs_, n_keypoints_, keypoint_names_, \
flip_pairs_, pixel_scale_, image_shape_, y_ndim_, feature_names_in_
        As the estimator's.

    Examples
    --------
    >>> import onnxruntime
    >>> model = OnnxKeypointModel(onnxruntime.InferenceSession("nose.onnx"))  # doctest: +SKIP
    """

    _estimator = "NoseKeypointRegressor"

    def __init__(self, session):
        super().__init__(session)
        m = self.metadata
        self.architecture = m["architecture"]
        self.input_kind_ = m["input_kind"]
        self.n_channels_in_ = m["n_channels_in"]
        self.n_features_in_ = m["n_features_in"]
        self.n_outputs_ = m["n_outputs"]
        self.n_keypoints_ = m["n_keypoints"]
        self.keypoint_names_ = m["keypoint_names"]
        self.flip_pairs_ = tuple(tuple(p) for p in m["flip_pairs"])
        self.pixel_scale_ = m["pixel_scale"]
        self.image_shape_ = None if m["image_shape"] is None else tuple(m["image_shape"])
        self.y_ndim_ = m["y_ndim"]
        if m["feature_names_in"] is not None:
            self.feature_names_in_ = np.asarray(m["feature_names_in"], dtype=object)
        # targets (features), or standardised coordinates (images, direct-regression networks)
        self._y_offset = self._y_scale = None
        if m.get("y_scale") is not None:
            self._y_offset = np.asarray(m["y_offset"], dtype=np.float64)
            self._y_scale = np.asarray(m["y_scale"], dtype=np.float64)

    def _check_X(self, X):
        """The estimator's input checks (``NoseKeypointRegressor._check_X`` at predict time)."""
        checked = check_images(X, allow_features=self.architecture == "mlp")
        _check_feature_names(self, X)
        check_fitted_input(self, checked)
        return checked

    def predict(self, X):
        """Predict keypoints for images ``X``, as ``NoseKeypointRegressor.predict``.

        Parameters
        ----------
        X : array-like
            Images in any layout the estimator takes ((n, H*W), (n, H, W),
            (n, H, W, 1), (n, 1, H, W), (n, H, W, 3), (n, 3, H, W)), of any size;
            or the feature matrix (n, p) of an MLP fitted on one.

        Returns
        -------
        y_pred : ndarray of shape (n, 2K) (or (n, K, 2) if fitted so), float64
            Pixel coordinates in the frame of the images passed in (or the targets'
            shape of fit for plain feature regression).
        """
        checked = self._check_X(X)
        S = self.image_size
        if checked.kind == "image":
            inputs = resize_stack(checked.data[:, 0], S)[:, None]
        else:
            inputs = checked.data
        out = np.concatenate([o for _, o in self._run(inputs)]).astype(np.float64)
        _check_finite(out, "keypoints", len(inputs))
        if self._y_scale is not None:
            out = out * self._y_scale + self._y_offset
        if checked.kind == "image":
            pred = rescale_points(from_unit(out, S), (S, S), checked.image_shape)
            return pred.reshape(len(pred), -1, 2) if self.y_ndim_ == 3 else pred
        return out.ravel() if self.y_ndim_ == 1 else out


def _check_feature_names(model, X):
    """sklearn's rule at predict time: names differing from fit's are an error, a missing side a warning
    (sklearn's ``_check_feature_names`` rewritten, so that the ONNX predictor loads without scikit-learn)."""
    columns = getattr(X, "columns", None)
    names = None
    if columns is not None:
        values = [c for c in columns]
        if values and all(isinstance(c, str) for c in values):
            names = np.asarray(values, dtype=object)
    fitted = getattr(model, "feature_names_in_", None)
    cls = type(model).__name__
    if names is None and fitted is None:
        return
    if names is not None and fitted is None:
        warnings.warn(f"X has feature names, but {cls} was fitted without feature names", UserWarning, stacklevel=3)
        return
    if names is None:
        warnings.warn(f"X does not have valid feature names, but {cls} was fitted with feature names",
                      UserWarning, stacklevel=3)
        return
    if len(names) != len(fitted) or np.any(names != fitted):
        raise ValueError("The feature names should match those that were passed during fit.")


@functools.lru_cache(maxsize=64)
def _interp_matrix(n_in, n_out):
    """(n_out, n_in) float32 weights of 1-D linear interpolation with half-pixel centres
    (PyTorch's ``align_corners=False``), as :func:`skkp.resnet.upsample_bilinear` builds them.
    Read-only: it is cached."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - w1)
    np.add.at(m, (rows, i1), w1)
    m = m.astype(np.float32)
    m.setflags(write=False)
    return m


class OnnxFaceParser(_OnnxPredictor):
    """An exported :class:`~skkp.FaceParser`, predicting on onnxruntime.

    Made by :func:`load`; label maps equal the estimator's but for float32 rounding
    at near-ties of the logits.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        Of a file written by :func:`export`.

    Attributes
    ----------
    session : onnxruntime.InferenceSession
    metadata : dict
    image_size, batch_size : int
    class_names_ : list of str
    classes_ : ndarray of shape (n_classes,)
    n_classes_ : int
    """

    _estimator = "FaceParser"

    def __init__(self, session):
        super().__init__(session)
        self.class_names_ = list(self.metadata["class_names"])
        self.n_classes_ = int(self.metadata["n_classes"])
        self.classes_ = np.arange(self.n_classes_)
        self._band_elements = int(self.metadata.get("band_elements", _BAND_ELEMENTS))

    def _input_frame_chunks(self, X):
        """Yield ``(i, rows, logits)``: (C, r, W) float32 logits of image ``i`` at the input
        resolution, a band of rows at a time (bounded memory, as the estimator)."""
        h, w = X.shape[1:3]
        S = self.image_size
        images = resize_stack(X, S)
        band = max(1, self._band_elements // (self.n_classes_ * w))
        same = (h, w) == (S, S)
        rows_matrix, cols = (None, None) if same else (_interp_matrix(S, h), _interp_matrix(S, w).T)
        for start, logits in self._run(images):
            _check_finite(logits, "logits", len(logits))
            for j, image_logits in enumerate(logits):
                for r0 in range(0, h, band):
                    rows = slice(r0, min(r0 + band, h))
                    if same:
                        yield start + j, rows, image_logits[:, rows]
                    else:
                        yield start + j, rows, rows_matrix[rows] @ image_logits @ cols

    def predict_proba(self, X):
        """Class probabilities per pixel, as ``FaceParser.predict_proba``.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) or (n, H, W)

        Returns
        -------
        proba : ndarray of shape (n, n_classes, H, W), float32
        """
        X = check_parsing_X(X)
        out = np.empty((X.shape[0], self.n_classes_) + X.shape[1:3], dtype=np.float32)
        for i, rows, logits in self._input_frame_chunks(X):
            e = np.exp(logits - logits.max(axis=0, keepdims=True))
            out[i, :, rows] = e / e.sum(axis=0, keepdims=True)
        return out

    def predict(self, X):
        """Label map per image at the input resolution, as ``FaceParser.predict``.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) or (n, H, W)

        Returns
        -------
        labels : ndarray of shape (n, H, W), uint8
        """
        X = check_parsing_X(X)
        out = np.empty(X.shape[:3], dtype=np.uint8)
        for i, rows, logits in self._input_frame_chunks(X):
            out[i, rows] = logits.argmax(axis=0)
        return out

    def transform(self, X):
        """Same as :meth:`predict`."""
        return self.predict(X)
