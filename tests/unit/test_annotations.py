"""Schema introspection the decorator does once per model: which annotations allow only scalars, or a float."""
import datetime
import decimal
import enum
import typing
import uuid

import pytest
from pydantic import BaseModel, Field

from cachedmodel.annotations import allows_float, scalar_annotation


class Colour(enum.Enum):
    red = "red"


class Inner(BaseModel):
    x: int


@pytest.mark.parametrize("annotation", [int, float, str, bytes, bool, type(None), decimal.Decimal, datetime.datetime,
                                        datetime.date, datetime.time, datetime.timedelta, uuid.UUID, Colour,
                                        int | None, typing.Optional[str], typing.Union[int, Colour],
                                        typing.Literal["a", "b"], typing.Annotated[float, Field(gt=0)]])
def test_scalar_annotations(annotation):
    assert scalar_annotation(annotation)


@pytest.mark.parametrize("annotation", [list[int], dict[str, int], set[int], tuple[int, ...], Inner, object,
                                        typing.Any, int | list[int], typing.Optional[dict], typing.Annotated[list, 1]])
def test_annotations_that_may_hold_a_container(annotation):
    assert not scalar_annotation(annotation)


@pytest.mark.parametrize("annotation, expected", [(float, True), (float | None, True), (int | float, True),
                                                  (typing.Optional[float], True), (int, False), (str | None, False)])
def test_allows_float(annotation, expected):
    assert allows_float(annotation) is expected
