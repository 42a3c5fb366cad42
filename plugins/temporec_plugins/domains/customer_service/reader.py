"""Customer-service data: conversations so far, and the replies (FAQ answers, reply
templates) that are right for the next agent turn.

A conversation's turns are events: a user turn is ``Event("", "user", time, text)``, an
agent turn ``Event("", "agent", time, text)``, or ``Event(template_id, "agent")`` when the
agent sent a catalog reply. Each conversation names the replies that are right next (one
or more). Three layouts are read, each split into train / valid / test:

    StackFAQ    ``stackExchange-FAQ.json``: threads of paraphrased queries (``rephr``),
                the original question and its answers. Items are the answers (text
                "question answer"), a query's right replies are its thread's answers.
                Queries split by position within their thread: 0, 5, 10... test,
                1, 6, 11... valid, the rest train.
    BANKING77   ``train.csv`` and ``test.csv`` (``text,category``), ``categories.json``:
                one reply template per intent (its text is the intent's name, e.g.
                "card arrival"); every 10th training row is held out for validation.
    generic     ``conversations.jsonl`` with ``replies.csv|jsonl`` (item_id, text) beside
                it. One object per line: {"id", "turns": [{"role": "user"|"agent",
                "text", "item_id", "timestamp"}], "replies": [item ids], "split":
                "train"|"valid"|"test" (optional: by position as for StackFAQ)}
                (``items.csv|jsonl`` is accepted for the replies file too).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from temporec import Catalog, Event, allowed
from temporec.data import (
    SPLITS,
    Conversation,
    ConversationData,
    DataError,
    at,
    json_objects,
    parse_timestamp,
    read_items,
    require_file,
)

ROLES = ("user", "agent")
STACKFAQ_FILE = "stackExchange-FAQ.json"
PLACEHOLDER = "*"  # StackFAQ marks a missing paraphrase with it


def split_by_position(position: int) -> str:
    """0, 5, 10, ... test; 1, 6, 11, ... valid; the rest train."""
    return {0: "test", 1: "valid"}.get(position % 5, "train")


def load_conversation_data(path: str | Path) -> ConversationData:
    """Read any of the layouts above, from its directory or one of its files."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if (directory / STACKFAQ_FILE).is_file():
        return load_stackfaq(directory / STACKFAQ_FILE)
    if (directory / "categories.json").is_file() and (directory / "train.csv").is_file():
        return load_banking77(directory)
    if (directory / "conversations.jsonl").is_file():
        return load_conversations(directory / "conversations.jsonl")
    raise DataError(
        f"{path}: not customer-service data; expected {STACKFAQ_FILE}, BANKING77's categories.json + "
        "train.csv + test.csv, or conversations.jsonl with replies.csv|jsonl"
    )


def _data(name: str, catalog: Catalog, conversations: list[tuple[str, Conversation]]) -> ConversationData:
    parts = {split: [c for s, c in conversations if s == split] for split in SPLITS}
    return ConversationData(name, catalog, parts["train"], parts["valid"], parts["test"])


def _texts(value) -> list[str]:
    """A JSON string or list of strings as stripped, non-empty strings (nulls dropped)."""
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


