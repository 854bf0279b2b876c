"""The client on gevent: what differs from the asyncio client, module for module.

- ``rpc_client``: ``RPCClient``, and ``PooledStream``, a remote stream that
  gives its connection back to the pool when read to the end.

It builds on ``django_zrpc.client`` (options, balancing, retry, tracing),
``wire`` and ``transport``'s ``socket_loop``; it never imports the asyncio
client.
"""
