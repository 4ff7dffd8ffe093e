"""EHR feeds: how each feed's codes map onto the clinic, every message it sent us, and the
API keys the FHIR and JSON APIs authenticate with."""

from __future__ import annotations

import re
import zoneinfo
from urllib.parse import quote

from django.core.exceptions import ValidationError
from django.db import models

from careline.clinics.models import Organization, Practice, Provider
from careline.clinics.scoping import ScopedQuerySet
from careline.clinics.validators import validate_time_zone


def _organizations_of(practice_ids: list[int]) -> models.QuerySet:
    return Practice.objects.filter(id__in=practice_ids).values("organization_id")


def default_cancelled_codes() -> list[str]:
    return ["CANCELLED", "CANCELED", "CANCEL", "DELETED"]


def default_noshow_codes() -> list[str]:
    return ["NOSHOW", "NO SHOW", "NO-SHOW", "NS"]


def _code_list(value: object, label: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError({label: 'Give a list of codes, e.g. ["CANCELLED", "DELETED"].'})
    return [v.strip().upper() for v in value if v.strip()]


class ProcessingId(models.TextChoices):
    """MSH-11 (HL7 table 0103): a listener takes one kind of message and refuses the others."""

    PRODUCTION = "P", "P: production"
    TRAINING = "T", "T: training / test"
    DEBUGGING = "D", "D: debugging"


# A URI as FHIR's Identifier.system takes it: a scheme, a colon, no spaces.
_IDENTIFIER_SYSTEM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def validate_identifier_system(value: str) -> None:
    if not _IDENTIFIER_SYSTEM.match(value):
        raise ValidationError(
            f"'{value}' is not a URI; give e.g. urn:oid:1.2.840.114350.1 or "
            "https://ehr.example.org/mrn.",
            code="invalid_identifier_system",
        )


def default_identifier_system(organization_slug: str, feed_name: str) -> str:
    """The MRN namespace of a feed not told one: its own, so two systems' MRNs never meet."""
    return f"urn:careline:{organization_slug}:{quote(feed_name, safe='')}"


class Hl7Feed(models.Model):
    """One sending system (an EHR or interface engine) and how to read its codes."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(
        max_length=60,
        help_text="The feed's id in Careline, unique in the organization.",
    )
    sending_application = models.CharField(
        max_length=180,
        blank=True,
        help_text="MSH-3 value that routes a message to this feed when a listener serves "
        "several feeds; blank: the feed name.",
    )
    active = models.BooleanField(default=True)
    time_zone = models.CharField(
        max_length=64,
        default="America/New_York",
        validators=[validate_time_zone],
        help_text="Time zone of MSH-7 without a UTC offset; visit times are read in the zone "
        "of the practice their location maps to.",
    )
    processing_id = models.CharField(
        "processing ID (MSH-11)",
        max_length=1,
        choices=ProcessingId.choices,
        default=ProcessingId.PRODUCTION,
        help_text="Messages whose MSH-11 differs are refused (AR) and change nothing.",
    )
    identifier_system = models.CharField(
        "MRN identifier system",
        max_length=255,
        blank=True,
        validators=[validate_identifier_system],
        help_text="Namespace of this feed's MRNs (a URI, e.g. urn:oid:1.2.840.114350); "
        "blank: urn:careline:<organization>:<feed name>. Feeds sharing a namespace share "
        "patients.",
    )
    mrn_identifier_type = models.CharField(
        "MRN identifier type",
        max_length=10,
        default="MR",
        blank=True,
        help_text="PID-3.5 of the repetition that is the MRN. An identifier sent without "
        "any type is also accepted; blank: the first PID-3 repetition.",
    )
    mrn_assigning_authority = models.CharField(
        "MRN assigning authority",
        max_length=60,
        blank=True,
        help_text="PID-3.4 of the MRN repetition; blank: any.",
    )
    location_map = models.JSONField(
        default=dict,
        blank=True,
        help_text='AIL location code → practice code, e.g. {"TROYMAIN": "TROY"}. A code '
        "that is itself a practice code needs no entry.",
    )
    appointment_type_map = models.JSONField(
        default=dict,
        blank=True,
        help_text="Feed service code (AIS-3 or SCH-8) → appointment type code.",
    )
    cancelled_status_codes = models.JSONField(
        default=default_cancelled_codes,
        blank=True,
        help_text="SCH-25 filler status codes that mean the visit is cancelled.",
    )
    noshow_status_codes = models.JSONField(
        default=default_noshow_codes,
        blank=True,
        help_text="SCH-25 filler status codes that mean the patient did not come.",
    )
    create_unknown_providers = models.BooleanField(
        default=True, help_text="Add providers the feed names that Careline does not know yet."
    )
    create_unknown_appointment_types = models.BooleanField(
        default=True,
        help_text="Add appointment types the feed names that Careline does not know yet.",
    )
    default_appointment_type_code = models.CharField(
        max_length=40,
        default="VISIT",
        help_text="Appointment type for new visits whose message names none.",
    )
    # Where patients' confirmations, cancellations and reschedules are sent back.
    outbound_host = models.CharField(max_length=200, blank=True)
    outbound_port = models.PositiveIntegerField(null=True, blank=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = "HL7 feed"
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="hl7_feed_name_unique")
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return models.Q(organization_id__in=_organizations_of(practice_ids))

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def routing_application(self) -> str:
        return self.sending_application or self.name

    @property
    def namespace(self) -> str:
        """The identifier system of this feed's MRNs (the default when none is stored)."""
        return self.identifier_system or default_identifier_system(
            self.organization.slug, self.name
        )

    def clean(self) -> None:
        for label in ("location_map", "appointment_type_map"):
            value = getattr(self, label)
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ValidationError({label: 'Give an object of codes, e.g. {"AIL1": "P1"}.'})
        if self.location_map:
            known = set(
                Practice.objects.filter(organization_id=self.organization_id).values_list(
                    "code", flat=True
                )
            )
            unknown = sorted(set(self.location_map.values()) - known)
            if unknown:
                raise ValidationError(
                    {"location_map": f"No practice has the code(s) {', '.join(unknown)}."}
                )
        self.cancelled_status_codes = _code_list(
            self.cancelled_status_codes, "cancelled_status_codes"
        )
        self.noshow_status_codes = _code_list(self.noshow_status_codes, "noshow_status_codes")
        if bool(self.outbound_host) != bool(self.outbound_port):
            raise ValidationError("Give both the outbound host and port, or neither.")


class Hl7ProviderLink(models.Model):
    """Which Careline provider a feed's provider code (AIP-3 / AIG-3) means."""

    feed = models.ForeignKey(Hl7Feed, on_delete=models.CASCADE, related_name="provider_links")
    code = models.CharField(max_length=80)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="+")

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = "HL7 provider code"
        constraints = [
            models.UniqueConstraint(fields=["feed", "code"], name="hl7_provider_code_unique")
        ]

    def __str__(self) -> str:
        return f"{self.feed} {self.code} → {self.provider}"

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return models.Q(feed__organization_id__in=_organizations_of(practice_ids))


