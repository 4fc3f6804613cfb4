"""The floor under a call's set-up: what daphne, Django and Channels cost on their own, beside
what the platform's set-up costs, in one server process and one run.

    .venv/bin/python bench/floor.py [--calls 300] [--rounds 3] [--in-flight 25]

The server is `bench/floor_app.py`: the platform's application, plus a voice webhook that reads
the form and answers a fixed TwiML behind the same middleware and handler, and a socket that
accepts and parses its frames. Each round sends `--calls` signed voice webhooks to the real
route and to the empty one, then opens as many sockets on each (the signed handshake and
`setup`, as `bench/relay.py` does), the server's CPU noted once it is quiet after each step.
The figures are server CPU (user + system) per call; "ours" is the platform's set-up less the
floor.

Needs PostgreSQL and Redis (see bench/harness.py); writes only to its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from harness import (
    machine,
    process_cpu_seconds,
    python_speed_ns,
    relay_server,
)


def _quiet(pid: int) -> float:
    """The server's CPU seconds once it has done nothing for half a second."""
    while True:
        before = process_cpu_seconds(pid)
        time.sleep(0.5)
        after = process_cpu_seconds(pid)
        if after - before < 0.01:
            return after


async def _rounds(*, base: str, pid: int, number: str, token: str, args) -> dict[str, list]:
    import httpx
    from relay import open_socket, voice_webhook

    from calls.transports.signatures import sign

    gate = asyncio.Semaphore(args.in_flight)
    figures: dict[str, list[float]] = {"webhook": [], "socket": [], "floor webhook": []}
    figures["floor socket"] = []

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as http:

        async def webhook() -> tuple[str, str, dict]:
            async with gate:
                return await voice_webhook(base, token, number, http)

        async def floor_webhook() -> None:
            async with gate:
                # The same signed form as the real webhook (voice_webhook), to the empty view.
                url = base + "/floor/voice"
                params = {"CallSid": "CA" + "0" * 32, "From": "+15550000000", "To": number}
                signature = sign(url=url, params=params, auth_token=token)
                response = await http.post(
                    url, data=params, headers={"X-Twilio-Signature": signature}
                )
                response.raise_for_status()

        async def socket(call: tuple[str, str, dict]):
            async with gate:
                return await open_socket(*call, token=token)

        async def measure(name: str, work) -> list:
            before = _quiet(pid)
            results = await work
            figures[name].append((_quiet(pid) - before) * 1000 / args.calls)
            return results

        await asyncio.gather(*(webhook() for _ in range(25)))  # warm-up
        await asyncio.gather(*(floor_webhook() for _ in range(25)))
        for _ in range(args.rounds):
            calls = await measure(
                "webhook", asyncio.gather(*(webhook() for _ in range(args.calls)))
            )
            await measure(
                "floor webhook", asyncio.gather(*(floor_webhook() for _ in range(args.calls)))
            )
            sockets = await measure("socket", asyncio.gather(*(socket(call) for call in calls)))
            floor_url = base.replace("http", "ws", 1) + "/floor/socket"
            floors = await measure(
                "floor socket",
                asyncio.gather(
                    *(
                        socket((call_sid, floor_url, parameters))
                        for call_sid, _, parameters in calls
                    )
                ),
            )
            await asyncio.gather(*(opened.close() for opened in sockets + floors))
            _quiet(pid)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=25)
    args = parser.parse_args()
    speed = python_speed_ns()
    with relay_server("bench.floor_app:application") as (base, pid, number, token):
        figures = asyncio.run(_rounds(base=base, pid=pid, number=number, token=token, args=args))
    mean = {name: statistics.fmean(values) for name, values in figures.items()}
    print(f"{machine()}; Python speed check {speed:.0f} ns per iteration")
    print(f"Server CPU ms per call, {args.calls} calls a round, {args.in_flight} in flight:")
    print("| | voice webhook | socket (handshake, setup) | set-up |")
    print("|---|---|---|---|")
    for label, key in (("the platform", ""), ("the floor (empty view, empty consumer)", "floor ")):
        pairs = zip(figures[key + "webhook"], figures[key + "socket"], strict=True)
        rounds = " / ".join(f"{webhook:.1f}+{socket:.1f}" for webhook, socket in pairs)
        print(
            f"| {label} ({rounds}) | {mean[key + 'webhook']:.1f} | {mean[key + 'socket']:.1f} | "
            f"{mean[key + 'webhook'] + mean[key + 'socket']:.1f} |"
        )
    ours = (
        mean["webhook"] - mean["floor webhook"],
        mean["socket"] - mean["floor socket"],
    )
    print(f"| the platform's own work | {ours[0]:.1f} | {ours[1]:.1f} | {sum(ours):.1f} |")


if __name__ == "__main__":
    main()
