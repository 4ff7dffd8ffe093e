"""MLLP transport: an asyncio listener for EHR feeds and a small blocking client.

Framing is <VT> message <FS><CR> (0x0b … 0x1c 0x0d). The listener is built on python-hl7's
`hl7.mllp.start_hl7_server`; each connection is read frame by frame and answered in
order. Database work runs in a thread pool so the event loop keeps serving every other
connection while one message is being applied.

Bad input never stops the listener: bytes outside a frame are skipped without an answer
(there is no message to answer), a frame that is not an SIU message gets AR, a
connection that drops mid-frame is closed without processing the partial message, and a
frame larger than the limit closes that connection only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import connection, connections
from django.db.utils import InterfaceError, OperationalError
from hl7.mllp import start_hl7_server

from careline.integrations.hl7.receiving import FeedSelector, Receipt, receive_message

logger = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
# A large SIU message is a few kilobytes; anything near this is not one.
MAX_FRAME_BYTES = 1024 * 1024


def frame(message: str | bytes) -> bytes:
    data = message.encode() if isinstance(message, str) else message
    return START_BLOCK + data + END_BLOCK


def decode(data: bytes) -> str:
    """Feeds are ASCII or UTF-8 in practice; Latin-1 decodes whatever else arrives."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _receive_in_thread(text: str, selector: FeedSelector) -> Receipt:
    try:
        return receive_message(text, selector)
    except (OperationalError, InterfaceError):
        # The database went away (restart, idle timeout): reconnect once.
        connection.close()
        return receive_message(text, selector)


class MllpListener:
    """Accepts MLLP connections and answers every SIU frame with an ACK."""

    def __init__(self, selector: FeedSelector, *, workers: int = 8):
        self.selector = selector
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hl7-db")
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await start_hl7_server(
            self._handle, host, port, limit=MAX_FRAME_BYTES, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        logger.info("MLLP listener on %s:%s", bound[0], bound[1])
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Each pool thread holds its own database connection; the barrier makes every
        # thread run exactly one close, so none is left open (PostgreSQL would keep it).
        barrier = threading.Barrier(self._workers)

        def close_this_threads_connections() -> None:
            connections.close_all()
            try:
                barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass

        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, close_this_threads_connections)
                for _ in range(self._workers)
            )
        )
        self._executor.shutdown(wait=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                data = await self._read_frame(reader, peer)
                if data is None:
                    break
                if data is _NOT_A_FRAME:
                    continue
                loop = asyncio.get_running_loop()
                receipt = await loop.run_in_executor(
                    self._executor, _receive_in_thread, decode(data), self.selector
                )
                writer.write(frame(receipt.ack))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 — one connection's failure must not stop others
            logger.error("MLLP connection from %s failed: %s", peer, type(exc).__name__)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _read_frame(self, reader: asyncio.StreamReader, peer) -> bytes | object | None:
        """The next frame's content, _NOT_A_FRAME for bytes to skip, None at end of stream."""
        try:
            data = await reader.readuntil(END_BLOCK)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                logger.warning("MLLP %s closed mid-message; partial frame discarded", peer)
            return None
        except asyncio.LimitOverrunError:
            logger.warning("MLLP %s sent a frame over %s bytes; closing", peer, MAX_FRAME_BYTES)
            return None
        start = data.rfind(START_BLOCK)
        if start == -1:
            logger.warning("MLLP %s sent %s bytes outside any frame; skipped", peer, len(data))
            return _NOT_A_FRAME
        if start > 0:
            logger.warning("MLLP %s sent %s bytes before a frame; skipped", peer, start)
        return data[start + 1 : -len(END_BLOCK)]


_NOT_A_FRAME = object()


async def serve(
    selector: FeedSelector,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Run a listener until `stop` is set."""
    listener = MllpListener(selector)
    bound = await listener.start(host, port)
    if on_ready is not None:
        on_ready(*bound)
    try:
        await stop.wait()
    finally:
        await listener.stop()


@dataclass
class BackgroundListener:
    """A listener on its own event loop in a thread: for tests, benchmarks and demos."""

    host: str
    port: int
    _loop: asyncio.AbstractEventLoop
    _stop: asyncio.Event
    _thread: threading.Thread

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def start_background_listener(
    selector: FeedSelector | None = None, host: str = "127.0.0.1", port: int = 0
) -> BackgroundListener:
    selector = selector or FeedSelector()
    ready = threading.Event()
    state: dict = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        state["loop"], state["stop"] = loop, stop

        def on_ready(bound_host: str, bound_port: int) -> None:
            state["address"] = (bound_host, bound_port)
            ready.set()

        try:
            loop.run_until_complete(serve(selector, host, port, stop=stop, on_ready=on_ready))
        except Exception as exc:  # noqa: BLE001 — reported to the starting thread
            state["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="mllp-listener", daemon=True)
    thread.start()
    if not ready.wait(timeout=10) or "error" in state:
        raise RuntimeError(f"MLLP listener did not start: {state.get('error')}")
    bound_host, bound_port = state["address"]
    return BackgroundListener(bound_host, bound_port, state["loop"], state["stop"], thread)


class MllpClient:
    """A blocking MLLP connection: send a message, wait for its ACK."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0):
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def send(self, message: str | bytes) -> str:
        self._sock.sendall(frame(message))
        return self.read_ack()

    def read_ack(self) -> str:
        while END_BLOCK not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("The MLLP peer closed the connection without an ACK.")
            self._buffer += chunk
        block, _, self._buffer = self._buffer.partition(END_BLOCK)
        start = block.rfind(START_BLOCK)
        return decode(block[start + 1 :] if start != -1 else block)

    def send_raw(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
