#!/usr/bin/env python3
"""A TCP relay that records both directions of one RTMP session.

    capture-rtmp.py LISTEN_PORT UPSTREAM_PORT CLIENT_OUT SERVER_OUT

Accepts one connection on 127.0.0.1:LISTEN_PORT, relays it to a real RTMP server on
127.0.0.1:UPSTREAM_PORT (rivulet serve, or nginx-rtmp), and writes the client->server
bytes to CLIENT_OUT and the server->client bytes to SERVER_OUT.
"""
import socket
import sys
import threading

listen_port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
client_out, server_out = sys.argv[3], sys.argv[4]

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(1)
conn, _ = srv.accept()
up = socket.create_connection(("127.0.0.1", upstream_port))


def pump(src, dst, path):
    with open(path, "wb") as f:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            f.write(data)
            try:
                dst.sendall(data)
            except OSError:
                break
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


threads = [
    threading.Thread(target=pump, args=(conn, up, client_out)),
    threading.Thread(target=pump, args=(up, conn, server_out)),
]
for t in threads:
    t.start()
for t in threads:
    t.join()
