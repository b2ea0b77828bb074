"""One-line, printable renderings of foreign error messages (torch's unpickler, load_state_dict)."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
#: How torch's weights-only unpickler words a refusal, with the refused name as group 1.
_REFUSED_PATTERNS = (
    re.compile(r"GLOBAL (\S+) was not an allowed global"),
    re.compile(r"unsupported GLOBAL (\S+) whose module"),
    re.compile(r"Unsupported (?:global|class):? (?:GLOBAL )?(\S+)"),
    re.compile(r"(?:allowlisted|add_safe_globals)[^<]*but got <class '([^']+)'>"),
    re.compile(r"unrecognized function <(?:built-in )?(?:function|method) (\S+?)[ >]"),
    re.compile(r"unrecognized function (\S+)"),
)


def printable(text: str, limit: int = 100) -> str:
    """``text`` without ANSI escapes or control characters, at most ``limit`` characters."""
    text = _ANSI.sub("", text)
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def refused_global(message: str) -> str | None:
    """The global a weights-only load refused, named from torch's message, or None.

    torch words the refusal differently across releases (and wraps it in advice with ANSI
    bold codes); every wording names the global, so the name is searched for, not the layout.
    """
    if "Weights only load failed" not in message and "WeightsUnpickler" not in message:
        return None
    clean = _ANSI.sub("", message)
    for pattern in _REFUSED_PATTERNS:
        match = pattern.search(clean)
        if match:
            name = match.group(1).rstrip(".,;:'\"`")
            return f"the Python global '{printable(name)}'"
    return None


def first_sentence(message: str) -> str:
    """The first sentence of an exception message on one line, without ANSI escapes.

    Cut at a sentence end or a paragraph break, never mid-sentence; torch's advice before
    ``WeightsUnpickler error:`` and after the reason's paragraph is dropped, so the sentence is
    the reason itself.
    """
    message = _ANSI.sub("", message)
    if "WeightsUnpickler error:" in message:  # torch's advice comes first, the reason after it
        message = message.split("WeightsUnpickler error:", 1)[1]
    # The first paragraph: torch ends a reason without a full stop, then adds advice after a
    # blank line ("Unsupported operand 123\n\nCheck the documentation of torch.load ...").
    paragraphs = [p for p in re.split(r"\n\s*\n", message) if p.strip()]
    message = paragraphs[0] if paragraphs else message
    text = " ".join(message.split())
    text = printable(text, limit=len(text) + 1)
    match = re.search(r"(?<=[.!?])\s", text)
    sentence = text[: match.start()] if match else text
    return sentence.rstrip(".")


def exception_reason(exc: BaseException) -> str:
    """``exc`` as one sentence, with its type where the message alone says nothing."""
    sentence = first_sentence(str(exc))
    if not any(c.isalpha() for c in sentence):
        sentence = f"{type(exc).__name__} {sentence}".strip()
    return sentence



def keys_shown(keys: list[str], limit: int = 4) -> str:
    """Up to ``limit`` printable keys, then how many more."""
    shown = ", ".join(printable(k, 60) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
