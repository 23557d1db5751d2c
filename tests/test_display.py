"""Unit tests of labsupport.display: markdown in Jupyter, plain text elsewhere, labelled icons, warnings.

``capture_jupyter`` and ``assert_every_icon_has_a_word`` are shared with the tests of the
modules that show things through display (checking, progress, doctor).
"""

from __future__ import annotations

import re
import unicodedata

import IPython
import IPython.display
import pytest

from labsupport import display


class ZMQInteractiveShell:
    """Stands in for the kernel's shell: display only looks at the class name."""


class TerminalInteractiveShell:
    """Stands in for the IPython console, which shows plain text."""


def capture_jupyter(monkeypatch) -> list[dict]:
    """Pretend to run in a Jupyter kernel; return the list that collects every published bundle."""
    published: list[dict] = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: ZMQInteractiveShell())
    monkeypatch.setattr(IPython.display, "display", lambda bundle, raw: published.append(bundle))
    return published


def find_icons(text: str) -> list[tuple[int, str]]:
    """Every pictograph in ``text``: Unicode 'other symbols' from U+2300 on (✅ ⬜ ⚠️ ❌ 💡 …)."""
    return [(position, char) for position, char in enumerate(text)
            if ord(char) >= 0x2300 and unicodedata.category(char) == "So"]


def assert_every_icon_has_a_word(text: str) -> None:
    """Fail unless every icon in ``text`` is followed by a space and a word (bold or not)."""
    icons = find_icons(text)
    assert icons, f"no icon in {text!r}: this assertion would prove nothing"
    for position, icon in icons:
        after = text[position + 1:].lstrip("\ufe0f")
        assert re.match(r" (\*\*)?[^\W\d_]", after), f"{icon!r} has no word beside it: {text[position:][:40]!r}"


def test_show_prints_the_plain_text_outside_jupyter(capsys):
    display.show("**bold** markdown", "plain text")
    assert capsys.readouterr().out == "plain text\n"


def test_show_publishes_markdown_with_a_plain_fallback_in_a_jupyter_kernel(monkeypatch, capsys):
    published = capture_jupyter(monkeypatch)
    display.show("**bold** markdown", "plain text")
    assert published == [{"text/markdown": "**bold** markdown", "text/plain": "plain text"}]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("shell, expected", [(None, False), (TerminalInteractiveShell(), False),
                                             (ZMQInteractiveShell(), True)])
def test_only_a_jupyter_kernel_counts_as_jupyter(monkeypatch, shell, expected):
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    assert display.in_jupyter() is expected


def test_a_warning_is_one_plain_line_on_stderr(capsys):
    display.warn("something went wrong\nand this is why")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "labsupport: warning: something went wrong and this is why\n"


@pytest.mark.parametrize("table", [display.CHECK_LABELS, display.DOCTOR_LABELS, display.CHECKLIST_LABELS],
                         ids=["check", "doctor", "checklist"])
def test_every_status_label_has_an_icon_and_a_word(table):
    for label in table.values():
        assert len(find_icons(label.icon)) == 1
        assert re.fullmatch(r"[A-Za-z][A-Za-z ]*", label.word)
        assert_every_icon_has_a_word(str(label))


def test_the_icon_check_catches_an_icon_standing_alone():
    with pytest.raises(AssertionError, match="no word beside it"):
        assert_every_icon_has_a_word("| ✅ | item |")
    with pytest.raises(AssertionError, match="no word beside it"):
        assert_every_icon_has_a_word("| ⚠️ | item |")
