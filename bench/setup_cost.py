"""What one call's set-up costs the server, split: the voice webhook, then the socket.

    .venv/bin/python bench/setup_cost.py [--calls 300] [--rounds 2] [--in-flight 25]

One daphne process and a relay assistant (published as version 1). Each round sends `--calls`
signed `/twilio/voice` webhooks (`--in-flight` at a time) and notes the server's CPU, then opens
each call's ConversationRelay socket (signed handshake and `setup`, as `bench/relay.py` does) and
notes it again, two seconds after the last `setup` (the conversations' first reads). The sockets
are closed between rounds. The figures are server CPU (user + system) per call.

Needs PostgreSQL and Redis (see bench/harness.py); writes only to its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from harness import (
    machine,
    process_cpu_seconds,
    python_speed_ns,
    relay_server,
)


async def _rounds(*, base: str, pid: int, number: str, token: str, args) -> list[tuple]:
    import httpx
    from relay import open_socket, voice_webhook

    gate = asyncio.Semaphore(args.in_flight)
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def webhook() -> tuple[str, str, dict]:
            async with gate:
                return await voice_webhook(base, token, number, http)

        async def socket(call: tuple[str, str, dict]):
            async with gate:
                return await open_socket(*call, token=token)

        await asyncio.gather(*(webhook() for _ in range(25)))  # warm-up
        results = []
        for _ in range(args.rounds):
            time.sleep(1)
            before = process_cpu_seconds(pid)
            calls = await asyncio.gather(*(webhook() for _ in range(args.calls)))
            after_webhooks = process_cpu_seconds(pid)
            sockets = await asyncio.gather(*(socket(call) for call in calls))
            await asyncio.sleep(2)
            after_sockets = process_cpu_seconds(pid)
            results.append(
                (
                    (after_webhooks - before) * 1000 / args.calls,
                    (after_sockets - after_webhooks) * 1000 / args.calls,
                )
            )
            await asyncio.gather(*(opened.close() for opened in sockets))
            await asyncio.sleep(3)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=25)
    args = parser.parse_args()
    speed = python_speed_ns()
    with relay_server() as (base, pid, number, token):
        results = asyncio.run(_rounds(base=base, pid=pid, number=number, token=token, args=args))
    print(f"{machine()}; Python speed check {speed:.0f} ns per iteration")
    print("| round | server CPU ms per voice webhook | per socket (handshake, setup) | per call |")
    print("|---|---|---|---|")
    for index, (webhook, socket) in enumerate(results, 1):
        print(f"| {index} | {webhook:.1f} | {socket:.1f} | {webhook + socket:.1f} |")


if __name__ == "__main__":
    main()
