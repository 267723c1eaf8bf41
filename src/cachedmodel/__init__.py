"""CachedModel: Redis prediction cache for ml_base models, as an ml_base decorator."""
from cachedmodel.decorator import RedisCachingDecorator
from cachedmodel.options import CacheOptions, ConfigurationError

__all__ = ["RedisCachingDecorator", "CacheOptions", "ConfigurationError"]
__version__ = "0.1.0"
