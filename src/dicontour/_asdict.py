"""``to_dict`` for the dataclasses that are reported as JSON: their fields, in order."""

from __future__ import annotations

from dataclasses import Field, asdict
from typing import Any, ClassVar


class AsDict:
    """Base of a dataclass whose ``to_dict`` is :func:`dataclasses.asdict`.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Pair(AsDict):
    ...     a: int
    ...     b: str
    >>> Pair(1, "x").to_dict()
    {'a': 1, 'b': 'x'}
    """

    # Declared (not set) so that type checkers take ``self`` for a dataclass.
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, in order (nested dataclasses as dicts)."""
        return asdict(self)
