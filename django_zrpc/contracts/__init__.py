"""Contracts from type hints: what a function's annotations promise its callers.

``signature`` reads a registered function into a ``FunctionSpec``, the
model the rest of this room (validation, the OpenRPC schema, compatibility
checks, typed client stubs) works from. Like ``wire/``, nothing here
imports gevent, asyncio, pyzmq or Django settings.
"""
