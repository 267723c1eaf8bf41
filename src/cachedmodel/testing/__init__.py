"""Real processes for tests, benchmarks and the demo: a redis-server, the model service, a test model.

Shared by tests/, bench/ and scripts/ (so neither imports the other). Nothing here is used by the
decorator at run time; model_service finds the example config in a source checkout.
"""