class Hl7MessageState(models.TextChoices):
    RECEIVED = "received", "Received"
    APPLIED = "applied", "Applied"
    ERROR = "error", "Error (AE)"
    REJECTED = "rejected", "Rejected (AR)"


class Hl7Message(models.Model):
    """A message exactly as received, stored before it is processed, and what came of it."""

    feed = models.ForeignKey(
        Hl7Feed, on_delete=models.PROTECT, null=True, blank=True, related_name="messages"
    )
    control_id = models.CharField("control id (MSH-10)", max_length=199, blank=True)
    message_type = models.CharField(max_length=3, blank=True)
    trigger_event = models.CharField(max_length=3, blank=True)
    raw = models.TextField()
    state = models.CharField(
        max_length=10, choices=Hl7MessageState.choices, default=Hl7MessageState.RECEIVED
    )
    error = models.TextField(blank=True)
    ack_code = models.CharField(max_length=2, blank=True)
    ack = models.TextField(blank=True, help_text="The acknowledgement sent back, verbatim.")
    appointment = models.ForeignKey(
        "scheduling.Appointment",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.PositiveIntegerField(default=0)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = "HL7 message"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["feed", "control_id"],
                condition=~models.Q(control_id=""),
                name="hl7_control_id_unique_per_feed",
            )
        ]
        indexes = [models.Index(fields=["state", "received_at"])]

    def __str__(self) -> str:
        return f"{self.message_type}^{self.trigger_event} {self.control_id or '(no id)'}"

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return models.Q(feed__organization_id__in=_organizations_of(practice_ids))


