"""deepgrade's grading library.

Students meet :func:`export`, :func:`dataset_path` and, while they work, :func:`check` and
:func:`hint` (the public checks, see :mod:`autograders.formative`); instructors write tests with
:func:`grades` and the checks in :mod:`autograders.checks`. This module stays light
(no TensorFlow import) because it is imported inside student kernels.
"""

from autograders.export import export
from autograders.formative import check, hint


def dataset_path(name: str):
    """Path of the public split of a registered dataset (``"keras-intro/orbit"``)."""
    from datasets import public_path

    return public_path(name)


def grades(grade_id: str, points: float, *, public: bool = False, hints: tuple[str, ...] = ()):
    """Mark a test as the check behind nbgrader grade cell ``grade_id``, worth ``points``.

    ``public=True`` ships the check with the release, so students run it while they work with
    ``check(grade_id)``; only checks over their own exported objects may be public (no hidden
    data, thresholds or assignment fixtures: see :mod:`autograders.formative`). ``hints`` are
    tiers, vaguest first, that ``hint(grade_id)`` hands out one at a time.
    """
    import pytest

    return pytest.mark.grades(grade_id, points=points, public=public, hints=tuple(hints))


def audits(grade_id: str):
    """Mark a test as an audit of grade cell ``grade_id``: it scores nothing and the student never
    sees it; when it fails, its message becomes a flag for the instructor (for example "suspicious:
    trained on held-out data?"), so a doubt is raised with the evidence, not settled in points."""
    import pytest

    return pytest.mark.audits(grade_id)


__all__ = ["audits", "check", "dataset_path", "export", "grades", "hint"]
