"""A model that does no work (same input/output schemas as the insurance model): the baseline for
what the stock rest-model-service costs per request when the model itself costs nothing."""
from ml_base import MLModel

from insurance_charges_model.schemas import InsuranceChargesModelInput, InsuranceChargesModelOutput


class NoopModel(MLModel):
    display_name = "No-op model"
    qualified_name = "insurance_charges_model"  # same route as the real service
    description = "Returns a constant; measures the service, not a model."
    version = "0.0.0"
    input_schema = InsuranceChargesModelInput
    output_schema = InsuranceChargesModelOutput

    def __init__(self) -> None:
        pass

    def predict(self, data: InsuranceChargesModelInput) -> InsuranceChargesModelOutput:
        return InsuranceChargesModelOutput(charges=0.0)
