"""Fixtures for driving the Twilio webhooks like Twilio does (signed form posts)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from django.conf import settings
from django.test import Client

from calls.transports.signatures import sign


@dataclass
class TwiML:
    status: int
    body: bytes

    @property
    def root(self) -> ET.Element:
        return ET.fromstring(self.body)

    def texts(self, tag: str) -> list[str]:
        return [(e.text or "").strip() for e in self.root.iter(tag)]

    def has(self, tag: str) -> bool:
        return any(True for _ in self.root.iter(tag))

    @property
    def said(self) -> str:
        return " ".join(self.texts("Say"))


class FakeTwilio:
    """Signs and posts webhook requests as Twilio would, for one call at a time."""

    def __init__(self, client: Client, *, base_url: str = "http://testserver") -> None:
        self.client = client
        self.base_url = base_url
        self.auth_token = settings.TWILIO_AUTH_TOKEN

    def params(self, call_sid: str, *, to: str, from_: str = "+15551230000", **extra: str) -> dict:
        return {
            "CallSid": call_sid,
            "AccountSid": "AC" + "1" * 32,
            "From": from_,
            "To": to,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **extra,
        }

    def post(
        self,
        path: str,
        params: dict,
        *,
        auth_token: str | None = None,
        signature: str | None = None,
        signed_url: str | None = None,
        **headers: str,
    ) -> TwiML:
        url = signed_url or self.base_url + path
        if signature is None:
            signature = sign(url=url, params=params, auth_token=auth_token or self.auth_token)
        response = self.client.post(
            path, params, headers={"X-Twilio-Signature": signature, **headers}
        )
        return TwiML(status=response.status_code, body=response.content)

    def new_sid(self) -> str:
        return "CA" + uuid.uuid4().hex

    def voice(
        self, to: str, *, call_sid: str | None = None, from_: str = "+15551230000", **kw
    ) -> tuple[str, TwiML]:
        call_sid = call_sid or self.new_sid()
        params = self.params(call_sid, to=to, from_=from_, CallStatus="ringing")
        return call_sid, self.post("/twilio/voice", params, **kw)

    def gather(self, call_sid: str, to: str, speech: str | None, **kw) -> TwiML:
        extra = {"CallStatus": "in-progress"}
        if speech is not None:
            extra.update(SpeechResult=speech, Confidence="0.91")
        return self.post("/twilio/gather", self.params(call_sid, to=to, **extra), **kw)

    def status(
        self, call_sid: str, to: str, status: str, *, sequence: int, duration: int = 0, **kw
    ) -> TwiML:
        params = self.params(
            call_sid,
            to=to,
            CallStatus=status,
            SequenceNumber=str(sequence),
            CallDuration=str(duration),
            CallbackSource="call-progress-events",
        )
        return self.post("/twilio/status", params, **kw)


from calls.tests.tool_fixtures import tools_a, tools_b  # noqa: E402, F401  (fixtures)
