"""Every rate Careline reports, defined once: what counts in its numerator and denominator,
in words for the analytics page and in code for every door (page, CSV, REST).

A rate is a count over another count of the same report row (careline.analytics.metrics
fills the counts in the database); `Rate.of(row)` is the one place the division happens, so
the page, the CSV export and /api/v1/reports cannot disagree about a definition.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    key: str
    name: str
    numerator: str  # the row's count above the line
    denominator: str  # … and below it
    counts: str  # what the numerator counts, in words
    out_of: str  # what the denominator counts, in words

    def of(self, row: object) -> float | None:
        """The rate on a report row; None when nothing is in the denominator."""
        below = getattr(row, self.denominator)
        return getattr(row, self.numerator) / below if below else None


APPOINTMENT_RATES = (
    Rate(
        "no_show_rate",
        "No-show rate",
        "no_shows",
        "due",
        "Visits marked no-show.",
        "Visits that came due: arrived, fulfilled or no-show (not cancelled, not entered in "
        "error, not still upcoming).",
    ),
    Rate(
        "cancellation_rate",
        "Cancellation rate",
        "cancellations",
        "appointments",
        "Visits cancelled, whenever and by whomever.",
        "Every appointment except those entered in error.",
    ),
    Rate(
        "late_cancellation_rate",
        "Late-cancellation rate",
        "late_cancellations",
        "appointments",
        "Visits cancelled less than 24 hours before their start.",
        "Every appointment except those entered in error.",
    ),
    Rate(
        "confirmation_rate",
        "Confirmation rate",
        "confirmed",
        "appointments",
        "Visits the patient confirmed, at any time and by any door (text, link, front desk, EHR).",
        "Every appointment except those entered in error.",
    ),
)

ENGAGEMENT_RATES = (
    Rate(
        "reply_rate",
        "Reply rate",
        "visits_with_reply",
        "reminded_visits",
        "Of those visits, the ones the patient answered: any text from the number a reminder "
        "went to, received after it was sent and before the visit's start, whatever it said "
        "(confirm, cancel, move, STOP, HELP, a question, something unclear), or a text "
        "Careline took to be about the visit.",
        "Visits with at least one reminder text that left Careline (sent, delivered, "
        "undelivered or failed) in the period.",
    ),
    Rate(
        "delivery_failure_rate",
        "Delivery failure rate",
        "texts_failed",
        "texts_finished",
        "Texts the carrier reported undelivered or that failed to send.",
        "Texts created in the period that left Careline: sent, delivered, undelivered or "
        "failed (not those still waiting).",
    ),
    Rate(
        "opt_out_rate",
        "Opt-out rate",
        "opt_outs",
        "numbers_texted",
        "Opt-outs (STOP and the like) in the period by a number texted, counted for the "
        "practice that texted it last.",
        "Different numbers texted in the period.",
    ),
    Rate(
        "refill_rate",
        "Refill rate",
        "slots_refilled",
        "slots_freed",
        "Freed times a waitlisted patient took.",
        "Times freed by a cancellation or move in the period.",
    ),
)

RATES = {rate.key: rate for rate in (*APPOINTMENT_RATES, *ENGAGEMENT_RATES)}
