"""python manage.py simulate_call --to +15005550006 --say "..." --say "..." [--relay]."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test import Client
from django_scopes import scope

from calls.models import Call
from calls.transports.signatures import auth_token_for
from devtools.media_simulator import StreamTurn, run_stream
from devtools.simulator import RelayTurn, Step, TwilioSimulator, run_relay
from tenants.selectors import unscoped_phone_number_by_dialled


class Command(BaseCommand):
    help = "Play Twilio's part of a call against the webhooks, printing each turn with timings."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--to", required=True, help="The dialled number (E.164).")
        parser.add_argument("--from", dest="from_", default="+15551230000", help="The caller.")
        parser.add_argument("--say", action="append", default=[], help="What the caller says.")
        parser.add_argument(
            "--url",
            default="",
            help="Where the platform runs (default: PUBLIC_BASE_URL, else http://127.0.0.1:8000).",
        )
        parser.add_argument(
            "--in-process",
            action="store_true",
            help="Call the webhooks inside this process instead of over HTTP.",
        )
        parser.add_argument("--auth-token", default="", help="Twilio auth token to sign with.")
        parser.add_argument(
            "--relay",
            action="store_true",
            help="Relay mode: play ConversationRelay's WebSocket side (the assistant must be in "
            "relay mode); prints each turn with its time to first token.",
        )
        parser.add_argument(
            "--press",
            default="",
            help="Relay and stream mode: a keypad digit to press after speaking.",
        )
        parser.add_argument(
            "--stream",
            action="store_true",
            help="Stream mode: play Twilio's Media Streams side (each line spoken with espeak-ng, "
            "sent as mu-law frames in real time); prints each turn's voice-to-voice time.",
        )
        parser.add_argument(
            "--save-audio",
            default="",
            help="Stream mode: a folder to save the assistant's audio in, a WAV file per turn.",
        )
        parser.add_argument(
            "--fake-deepgram",
            default="",
            help="Stream mode: the URL of a running `manage.py fake_deepgram`, told the lines.",
        )

    def handle(self, *args, **options) -> None:
        number = unscoped_phone_number_by_dialled(options["to"])
        token = options["auth_token"] or auth_token_for(number.tenant if number else None)
        if options["stream"]:
            if options["in_process"]:
                raise CommandError("--stream needs a running server (no --in-process).")
            self._stream(options, token)
            self._print_stored_timings_for(options, number)
            return
        if options["relay"]:
            if options["in_process"]:
                raise CommandError("--relay needs a running server (no --in-process).")
            self._relay(options, token)
            self._print_stored_timings_for(options, number)
            return
        if options["in_process"]:
            client = Client(SERVER_NAME="localhost")

            def transport(url, data, headers):
                response = client.post(url, data=data, headers=headers, SERVER_NAME="localhost")
                return response.status_code, response.content, response.get("Content-Type", "")

            def fetch(url):
                response = client.get(url)
                body = (
                    b"".join(response.streaming_content) if response.streaming else response.content
                )
                return response.status_code, body

            simulator = TwilioSimulator(
                base_url="http://localhost", auth_token=token, transport=transport, fetch=fetch
            )
        else:
            base = options["url"] or settings.PUBLIC_BASE_URL or "http://127.0.0.1:8000"
            simulator = TwilioSimulator(base_url=base, auth_token=token)
        try:
            call = simulator.run(
                to=options["to"],
                from_=options["from_"],
                utterances=options["say"],
                on_step=self._print_step,
            )
        except Exception as exc:
            raise CommandError(f"could not reach the platform: {exc}") from exc
        finally:
            simulator.close()
        self.stdout.write(f"call {call.call_sid} ended (status callback: HTTP {call.status_code})")
        self._print_stored_timings(call.call_sid, number)

    @staticmethod
    def _live_call(play, options: dict, token: str, on_turn):
        """Play a relay or stream call against the server at `--url` (signed with `token`)."""
        base = options["url"] or settings.PUBLIC_BASE_URL or "http://127.0.0.1:8000"
        simulator = TwilioSimulator(base_url=base, auth_token=token)
        try:
            return play(
                simulator,
                to=options["to"],
                from_=options["from_"],
                utterances=options["say"],
                press=options["press"][:1],
                on_turn=on_turn,
            )
        except Exception as exc:
            raise CommandError(
                f"could not reach the platform: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            simulator.close()

    def _relay(self, options: dict, token: str) -> None:
        call = self._live_call(run_relay, options, token, self._print_relay_turn)
        self._call_sid = call.call_sid
        if call.press_ignored:
            self.stdout.write(f"keypad {options['press'][:1]}: no transfer (none configured?)")
        if call.refused:
            raise CommandError(f"call {call.call_sid}: {call.refused}")
        if call.handoff is not None:
            self.stdout.write(f"session ended by the platform: handoffData {call.handoff}")
        outcome = f"dial {call.dialled}" if call.dialled else "hang up"
        self.stdout.write(
            f"call {call.call_sid}: action URL HTTP {call.action_status} ({outcome}); "
            f"status callback HTTP {call.status_code}"
        )

    def _stream(self, options: dict, token: str) -> None:
        if options["fake_deepgram"]:
            control = options["fake_deepgram"].replace("ws://", "http://").rstrip("/")
            httpx.post(f"{control}/_fake/transcripts", json={"transcripts": options["say"]})
        call = self._live_call(run_stream, options, token, self._print_stream_turn)
        self._call_sid = call.call_sid
        if call.refused:
            raise CommandError(f"call {call.call_sid}: {call.refused}")
        if options["save_audio"]:
            self._save_audio(Path(options["save_audio"]), call.call_sid, call.turns)
        if call.closed_by_platform:
            said = " ".join(s.text for s in call.action_said if s.text)
            outcome = f"dial {call.dialled}" if call.dialled else f"say {said!r}, hang up"
            self.stdout.write(
                f"stream ended by the platform: action URL HTTP {call.action_status} ({outcome})"
            )
        self.stdout.write(f"call {call.call_sid}: status callback HTTP {call.status_code}")

    def _print_stream_turn(self, turn: StreamTurn) -> None:
        seconds = len(turn.audio) / 8000
        self.stdout.write(f"caller:    {turn.caller}")
        v2v = f"{turn.voice_to_voice_ms:.0f} ms" if turn.voice_to_voice_ms is not None else "-"
        self.stdout.write(
            f"assistant: [{seconds:.1f} s of audio, voice to voice {v2v}, {turn.marks} marks"
            f"{', cleared (barge-in)' if turn.cleared else ''}]"
        )

    def _save_audio(self, folder: Path, call_sid: str, turns: list[StreamTurn]) -> None:
        """The assistant's audio of each turn as a WAV file."""
        folder.mkdir(parents=True, exist_ok=True)
        for number, turn in enumerate(turns, start=1):
            path = folder / f"{call_sid}-turn{number}.wav"
            path.write_bytes(turn.wav())
            self.stdout.write(f"saved {path}")

    def _print_relay_turn(self, turn: RelayTurn) -> None:
        self.stdout.write(f"caller:    {turn.caller}")
        self.stdout.write(f"assistant: {turn.text}")
        first = f"{turn.first_token_ms:.0f} ms" if turn.first_token_ms is not None else "-"
        last = f"{turn.last_token_ms:.0f} ms" if turn.last_token_ms is not None else "-"
        self.stdout.write(
            f"           [first token {first}, last token {last}, {turn.frames} text frames]"
        )

    def _print_stored_timings_for(self, options: dict, number) -> None:
        if number is None or not getattr(self, "_call_sid", ""):
            return
        with scope(tenant=[number.tenant_id]):
            call = Call.objects.filter(call_sid=self._call_sid, tenant_id=number.tenant_id).first()
            if call is None:
                return
            self.stdout.write(f"stored: status={call.status} outcome={call.outcome or '-'}")
            for turn in call.turns.filter(role="assistant").order_by("sequence"):
                if call.mode == Call.Mode.STREAM:
                    self._print_stream_timings(turn)
                    continue
                self.stdout.write(
                    f"  turn {turn.sequence}: source={turn.source or '-'} "
                    f"first token sent {turn.response_sent_ms} ms, "
                    f"last token sent {turn.last_token_sent_ms} ms"
                    f"{', interrupted' if turn.interrupted else ''}"
                )
                self._print_tools(turn)

    def _print_stream_timings(self, turn) -> None:
        """Stream mode's stages, from the moment the caller stopped talking."""
        self.stdout.write(
            f"  turn {turn.sequence}: source={turn.source or '-'} "
            f"transcript final {turn.transcript_final_ms} ms, "
            f"LLM first token {turn.llm_first_token_ms} ms, first audio {turn.first_audio_ms} ms, "
            f"first audio sent {turn.response_sent_ms} ms, last audio sent {turn.last_token_sent_ms} ms"
            f"{', interrupted' if turn.interrupted else ''}"
        )

    def _print_step(self, step: Step) -> None:
        if step.caller:
            self.stdout.write(f"caller:    {step.caller}")
        if step.status != 200:
            self.stdout.write(self.style.ERROR(f"platform: HTTP {step.status}"))
            return
        played = sum(1 for s in step.said if s.kind == "play")
        fetch_ms = sum(s.fetch_ms for s in step.said)
        self.stdout.write(f"assistant: {step.assistant_text}")
        self.stdout.write(
            f"           [{step.response_ms:.0f} ms to TwiML; {played} played, "
            f"{len(step.said) - played} said; audio fetched in {fetch_ms:.0f} ms"
            f"{'; call ended' if step.ended else ''}]"
        )

    def _print_stored_timings(self, call_sid: str, number) -> None:
        if number is None:
            return
        with scope(tenant=[number.tenant_id]):
            call = Call.objects.filter(call_sid=call_sid, tenant_id=number.tenant_id).first()
            if call is None:
                return
            self.stdout.write(f"stored: status={call.status} outcome={call.outcome or '-'}")
            for turn in call.turns.filter(role="assistant").order_by("sequence"):
                self.stdout.write(
                    f"  turn {turn.sequence}: source={turn.source or '-'} "
                    f"first token {turn.llm_first_token_ms} ms, answer done {turn.llm_done_ms} ms, "
                    f"first audio {turn.first_audio_ms} ms, sent {turn.response_sent_ms} ms"
                    f"{', fallbacks ' + ','.join(turn.fallbacks) if turn.fallbacks else ''}"
                )
                self._print_tools(turn)

    def _print_tools(self, turn) -> None:
        """The tools the turn ran: name, arguments, status, time and what they answered."""
        for tool in turn.tool_calls:
            arguments = json.dumps(tool.get("arguments"))[:120]
            self.stdout.write(
                f"    tool {tool.get('name')}({arguments}) -> {tool.get('status')} "
                f"in {tool.get('ms')} ms: {str(tool.get('result', ''))[:120]}"
            )
