"""MLLP transport: an asyncio listener for EHR feeds and a small blocking client.

Framing is <VT> message <FS><CR> (0x0b … 0x1c 0x0d). Each connection is read frame by
frame and answered in order. Database work runs in a thread pool so the event loop keeps
serving every other connection while messages are being applied.

Group commit: the messages that arrive on other connections while a transaction is
running wait for it, then go in together as the next transaction
(`receiving.receive_together`: one commit and one planning pass for all of them, new
bookings applied set-based, every other message in its own savepoint). Every ACK is
written only after its transaction has committed, so AA still means "applied"; a
connection never has more than one message in flight, so each one's messages keep
their order. One transaction runs at a time: SQLite has one writer anyway, and on
PostgreSQL the work is this process's Python (one core under the GIL), so a second
transaction would only make both smaller; `careline mllp --processes N` runs several
processes on one port instead (`start(reuse_port=True)`).

Bad input never stops the listener: bytes outside a frame are skipped without an answer
(there is no message to answer), a frame that is not an SIU (or ADT A08/A31) message gets
AR, and a connection that drops mid-frame is closed without processing the partial message.

The listener is exposed to whatever can reach its port, so what one peer can hold is
bounded (`MllpLimits`): at most `max_connections` at once (one more is closed at
once; those open keep working), `idle_timeout` seconds to deliver each frame (a silent
or trickling connection is closed), and `max_frame_bytes` per frame. Of an oversize
frame only its first MSH is kept; the rest is read and dropped, then the frame is
answered AR naming the limit (or, with no readable MSH, the connection is closed).
Memory per connection is thus at most max_frame_bytes plus one read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, connections
from django.db.utils import InterfaceError, OperationalError

from careline.integrations.hl7.receiving import (
    BULK_BATCH_MESSAGES,
    LISTENER_LOOKUPS_SECONDS,
    FeedSelector,
    Receipt,
    RejectedRetention,
    receive_message,
    receive_oversize,
    receive_together,
    refresh_statistics_after_bulk,
)

logger = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
_READ_BYTES = 64 * 1024
# Of an oversize frame, what is kept to read its MSH and answer it.
_OVERSIZE_HEAD_BYTES = 4096
# Messages per group-commit transaction at most (a bound on how long one transaction
# holds the write lock, and on what one failure sends back to be received one by one).
_MAX_TOGETHER = 32
# When fewer messages wait than there are busy connections, the next transaction waits
# this long for the others: their senders are still reading the ACKs just sent and
# writing their next message. Without it the connections split into two halves whose
# transactions alternate, each paying a transaction's fixed cost (its commit, its
# planning pass) for half as many messages.
_GATHER_SECONDS = 0.005
# A connection counts as busy while it sent a message this recently; an idle feed
# connection does not hold every transaction back.
_BUSY_SECONDS = 0.5


@dataclass(frozen=True)
class MllpLimits:
    """What one listener lets its peers hold (see the module docstring)."""

    idle_timeout: float = 300.0  # seconds to deliver each frame; 0: no limit
    max_connections: int = 50
    max_frame_bytes: int = 1024 * 1024
    retention: RejectedRetention = RejectedRetention()

    @classmethod
    def from_settings(cls) -> MllpLimits:
        return cls(
            idle_timeout=settings.CARELINE_MLLP_IDLE_TIMEOUT_SECONDS,
            max_connections=settings.CARELINE_MLLP_MAX_CONNECTIONS,
            max_frame_bytes=settings.CARELINE_MLLP_MAX_FRAME_BYTES,
            retention=RejectedRetention.from_settings(),
        )


def frame(message: str | bytes) -> bytes:
    data = message.encode() if isinstance(message, str) else message
    return START_BLOCK + data + END_BLOCK


def decode(data: bytes) -> str:
    """Feeds are ASCII or UTF-8 in practice; Latin-1 decodes whatever else arrives."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _with_reconnect(work: Callable[[], Receipt | None]) -> Receipt | None:
    try:
        return work()
    except (OperationalError, InterfaceError):
        # The database went away (restart, idle timeout): reconnect once.
        connection.close()
        return work()


