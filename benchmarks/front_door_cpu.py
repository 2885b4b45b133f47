"""The front door's own CPU per completion request, against a stub Serve that answers at once.

`serving.py` measures the front door beside a real vLLM engine, where every
process contends for the same cores; this isolates what one request costs the
front door process itself. A stub upstream (its own uvicorn process) answers
`/llm/v1/chat/completions` with a fixed 64-token completion, streamed as 64
events plus the usage chunk or whole; the front door is the farm's control
plane in its own uvicorn process (SQLite, rate limits off), started by
`serving.py`'s own code. The client sends `--requests` chat completions from `--clients`
concurrent connections after 200 untimed ones; the figure is the front door
process's CPU seconds (user + system, from /proc) over the timed requests.

    .venv/bin/python benchmarks/front_door_cpu.py [--requests 2000] [--clients 8,32] [--py-spy FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving import _free_port, _start_front_door  # noqa: E402  (benchmarks/, the script's own folder: the same front door process)

MODEL = "tiny-llama"
TOKENS = 64

STUB = r'''
import json, sys, uvicorn
usage = {"prompt_tokens": 10, "completion_tokens": %(tokens)d, "total_tokens": %(total)d}
whole = json.dumps({"id": "cmpl-1", "object": "chat.completion", "created": 1, "model": "%(model)s",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "x " * %(tokens)d}, "finish_reason": "length"}],
                    "usage": usage}).encode()
def event(data): return b"data: " + json.dumps(data).encode() + b"\n\n"
delta = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "%(model)s",
         "choices": [{"index": 0, "delta": {"content": "x "}, "finish_reason": None}]}
events = [event(delta)] * %(tokens)d + [event({**delta, "choices": [], "usage": usage}), b"data: [DONE]\n\n"]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    streamed = json.loads(body or b"{}").get("stream", False)
    kind = b"text/event-stream" if streamed else b"application/json"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
    for chunk in (events if streamed else [whole]):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
''' % {"tokens": TOKENS, "total": TOKENS + 10, "model": MODEL}

def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


async def _load(base: str, key: str, requests: int, clients: int, streamed: bool) -> None:
    import httpx

    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": TOKENS, "stream": streamed}
    slots = asyncio.Semaphore(clients)
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=limits) as client:
        async def one() -> None:
            async with slots:
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        raise SystemExit(f"front door answered {r.status_code}: {(await r.aread())[:300]!r}")
                    async for _ in r.aiter_bytes():
                        pass

        await asyncio.gather(*(one() for _ in range(requests)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", default="8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--py-spy", type=Path, help="also record the front door under py-spy (raw format) in the last cell")
    args = parser.parse_args()

    import yaml

    from farm.accounts import create_org, issue_key
    from farm.db import Database, Role
    from farm.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="farm-door-cpu-"))
    registry = work / "models.yaml"
    registry.write_text(yaml.safe_dump({"models": [{"name": MODEL, "kind": "llm", "source": str(work)}]}))
    stub_port = _free_port()
    stub = subprocess.Popen([sys.executable, "-c", STUB, str(stub_port)])
    settings = Settings(home=work / "home", api={"port": _free_port()}, models={"registry_file": registry},
                        dispatch={"enabled": False}, serve={"url": f"http://127.0.0.1:{stub_port}", "rate_limit_rps": 0})
    settings.home.mkdir(parents=True)
    db = Database(settings.db.url)
    db.upgrade()
    with db.session() as s:
        _, key = issue_key(s, create_org(s, "bench").id, "bench", Role.member)
        s.commit()
    db.dispose()
    door = _start_front_door(settings, work)
    cells = [(int(c), streamed) for c in args.clients.split(",") for streamed in (False, True)]
    print(f"front door CPU per request, {TOKENS}-token chat completions from a stub Serve, {args.requests} requests a cell")
    try:
        _wait(f"http://127.0.0.1:{stub_port}/")
        for n, (clients, streamed) in enumerate(cells):
            asyncio.run(_load(settings.base_url, key, 200, clients, streamed))
            spy = None
            if args.py_spy and n == len(cells) - 1:
                spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(door.pid), "--rate", "200",
                                        "--format", "raw", "-o", str(args.py_spy), "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cpu0, t0 = _cpu_s(door.pid), time.perf_counter()
            asyncio.run(_load(settings.base_url, key, args.requests, clients, streamed))
            cpu1, t1 = _cpu_s(door.pid), time.perf_counter()
            if spy is not None:
                spy.send_signal(2)  # py-spy writes its file on SIGINT
                spy.wait(60)
            label = f"{clients:>3} clients, {'streamed' if streamed else 'not streamed':<12}"
            print(f"  {label}  {1000 * (cpu1 - cpu0) / args.requests:5.2f} ms CPU a request   "
                  f"{args.requests / (t1 - t0):6.0f} requests/s")
    finally:
        door.terminate()
        stub.terminate()
        door.wait(30)
        stub.wait(30)


if __name__ == "__main__":
    main()
