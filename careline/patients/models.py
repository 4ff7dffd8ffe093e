"""Patients and the consent ledger for texting them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now

from careline.clinics.models import Organization, Practice
from careline.clinics.scoping import ScopedQuerySet
from careline.clinics.validators import normalize_phone
from careline.patients.time_zones import zones_for_patient


class Language(models.TextChoices):
    ENGLISH = "en", "English"
    SPANISH = "es", "Spanish"


class PhoneUse(models.TextChoices):
    """What a stored number is for (FHIR ContactPointUse; HL7 XTN-2 and XTN-3 map here)."""

    HOME = "home", "home"
    WORK = "work", "work"
    MOBILE = "mobile", "mobile"
    TEMP = "temp", "temporary"
    OLD = "old", "old"


class PhoneSystem(models.TextChoices):
    """What kind of line a stored number is (FHIR ContactPointSystem)."""

    PHONE = "phone", "phone"
    FAX = "fax", "fax"
    PAGER = "pager", "pager"
    SMS = "sms", "text"


def phones_with_mobile(phones: list[dict[str, str]], mobile: str) -> list[dict[str, str]]:
    """The stored numbers, with the texted one among them marked mobile.

    Doors that only know the number to text (a CSV column, online booking, the admin)
    set `mobile_phone`; it replaces the mobile numbers on file and keeps the others.
    """
    if not mobile:
        return phones
    if any(p.get("value") == mobile and p.get("use") == PhoneUse.MOBILE for p in phones):
        return phones
    others = [p for p in phones if p.get("use") != PhoneUse.MOBILE and p.get("value") != mobile]
    return [{"system": PhoneSystem.PHONE, "use": PhoneUse.MOBILE, "value": mobile}, *others]


# Where else staff see a patient besides their home practice: scheduling adds "the
# practices they have visits at" from its AppConfig.ready(), since patients must not import
# it. Each gives the ids of patients seen at the given practices, as a subquery.
PatientsSeenAt = Callable[[list[int]], models.QuerySet]
_seen_at: list[PatientsSeenAt] = []


def also_seen_at(patient_ids_at_practices: PatientsSeenAt) -> None:
    if patient_ids_at_practices not in _seen_at:
        _seen_at.append(patient_ids_at_practices)


class Patient(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="patients"
    )
    home_practice = models.ForeignKey(
        Practice, on_delete=models.SET_NULL, null=True, blank=True, related_name="patients"
    )
    # A display copy of the patient's MRN (the first MR-typed identifier Careline was
    # sent); patients are found by PatientIdentifier (system, value), never by this.
    mrn = models.CharField("MRN", max_length=64, blank=True)
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    birth_date = models.DateField(null=True, blank=True)
    preferred_language = models.CharField(
        max_length=8, choices=Language.choices, default=Language.ENGLISH
    )
    # A language a feed sent that Careline does not text in, as the sender wrote it
    # ("Tagalog (tl)"): texts go in preferred_language, and staff see what was asked for.
    language_received = models.CharField(max_length=80, blank=True, default="", db_default="")
    # Not unique: family members often share one mobile number. The number Careline
    # texts: the one of `phones` marked mobile.
    mobile_phone = models.CharField(max_length=20, blank=True, db_index=True)
    # Every number a feed sent, as {"value", "system" (PhoneSystem), "use" (PhoneUse)};
    # the value is E.164 when it is a valid number, else as the sender wrote it.
    phones = models.JSONField(default=list, blank=True, db_default=[])
    address_line = models.CharField(max_length=200, blank=True, default="", db_default="")
    city = models.CharField(max_length=100, blank=True, default="", db_default="")
    state = models.CharField(max_length=50, blank=True, default="", db_default="")
    postal_code = models.CharField(max_length=20, blank=True, default="", db_default="")
    country = models.CharField(max_length=60, blank=True, default="", db_default="")
    # Derived whenever the patient is saved, from the address's state when known, else the
    # mobile number's area code: quiet hours are kept in every one of these zones (the
    # practice's when blank). Space-separated IANA names.
    time_zones = models.CharField(max_length=160, blank=True, editable=False, db_default="")
    email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when an EHR merged this record into another (ADT^A40): its identifiers, visits
    # and conversations moved to the survivor, and lookups go there.
    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # FHIR's meta.versionId and meta.lastUpdated, stamped by patients.records on every
    # change; each version is kept in PatientVersion.
    version = models.PositiveIntegerField(default=1, db_default=1)
    last_updated = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["family_name", "given_name"]
        indexes = [
            models.Index(fields=["organization", "mobile_phone"]),
            models.Index(fields=["organization", "mrn"]),
            # The change feed: _lastUpdated searches sorted by (last_updated, id).
            models.Index(fields=["organization", "last_updated", "id"]),
        ]

    def __str__(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @classmethod
    def scope_filter(cls, practice_ids: list[int]) -> models.Q:
        visible = models.Q(home_practice_id__in=practice_ids)
        for patient_ids_at in _seen_at:
            visible |= models.Q(id__in=patient_ids_at(practice_ids))
        return visible

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.derive()
        fields = kwargs.get("update_fields")
        if fields is not None:
            derived = set()
            if {"mobile_phone", "state", "country"} & set(fields):
                derived.add("time_zones")
            if "mobile_phone" in fields:
                derived.add("phones")
            kwargs["update_fields"] = [*fields, *(derived - set(fields))]
        super().save(*args, **kwargs)

    def derive(self) -> None:
        """The fields that follow from others: the zones and the mobile among the phones.
        Bulk writes skip save(), so patients.records calls this for them."""
        self.time_zones = zones_for_patient(self.state, self.country, self.mobile_phone)
        self.phones = phones_with_mobile(list(self.phones or []), self.mobile_phone)

    @property
    def language_for_staff(self) -> str:
        """The language texts go in, and the one a feed asked for when Careline has none."""
        texted = self.get_preferred_language_display()
        if self.language_received:
            return f"Language received: {self.language_received} — texts in {texted}"
        return texted

    @property
    def address(self) -> str:
        parts = [self.address_line, self.city, f"{self.state} {self.postal_code}".strip()]
        return ", ".join(p for p in [*parts, self.country] if p)

    @property
    def phone_list(self) -> list[dict[str, str]]:
        """The stored numbers for display, each with whether it is the one texted."""
        return [
            {**p, "texted": bool(self.mobile_phone) and p.get("value") == self.mobile_phone}
            for p in phones_with_mobile(list(self.phones or []), self.mobile_phone)
        ]

    def clean(self) -> None:
        if self.mobile_phone:
            try:
                self.mobile_phone = normalize_phone(self.mobile_phone)
            except ValidationError as exc:
                raise ValidationError({"mobile_phone": exc.messages}) from exc

    @property
    def sms_consent(self) -> PhoneConsent | None:
        """The current texting consent of this patient's number in the organization."""
        if not self.mobile_phone:
            return None
        return PhoneConsent.objects.filter(
            organization_id=self.organization_id, phone=self.mobile_phone
        ).first()

    @property
    def email_consent(self) -> PhoneConsent | None:
        """The current email consent of this patient's address in the organization."""
        if not self.email:
            return None
        return PhoneConsent.objects.filter(
            organization_id=self.organization_id,
            channel=ConsentChannel.EMAIL,
            phone=email_key(self.email),
        ).first()