def load_stackfaq(path: str | Path) -> ConversationData:
    """StackFAQ: every thread's answers are items; each paraphrased query a conversation."""
    path = Path(path)
    try:
        threads = json.loads(require_file(path, "StackFAQ JSON").read_text(encoding="utf-8"))["root"]["qapair"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not the StackFAQ JSON (root.qapair[]): {exc}") from None
    ids, texts, thread_of, conversations = [], [], [], []
    for t, thread in enumerate(threads):
        question = str(thread.get("question") or "").strip()
        answers = _texts(thread.get("answer"))
        replies = [f"{t}-{a}" for a in range(len(answers))]
        ids += replies
        texts += [f"{question} {answer}".strip() for answer in answers]
        thread_of += [str(t)] * len(answers)
        queries = [q for q in _texts(thread.get("rephr")) if q != PLACEHOLDER]
        if not replies:
            continue
        for q, query in enumerate(queries):
            conversation = Conversation(f"{t}-q{q}", [Event("", "user", 0.0, query)], replies)
            conversations.append((split_by_position(q), conversation))
    return _data(str(path.resolve()), Catalog(ids, texts, {"thread": thread_of}), conversations)


def load_banking77(directory: str | Path) -> ConversationData:
    """BANKING77: 77 intents, one reply template each; queries are one-turn conversations."""
    directory = Path(directory)
    categories_path = require_file(directory / "categories.json", "categories.json (the 77 intents)")
    try:
        intents = [str(name) for name in json.loads(categories_path.read_text(encoding="utf-8"))]
    except json.JSONDecodeError as exc:
        raise DataError(f"{categories_path}: invalid JSON: {exc.msg}") from None
    catalog = Catalog(intents, [intent.replace("_", " ") for intent in intents], {"intent": list(intents)})
    conversations = []
    for split, file in (("train", "train.csv"), ("test", "test.csv")):
        for number, (text, intent) in enumerate(_intent_rows(directory / file, catalog)):
            conversation = Conversation(f"{split}-{number}", [Event("", "user", 0.0, text)], [intent])
            held_out = split == "train" and number % 10 == 9
            conversations.append(("valid" if held_out else split, conversation))
    return _data(str(directory.resolve()), catalog, conversations)


def _intent_rows(path: Path, catalog: Catalog):
    """(text, intent) rows of a BANKING77 CSV (header ``text,category``)."""
    require_file(path, "BANKING77 CSV")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["text", "category"]:
            raise DataError(f"{path}: header {reader.fieldnames}; expected text,category")
        for record in reader:
            text, intent = (record["text"] or "").strip(), (record["category"] or "").strip()
            if intent not in catalog.index:
                raise at(path, reader.line_num, f"category {intent!r} is not in categories.json")
            if not text:
                raise at(path, reader.line_num, "empty text")
            yield text, intent


def load_conversations(path: str | Path) -> ConversationData:
    """A ``conversations.jsonl`` file with ``replies.csv|jsonl`` (the catalog) beside it."""
    path = Path(path)
    beside = [path.parent / f"{stem}{ext}" for stem in ("replies", "items") for ext in (".csv", ".jsonl")]
    items = next((file for file in beside if file.is_file()), None)
    if items is None:
        raise DataError(f"{path.parent}: replies.csv or replies.jsonl (item_id, text) not found beside {path.name}")
    catalog = read_items(items)
    conversations = []
    for position, (number, record) in enumerate(json_objects(path)):
        split = record.get("split") or split_by_position(position)
        if split not in SPLITS:
            raise at(path, number, f"split {split!r}; allowed: {allowed(SPLITS)}")
        conversations.append((split, _conversation(path, number, record, catalog, position)))
    return _data(str(path.resolve()), catalog, conversations)


def _conversation(path: Path, number: int, record: dict, catalog: Catalog, position: int) -> Conversation:
    turns = []
    for t, turn in enumerate(record.get("turns") or []):
        role = str(turn.get("role", "")).strip() if isinstance(turn, dict) else ""
        if role not in ROLES:
            raise at(path, number, f"turns[{t}].role {role!r}; allowed: {allowed(ROLES)}")
        item, text = str(turn.get("item_id") or "").strip(), str(turn.get("text") or "").strip()
        if not (item or text):
            raise at(path, number, f"turns[{t}]: needs a text or an item_id")
        if item and item not in catalog.index:
            raise at(path, number, f"turns[{t}].item_id {item!r} is not in the replies file")
        timestamp = parse_timestamp(path, number, str(turn.get("timestamp") or ""))
        turns.append(Event(item, role, timestamp, text))
    if not turns:
        raise at(path, number, "'turns' is empty: a conversation needs at least one turn")
    replies = _texts(record.get("replies"))
    unknown = [r for r in replies if r not in catalog.index]
    if not replies or unknown:
        raise at(path, number, f"'replies' must name items of the replies file; unknown: {unknown or '(none given)'}")
    return Conversation(str(record.get("id") or position), turns, replies)
