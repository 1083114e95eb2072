"""Docstring sections that several functions share, written once (scipy's ``doccer`` habit).

A line of a docstring holding only ``%(name)s`` is replaced by the section
``name``, each of its lines indented like the placeholder.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

_PLACEHOLDER = re.compile(r"^( *)%\((\w+)\)s$", re.MULTILINE)


def fill_doc(**sections: str) -> Callable[[F], F]:
    """A decorator that fills the ``%(name)s`` lines of a docstring from ``sections``.

    Parameters
    ----------
    **sections : str
        Section text by name, its first line unindented (numpy-style
        descriptions indented by 4 spaces below it).

    Returns
    -------
    callable
        The decorator; it returns the function itself, docstring filled.

    Raises
    ------
    KeyError
        A placeholder names no section (at import time, so a typo cannot ship).

    Examples
    --------
    >>> @fill_doc(x="x : int\\n    The value.")
    ... def f(x):
    ...     '''Identity.
    ...
    ...     %(x)s
    ...     '''
    >>> f.__doc__.splitlines()[2:4]
    ['    x : int', '        The value.']
    """

    def decorate(function: F) -> F:
        if function.__doc__:  # None under python -OO
            function.__doc__ = _PLACEHOLDER.sub(
                lambda match: textwrap.indent(sections[match[2]], match[1]), function.__doc__
            )
        return function

    return decorate
