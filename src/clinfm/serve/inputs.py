"""Bounds on what the API accepts: ids that fit int64 and are written as integers, dates a clinical record can hold.

Every route parses ids and date-times through here, so a value out of range is a 422 naming the field and the range
(never a 500 from an overflow deep in a model or a store, never minutes of model work on year 9999).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator

from clinfm.serve.problems import Problem

INT64_MAX = 2**63 - 1
FLOAT_EXACT = 2**53
"""Integral floats above this may already have been rounded by the JSON parser: refused, not guessed."""
MIN_DATE = dt.datetime(1900, 1, 1)
"""The earliest date the API accepts (births, events, prediction times): older is a typo or a placeholder."""
FUTURE_DAYS = 366
"""Date-times may lie up to a year ahead (scheduled events, de-identification shifts), no further."""
_ID = re.compile(r"[0-9]{1,19}")


def max_date() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=FUTURE_DAYS)


def date_range_text() -> str:
    return f"{MIN_DATE:%Y-%m-%d}..{max_date():%Y-%m-%d}"


def integral(value: object) -> object:
    """An integral float such as ``337.0`` is an integer (JSON Schema), unless it is too large to be exact."""
    if isinstance(value, float) and value.is_integer():
        if abs(value) > FLOAT_EXACT:
            raise ValueError("a number this large written with a fraction or exponent has lost digits; send an integer")
        return int(value)
    return value


def parse_id(text: Any, field: str) -> int:
    """A pseudonymous id sent as text (a path, a FHIR reference, a CDS patientId): ASCII digits within int64."""
    if isinstance(text, str) and _ID.fullmatch(text.strip()) and int(text) <= INT64_MAX:
        return int(text)
    raise Problem(422, f"{field} must be a pseudonymous subject id: 1 to 19 ASCII digits, at most {INT64_MAX}",
                  slug="invalid-id")  # fmt: skip


def in_range(value: dt.datetime, field: str = "date-time") -> dt.datetime:
    """``value`` when it lies in :data:`MIN_DATE` .. now + :data:`FUTURE_DAYS`, else ValueError naming the range.

    The wall-clock time is checked before any timezone conversion, which would overflow near year 1 or 9999.
    """
    wall = value.replace(tzinfo=None)
    slack = dt.timedelta(days=1)  # offsets are under a day: the exact check follows once conversion is safe
    if MIN_DATE - slack <= wall <= max_date() + slack:
        naive = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else wall
        if MIN_DATE <= naive <= max_date():
            return value
    raise ValueError(f"{field} must lie in {date_range_text()} (UTC)")


ClinicalDateTime = Annotated[dt.datetime, AfterValidator(lambda v: in_range(v))]
"""A date-time field of a request body, held to :func:`in_range`."""
