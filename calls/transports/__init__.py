"""Transports: thin adapters between a protocol and the conversation engine (`calls.engine`).

- `webhooks`: Twilio's call webhooks (`/twilio/voice`, `/twilio/status`, `/twilio/relay-action`,
  `/twilio/stream-action`, `/twilio/fallback`): admission, TwiML, the call's end. `twilio` is the one way into a call for
  every webhook (signature, call, tenant scope, log context).
- `gather`: `/twilio/gather`, the caller's words from Twilio's speech recognition, answered with
  TwiML whose sentences play as audio made by the speech workers.
- `relay`: `/twilio/relay`, Twilio ConversationRelay over a WebSocket: text streamed both ways.
- `media`: `/twilio/media`, Twilio Media Streams: audio both ways, with the platform's own
  recognition, turn-taking, barge-in and streaming voice; `media_speaker` speaks its answers
  (paced audio frames, a mark per sentence, `clear`).
- `talk`: `/ws/assistants/<id>/talk/`, the browser page that talks to an assistant.
- `sockets`: what the WebSocket transports share (frame checks, streaming text out).
"""
