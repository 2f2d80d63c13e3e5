"""Faust agents: thin — decode -> call models -> write state, metrics and topics.

Each module exposes ``register(pipeline)`` that attaches its agent(s) to the
Faust app held by :class:`streams.app.Pipeline`.
"""
