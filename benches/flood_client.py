#!/usr/bin/env python3
"""Connection-flood clients for benches/flood.sh (standard library only, one asyncio loop).

  flood_client.py idle HOST PORT N [--concurrency C] [--release K]
      Opens N connections (at most C connecting or waiting for their answer at once), each sends
      one keep-alive `GET /1k` and reads the answer, then stays idle. A server close is recorded
      with the time since the connection's answer. SIGUSR1 closes K answered connections (the
      oldest first), so connections waiting in the server's backlog can be served.
  flood_client.py slowloris HOST PORT N [--interval S]
      Keeps N connections sending a request head that never ends, one byte every S seconds (the
      first byte as soon as the connection is up; the first connections are spread over S). A
      connection the server closes is recorded (time since its first byte, answer if any) and
      replaced by a new one, so the flood stays at N.
  flood_client.py stall HOST PORT N [--body BYTES]
      Keeps N connections that send `POST /post` with `Content-Length: 2*BYTES`, BYTES of body,
      and then nothing. A server close is recorded (time since the last byte sent, answer if any)
      and the connection replaced.

Every mode runs until SIGTERM or SIGINT, writes its state every 0.5 s to --status (JSON, written
whole) and, on exit, a summary to --out (JSON). Times are seconds, from time.monotonic().
"""

import argparse
import asyncio
import errno
import json
import os
import random
import resource
import signal
import statistics
import time

now = time.monotonic


