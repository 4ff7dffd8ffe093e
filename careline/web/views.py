from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from careline.clinics.models import Practice


@login_required
def home(request: HttpRequest) -> HttpResponse:
    practices = Practice.objects.visible_to(request.user).select_related("organization")
    return render(request, "web/home.html", {"practices": practices})


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
