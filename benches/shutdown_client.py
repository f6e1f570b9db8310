#!/usr/bin/env python3
"""Keep-alive clients for benches/shutdown_loss.sh (standard library only, one asyncio loop).

  shutdown_client.py HOST PORT K --out FILE [--path /1k] [--timeout S] [--refused-pause S]

K clients send `GET PATH` back to back, each on its own keep-alive connection, until SIGTERM.
A client behaves as a well-behaved HTTP/1.1 client would: it reuses its connection unless the
answer said `Connection: close`, in which case it closes it and connects again for its next
request. Every request ends in exactly one of:

  answered   a complete response (counted by status, and whether it carried Connection: close);
  refused    connect() failed with ECONNREFUSED: the listener is closed, nothing was sent
             (legitimate after shutdown: the pod is out of the endpoints; the client pauses
             --refused-pause s and tries again, so this counts attempts, not requests);
  lost       the request was written, or being written, on an open connection and no complete
             response came: EOF, reset, or nothing within --timeout s. Recorded with its kind,
             whether it was the connection's first request, and its wall-clock time.

Other connect failures are counted apart. On SIGTERM the summary goes to --out as JSON.
"""

import argparse
import asyncio
import errno
import json
import signal
import time


def err_name(e):
    if isinstance(e, asyncio.IncompleteReadError):
        return "eof-partial" if e.partial else "eof"
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    n = getattr(e, "errno", None)
    if n is not None:
        return errno.errorcode.get(n, str(n))
    return type(e).__name__


class Client:
    def __init__(self, args):
        self.args = args
        self.stop = asyncio.Event()
        self.answered = 0
        self.statuses = {}
        self.close_answers = 0
        self.connects = 0
        self.refused = 0
        self.first_refused = None
        self.last_refused = None
        self.connect_errors = {}
        self.lost = []
        self.last_answer_wall = None
        self.answers_wall = []  # (wall time, connection close?) of every answer, coarse
        self.req = f"GET {args.path} HTTP/1.1\r\nHost: shutdown-loss\r\n\r\n".encode()

    async def read_response(self, reader):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip().lower()
        n = int(headers.get("content-length", "0"))
        if n:
            await reader.readexactly(n)
        return status, headers

    async def worker(self, w):
        a = self.args
        reader = writer = None
        first = True
        while not self.stop.is_set():
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(a.host, a.port)
                except ConnectionRefusedError:
                    t = time.time()
                    self.refused += 1
                    self.first_refused = self.first_refused or t
                    self.last_refused = t
                    await asyncio.sleep(a.refused_pause)
                    continue
                except Exception as e:  # noqa: BLE001 - counted
                    k = err_name(e)
                    self.connect_errors[k] = self.connect_errors.get(k, 0) + 1
                    await asyncio.sleep(a.refused_pause)
                    continue
                self.connects += 1
                first = True
            t0 = time.time()
            stage = "send"
            try:
                writer.write(self.req)
                await writer.drain()
                stage = "answer"
                status, headers = await asyncio.wait_for(self.read_response(reader), a.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - every failure is a lost request
                self.lost.append(
                    {"worker": w, "t": t0, "kind": err_name(e), "stage": stage,
                     "first_on_connection": first}
                )
                writer.close()
                reader = writer = None
                continue
            first = False
            self.answered += 1
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            t = time.time()
            self.last_answer_wall = t
            close = headers.get("connection") == "close"
            self.answers_wall.append((round(t, 3), close))
            if close:
                self.close_answers += 1
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def run(self):
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, self.stop.set)
        tasks = [asyncio.ensure_future(self.worker(w)) for w in range(self.args.k)]
        await self.stop.wait()
        # Let requests in flight finish (or fail) before counting.
        done, pending = await asyncio.wait(tasks, timeout=self.args.timeout + 1)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {
            "k": self.args.k,
            "answered": self.answered,
            "statuses": self.statuses,
            "connection_close_answers": self.close_answers,
            "connects": self.connects,
            "refused": self.refused,
            "first_refused": self.first_refused,
            "last_refused": self.last_refused,
            "connect_errors": self.connect_errors,
            "lost": self.lost,
            "last_answer": self.last_answer_wall,
            "answers": self.answers_wall,
        }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("k", type=int)
    p.add_argument("--path", default="/1k")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--refused-pause", type=float, default=0.05)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    async def amain():
        out = await Client(args).run()
        with open(args.out, "w") as f:
            json.dump(out, f)

    asyncio.run(amain())


if __name__ == "__main__":
    main()