def _receive_frames(
    frames: list[bytes], limits: MllpLimits, selector: FeedSelector
) -> list[Receipt | None | Exception]:
    """Receipts for frames from different connections, received in one transaction when
    there are several (see the module docstring); any the transaction could not take
    are received alone after it."""
    raws = [decode(data) for data in frames]
    receipts: list[Receipt | None] = [None] * len(raws)
    # Even one message alone: a new booking costs fewer statements on the group path.
    try:
        receipts = receive_together(
            raws, selector, limits.retention, keep_lookups=LISTENER_LOOKUPS_SECONDS
        )
    except Exception as exc:  # noqa: BLE001 — nothing of it committed; one by one below
        logger.warning(
            "MLLP: %s messages received one by one after %s",
            len(raws),
            type(exc).__name__,
        )
        if isinstance(exc, (OperationalError, InterfaceError)):
            connection.close()
    answers: list[Receipt | None | Exception] = []
    for receipt, raw in zip(receipts, raws, strict=True):
        try:
            answers.append(
                receipt
                or _with_reconnect(lambda raw=raw: receive_message(raw, selector, limits.retention))
            )
        except Exception as exc:  # noqa: BLE001 — fails its own connection, not the others
            answers.append(exc)
    if any(isinstance(a, Receipt) and len(a.batch) >= BULK_BATCH_MESSAGES for a in answers):
        try:
            refresh_statistics_after_bulk()
        except (OperationalError, InterfaceError) as exc:
            # Committed and answered all the same: statistics are an optimisation.
            logger.warning("MLLP: statistics not refreshed after a batch: %s", type(exc).__name__)
    return answers


@dataclass(frozen=True)
class _Oversize:
    head: bytes
    size: int


class _NotAFrame:
    pass


_NOT_A_FRAME = _NotAFrame()


class _FrameReader:
    """Frames from one connection, never buffering more than the frame limit plus a read."""

    def __init__(self, reader: asyncio.StreamReader, peer, max_frame_bytes: int):
        self._reader = reader
        self._peer = peer
        self._max = max_frame_bytes
        self._buffer = bytearray()

    async def next(self) -> bytes | _Oversize | _NotAFrame | None:
        """The next frame's content, an oversize frame's head, bytes to skip, or None at EOF."""
        while True:
            end = self._buffer.find(END_BLOCK)
            if end != -1:
                data = bytes(self._buffer[:end])
                del self._buffer[: end + len(END_BLOCK)]
                return self._content(data)
            if len(self._buffer) > self._max + len(START_BLOCK):
                return await self._skip_oversize()
            chunk = await self._reader.read(_READ_BYTES)
            if not chunk:
                if bytes(self._buffer).strip():
                    logger.warning(
                        "MLLP %s closed mid-message; partial frame discarded", self._peer
                    )
                return None
            self._buffer += chunk

    def _content(self, data: bytes) -> bytes | _NotAFrame:
        start = data.rfind(START_BLOCK)
        if start == -1:
            logger.warning(
                "MLLP %s sent %s bytes outside any frame; skipped", self._peer, len(data)
            )
            return _NOT_A_FRAME
        if start > 0:
            logger.warning("MLLP %s sent %s bytes before a frame; skipped", self._peer, start)
        return data[start + 1 :]

    async def _skip_oversize(self) -> _Oversize | None:
        start = self._buffer.find(START_BLOCK)
        head = (
            bytes(self._buffer[start + 1 : start + 1 + _OVERSIZE_HEAD_BYTES])
            if start != -1
            else b""
        )
        size = len(self._buffer) - max(start + 1, 0)
        # Keep one byte: the end block may be split across two reads.
        del self._buffer[:-1]
        while True:
            chunk = await self._reader.read(_READ_BYTES)
            if not chunk:
                logger.warning("MLLP %s closed during an oversize frame", self._peer)
                return None
            self._buffer += chunk
            end = self._buffer.find(END_BLOCK)
            if end != -1:
                size += end - 1
                del self._buffer[: end + len(END_BLOCK)]
                logger.warning(
                    "MLLP %s sent a %s-byte frame (limit %s)", self._peer, size, self._max
                )
                return _Oversize(head, size)
            size += len(self._buffer) - 1
            del self._buffer[:-1]