def pct(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def dist(values):
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": round(min(values), 3),
        "p50": round(pct(values, 50), 3),
        "p99": round(pct(values, 99), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def err_name(e):
    if isinstance(e, asyncio.IncompleteReadError):
        return "eof"
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    n = getattr(e, "errno", None)
    if n is not None:
        return errno.errorcode.get(n, str(n))
    return type(e).__name__


def write_json(path, obj):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


async def read_response(reader):
    """Reads one HTTP/1.1 response with a Content-Length; returns (status, headers-lowercase)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    if n:
        await reader.readexactly(n)
    return status, headers


class Common:
    def __init__(self, args):
        self.args = args
        self.t_start = now()
        self.stop = asyncio.Event()
        self.connect_errors = {}
        self.tasks = set()

    def count_connect_error(self, e):
        k = err_name(e)
        self.connect_errors[k] = self.connect_errors.get(k, 0) + 1

    async def status_loop(self):
        while not self.stop.is_set():
            write_json(self.args.status, self.status())
            try:
                await asyncio.wait_for(self.stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass


# --- idle keep-alive connections ---------------------------------------------------------------
class Idle(Common):
    def __init__(self, args):
        super().__init__(args)
        self.sem = asyncio.Semaphore(args.concurrency)
        self.state = {}  # id -> connecting | waiting | answered | failed | closed | released
        self.answered_at = {}  # id -> time of answer (for connections still answered)
        self.writers = {}
        self.statuses = {}
        self.conn_close_answers = 0
        self.get_errors = {}
        self.closed_after = []  # seconds from answer to server close
        self.closed_at = []  # seconds from start of the run
        self.unexpected_data = 0
        self.released = 0
        self.all_done_at = None
        self.done = 0

    def status(self):
        counts = {}
        for s in self.state.values():
            counts[s] = counts.get(s, 0) + 1
        return {
            "t": round(now() - self.t_start, 3),
            "counts": counts,
            "statuses": self.statuses,
            "connection_close_answers": self.conn_close_answers,
            "connect_errors": self.connect_errors,
            "get_errors": self.get_errors,
            "closed_by_server": len(self.closed_after),
            "released": self.released,
            "all_answered_or_failed_after_s": self.all_done_at,
        }

    async def conn(self, i):
        a = self.args
        self.state[i] = "connecting"
        async with self.sem:
            try:
                reader, writer = await asyncio.open_connection(a.host, a.port)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                self.count_connect_error(e)
                self.state[i] = "failed"
                self.note_done()
                return
            self.state[i] = "waiting"
            try:
                writer.write(b"GET /1k HTTP/1.1\r\nHost: flood\r\n\r\n")
                status, headers = await read_response(reader)
            except Exception as e:  # noqa: BLE001
                k = err_name(e)
                self.get_errors[k] = self.get_errors.get(k, 0) + 1
                self.state[i] = "failed"
                self.note_done()
                writer.close()
                return
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if headers.get("connection", "").lower() == "close":
            self.conn_close_answers += 1
        t_ans = now()
        self.state[i] = "answered"
        self.answered_at[i] = t_ans
        self.writers[i] = writer
        self.note_done()
        try:
            data = await reader.read(1)
            if data:
                self.unexpected_data += 1
        except Exception:  # noqa: BLE001 - a reset is a close too
            pass
        if self.state.get(i) == "answered":
            self.state[i] = "closed"
            self.closed_after.append(now() - t_ans)
            self.closed_at.append(now() - self.t_start)
        self.answered_at.pop(i, None)
        self.writers.pop(i, None)
        writer.close()

    def note_done(self):
        self.done += 1
        if self.done == self.args.n:
            self.all_done_at = round(now() - self.t_start, 3)

    def release(self):
        k = self.args.release
        oldest = sorted(self.answered_at.items(), key=lambda kv: kv[1])[:k]
        for i, _ in oldest:
            self.state[i] = "released"
            self.released += 1
            self.answered_at.pop(i, None)
            w = self.writers.pop(i, None)
            if w:
                w.close()

    async def run(self):
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.release)
        for i in range(self.args.n):
            t = asyncio.ensure_future(self.conn(i))
            self.tasks.add(t)
        st = asyncio.ensure_future(self.status_loop())
        await self.stop.wait()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await st
        out = self.status()
        out.update(
            mode="idle",
            n=self.args.n,
            closed_after_answer_s=dist(self.closed_after),
            closed_at_s=dist(self.closed_at),
            unexpected_data=self.unexpected_data,
        )
        return out


# --- floods that keep N connections open -------------------------------------------------------
class Flood(Common):
    def __init__(self, args):
        super().__init__(args)
        self.open = {}  # slot -> connect time
        self.cuts = []  # dicts
        self.connects = 0
        self.send_errors = {}

    def status(self):
        t = now()
        ages = [t - c for c in self.open.values()]
        return {
            "t": round(t - self.t_start, 3),
            "open": len(self.open),
            "connects": self.connects,
            "cuts": len(self.cuts),
            "oldest_open_s": round(max(ages), 3) if ages else None,
            "connect_errors": self.connect_errors,
        }

    def summary(self, mode):
        t = now()
        ages = [t - c for c in self.open.values()]
        answers = {}
        how = {}
        for c in self.cuts:
            answers[c["answer"]] = answers.get(c["answer"], 0) + 1
            how[c["how"]] = how.get(c["how"], 0) + 1
        out = self.status()
        out.update(
            mode=mode,
            n=self.args.n,
            duration_s=round(t - self.t_start, 3),
            cut_since_first_byte_s=dist([c["since_first"] for c in self.cuts]),
            cut_since_last_byte_s=dist([c["since_last"] for c in self.cuts]),
            cut_bytes_sent=dist([c["sent"] for c in self.cuts]),
            answers=answers,
            cut_how=how,
            open_at_end=len(ages),
            open_age_at_end_s=dist(ages),
            send_errors=self.send_errors,
        )
        return out

    async def slot(self, i, first_delay):
        if first_delay:
            try:
                await asyncio.wait_for(self.stop.wait(), first_delay)
                return
            except asyncio.TimeoutError:
                pass
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(self.args.host, self.args.port)
            except Exception as e:  # noqa: BLE001
                self.count_connect_error(e)
                await asyncio.sleep(0.1)
                continue
            self.connects += 1
            self.open[i] = now()
            try:
                await self.one(i, reader, writer)
            finally:
                self.open.pop(i, None)
                writer.close()

    async def watch(self, reader, writer, t_first, t_last_ref, sent_ref, step):
        """Waits for the server to close the connection; calls step() every interval to send.

        Returns the cut record, or None when stopped first."""
        answer = "none"
        buf = b""
        while True:
            try:
                data = await asyncio.wait_for(reader.read(4096), self.interval_or_none())
            except asyncio.TimeoutError:
                if self.stop.is_set():
                    return None
                try:
                    step()
                except Exception as e:  # noqa: BLE001
                    k = err_name(e)
                    self.send_errors[k] = self.send_errors.get(k, 0) + 1
                continue
            except Exception as e:  # noqa: BLE001
                how = err_name(e)
                break
            if self.stop.is_set():
                return None
            if not data:
                how = "eof"
                break
            if answer == "none":
                buf += data
                if b"\r\n" in buf or len(buf) > 64:
                    first = buf.split(b"\r\n", 1)[0].decode("latin-1")
                    parts = first.split()
                    answer = parts[1] if len(parts) > 1 and parts[0].startswith("HTTP/") else "garbage"
        t = now()
        return {
            "since_first": t - t_first,
            "since_last": t - t_last_ref[0],
            "sent": sent_ref[0],
            "answer": answer,
            "how": how,
        }

    def interval_or_none(self):
        return None

    async def run_slots(self, mode, spread):
        for i in range(self.args.n):
            t = asyncio.ensure_future(self.slot(i, random.uniform(0, spread) if spread else 0))
            self.tasks.add(t)
        st = asyncio.ensure_future(self.status_loop())
        await self.stop.wait()
        out = self.summary(mode)  # before cancelling: the connections open at the end
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await st
        return out


class Slowloris(Flood):
    HEAD = b"GET /1k HTTP/1.1\r\nHost: flood\r\nX-Slow: " + b"a" * 100000

    def interval_or_none(self):
        return self.args.interval

    async def one(self, i, reader, writer):
        t_first = now()
        pos = [0]
        t_last = [t_first]
        sent = [0]

        def step():
            writer.write(self.HEAD[pos[0] % len(self.HEAD) : pos[0] % len(self.HEAD) + 1])
            pos[0] += 1
            sent[0] += 1
            t_last[0] = now()

        step()
        cut = await self.watch(reader, writer, t_first, t_last, sent, step)
        if cut:
            self.cuts.append(cut)

    async def run(self):
        return await self.run_slots("slowloris", self.args.interval)


class Stall(Flood):
    def interval_or_none(self):
        return 3600

    async def one(self, i, reader, writer):
        b = self.args.body
        head = (
            f"POST /post HTTP/1.1\r\nHost: flood\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {2 * b}\r\n\r\n"
        ).encode()
        t_first = now()
        try:
            writer.write(head + b"x" * b)
            await writer.drain()
        except Exception as e:  # noqa: BLE001
            k = err_name(e)
            self.send_errors[k] = self.send_errors.get(k, 0) + 1
        t_last = [now()]
        sent = [len(head) + b]
        cut = await self.watch(reader, writer, t_first, t_last, sent, lambda: None)
        if cut:
            self.cuts.append(cut)

    async def run(self):
        # Spread the first connections over a second, as a flood ramps up.
        return await self.run_slots("stall", 1.0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["idle", "slowloris", "stall"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--release", type=int, default=1000)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--body", type=int, default=32768)
    p.add_argument("--status")
    p.add_argument("--out")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def amain():
        cls = {"idle": Idle, "slowloris": Slowloris, "stall": Stall}[args.mode]
        c = cls(args)
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, c.stop.set)
        out = await c.run()
        write_json(args.status, out)
        if args.out:
            write_json(args.out, out)
        else:
            print(json.dumps(out))

    asyncio.run(amain())


if __name__ == "__main__":
    main()
