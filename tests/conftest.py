import os
from pathlib import Path

import pytest
import torch

# Under pytest-xdist every worker gets one thread, so two workers use the two cores without oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

YTF68_DIR = Path(os.environ.get("SKKP_YTF68", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ytf68"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run torch on one thread for the tests of a module, then restore the previous count.

    Tiny networks run fastest on one thread, and two threads on a busy two-core
    machine crawl. Module-scoped so that module-scoped fixtures (a model fitted once
    for a module) can use it too. Use it in a whole file with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``, or request it by name.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ytf68_dir():
    """Path of the shared real-face data; the test is skipped when it is absent."""
    if not (YTF68_DIR / "keypoints.csv").is_file():
        pytest.skip(f"real-face data not found at {YTF68_DIR}")
    return YTF68_DIR