# ---- write-back: what patients did, sent to the EHR ------------------------------------


class Hl7OutboundType(models.TextChoices):
    BOOKED = "S12", "S12 booked by the patient"
    RESCHEDULED = "S13", "S13 rescheduled by the patient"
    # A modification: confirmed, or a cancellation or confirmation the front desk took
    # back; the event reason (SCH-6) says which.
    MODIFIED = "S14", "S14 confirmed, or a cancellation or confirmation undone"
    CANCELLED = "S15", "S15 cancelled by the patient"
    TEXTING_CONSENT = "A31", "A31 texting opt-out or opt-in"


class Hl7OutboundState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent (AA)"
    FAILED = "failed", "Failed"


class Hl7OutboundMessage(models.Model):
    """One message for a feed's EHR, a row before it is a send (the HL7 outbox).

    Messages of one stream (an appointment, or a patient's texting consent) go out
    strictly in `sequence` order: a later one waits until the earlier is sent or failed.
    """

    feed = models.ForeignKey(Hl7Feed, on_delete=models.CASCADE, related_name="outbound")
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    event = models.ForeignKey(
        "scheduling.AppointmentEvent",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="+")
    consent_event = models.ForeignKey(
        "patients.ConsentEvent", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    stream = models.CharField(
        max_length=40, help_text="What is kept in order: appointment:<id> or patient:<id>."
    )
    sequence = models.PositiveIntegerField()
    message_type = models.CharField(max_length=3, choices=Hl7OutboundType.choices)
    control_id = models.CharField("control id (MSH-10)", max_length=20)
    raw = models.TextField()
    state = models.CharField(
        max_length=10, choices=Hl7OutboundState.choices, default=Hl7OutboundState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # AE answers so far; the connection failing is not counted (the EHR never judged it).
    error_acks = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    ack_code = models.CharField(max_length=2, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = "HL7 outbound message"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["feed", "event"],
                condition=models.Q(event__isnull=False),
                name="hl7_outbound_event_once_per_feed",
            ),
            models.UniqueConstraint(
                fields=["feed", "consent_event", "patient"],
                condition=models.Q(consent_event__isnull=False),
                name="hl7_outbound_consent_once_per_feed",
            ),
            models.UniqueConstraint(
                fields=["feed", "stream", "sequence"], name="hl7_outbound_stream_sequence"
            ),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.message_type} {self.control_id} ({self.state})"

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        return models.Q(feed__organization_id__in=_organizations_of(practice_ids))


class Hl7WritebackCursor(models.Model):
    """How far a feed's write-back has read the appointment history and consent ledger."""

    feed = models.OneToOneField(
        Hl7Feed, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    last_event_id = models.BigIntegerField(default=0)
    last_consent_event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.feed} write-back cursor"


# ---- API keys: how integrations (EHRs, engines, apps) prove which organization they act for


class ApiKey(models.Model):
    """A bearer key scoped to one organization; only a hash of its secret is kept."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'Epic interface'.")
    identifier_system = models.CharField(
        "identifier system",
        max_length=255,
        blank=True,
        default="",
        validators=[validate_identifier_system],
        help_text="System of the patient identifiers this key's client sends without one "
        "(FHIR Identifier.system left out); blank: urn:careline:<organization>:mrn.",
    )
    # Public part of the key, shown in lists and logs so a key can be told apart and revoked.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64, help_text="SHA-256 of the key's secret part.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when the model lived in careline.api.
        db_table = "api_apikey"
        ordering = ["organization", "name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class CsvRowFingerprint(models.Model):
    """The CSV row a visit was last imported from, as a hash of its normalized cells (and
    what they resolved to: practice and time zone, provider, visit type, MRN system), with
    the visit's and its patient's versions then. A re-import reads these set-based and
    skips a row whose hash matches while neither version moved, unread and unvalidated:
    re-importing an unchanged file costs reading it, not re-checking it (issue 21)."""

    appointment = models.OneToOneField(
        "scheduling.Appointment", on_delete=models.CASCADE, related_name="+"
    )
    fingerprint = models.BigIntegerField()
    appointment_version = models.PositiveIntegerField()
    patient_id = models.BigIntegerField()
    patient_version = models.PositiveIntegerField()
