"""The floor under a call's set-up and under an answer: what daphne, Django, Channels and the
LLM client cost on their own, beside what the platform costs, in one server process and one run.

    .venv/bin/python bench/floor.py [--calls 300] [--rounds 3] [--in-flight 25] [--sessions 100]

The server is `bench/floor_app.py`: the platform's application, plus a voice webhook that reads
the form and answers a fixed TwiML behind the same middleware and handler, and a socket that
accepts and parses its frames. Each round sends `--calls` signed voice webhooks to the real
route and to the empty one, then opens as many sockets on each (the signed handshake and
`setup`, as `bench/relay.py` does), the server's CPU noted once it is quiet after each step.
The figures are server CPU (user + system) per call; "ours" is the platform's set-up less the
floor.

Then the answers: `--sessions` relay sessions of the platform, as many sockets that answer from
the LLM with nothing of the platform around it (the same LLM client and read pace, a text frame
per piece), and as many that send a fixed answer in seven frames without the LLM. Each round,
every session asks one question (`--in-flight` at a time), the server's CPU noted once it is
quiet; the Groq stand-in answers as in `bench/run.py` (150 ms to the first token, 280 tokens/s,
~60 tokens).

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


async def _answer_rounds(*, base: str, pid: int, number: str, token: str, args) -> dict:
    import httpx
    import websockets
    from relay import RelayStats, _ask, open_socket, voice_webhook

    gate = asyncio.Semaphore(args.in_flight)
    stats = RelayStats()
    figures: dict[str, list[float]] = {"platform": [], "llm": [], "frames": []}
    sockets_of: dict[str, list] = {}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as http:

        async def platform_socket():
            async with gate:
                call = await voice_webhook(base, token, number, http)
                return await open_socket(*call, token=token)

        async def floor_socket(route: str):
            async with gate:
                url = base.replace("http", "ws", 1) + f"/floor/{route}"
                return await websockets.connect(url, open_timeout=60, ping_interval=None)

        async def ask_all(sockets: list, question: str) -> None:
            async def ask(index: int, socket) -> None:
                async with gate:
                    await _ask(socket, f"{question} {index}: my boiler?", stats, 60)

            await asyncio.gather(*(ask(index, socket) for index, socket in enumerate(sockets)))

        sessions = range(args.sessions)
        sockets_of["platform"] = await asyncio.gather(*(platform_socket() for _ in sessions))
        sockets_of["llm"] = await asyncio.gather(*(floor_socket("answer") for _ in sessions))
        sockets_of["frames"] = await asyncio.gather(*(floor_socket("frames") for _ in sessions))
        for sockets in sockets_of.values():
            await ask_all(sockets, "Warm-up")
        for round_ in range(args.rounds):
            for name, sockets in sockets_of.items():
                before = _quiet(pid)
                await ask_all(sockets, f"Round {round_}")
                figures[name].append((_quiet(pid) - before) * 1000 / len(sockets))
        for sockets in sockets_of.values():
            await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
    if stats.errors:
        raise SystemExit(f"{len(stats.errors)} answers failed: {stats.errors[:3]}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=25)
    parser.add_argument("--sessions", type=int, default=100, help="sessions asking, per kind")
    args = parser.parse_args()
    speed = python_speed_ns()
    with relay_server("bench.floor_app:application") as (base, pid, number, token):
        where = {"base": base, "pid": pid, "number": number, "token": token, "args": args}
        figures = asyncio.run(_rounds(**where))
        answers = asyncio.run(_answer_rounds(**where))
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
    print()
    print(
        f"Server CPU ms per answer, {args.sessions} sessions of each kind, each asking once a "
        f"round, {args.in_flight} in flight:"
    )
    print("| | CPU ms per answer |")
    print("|---|---|")
    for label, key in (
        ("the platform (relay session)", "platform"),
        ("the floor: daphne, Channels and the LLM client, a frame per piece read", "llm"),
        ("daphne and Channels alone: a fixed answer in seven frames", "frames"),
    ):
        rounds = " / ".join(f"{value:.2f}" for value in answers[key])
        print(f"| {label} ({rounds}) | {statistics.fmean(answers[key]):.2f} |")
    own = statistics.fmean(answers["platform"]) - statistics.fmean(answers["llm"])
    print(f"| the platform's own work | {own:.2f} |")


if __name__ == "__main__":
    main()
