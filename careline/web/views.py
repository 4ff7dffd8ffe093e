from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from careline.clientaddress import client_address
from careline.clinics.models import Practice
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
    practices = Practice.objects.visible_to(request.user).select_related("organization")
    return render(request, "web/home.html", {"practices": practices})


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
