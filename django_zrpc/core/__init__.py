"""django_zrpc's engine: zerorpc's wire protocol (v3) on pyzmq and gevent.

What is here, one job a module:

- ``socket_loop``: ``SocketLoop``, the one greenlet that owns a ZeroMQ socket;
- ``server``: ``Server``, which serves calls on a ROUTER socket with
  persistent workers; ``calls`` (what one call is, and the steps of running
  it), ``builtins`` (``_zerorpc_*``), ``stall`` (the blocked loop warning),
  ``hooks`` (zerorpc-style middleware), ``observer`` (what metrics are told
  of each call), ``ratelimit``;
- ``client``: ``Client``, one DEALER connection that carries many calls, on
  gevent; ``dealer`` (a client's socket), free of gevent and shared with the
  asyncio client (``django_zrpc.aio``);
- ``zap`` (the CURVE ZAP handler), ``monitor`` (a socket's closed connections
  and handshake failures) and ``heap`` (memory of departed peers given back).

The arrow points one way: the Django side (``server.py``, ``client.py``,
``pool.py``, the commands) builds on ``core``, and ``core`` imports from the
rest of django_zrpc only what is free of sockets and gevent, and shared with
any other client: ``wire`` (the protocol, Django values on the wire, the
error codec and the caller's side of a call), ``context`` (the call's
context), ``exceptions`` and ``curve`` (keys). ``tests/test_layout.py`` holds it to that.
"""