class MllpListener:
    """Accepts MLLP connections and answers every SIU frame with an ACK."""

    def __init__(
        self, selector: FeedSelector, *, workers: int = 8, limits: MllpLimits | None = None
    ):
        self.selector = selector
        self.limits = limits or MllpLimits.from_settings()
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hl7-db")
        self._server: asyncio.Server | None = None
        self._open = 0
        self._connections: set[asyncio.Task] = set()
        # Frames waiting for the next transaction, each with the future of its receipt.
        self._waiting: list[tuple[bytes, asyncio.Future]] = []
        self._running = False
        # When each open connection last sent a message (the event loop's clock).
        self._last_sent: dict[asyncio.Task | None, float] = {}
        self._gathering: asyncio.TimerHandle | None = None
        self._transactions: set[asyncio.Task] = set()

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Listen; with `reuse_port`, beside other processes on the same port
        (SO_REUSEPORT: the kernel spreads new connections over them)."""
        self._server = await asyncio.start_server(
            self._handle, host, port, reuse_address=True, reuse_port=reuse_port or None
        )
        bound = self._server.sockets[0].getsockname()
        logger.info(
            "MLLP listener on %s:%s (max %s connections, %ss idle timeout, %s-byte frames)",
            bound[0],
            bound[1],
            self.limits.max_connections,
            self.limits.idle_timeout,
            self.limits.max_frame_bytes,
        )
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Open connections end now (each closes its socket), not when the loop is torn down.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        # Frames still waiting go unanswered (their connections are closed: senders
        # resend); transactions under way finish and commit before the pool's connections
        # close.
        if self._gathering is not None:
            self._gathering.cancel()
        self._waiting.clear()
        await asyncio.gather(*self._transactions, return_exceptions=True)
        if self._server is not None:
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

    def _timeout(self) -> float | None:
        return self.limits.idle_timeout if self.limits.idle_timeout > 0 else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._open >= self.limits.max_connections:
            # Closed at once, so a crowd of idle peers cannot starve the feeds; the ones
            # already open are untouched.
            logger.warning("MLLP %s refused: %s connections open (the limit)", peer, self._open)
            writer.close()
            return
        self._open += 1
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve_connection(reader, writer, peer)
        finally:
            self._open -= 1
            self._connections.discard(task)
            self._last_sent.pop(task, None)

    async def _receive(self, data: bytes) -> Receipt | None:
        """This frame's receipt, once the transaction that received it has committed."""
        loop = asyncio.get_running_loop()
        self._last_sent[asyncio.current_task()] = loop.time()
        receipt: asyncio.Future = loop.create_future()
        self._waiting.append((data, receipt))
        self._start_transactions()
        return await receipt

    def _busy(self) -> int:
        since = asyncio.get_running_loop().time() - _BUSY_SECONDS
        return sum(1 for sent in self._last_sent.values() if sent >= since)

    def _start_transactions(self) -> None:
        if self._running or not self._waiting:
            return
        if len(self._waiting) < min(self._busy(), _MAX_TOGETHER):
            if self._gathering is None:
                self._gathering = asyncio.get_running_loop().call_later(
                    _GATHER_SECONDS, self._start_gathered
                )
            return
        self._start_now()

    def _start_gathered(self) -> None:
        self._gathering = None
        if self._waiting and not self._running:
            self._start_now()

    def _start_now(self) -> None:
        if self._gathering is not None:
            self._gathering.cancel()
            self._gathering = None
        batch = self._waiting[:_MAX_TOGETHER]
        del self._waiting[:_MAX_TOGETHER]
        self._running = True
        task = asyncio.get_running_loop().create_task(self._run_transaction(batch))
        self._transactions.add(task)
        task.add_done_callback(self._transactions.discard)

    async def _run_transaction(self, batch: list[tuple[bytes, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            receipts = await loop.run_in_executor(
                self._executor,
                _receive_frames,
                [data for data, _ in batch],
                self.limits,
                self.selector,
            )
        except BaseException as exc:  # noqa: BLE001 — each waiting connection hears of it
            for _, waiting in batch:
                if not waiting.done():
                    waiting.set_exception(
                        exc if isinstance(exc, Exception) else ConnectionError("stopped")
                    )
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, waiting), receipt in zip(batch, receipts, strict=True):
                if waiting.done():
                    continue  # its connection was closed meanwhile
                if isinstance(receipt, Exception):
                    waiting.set_exception(receipt)
                else:
                    waiting.set_result(receipt)
        finally:
            self._running = False
            self._start_transactions()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer
    ) -> None:
        frames = _FrameReader(reader, peer, self.limits.max_frame_bytes)
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    data = await asyncio.wait_for(frames.next(), self._timeout())
                except TimeoutError:
                    logger.info(
                        "MLLP %s sent no complete message for %ss; closing",
                        peer,
                        self.limits.idle_timeout,
                    )
                    break
                if data is None:
                    break
                if data is _NOT_A_FRAME:
                    continue
                if isinstance(data, _Oversize):
                    work = _oversize_work(data, self.limits, self.selector)
                    receipt = await loop.run_in_executor(self._executor, _with_reconnect, work)
                else:
                    receipt = await self._receive(data)
                if receipt is None:
                    break  # an oversize frame with no MSH: no one to answer
                writer.write(frame(receipt.ack))
                await asyncio.wait_for(writer.drain(), self._timeout())
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        except Exception as exc:  # noqa: BLE001 — one connection's failure must not stop others
            logger.error("MLLP connection from %s failed: %s", peer, type(exc).__name__)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


def _oversize_work(data: _Oversize, limits: MllpLimits, selector: FeedSelector):
    return lambda: receive_oversize(
        decode(data.head), data.size, limits.max_frame_bytes, selector, limits.retention
    )


async def serve(
    selector: FeedSelector,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[str, int], None] | None = None,
    limits: MllpLimits | None = None,
    reuse_port: bool = False,
) -> None:
    """Run a listener until `stop` is set."""
    listener = MllpListener(selector, limits=limits)
    bound = await listener.start(host, port, reuse_port=reuse_port)
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
    selector: FeedSelector | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: MllpLimits | None = None,
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
            loop.run_until_complete(
                serve(selector, host, port, stop=stop, on_ready=on_ready, limits=limits)
            )
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
