"""What detecting a caller's language costs: the models' load time and memory, and the time per
turn, with lingua's full models (the default) and its small ones (LANGUAGE_DETECTION_LOW_ACCURACY).

    .venv/bin/python bench/language_detection.py [--languages en,es] [--turns 2000]

Each mode runs in a fresh Python process, so that its memory is its own. Also prints how many
of a set of short, ambiguous turns each mode would wrongly switch on (none should).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SENTENCES = [
    "Quisiera reservar una cita para mañana por la tarde",
    "Can I book a cleaning for next week, please?",
    "Je voudrais prendre rendez-vous pour demain matin",
    "Können Sie mir bitte sagen, wann Sie geöffnet haben?",
    "Gostaria de marcar uma consulta para sexta-feira",
    "Vorrei prenotare un appuntamento per domani",
    "क्या आप कल सुबह आ सकते हैं?",
    "明日の午後に予約をお願いしたいのですが",
]
# Short turns that mix languages or are in none: a switch on any of them is a wrong one.
AMBIGUOUS = [
    "Bueno, okay, merci, danke",
    "Mañana, tomorrow, demain, morgen",
    "Taxi hotel restaurant",
    "Radio piano taxi",
    "Hello buenos días, I would like una cita por favor",
    "pizza taco sushi burrito",
]

MEASURE = """
import json, os, resource, statistics, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from calls import languages
tags, turns, sentences, ambiguous = json.loads(sys.argv[1])
config = {"language": tags[0], "other_languages": tags[1:]}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
languages.detect(sentences[0], config=config)
load = time.perf_counter() - started
times = []
for index in range(turns):
    started = time.perf_counter()
    languages.detect(sentences[index % len(sentences)], config=config)
    times.append(time.perf_counter() - started)
times.sort()
print(json.dumps({
    "load_s": load,
    "memory_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
    "p50_ms": statistics.median(times) * 1000,
    "p99_ms": times[int(len(times) * 0.99)] * 1000,
    "wrong_switches": sum(
        languages.spoken_in(text, languages.accepted(config)) not in (None, tags[0])
        for text in ambiguous
    ),
}))
"""


def run(mode: str, tags: list[str], turns: int) -> dict:
    env = {**os.environ, "LANGUAGE_DETECTION_LOW_ACCURACY": "true" if mode == "small" else "false"}
    env.setdefault("DATABASE_URL", "sqlite:///" + str(BASE_DIR / "var" / "bench-languages.db"))
    args = json.dumps([tags, turns, SENTENCES, AMBIGUOUS])
    output = subprocess.run(
        [sys.executable, "-c", MEASURE, args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default="en-US,es-ES,fr-FR,de-DE,pt-BR,it-IT,hi-IN,ja-JP")
    parser.add_argument("--turns", type=int, default=2000)
    options = parser.parse_args()
    tags = options.languages.split(",")
    print(
        f"language detection among {len(tags)} languages ({', '.join(tags)}), {options.turns} turns"
    )
    print(
        f"{'models':<8}{'load s':>8}{'memory MB':>11}{'p50 ms':>9}{'p99 ms':>9}{'wrong switches':>16}"
    )
    for mode in ("full", "small"):
        r = run(mode, tags, options.turns)
        print(
            f"{mode:<8}{r['load_s']:>8.2f}{r['memory_mb']:>11.0f}{r['p50_ms']:>9.3f}"
            f"{r['p99_ms']:>9.3f}{r['wrong_switches']:>10}/{len(AMBIGUOUS)}"
        )


if __name__ == "__main__":
    main()
