"""Model store: specs (what a model is), fetching (where its bytes come from), loading."""
from models.specs import MODEL_SPECS, ModelSpec, get_spec
from models.fetch import ModelUnavailableError, ensure_model

__all__ = ["MODEL_SPECS", "ModelSpec", "get_spec", "ModelUnavailableError", "ensure_model"]
