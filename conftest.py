"""Collection rules for the docstring examples under src/ (pyproject: --doctest-modules).

A module that imports an optional dependency at its top cannot be imported
where that dependency is missing, so its examples are not collected there
(its tests skip on their own, with pytest.importorskip).
"""

import importlib.util

#: Modules of the package that need an optional dependency to be imported, and which.
_NEEDS = {"src/dicontour/torch.py": "torch"}

collect_ignore = [path for path, needs in _NEEDS.items() if importlib.util.find_spec(needs) is None]
