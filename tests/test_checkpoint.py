"""fit(checkpoint=DIR): the state after every epoch, and a resume that ends as an uninterrupted run."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from skkp import FaceParser, NoseKeypointRegressor
from skkp.datasets import make_noses

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEYPOINTS = "NoseKeypointRegressor(architecture='cnn', image_size=32, max_epochs=6, random_state=0, device='cpu', {extra})"
PARSER = ("FaceParser(image_size=32, classes=['bg', 'fg'], width=0.125, max_epochs=5, batch_size=4, warmup_steps=3, "
          "random_state=0, device='cpu', {extra})")
DATA = {"keypoints": "X, y = make_noses(48, image_size=32, random_state=0)",
        "parser": "rng = np.random.RandomState(0); X = rng.randint(0, 255, size=(10, 40, 40, 3)).astype(np.uint8); "
                  "y = (X[..., 0] > 127).astype(np.uint8)"}

#: Runs in a subprocess: fit with a checkpoint and kill the process (SIGKILL) right after the
#: checkpoint of epoch ``KILL_AFTER`` is written.
KILLED = """
import os, signal, sys
import numpy as np, torch
torch.set_num_threads(1)
from skkp import FaceParser, NoseKeypointRegressor
from skkp.datasets import make_noses
from skkp._checkpoint import Checkpointer
write = Checkpointer.on_epoch_end
def write_then_die(self, net, **kwargs):
    write(self, net, **kwargs)
    if len(net.history) == {kill_after}:
        os.kill(os.getpid(), signal.SIGKILL)
Checkpointer.on_epoch_end = write_then_die
{data}
{model}.fit(X, y)
"""


def _data(kind):
    namespace = {"np": np, "make_noses": make_noses}
    exec(DATA[kind], namespace)
    return namespace["X"], namespace["y"]


def _model(kind, **extra):
    text = (KEYPOINTS if kind == "keypoints" else PARSER).format(extra="")
    model = eval(text, {"NoseKeypointRegressor": NoseKeypointRegressor, "FaceParser": FaceParser})
    return model.set_params(**extra)


def _output(kind, model, X):
    return model.predict(X) if kind == "keypoints" else model.predict_proba(X)


@pytest.mark.parametrize("kind,extra", [("keypoints", ""), ("keypoints", "early_stopping=2, lr=0.05"),
                                        ("parser", "")])
def test_a_killed_fit_resumes_to_the_uninterrupted_result(kind, extra, tmp_path):
    X, y = _data(kind)
    kwargs = eval(f"dict({extra})")
    reference = _model(kind, **kwargs).fit(X, y)
    folder = tmp_path / "ckpt"
    model_text = (KEYPOINTS if kind == "keypoints" else PARSER).format(extra=f"checkpoint={str(folder)!r}, {extra}")
    script = KILLED.format(kill_after=2, data=DATA[kind], model=model_text)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed, mid-fit
    assert len(json.loads((folder / "history.json").read_text())) == 2
    resumed = _model(kind, checkpoint=str(folder), **kwargs).fit(X, y)
    assert [round(r["train_loss"], 12) for r in resumed.history_] == \
        [round(r["train_loss"], 12) for r in reference.history_]
    np.testing.assert_array_equal(_output(kind, resumed, X), _output(kind, reference, X))
    assert not resumed.fit_interrupted_


def test_checkpoint_files_and_a_finished_run(tmp_path):
    X, y = _data("keypoints")
    plain = _model("keypoints").fit(X, y)
    model = _model("keypoints", checkpoint=tmp_path).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))  # checkpoints change nothing
    assert {p.name for p in tmp_path.iterdir()} == {"last.pt", "best.pt", "history.json"}
    assert len(json.loads((tmp_path / "history.json").read_text())) == 6
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # plain tensors and numbers: no code runs
    assert state["version"] == 1 and len(state["history"]) == 6
    again = _model("keypoints", checkpoint=tmp_path).fit(X, y)  # nothing left to train
    assert len(again.history_) == 6
    np.testing.assert_array_equal(again.predict(X), plain.predict(X))


def test_a_checkpoint_of_another_fit_is_not_resumed(tmp_path):
    X, y = _data("keypoints")
    _model("keypoints", checkpoint=tmp_path, max_epochs=2).fit(X, y)
    with pytest.warns(UserWarning, match="another fit"):
        model = _model("keypoints", checkpoint=tmp_path, lr=1e-3).fit(X, y)
    assert len(model.history_) == 6
    with pytest.warns(UserWarning, match="another fit"):
        _model("keypoints", checkpoint=tmp_path).fit(X[:40], y[:40])  # other data
    (tmp_path / "last.pt").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="cannot be read"):
        _model("keypoints", checkpoint=tmp_path).fit(X, y)


def test_random_state_none_resumes_with_the_saved_seed(tmp_path):
    X, y = _data("keypoints")
    first = _model("keypoints", random_state=None, checkpoint=tmp_path).fit(X, y)
    again = _model("keypoints", random_state=None, checkpoint=tmp_path).fit(X, y)  # finds the finished run
    np.testing.assert_array_equal(again.predict(X), first.predict(X))
