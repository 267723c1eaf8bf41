"""CachedModel: Redis prediction cache for ml_base models."""
