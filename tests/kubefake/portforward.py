"""pods/NAME/portforward over WebSocket: the kubelet's channel protocol, each pod port backed by a loopback TCP
target the test registered.

The protocol (the kubelet's, as 1.13 serves it through the API server): the client asks for ``ports=N[,M...]``;
port i gets channel 2i for data (both ways) and channel 2i+1 for errors (server to client only). The server's first
frame on each of the two carries the port as an unsigned 16-bit little-endian integer. Every later frame is the
channel byte followed by bytes: to or from the pod's port on the data channel, an error message (text) on the error
channel. When every port's stream is over, the server closes the WebSocket.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
from io import BufferedIOBase

from . import websocket
from .api import Query
from .status import bad_request

Target = tuple[str, int]
"""Where a pod's port leads: a loopback (host, port) the fake connects to for each forwarded connection."""

# v4.base64.channel.k8s.io (text frames, base64 payloads) is not served; "" is the kubelet's binary default.
PROTOCOLS = ("v4.channel.k8s.io", "")
CONNECT_TIMEOUT = 2.0
CLOSE_WAIT = 2.0  # how long the client has to answer our close frame before the connection is dropped
_CHUNK = 32 * 1024


def require_loopback(target: Target) -> Target:
    """Targets stand for what runs in pods: they must be on this machine, never on a network."""
    host, port = target
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not 0 < int(port) < 65536:
        raise ValueError(f"a port-forward target must be a loopback (host, port), not {target!r}")
    return host, int(port)


def parse_ports(query: Query) -> list[int]:
    """The ``ports`` query parameter(s), refused as the kubelet refuses them."""
    values = query.get("ports", [])
    if not values:
        raise bad_request('query parameter "ports" is required')
    ports: list[int] = []
    for value in values:
        if not value:
            raise bad_request('query parameter "ports" cannot be empty')
        for part in value.split(","):
            if not part.isdigit() or int(part) > 65535:
                raise bad_request(f'unable to parse "{value}" as a port: strconv.ParseUint: parsing "{part}": '
                                  + ("value out of range" if part.isdigit() else "invalid syntax"))
            if int(part) < 1:
                raise bad_request(f'port "{value}" must be > 0')
            ports.append(int(part))
    return ports


def refused(port: int, pod_id: str, reason: str) -> str:
    """The error the kubelet (dockershim, socat in the pod's network namespace) reports when a port refuses."""
    return (f"error forwarding port {port} to pod {pod_id}, uid : exit status 1: "
            f"socat E connect(5, AF=2 127.0.0.1:{port}, 16): {reason}\n")


class Session:
    """One upgraded port-forward connection: frames from the client go to the targets, bytes from the targets go
    back as frames. ``run`` returns when the WebSocket is over (either side closed it)."""

    def __init__(self, connection: socket.socket, rfile: BufferedIOBase, wfile: BufferedIOBase, ports: list[int],
                 targets: list[Target | None], pod_id: str) -> None:
        self.connection, self.rfile, self.wfile = connection, rfile, wfile
        self.ports, self.targets, self.pod_id = ports, targets, pod_id
        self.pod_sockets: list[socket.socket | None] = [None] * len(ports)
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ports_left = len(ports)
        self._close_sent = False
        self._client_gone = threading.Event()
        self._readers: list[threading.Thread] = []

    def run(self) -> None:
        for index, port in enumerate(self.ports):
            announce = struct.pack("<H", port)
            self._send(2 * index, announce)
            self._send(2 * index + 1, announce)
        for index, port in enumerate(self.ports):
            self._open(index, port)
        try:
            self._from_client()
        finally:
            self._client_gone.set()
            for pod_socket in self.pod_sockets:
                _hang_up(pod_socket)
            for reader in self._readers:
                reader.join(timeout=CLOSE_WAIT)
            for pod_socket in self.pod_sockets:
                if pod_socket is not None:
                    pod_socket.close()

    # -- the pod's side ---------------------------------------------------------------------------------
    def _open(self, index: int, port: int) -> None:
        target = self.targets[index]
        if target is None:
            self._send(2 * index + 1, refused(port, self.pod_id, "Connection refused").encode("utf-8"))
            self._port_done(index)
            return
        try:
            pod_socket = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            self._send(2 * index + 1, refused(port, self.pod_id, reason).encode("utf-8"))
            self._port_done(index)
            return
        pod_socket.settimeout(None)
        self.pod_sockets[index] = pod_socket
        reader = threading.Thread(target=self._from_pod, args=(index, pod_socket), daemon=True,
                                  name=f"kubefake-port-forward-{port}")
        self._readers.append(reader)
        reader.start()

    def _from_pod(self, index: int, pod_socket: socket.socket) -> None:
        try:
            while chunk := pod_socket.recv(_CHUNK):
                self._send(2 * index, chunk)
        except OSError:
            pass
        finally:
            self._port_done(index)

    def _port_done(self, index: int) -> None:
        """This port's stream is over; when it was the last, the server closes the WebSocket."""
        _hang_up(self.pod_sockets[index])
        with self._state_lock:
            self._ports_left -= 1
            last = self._ports_left == 0
        if last and self._close():
            threading.Thread(target=self._drop_if_silent, daemon=True, name="kubefake-port-forward-close").start()

    # -- the client's side ------------------------------------------------------------------------------
    def _from_client(self) -> None:
        while True:
            try:
                frame = websocket.read_frame(self.rfile)
            except (OSError, struct.error):
                return
            if frame is None:
                return
            opcode, payload = frame
            if opcode == websocket.OP_CLOSE:
                self._close()
                return
            if opcode == websocket.OP_PING:
                self._write(websocket.encode_frame(websocket.OP_PONG, payload))
            elif opcode == websocket.OP_BINARY and payload:
                channel = payload[0]
                index = channel // 2
                pod_socket = self.pod_sockets[index] if channel % 2 == 0 and index < len(self.ports) else None
                if pod_socket is not None:  # data for a port that is over (or an error channel) is dropped
                    with contextlib.suppress(OSError):
                        pod_socket.sendall(payload[1:])

    def _drop_if_silent(self) -> None:
        if not self._client_gone.wait(CLOSE_WAIT):
            _hang_up(self.connection)

    # -- writing frames ---------------------------------------------------------------------------------
    def _close(self) -> bool:
        """Send our close frame once (a reply when the client closed first); True when this call sent it."""
        with self._write_lock:
            if self._close_sent:
                return False
            self._close_sent = True
            self._write_locked(websocket.close_frame())
        return True

    def _send(self, channel: int, data: bytes) -> None:
        self._write(websocket.encode_frame(websocket.OP_BINARY, bytes([channel]) + data))

    def _write(self, frame: bytes) -> None:
        with self._write_lock:
            if not self._close_sent:  # nothing follows a close frame
                self._write_locked(frame)

    def _write_locked(self, frame: bytes) -> None:
        try:
            self.wfile.write(frame)
            self.wfile.flush()
        except OSError:
            pass


def _hang_up(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
