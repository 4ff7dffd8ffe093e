from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "careline.scheduling"

    def ready(self) -> None:
        from careline.patients.models import also_seen_at

        # Staff see a patient at every practice the patient has visits at, not only at
        # their home practice.
        also_seen_at(_patients_with_visits_at)


def _patients_with_visits_at(practice_ids: list[int]):
    from careline.scheduling.models import Appointment

    return Appointment.objects.filter(practice_id__in=practice_ids).values("patient_id")
