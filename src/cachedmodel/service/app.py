"""`uvicorn cachedmodel.service.app:app`: the service built from the file $REST_CONFIG names at import,
like `rest_model_service.main:app` (models load in a background thread; probes answer 503 until then)."""
from cachedmodel.service.config import load_configuration
from cachedmodel.service.factory import create_service_app
from cachedmodel.service.warnings_log import install as install_warning_log

install_warning_log()  # before the models load: warnings logged once a minute each, counted on /metrics
configuration = load_configuration()
app = create_service_app(configuration)
