"""deepgrade's grading library.

Students meet only :func:`export` and :func:`dataset_path`; instructors write tests with
:func:`grades` and the checks in :mod:`autograders.checks`. This module stays light
(no TensorFlow import) because it is imported inside student kernels.
"""

from autograders.export import export


def dataset_path(name: str):
    """Path of the public split of a registered dataset (``"keras-intro/orbit"``)."""
    from datasets import public_path

    return public_path(name)


def grades(grade_id: str, points: float, *, public: bool = False):
    """Mark a test as the check behind nbgrader grade cell ``grade_id``, worth ``points``."""
    import pytest

    return pytest.mark.grades(grade_id, points=points, public=public)


__all__ = ["dataset_path", "export", "grades"]
