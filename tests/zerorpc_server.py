"""A stock zerorpc 0.6.3 server, the reference peer.

python tests/zerorpc_server.py PORT HEARTBEAT
"""

import sys
import time

import zerorpc


class Service:
    def echo(self, value):
        return value

    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds

    def fail(self, message):
        raise ValueError(message)

    @zerorpc.stream
    def count_up(self, n, delay=0.0):
        for i in range(n):
            if delay:
                time.sleep(delay)
            yield i


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    server = zerorpc.Server(Service(), heartbeat=float(sys.argv[2]))
    server.bind(f"tcp://127.0.0.1:{sys.argv[1]}")
    print("ready", flush=True)
    server.run()
