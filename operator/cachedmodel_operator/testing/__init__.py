"""A real local Kubernetes control plane and the operator as a process, for tests and benchmarks.

Shared by tests/ and bench/. Never imported by the operator itself; the pytest fixtures built on it
live in tests/support/control_plane.py.
"""