def default_identifier_system(organization_slug: str) -> str:
    """The organization's own MRN namespace: identifiers that arrive without a system (a
    CSV file, a FHIR identifier without one, MRNs stored before systems were kept)."""
    return f"urn:careline:{organization_slug}:mrn"


class PatientIdentifier(models.Model):
    """One identifier of a patient: a value in a system (an EHR's MRN namespace, an OID).

    MRN 12345 in one system and MRN 12345 in another are different people; a patient is
    found by any one of their identifiers and keeps every identifier they arrived with.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="identifiers")
    system = models.CharField(max_length=255)
    value = models.CharField(max_length=128)
    # HL7 table 0203 (MR, PI, PT, EPI…) as sent in CX-5 or Identifier.type.coding.
    type_code = models.CharField(max_length=20, blank=True)
    # Identifier.type.text (Epic sends "EPI", "MRN" here without a coding).
    type_text = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "system", "value"],
                name="patient_identifier_unique_in_system",
            )
        ]
        indexes = [models.Index(fields=["organization", "value"])]

    def __str__(self) -> str:
        return f"{self.system}|{self.value}"


class PatientVersion(models.Model):
    """One version of a patient as stored (FHIR vread and _history), written with the change."""

    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="versions", db_index=False
    )
    version = models.PositiveIntegerField()
    last_updated = models.DateTimeField()
    fields = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "version"], name="patient_version_unique")
        ]


class ConsentSource(models.TextChoices):
    PATIENT_TEXT = "patient_text", "Patient text message"
    PROVIDER_REPORT = "provider_report", "Reported by the SMS provider"
    STAFF = "staff", "Staff"
    ONLINE_FORM = "online_form", "Online form"
    EHR_FEED = "ehr_feed", "EHR feed"
    IMPORT = "import", "Import"
    EMAIL_LINK = "email_link", "Unsubscribe link in an email"


class ConsentChannel(models.TextChoices):
    """What a consent entry is about: a phone number (texts) or an email address."""

    SMS = "sms", "Texts to the number"
    EMAIL = "email", "Email to the address"


# An address as the ledger keys it: mail servers treat the local part's case as one
# mailbox in practice, and the patient's record may spell it otherwise next time.
def email_key(address: str) -> str:
    return address.strip().lower()


class ConsentEvent(models.Model):
    """Append-only ledger: every opt-in and opt-out of a number (or, for channel email,
    an email address), why and when."""

    class Kind(models.TextChoices):
        OPT_IN = "opt_in", "Opted in"
        OPT_OUT = "opt_out", "Opted out"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    # The number; for channel email the address (email_key).
    phone = models.CharField(max_length=254)
    channel = models.CharField(
        max_length=10,
        choices=ConsentChannel.choices,
        default=ConsentChannel.SMS,
        db_default=ConsentChannel.SMS,
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    detail = models.CharField(max_length=200, blank=True, help_text="e.g. the keyword received")
    occurred_at = models.DateTimeField()
    recorded_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["organization", "phone", "occurred_at"])]


class PhoneConsent(models.Model):
    """Current consent per number (or email address) and organization, derived from the
    ledger only. A number's and an address's rows never meet: an address has an @."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    phone = models.CharField(max_length=254)
    channel = models.CharField(
        max_length=10,
        choices=ConsentChannel.choices,
        default=ConsentChannel.SMS,
        db_default=ConsentChannel.SMS,
    )
    opted_out = models.BooleanField(default=False)
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "phone"], name="one_consent_per_number")
        ]
