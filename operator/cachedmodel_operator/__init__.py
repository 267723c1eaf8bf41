"""Kubernetes operator for CachedModel resources (kopf handlers over pure builders)."""
