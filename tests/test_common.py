"""scikit-learn's own estimator checks on every skkp estimator."""
from sklearn.utils.estimator_checks import parametrize_with_checks

from skkp.keypoints import NoseKeypointRegressor

# {check name: reason}: checks that cannot pass, each with the real reason.
KEYPOINT_XFAIL = {}


def _fast_keypoint_regressor():
    # "mlp" is the architecture that accepts plain feature matrices as the generic checks use.
    return NoseKeypointRegressor(architecture="mlp", max_epochs=20, batch_size=32, lr=1e-2,
                                 validation_fraction=0.0, random_state=0, device="cpu")


def _expected_failed_checks(estimator):
    if isinstance(estimator, NoseKeypointRegressor):
        return KEYPOINT_XFAIL
    return {}


@parametrize_with_checks([_fast_keypoint_regressor()], expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
