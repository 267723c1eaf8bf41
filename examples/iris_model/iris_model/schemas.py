"""Input and output schemas of the iris model (pydantic, with ranges and an enum).

The four measurements are strict floats (an integer is fine, a string or a bool is not) within the
range of the data set (Fisher's 150 flowers) widened by a margin: outside it the classifier would
only extrapolate, so a client mistake gets a 4xx naming the field instead of a confident guess.
"""
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Species(str, Enum):
    """The three species of the data set, in the order of its class labels (0, 1, 2)."""

    setosa = "setosa"
    versicolor = "versicolor"
    virginica = "virginica"


class IrisModelInput(BaseModel):
    """One flower's measurements, in centimetres."""

    model_config = ConfigDict(extra="forbid")

    sepal_length: float = Field(ge=4.0, le=8.5, strict=True, allow_inf_nan=False,
                                description="Sepal length in cm (the data set: 4.3 to 7.9).")
    sepal_width: float = Field(ge=1.5, le=5.0, strict=True, allow_inf_nan=False,
                               description="Sepal width in cm (the data set: 2.0 to 4.4).")
    petal_length: float = Field(ge=0.5, le=7.5, strict=True, allow_inf_nan=False,
                                description="Petal length in cm (the data set: 1.0 to 6.9).")
    petal_width: float = Field(ge=0.05, le=3.0, strict=True, allow_inf_nan=False,
                               description="Petal width in cm (the data set: 0.1 to 2.5).")


class IrisModelOutput(BaseModel):
    """The predicted species."""

    species: Species = Field(description="Predicted species of the flower.")


# The classifier's feature order: the input fields as declared (the data set's column order).
FEATURE_NAMES = tuple(IrisModelInput.model_fields)
