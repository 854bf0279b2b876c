"""Sockets and the loops that drive them, under both clients and the server.

- ``socket_loop``: ``SocketLoop``, the one greenlet that owns a ZeroMQ socket
  (the gevent client's connection and the server);
- ``aio_sockets``: ``DealerSocket``, the asyncio client's socket on
  ``zmq.asyncio``, sent on and drained past its futures;
- ``dealer``: the shared ZeroMQ context and a client socket's options;
- ``monitor``: a socket's closed connections and handshake failures;
- ``io_threads``: how many ZeroMQ I/O threads a process runs.

What travels on the sockets is ``wire``'s; nothing here knows of a call's
retries, pools or served functions. ``socket_loop`` (gevent) and
``aio_sockets`` (asyncio) never import each other.
"""
