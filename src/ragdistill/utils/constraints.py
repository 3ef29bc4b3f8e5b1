"""Limits on constructor arguments, written into their type hints so that the config check reads them there.

A constructor says ``batch_size: PositiveInt = 16`` instead of ``int``: the hint is still an ``int`` to Python
and mypy, and :mod:`ragdistill.config_check` reads the ``Annotated`` bound to refuse ``batch_size=0`` with one
line before any data loads. A new class therefore needs no entry in any central table: its own signature is
the schema. Choices are ``Literal`` types defined beside the code that uses them (``IndexKind``).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Bound:
    """A limit on a number, carried by an ``Annotated`` hint: ``Annotated[int, Bound(">=", 1)]``.

    NaN fits no bound, as every comparison with it is false.
    """

    op: str
    limit: float

    def holds(self, value: float) -> bool:
        """Whether ``value`` satisfies the bound."""
        return bool(_OPS[self.op](value, self.limit))

    def __str__(self) -> str:
        return f"{self.op} {self.limit:g}"


@dataclass(frozen=True)
class LightningPrecision:
    """Marker: the value is passed on to Lightning as a precision, so it must be one ``Trainer(precision=)`` takes.

    The config check replaces the hint carrying it by the Trainer's own ``precision`` hint, read from the
    installed Lightning, so the accepted list follows Lightning's releases.
    """


PositiveInt = Annotated[int, Bound(">=", 1)]
"""An ``int >= 1`` (sizes, depths, counts of things that must exist)."""
NonNegativeInt = Annotated[int, Bound(">=", 0)]
"""An ``int >= 0`` (counts that may be zero: workers, retries, a held-out split)."""
AtLeastTwo = Annotated[int, Bound(">=", 2)]
"""An ``int >= 2`` (a ranking needs two candidates)."""
PositiveFloat = Annotated[float, Bound(">", 0)]
"""A ``float > 0`` (temperatures, scales, timeouts)."""
NonNegativeFloat = Annotated[float, Bound(">=", 0)]
"""A ``float >= 0`` (waits)."""
Fraction = Annotated[float, Bound(">=", 0), Bound("<=", 1)]
"""A ``float`` in ``[0, 1]``."""
Precision = Annotated[str, LightningPrecision()]
"""A Lightning precision string (``"32-true"``, ``"bf16-mixed"``, ...)."""
