from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from careline.clientaddress import client_address
from careline.clinics.models import (
    Organization,
    Practice,
    SenderNumber,
    StaffMembership,
    StaffRole,
)
from careline.clinics.scoping import administered_organization_ids
from careline.integrations.models import Hl7Feed
from careline.web import signin


class ThrottledLoginView(auth_views.LoginView):
    """Django's sign-in, refusing further tries after repeated failures."""

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        address = client_address(request) or None
        if signin.sign_in_blocked(username, address):
            form = self.get_form()
            form.add_error(
                None,
                ValidationError(
                    "Too many failed sign-ins. Wait 15 minutes or ask your practice manager."
                ),
            )
            response = super().form_invalid(form)
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        signin.record_failed_sign_in(
            self.request.POST.get("username", ""), client_address(self.request) or None
        )
        return super().form_invalid(form)

    def form_valid(self, form):
        signin.clear_failures(form.get_user().get_username())
        return super().form_valid(form)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Each role's own home, after sign-in and at `/`: an organization admin's overview of
    the organization, a manager's dashboard of their practices, the front desk's day."""
    roles = set(StaffMembership.objects.filter(user=request.user).values_list("role", flat=True))
    if request.user.is_superuser or StaffRole.ORGANIZATION_ADMIN in roles:
        return organization_overview(request)
    if StaffRole.PRACTICE_MANAGER in roles:
        return redirect("analytics:dashboard")
    if StaffRole.FRONT_DESK in roles and Practice.objects.visible_to(request.user).exists():
        return redirect("scheduling:day")
    practices = Practice.objects.visible_to(request.user).select_related("organization")
    return render(request, "web/home.html", {"practices": practices})


def organization_overview(request: HttpRequest) -> HttpResponse:
    """The organizations the user administers: practices, texting numbers, feeds, staff."""
    org_ids = administered_organization_ids(request.user)
    organizations = Organization.objects.order_by("name")
    if org_ids is not None:
        organizations = organizations.filter(pk__in=org_ids)
    overview = []
    for organization in organizations:
        staff = dict(
            StaffMembership.objects.filter(organization=organization)
            .values_list("role")
            .annotate(n=Count("id"))
        )
        overview.append(
            {
                "organization": organization,
                "practices": Practice.objects.filter(organization=organization)
                .select_related("organization")
                .order_by("name"),
                "numbers": SenderNumber.objects.filter(organization=organization),
                "feeds": Hl7Feed.objects.filter(organization=organization).order_by("name"),
                "staff": [(label, staff.get(value, 0)) for value, label in StaffRole.choices],
            }
        )
    return render(request, "web/organization.html", {"overview": overview})


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
