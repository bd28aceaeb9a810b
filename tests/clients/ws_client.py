"""Drives Python's `websockets` library (a real third-party client) for tests/websocket_clients.rs.

The test writes one JSON command per line on stdin and reads exactly one JSON answer per
line on stdout, so the Rust side decides every step (and can post over HTTP, or signal the
server, between two steps). The script holds no expectations of its own: it reports what the
library saw. tests/clients/ws_client.mjs speaks the same commands for Node's `ws`.

Commands (`conn` names a connection of the script's choosing):
  {"op":"open","conn":"a","url":"ws://...","origin":"http://...","keepalive":0.1}
      -> {"ok":"open"} | {"ok":"refused","status":403,"body":"..."} | {"ok":"failed","error":"..."}
      `keepalive` (seconds) turns on the library's own ping every interval, with a pong
      owed within ten intervals (a busy machine's stall is not a dead server), else the
      library closes the connection (1011).
  {"op":"send","conn":"a","text":"..."}           -> {"ok":"sent"}
  {"op":"recv","conn":"a","timeout":5}
      -> {"ok":"frame","text":"..."} | {"ok":"closed","code":1001,"reason":"..."} | {"ok":"timeout"}
      (after the close, every recv answers the same "closed")
  {"op":"ping","conn":"a","timeout":5}            -> {"ok":"pong"} | {"ok":"timeout"} | {"ok":"closed",...}
  {"op":"pings","conn":"a"}                       -> {"ok":"pings","count":N} (pings the server sent)
  {"op":"close","conn":"a"}                       -> {"ok":"closed","code":...,"reason":"..."}
  {"op":"quit"}                                   -> exits
"""

import asyncio
import json
import logging
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


class PingCounter(logging.Handler):
    """Counts the pings the server sent. The library answers them itself and has no hook for
    them; its documented debug log names every frame received ("< PING ...")."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record):
        if record.getMessage().startswith("< PING"):
            self.count += 1


class Conn:
    """One connection: the library's object, a queue its reader task fills, its ping count."""

    def __init__(self, ws, pings):
        self.ws = ws
        self.pings = pings
        self.queue = asyncio.Queue()
        self.closed = None
        self.reader = asyncio.create_task(self.read())

    async def read(self):
        try:
            while True:
                self.queue.put_nowait({"ok": "frame", "text": await self.ws.recv()})
        except ConnectionClosed as e:
            self.closed = closed_answer(e)
            self.queue.put_nowait(self.closed)


def closed_answer(e):
    # rcvd is the server's close frame; None when the TCP connection ended without one.
    if e.rcvd is None:
        return {"ok": "closed", "code": None, "reason": ""}
    return {"ok": "closed", "code": e.rcvd.code, "reason": e.rcvd.reason}


async def open_conn(conns, cmd, number):
    pings = PingCounter()
    logger = logging.getLogger(f"ws_client.conn{number}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(pings)
    keepalive = cmd.get("keepalive")
    try:
        ws = await connect(
            cmd["url"],
            origin=cmd.get("origin"),
            proxy=None,  # never an http_proxy from the environment: the server is on loopback
            open_timeout=10,
            ping_interval=keepalive,
            ping_timeout=keepalive * 10 if keepalive else None,
            max_size=None,  # the server's limits are under test, not the library's
            logger=logger,
        )
    except InvalidStatus as e:
        return {
            "ok": "refused",
            "status": e.response.status_code,
            "body": e.response.body.decode("utf-8", "replace"),
        }
    except Exception as e:  # a refusal the library reports some other way: say what it was
        return {"ok": "failed", "error": f"{type(e).__name__}: {e}"}
    conns[cmd["conn"]] = Conn(ws, pings)
    return {"ok": "open"}


async def handle(conns, cmd, number):
    op = cmd["op"]
    if op == "open":
        return await open_conn(conns, cmd, number)
    conn = conns[cmd["conn"]]
    if op == "send":
        try:
            await conn.ws.send(cmd["text"])
        except ConnectionClosed as e:
            return closed_answer(e)
        return {"ok": "sent"}
    if op == "recv":
        if conn.closed is not None and conn.queue.empty():
            return conn.closed
        try:
            return await asyncio.wait_for(conn.queue.get(), cmd.get("timeout", 5))
        except asyncio.TimeoutError:
            return {"ok": "timeout"}
    if op == "ping":
        try:
            pong = await conn.ws.ping()
            await asyncio.wait_for(pong, cmd.get("timeout", 5))
        except ConnectionClosed as e:
            return closed_answer(e)
        except asyncio.TimeoutError:
            return {"ok": "timeout"}
        return {"ok": "pong"}
    if op == "pings":
        return {"ok": "pings", "count": conn.pings.count}
    if op == "close":
        await conn.ws.close()
        await conn.reader
        return conn.closed
    raise ValueError(f"unknown op {op!r}")


async def main():
    conns = {}
    loop = asyncio.get_running_loop()
    number = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        number += 1
        answer = await handle(conns, cmd, number)
        print(json.dumps(answer), flush=True)
    for conn in conns.values():
        conn.reader.cancel()


if __name__ == "__main__":
    asyncio.run(main())
