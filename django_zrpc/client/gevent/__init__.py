"""The client on gevent: what differs from the asyncio client, module for module.

- ``connection``: ``Client``, one DEALER connection that carries many calls;
  ``pending`` (a call in flight and the greenlet waiting for it) and
  ``stream`` (``Stream``, a remote stream read as the caller iterates, and
  ``PooledStream``, which holds its connection until it ends);
- ``pool``: ``Pool``, the bounded pool of one endpoint in one OS thread;
- ``rpc_client``: ``RPCClient``; ``named_clients``: ``clients[...]`` and
  ``default_client``.

It builds on ``django_zrpc.client`` (options, balancing, retry, tracing),
``wire`` and ``transport``'s ``socket_loop``; it never imports the asyncio
client, whose modules have the same names.
"""
