"""Cutting an LLM stream into sentences that can be spoken one by one."""

from __future__ import annotations

import pytest

from calls.sentences import SentenceSplitter, split_sentences


def _stream(text: str, size: int) -> tuple[list[list[str]], list[str]]:
    """Feed `text` in `size`-character deltas; return what each feed gave and the flush."""
    splitter = SentenceSplitter()
    fed = [splitter.feed(text[i : i + size]) for i in range(0, len(text), size)]
    return fed, splitter.flush()


def test_a_sentence_comes_out_as_soon_as_the_next_one_starts():
    splitter = SentenceSplitter()
    assert splitter.feed("We are open until six") == []
    assert splitter.feed(" tonight.") == []  # the end might still be "6.30"
    assert splitter.feed(" Can I") == ["We are open until six tonight."]
    assert splitter.flush() == ["Can I"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_the_sentences_do_not_depend_on_how_the_stream_is_cut(size):
    text = "Hello there, how are you? I can book you in at 3.30 p.m. tomorrow. Is that ok! Great"
    fed, rest = _stream(text, size)
    assert [s for batch in fed for s in batch] + rest == [
        "Hello there, how are you?",
        "I can book you in at 3.30 p.m. tomorrow.",
        "Is that ok! Great",
    ]


def test_abbreviations_and_initials_do_not_end_a_sentence():
    assert split_sentences("Dr. Smith and Mrs. J. Jones see you e.g. on Monday. Bye for now.") == [
        "Dr. Smith and Mrs. J. Jones see you e.g. on Monday.",
        "Bye for now.",
    ]


def test_very_short_sentences_wait_for_the_next_one():
    assert split_sentences("Sure. I can do that for you. OK.") == [
        "Sure. I can do that for you.",
        "OK.",
    ]


def test_quotes_and_brackets_stay_with_their_sentence():
    assert split_sentences(
        'He said "we are closed." Then he left (for good.) The end is here.'
    ) == [
        'He said "we are closed."',
        "Then he left (for good.)",
        "The end is here.",
    ]


def test_cjk_full_stops_end_a_sentence_without_a_space():
    assert split_sentences("営業時間は九時から五時までです。ご予約はお電話でどうぞ！") == [
        "営業時間は九時から五時までです。",
        "ご予約はお電話でどうぞ！",
    ]


def test_ellipses_and_runs_of_marks_end_once():
    assert split_sentences("Well... let me check that for you!!! Right away?") == [
        "Well... let me check that for you!!!",
        "Right away?",
    ]


def test_nothing_in_nothing_out():
    assert split_sentences("") == []
    assert split_sentences("   \n ") == []
    assert SentenceSplitter().flush() == []
