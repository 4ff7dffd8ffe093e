from __future__ import annotations

from django import forms

from careline.broadcasts.sending import Audience
from careline.clinics.models import AppointmentType, Practice, Provider
from careline.clinics.validators import (
    CalendarDateField,
    CalendarDateTimeField,
    ModelIdsChoiceField,
)
from careline.patients.models import Language


class BroadcastForm(forms.Form):
    name = forms.CharField(max_length=120, label="Name (for staff)")
    practices = ModelIdsChoiceField(queryset=Practice.objects.none())
    providers = ModelIdsChoiceField(
        queryset=Provider.objects.none(),
        required=False,
        help_text="Only patients booked with these providers",
    )
    appointment_types = ModelIdsChoiceField(
        queryset=AppointmentType.objects.none(), required=False, label="Visit types"
    )
    appointments_from = CalendarDateField(
        required=False, label="Booked from", widget=forms.DateInput(attrs={"type": "date"})
    )
    appointments_to = CalendarDateField(
        required=False, label="Booked through", widget=forms.DateInput(attrs={"type": "date"})
    )
    language = forms.ChoiceField(choices=[("", "Any language"), *Language.choices], required=False)
    seen_since = CalendarDateField(
        required=False, label="Seen since", widget=forms.DateInput(attrs={"type": "date"})
    )
    body_en = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Text (English)",
        help_text="You can use {first_name} and {practice}.",
    )
    body_es = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        label="Text (Spanish)",
        help_text="Spanish speakers get this; blank means the English text.",
    )
    send_at = CalendarDateTimeField(
        required=False,
        label="Send at (blank: now)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        practices = Practice.objects.visible_to(user)
        self.fields["practices"].queryset = practices
        self.fields["providers"].queryset = Provider.objects.visible_to(user)
        self.fields["appointment_types"].queryset = AppointmentType.objects.visible_to(user)

    def audience(self) -> Audience:
        data = self.cleaned_data
        return Audience(
            practice_ids=tuple(p.id for p in data["practices"]),
            provider_ids=tuple(p.id for p in data.get("providers") or ()),
            appointment_type_ids=tuple(t.id for t in data.get("appointment_types") or ()),
            appointments_from=data.get("appointments_from"),
            appointments_to=data.get("appointments_to"),
            language=data.get("language") or "",
            seen_since=data.get("seen_since"),
        )

    def organization_id(self) -> int:
        return self.cleaned_data["practices"][0].organization_id
