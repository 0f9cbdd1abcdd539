"""Used by scripts/scale.sh: opens N keep-alive connections to HOST:PORT, sends one GET PATH on
each and reads the response, then holds them all open and idle for SECONDS, then closes them.
Prints "K of N answered 200" at the end of the hold. SEQ=1 opens them one after the other (each
answered before the next opens) instead of 200 at a time.

    python3 scripts/idle-clients.py HOST PORT PATH N SECONDS
"""
import asyncio, sys

async def one(host, port, path, ok, hold):
    try:
        r, w = await asyncio.open_connection(host, port)
        w.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        if b" 200 " in head.split(b"\r\n")[0]:
            ok.append(1)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await r.readexactly(length)
        await hold.wait()
        w.close()
    except Exception as e:
        print("error", e, file=sys.stderr)

async def main():
    host, port, path, n, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    ok, hold = [], asyncio.Event()
    tasks = []
    import os
    seq = os.environ.get("SEQ") == "1"
    for i in range(n):
        tasks.append(asyncio.create_task(one(host, port, path, ok, hold)))
        if seq:
            while len(ok) < i + 1 and not tasks[-1].done():
                await asyncio.sleep(0)
        elif i % 200 == 199:
            await asyncio.sleep(0.02)
    await asyncio.sleep(secs)
    print(f"{len(ok)} of {n} answered 200", flush=True)
    hold.set()
    await asyncio.gather(*tasks)

asyncio.run(main())
