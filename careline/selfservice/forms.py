"""Forms of the patient pages; every error message is shown next to its field."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from careline.clinics.models import Practice
from careline.clinics.validators import CalendarDateField, normalize_phone
from careline.selfservice import booking

LANGUAGE_CHOICES = [("en", "English"), ("es", "Español")]
# Year 9999 reads to a patient like any impossible date: Django's own, translated, text.
DATE_ERRORS = {"date_out_of_range": forms.DateField.default_error_messages["invalid"]}


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


def _visit_fields(form: forms.Form, practice: Practice) -> None:
    form.fields["visit_type"] = forms.ChoiceField(
        label=_("Type of visit"),
        choices=[(t.pk, t.patient_facing_name) for t in booking.bookable_types(practice)],
    )
    form.fields["provider"] = forms.ChoiceField(
        label=_("Provider"),
        choices=[("any", _("First available"))]
        + [(p.pk, p.display_name) for p in booking.bookable_providers(practice)],
        initial="any",
    )


class SlotSearchForm(forms.Form):
    day = CalendarDateField(label=_("Day"), widget=DateInput(), error_messages=DATE_ERRORS)

    def __init__(self, practice: Practice, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _visit_fields(self, practice)
        self.order_fields(["visit_type", "provider", "day"])
        self.fields["day"].initial = timezone.now().astimezone(practice.zone).date()


class WaitlistForm(forms.Form):
    earliest = CalendarDateField(
        label=_("First day you can come"), widget=DateInput(), error_messages=DATE_ERRORS
    )
    latest = CalendarDateField(
        label=_("Last day you can come"), widget=DateInput(), error_messages=DATE_ERRORS
    )

    def __init__(self, practice: Practice, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _visit_fields(self, practice)
        self.order_fields(["visit_type", "provider", "earliest", "latest"])

    def clean(self):
        data = super().clean()
        if data.get("earliest") and data.get("latest") and data["latest"] < data["earliest"]:
            raise ValidationError(_("The last day must not be before the first day."))
        return data


class IdentityForm(forms.Form):
    given_name = forms.CharField(
        label=_("First name"),
        max_length=100,
        widget=forms.TextInput({"autocomplete": "given-name"}),
    )
    family_name = forms.CharField(
        label=_("Last name"),
        max_length=100,
        widget=forms.TextInput({"autocomplete": "family-name"}),
    )
    birth_date = CalendarDateField(
        label=_("Date of birth"),
        widget=DateInput(attrs={"autocomplete": "bday"}),
        error_messages=DATE_ERRORS,
    )
    mobile = forms.CharField(
        label=_("Mobile number"),
        max_length=30,
        help_text=_("We text a code to this number."),
        widget=forms.TextInput({"type": "tel", "autocomplete": "tel", "inputmode": "tel"}),
    )
    language = forms.ChoiceField(label=_("Texts in"), choices=LANGUAGE_CHOICES, initial="en")

    def clean_mobile(self) -> str:
        try:
            return normalize_phone(self.cleaned_data["mobile"])
        except ValidationError as exc:
            raise ValidationError(_("Enter a valid mobile number.")) from exc

    def clean_birth_date(self):
        value = self.cleaned_data["birth_date"]
        if value > timezone.now().date() or value.year < 1900:
            raise ValidationError(_("Enter your real date of birth."))
        return value


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code from the text"),
        max_length=12,
        widget=forms.TextInput(
            {"inputmode": "numeric", "autocomplete": "one-time-code", "pattern": "[0-9 ]*"}
        ),
    )


class BirthDateForm(forms.Form):
    birth_date = CalendarDateField(
        label=_("Date of birth"), widget=DateInput(), error_messages=DATE_ERRORS
    )
