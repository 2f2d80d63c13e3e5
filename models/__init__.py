"""Pure domain logic of crowdwatch.

Nothing in this package talks to Kafka, Faust, Redis or Prometheus (enforced by
``tests/test_architecture.py`` and the import-linter contract in pyproject.toml):
the same functions run inside the Faust agents and in ``crowdwatch score``.
"""
