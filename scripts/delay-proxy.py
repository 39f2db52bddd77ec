#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that delays every chunk by a fixed time in each direction.

    python3 scripts/delay-proxy.py LISTEN_PORT TARGET_HOST:PORT DELAY_MS

It puts a slow network between J4's processes and Redis (a round trip of 2 x DELAY_MS more),
for tests and the fault nemesis. LISTEN_PORT 0 picks a free port; the first line on stdout
says which ("listening on 127.0.0.1:PORT"). Order is kept per direction: each chunk is
sent DELAY_MS after it arrived. The delay can be changed while it runs: write a number of
ms to the file named by the environment variable DELAY_FILE (read every 100 ms).
"""
import asyncio
import os
import sys
import time


class Delay:
    def __init__(self, ms):
        self.ms = ms
        self.path = os.environ.get("DELAY_FILE")

    async def watch(self):
        while self.path:
            try:
                with open(self.path) as f:
                    self.ms = float(f.read().strip() or self.ms)
            except (OSError, ValueError):
                pass
            await asyncio.sleep(0.1)


async def pipe(reader, writer, delay):
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((time.monotonic() + delay.ms / 1000, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


async def main():
    if len(sys.argv) != 4:
        sys.exit("usage: delay-proxy.py LISTEN_PORT TARGET_HOST:PORT DELAY_MS")
    listen_port = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    delay = Delay(float(sys.argv[3]))

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer, delay), pipe(server_reader, client_writer, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    asyncio.create_task(delay.watch())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
