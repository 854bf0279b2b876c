"""django_zrpc's engine: zerorpc's wire protocol (v3) on pyzmq and gevent.

What is here, one job a module:

- ``server``: ``Server``, which serves calls on a ROUTER socket with
  persistent workers; ``calls`` (what one call is, and the steps of running
  it), ``builtins`` (``_zerorpc_*``), ``stall`` (the blocked loop warning),
  ``hooks`` (zerorpc-style middleware), ``observer`` (what metrics are told
  of each call), ``ratelimit``;
- ``client``: ``Client``, one DEALER connection that carries many calls, on
  gevent;
- ``zap`` (the CURVE ZAP handler) and ``heap`` (memory of departed peers given back).

The arrow points one way: the Django side (``server.py``, ``client.py``,
``pool.py``, the commands) builds on ``core``, and ``core`` builds on
``wire`` (the protocol, Django values on the wire, the error codec and the
caller's side of a call) and ``transport`` (sockets and the loops that drive
them), and imports from the rest of django_zrpc only ``context`` (the call's
context), ``exceptions`` and ``curve`` (keys). ``tests/test_layout.py`` holds
it to that.
"""
