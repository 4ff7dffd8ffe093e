"""Accuracy of reply understanding and inbox routing on the labeled sets (not a speed test).

    .venv/bin/python -m bench.reply_accuracy [--replies FILE ...] [--routing FILE]

Prints, per set: overall accuracy, accuracy per labeled intent / queue, false cancellations
and missed opt-outs, and the confusions (labeled -> read, with counts). A reply counts as
handled right when what the caller would do (`Interpretation.action`: the intent when it
may be acted on, else `unclear`, i.e. a person looks) equals the label, and for
`choose_option` the option number matches too. The tests reuse these functions, so the
test suite and this report always measure the same thing.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
REPLIES = DATA / "replies_labeled.tsv"
HOLDOUT = DATA / "replies_holdout.tsv"
ROUTING = DATA / "routing_labeled.tsv"


@dataclass(frozen=True)
class LabeledReply:
    line: int
    text: str
    expecting: str
    intent: str
    option: int | None


@dataclass(frozen=True)
class LabeledMessage:
    line: int
    text: str
    queue: str
    urgent: bool


@dataclass
class Report:
    total: int = 0
    right: int = 0
    per_label: Counter = field(default_factory=Counter)
    right_per_label: Counter = field(default_factory=Counter)
    confusions: Counter = field(default_factory=Counter)
    # (line, label, reading) only: the reports never print message text.
    false_cancellations: list[tuple[int, str, str]] = field(default_factory=list)
    missed_opt_outs: list[tuple[int, str, str]] = field(default_factory=list)
    missed_urgent: list[int] = field(default_factory=list)
    false_urgent: list[int] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0


def _rows(path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = set(columns) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        return [(number, row) for number, row in enumerate(reader, start=2)]


def load_replies(path: Path) -> list[LabeledReply]:
    from careline.conversations.understanding import CHOOSE_OPTION, EXPECTING, INTENTS

    replies = []
    for line, row in _rows(path, ["text", "expecting", "intent", "option"]):
        if row["expecting"] not in EXPECTING or row["intent"] not in INTENTS:
            raise ValueError(f"{path}:{line}: unknown expecting/intent {row['expecting']!r}")
        option = int(row["option"]) if (row["option"] or "").strip() else None
        if (option is None) != (row["intent"] != CHOOSE_OPTION):
            raise ValueError(f"{path}:{line}: an option number goes with choose_option only")
        replies.append(LabeledReply(line, row["text"], row["expecting"], row["intent"], option))
    return replies


def load_messages(path: Path) -> list[LabeledMessage]:
    from careline.conversations.routing import QUEUES

    messages = []
    for line, row in _rows(path, ["text", "queue"]):
        if row["queue"] not in QUEUES:
            raise ValueError(f"{path}:{line}: unknown queue {row['queue']!r}")
        urgent = (row.get("urgent") or "0").strip() == "1"
        messages.append(LabeledMessage(line, row["text"], row["queue"], urgent))
    return messages


def evaluate_replies(replies: list[LabeledReply]) -> Report:
    from careline.conversations.understanding import (
        ACT_THRESHOLD,
        CANCEL,
        CHOOSE_OPTION,
        OPT_OUT,
        interpret_reply,
    )

    report = Report()
    for reply in replies:
        reading = interpret_reply(reply.text, expecting=reply.expecting)
        label = f"{reply.intent}" + (f" {reply.option}" if reply.option else "")
        done = reading.action + (
            f" {reading.option}" if reading.action == CHOOSE_OPTION and reading.option else ""
        )
        report.total += 1
        report.per_label[reply.intent] += 1
        if done == label:
            report.right += 1
            report.right_per_label[reply.intent] += 1
        else:
            report.confusions[(reply.expecting, reply.intent, reading.action)] += 1
        if reply.intent != CANCEL and reading.intent == CANCEL:
            if reading.confidence >= ACT_THRESHOLD:
                report.false_cancellations.append((reply.line, reply.intent, done))
        if reply.intent == OPT_OUT and reading.action != OPT_OUT:
            report.missed_opt_outs.append((reply.line, reply.intent, done))
    return report


def evaluate_routing(messages: list[LabeledMessage]) -> Report:
    from careline.conversations.routing import route_message

    report = Report()
    for message in messages:
        routing = route_message(message.text)
        report.total += 1
        report.per_label[message.queue] += 1
        if routing.queue == message.queue:
            report.right += 1
            report.right_per_label[message.queue] += 1
        else:
            report.confusions[("inbox", message.queue, routing.queue)] += 1
        if message.urgent and not routing.urgent:
            report.missed_urgent.append(message.line)
        if routing.urgent and not message.urgent:
            report.false_urgent.append(message.line)
    return report


def print_report(title: str, report: Report, out=sys.stdout) -> None:
    print(f"\n== {title}: {report.right}/{report.total} right = {report.accuracy:.1%}", file=out)
    for label in sorted(report.per_label):
        total, right = report.per_label[label], report.right_per_label[label]
        print(f"   {label:<14} {right:>4}/{total:<4} {right / total:6.1%}", file=out)
    if report.confusions:
        print("   confusions (context: labeled -> handled as, count):", file=out)
        for (context, label, got), count in report.confusions.most_common():
            print(f"     {context:<15} {label:>13} -> {got:<13} {count}", file=out)
    for name, found in (
        ("false cancellations", report.false_cancellations),
        ("missed opt-outs", report.missed_opt_outs),
        ("missed urgent (lines)", report.missed_urgent),
        ("false urgent (lines)", report.false_urgent),
    ):
        if found:
            print(f"   {name}: {found}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.reply_accuracy", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--replies", type=Path, nargs="+", default=[REPLIES, HOLDOUT], help="labeled reply TSVs"
    )
    parser.add_argument("--routing", type=Path, default=ROUTING, help="labeled inbox TSV")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")
    import django

    django.setup()
    try:
        for path in args.replies:
            print_report(f"replies {path.name}", evaluate_replies(load_replies(path)))
        print_report(f"routing {args.routing.name}", evaluate_routing(load_messages(args.routing)))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
