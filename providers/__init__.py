"""Outside services the platform talks to, one package per kind, one module per provider.

- `providers.llm`: language models (Groq), with the one retry / fallback / deadline policy.
- `providers.speech`: speech synthesis engines (gTTS, espeak-ng, Twilio's voice).

Each kind has a small base class, a typed error that says whether a retry can help, and a registry
by name with lazy imports. Nothing here imports an app of the project.
"""
