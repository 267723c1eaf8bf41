"""Input and output schemas of the insurance charges model (pydantic, with ranges and enums).

Integers and booleans are strict so that `true` is never read as age 1 and `"yes"` never as a
smoker: a client mistake gets a 4xx naming the field instead of a silent, wrong prediction.
"""
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class Sex(str, Enum):
    """Sex of the primary beneficiary, as recorded in the data set."""

    male = "male"
    female = "female"


class Region(str, Enum):
    """US region of the beneficiary."""

    southwest = "southwest"
    southeast = "southeast"
    northwest = "northwest"
    northeast = "northeast"


class InsuranceChargesModelInput(BaseModel):
    """One person whose yearly insurance charges are predicted."""

    model_config = ConfigDict(extra="forbid")

    age: StrictInt = Field(ge=18, le=65, description="Age of the primary beneficiary, in years.")
    sex: Sex = Field(description="Sex of the primary beneficiary.")
    bmi: float = Field(ge=15.0, le=50.0, allow_inf_nan=False, description="Body mass index (kg/m^2).")
    children: StrictInt = Field(ge=0, le=5, description="Number of children covered by the insurance.")
    smoker: StrictBool = Field(description="Whether the beneficiary smokes.")
    region: Region = Field(description="US region where the beneficiary lives.")


class InsuranceChargesModelOutput(BaseModel):
    """The predicted yearly charges."""

    charges: float = Field(description="Predicted yearly medical insurance charges, in US dollars, 2 decimals.")
