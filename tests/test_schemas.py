"""skkp.schemas: the one home of layouts and class lists, and a cheap `import skkp`."""
import subprocess
import sys

import numpy as np
import pytest

from skkp import schemas
from skkp.schemas import (BISENET_CLASSES, CELEBAMASK_CLASSES, IBUG68_NOSE_SCHEMA, IBUG68_SCHEMA, KEYPOINT_SCHEMAS,
                          KeypointSchema, check_class_names, flip_lut, get_schema)


def test_imports_nothing_else_from_skkp_and_no_torch():
    code = ("import sys, skkp, skkp.schemas, skkp.datasets, skkp.metrics, skkp.edges; "
            "print(skkp.__version__); "
            "assert 'torch' not in sys.modules and 'skorch' not in sys.modules, 'torch loaded'; "
            "from skkp import NoseKeypointRegressor; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    source = open(schemas.__file__).read()
    assert "from ." not in source and "import skkp" not in source


def test_registry_holds_every_named_layout_and_datasets_reexports_it():
    import skkp.datasets as datasets

    assert set(KEYPOINT_SCHEMAS) == {"nose_frontal", "nose_side", "nose_bottom", "kaggle15", "ibug68", "ibug68_nose"}
    assert datasets.KEYPOINT_SCHEMAS is KEYPOINT_SCHEMAS and datasets.CELEBAMASK_CLASSES is CELEBAMASK_CLASSES
    assert [KEYPOINT_SCHEMAS[n].n_keypoints for n in ("nose_frontal", "nose_side", "nose_bottom")] == [7, 5, 9]
    assert IBUG68_NOSE_SCHEMA.names == IBUG68_SCHEMA.names[27:36]
    # flip pairs of the nose subset are the iBUG nostril pairs (31, 35), (32, 34), re-indexed
    assert set(IBUG68_NOSE_SCHEMA.flip_pairs) == {(4, 8), (5, 7)}
    assert sorted(CELEBAMASK_CLASSES) == sorted(BISENET_CLASSES) and CELEBAMASK_CLASSES != BISENET_CLASSES


def test_get_schema_lookup_and_errors():
    assert get_schema("ibug68") is IBUG68_SCHEMA
    assert get_schema(None, 68) is IBUG68_SCHEMA
    assert get_schema(None, 9) is None  # nose_bottom and ibug68_nose both have 9 points: no single answer
    assert get_schema(IBUG68_NOSE_SCHEMA, 9) is IBUG68_NOSE_SCHEMA
    with pytest.raises(ValueError, match="must be one of"):
        get_schema("nope")
    with pytest.raises(ValueError, match="has 68 keypoints but y has 7"):
        get_schema("ibug68", 7)
    with pytest.raises(TypeError, match="KeypointSchema"):
        get_schema(3)


@pytest.mark.parametrize("classes, exc", [("ab", TypeError), (["bg", 1], TypeError), (["bg"], ValueError),
                                          (["a", "b", "a"], ValueError), ([f"c{i}" for i in range(256)], ValueError)])
def test_check_class_names_errors(classes, exc):
    with pytest.raises(exc, match="classes"):
        check_class_names(classes)


def test_check_class_names_returns_a_new_list():
    names = ("background", "skin")
    out = check_class_names(names)
    assert out == ["background", "skin"] and isinstance(out, list)


def test_flip_lut_and_schema_flip_permutation_agree_on_sides():
    lut = flip_lut(CELEBAMASK_CLASSES)
    for i, name in enumerate(CELEBAMASK_CLASSES):
        mirror = ("r_" if name[0] == "l" else "l_") + name[2:] if name.startswith(("l_", "r_")) else None
        if mirror in CELEBAMASK_CLASSES:
            assert CELEBAMASK_CLASSES[lut[i]] == mirror
        else:  # l_lip is the lower lip: no r_lip, so it stays
            assert lut[i] == i
    assert [CELEBAMASK_CLASSES[lut[i]] for i in (4, 5, 12)] == ["r_eye", "l_eye", "l_lip"]
    perm = IBUG68_SCHEMA.flip_permutation()
    assert perm[36] == 45 and perm[45] == 36 and perm[30] == 30
    assert KeypointSchema("x", ("a", "b")).flip_permutation() == [0, 1]
    assert np.array_equal(np.sort(perm), np.arange(68))
